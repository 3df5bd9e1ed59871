"""The real Binance captures, 2024-08-08 then 2024-08-09, as one session through the engine.

Skips (saying why) when shared/data is not mounted.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from common import config
from common.units import BUILTIN
from services.backtest import report
from services.backtest.inputs import CaptureInput
from services.backtest.run import run_backtest
from tests.shared_data import BINANCE_SPOT

DATA = Path(os.environ.get("ATOMIC_MESH_DATA", str(BINANCE_SPOT)))
FILES = [DATA / "btcusdt_20240808.gz", DATA / "btcusdt_20240809.gz"]


@pytest.mark.skipif(not all(f.exists() for f in FILES), reason=f"real captures {[str(f) for f in FILES]} absent")
def test_both_btcusdt_captures_as_one_session_quote_and_fill(capsys) -> None:
    cfg = config.load()
    inp = CaptureInput([str(f) for f in FILES], BUILTIN, cfg.feed)
    res = run_backtest(cfg, inp, "queue", label="BTCUSDT 0808+0809")
    rep = res.report
    acc = rep["inputs"]
    # every line of both files accounted for: accepted + dropped + rejected
    assert acc["lines"] == 41_249 + 58_325 == acc["settled"]
    assert acc["accepted"]["BookSnapshot"] == 1  # one session: the 0809 file continues 0808's book
    assert acc["gaps"] == 0 and not acc["rejected"]
    assert rep["events"] == sum(acc["accepted"].values())
    assert rep["intents"] > 100 and rep["orders"] > 100
    assert rep["fills"] > 0 and rep["fills_by_liquidity"].get("maker", 0) > 0
    with capsys.disabled():
        print("\n" + report.text(rep))
