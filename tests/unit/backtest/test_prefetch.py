"""Prefetched: the input read in a forked child gives the very same run.

* the same items, in order, and the same input accounting as reading inline;
* the same report (apart from timing and the input's description), the same
  equity CSV and the same core hashes, through the library and the CLI;
* an exception in the child is re-raised in the parent, and stopping early
  leaves no child process behind.
"""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Iterator
from typing import Any

import pytest

from common import config
from common.events import FrameError
from common.units import BUILTIN
from services.backtest import cli, report
from services.backtest.inputs import Input, SeedInput, SyntheticInput
from services.backtest.prefetch import Prefetched, available
from services.backtest.run import run_backtest

pytestmark = pytest.mark.skipif(not available(), reason="prefetching needs fork")
TIMING = {"wall_s", "events_per_s", "sequenced_per_s"}


def synthetic(n: int = 3000) -> SyntheticInput:
    return SyntheticInput(n, 3, BUILTIN, config.from_dict({}).feed)


def test_same_items_and_accounting_as_inline() -> None:
    for make in (synthetic, SeedInput):
        inline, ahead = make(), Prefetched(make(), batch=100)  # several batches, the last one partial
        want = list(inline.items())
        assert list(ahead.items()) == want
        assert ahead.accounting() == inline.accounting()
        assert ahead.total == inline.total
    assert not multiprocessing.active_children()


def test_same_report_csv_and_hashes(tmp_path: Any) -> None:
    cfg = config.from_dict({"risk": {"max_consecutive_losses": 1_000_000}})
    a = run_backtest(cfg, synthetic(6000), "queue")
    b = run_backtest(cfg, Prefetched(synthetic(6000), batch=256), "queue")
    assert a.report["fills"] > 0  # a run that trades, or the comparison says little
    strip = TIMING | {"input"}
    assert {k: v for k, v in a.report.items() if k not in strip} == {
        k: v for k, v in b.report.items() if k not in strip
    }
    assert b.report["input"] == a.report["input"] + " (read ahead in a child process)"
    report.write_equity_csv(a.stats, tmp_path / "a.csv")
    report.write_equity_csv(b.stats, tmp_path / "b.csv")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def test_cli_prefetch_and_inline_agree(capsys: pytest.CaptureFixture[str]) -> None:
    out = []
    for flag in ("--prefetch", "--no-prefetch"):
        assert cli.main(["--synthetic", "3000", "--json", "--no-progress", flag]) == cli.EXIT_OK
        out.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    ahead, inline = out
    assert ahead["input"].endswith("(read ahead in a child process)")
    assert not inline["input"].endswith("(read ahead in a child process)")
    strip = TIMING | {"input"}
    assert {k: v for k, v in ahead.items() if k not in strip} == {k: v for k, v in inline.items() if k not in strip}


class _Breaks(Input):
    name = "breaks"

    def items(self) -> Iterator[Any]:
        yield from synthetic(50).items()
        raise ValueError("line 51: not a market event")

    def accounting(self) -> dict[str, Any]:
        return {}


def test_an_error_in_the_child_is_raised_in_the_parent() -> None:
    got = []
    with pytest.raises(ValueError, match="line 51: not a market event"):
        for item in Prefetched(_Breaks(), batch=8).items():
            got.append(item)
    assert got == list(synthetic(50).items())  # everything before the error arrived
    assert not multiprocessing.active_children()


class _Endless(Input):
    name = "endless"

    def items(self) -> Iterator[Any]:
        n = 0
        while True:
            n += 1
            yield from synthetic(10).items()

    def accounting(self) -> dict[str, Any]:
        return {}


def test_stopping_early_ends_the_child() -> None:
    ahead = Prefetched(_Endless(), batch=16)
    it = ahead.items()
    first = [next(it) for _ in range(40)]
    assert len(first) == 40
    it.close()  # what a consumer that stops (an exception in the engine) does to the generator
    assert not multiprocessing.active_children()
    assert ahead.process.exitcode == 0  # it ended by itself when its pipe closed, not by terminate()
    with pytest.raises(RuntimeError, match="accounting arrives"):
        ahead.accounting()


class _BreaksOddly(Input):
    name = "breaks-oddly"

    def items(self) -> Iterator[Any]:
        yield from synthetic(5).items()
        raise FrameError("torn frame", b"\x01")  # its __init__ wants two arguments: no pickle round trip

    def accounting(self) -> dict[str, Any]:
        return {}


def test_an_exception_that_does_not_unpickle_still_arrives_by_name() -> None:
    with pytest.raises(RuntimeError, match="FrameError: .*torn frame"):
        list(Prefetched(_BreaksOddly(), batch=2).items())
    assert not multiprocessing.active_children()
