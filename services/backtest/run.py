"""One backtest, start to finish: input -> engine (+ the Stats observer) -> report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from common.config import MeshConfig
from common.units import load_symbols
from services.backtest import report
from services.backtest.engine import Engine, Progress, warm_up
from services.backtest.inputs import Input, decode_batch


@dataclass
class Result:
    report: dict[str, Any]
    stats: report.Stats
    engine: Engine


def run_backtest(
    cfg: MeshConfig,
    inp: Input,
    fill_model: str = "queue",
    label: str = "",
    progress: bool | None = False,
    keep_events: bool = False,
    market_run: bool = True,
) -> Result:
    """Run `inp` through the mesh's cores in process and report. progress None = on a TTY only;
    market_run False: every event through each core's apply() (fastpath.py's reference)."""
    warm_up()
    symbols = load_symbols(cfg.symbols.exchange_info)
    stats = report.Stats(symbols, money_scale=cfg.risk.pnl_scale)
    engine = Engine(cfg, fill_model=fill_model, observers=[stats], keep_events=keep_events, market_run=market_run)
    bar = Progress(inp.total, enabled=None if progress is None else progress) if progress is not False else None
    # The market run reads row batches as they are (Input.row_batches); per event, each
    # batch's items would be made in Python, so there the msgpack batches serve better.
    make_rows = getattr(inp, "row_batches", None) if engine.market is not None else None
    rows = make_rows() if make_rows is not None else None
    make_raw = getattr(inp, "raw_batches", None) if rows is None else None  # (an item iterable has none)
    raw = make_raw() if make_raw is not None else None
    if rows is not None:
        engine.run_rows(rows, bar)
    elif raw is not None:  # already msgpack: see Input.raw_batches
        engine.run_raw(raw, decode_batch, bar)
    else:
        engine.run(inp.items(), bar)
    rep = report.build(engine=engine, stats=stats, inputs=inp, fill_model=fill_model, label=label)
    return Result(rep, stats, engine)
