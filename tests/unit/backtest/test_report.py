"""Report arithmetic: exact money text, percentages from integers, Sharpe only when defined."""

from __future__ import annotations

import math

from services.backtest import report


def test_money_is_exact_decimal_text() -> None:
    assert report.fmt_money(156_800_000_000, 10) == "15.68"
    assert report.fmt_money(-12_345_678_901, 10) == "-1.2345678901"
    assert report.fmt_money(0, 10) == "0.00"
    assert report.fmt_money(1, 10) == "0.0000000001"


def test_percent_is_floored_from_integers() -> None:
    assert report.fmt_pct(2, 3) == "66.6%"
    assert report.fmt_pct(98, 98) == "100.0%"
    assert report.fmt_pct(1, 0) == "n/a"


def test_sharpe_is_none_rather_than_a_cap() -> None:
    assert report.sharpe([]) is None
    assert report.sharpe([16]) is None  # fewer than 2 trips
    assert report.sharpe([16] * 98) is None  # the seed's case: every trip equal, stdev 0 (it printed 999.999)
    assert math.isclose(report.sharpe([1, 3]), 2 / math.sqrt(2))
    assert math.isclose(report.sharpe([-1, 1, 3]), 1 / 2)
