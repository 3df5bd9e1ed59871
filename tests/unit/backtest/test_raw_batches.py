"""Raw and row batches: an input already in msgpack, or in the market run's rows, runs
exactly as its items do.

The synthetic market gives its items as msgpack batches made by its kernel
(Input.raw_batches) and as row batches (Input.row_batches, which the run
prefers where the market run covers it), and a read-ahead child passes either
on undecoded; the market run scans the bytes (or takes the rows as they are)
and decodes a batch only when a core needs one of its items. Against the same
input given item by item: the same report (input accounting and market-run
counts included), the same equity CSV, fills and core hashes, with the market
run and without it.
"""

from __future__ import annotations

from typing import Any

import pytest

from common import config
from common.hotpath.rowbatch import RowBatch
from common.units import BUILTIN
from services.backtest import inputs as inputs_mod
from services.backtest import report
from services.backtest import run as run_mod
from services.backtest.inputs import SyntheticInput
from services.backtest.prefetch import Prefetched, available
from services.backtest.run import run_backtest
from services.feed import synthetic

pytestmark = pytest.mark.timeout(300)
TIMING = {"wall_s", "events_per_s", "sequenced_per_s"}
CFG = {"risk": {"max_consecutive_losses": 1_000_000}}


class _ItemsOnly(SyntheticInput):
    """The synthetic market without its raw or row batches: every item made as an object."""

    def raw_batches(self) -> None:
        return None

    def row_batches(self) -> None:
        return None


class _RawOnly(SyntheticInput):
    """The synthetic market's msgpack batches, not its row batches."""

    def row_batches(self) -> None:
        return None


BATCHED = {"raw": _RawOnly, "rows": SyntheticInput}


def _same(a: Any, b: Any, tmp_path: Any) -> None:
    assert a.report["fills"] > 0  # a run that trades, or the comparison says little
    assert {k: v for k, v in a.report.items() if k not in TIMING} == {
        k: v for k, v in b.report.items() if k not in TIMING
    }
    assert a.engine.hashes() == b.engine.hashes()
    assert [vars(f) for f in a.stats.fills] == [vars(f) for f in b.stats.fills]
    report.write_equity_csv(a.stats, tmp_path / "a.csv")
    report.write_equity_csv(b.stats, tmp_path / "b.csv")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


@pytest.mark.parametrize("batched", sorted(BATCHED))
@pytest.mark.parametrize("market_run", [True, False])
@pytest.mark.parametrize("fill_model", ["queue", "touch"])
def test_batches_give_the_item_paths_run(fill_model: str, market_run: bool, batched: str, tmp_path: Any) -> None:
    cfg = config.from_dict(CFG)
    feed = cfg.feed
    items = run_backtest(cfg, _ItemsOnly(9_000, 3, BUILTIN, feed), fill_model, market_run=market_run)
    probe = BATCHED[batched](9_000, 3, BUILTIN, feed)
    assert (probe.raw_batches() if batched == "raw" else probe.row_batches()) is not None
    raw = run_backtest(cfg, BATCHED[batched](9_000, 3, BUILTIN, feed), fill_model, market_run=market_run)
    _same(items, raw, tmp_path)


@pytest.mark.skipif(not available(), reason="prefetching needs fork")
@pytest.mark.parametrize("batched", sorted(BATCHED))
def test_read_ahead_batches_give_the_item_paths_run(batched: str, tmp_path: Any) -> None:
    cfg = config.from_dict(CFG)
    items = run_backtest(cfg, _ItemsOnly(9_000, 3, BUILTIN, cfg.feed), "queue")
    inp = Prefetched(BATCHED[batched](9_000, 3, BUILTIN, cfg.feed))
    assert (inp.row_batches() is not None) == (batched == "rows")
    ahead = run_backtest(cfg, inp, "queue")
    ahead.report["input"] = ahead.report["input"].replace(" (read ahead in a child process)", "")
    _same(items, ahead, tmp_path)


def test_a_batch_is_decoded_only_when_a_core_needs_one_of_its_items(monkeypatch: pytest.MonkeyPatch) -> None:
    decoded: list[int] = []
    real = run_mod.decode_batch

    def counting(buf: bytes) -> list:
        out = real(buf)
        decoded.append(len(out))
        return out

    monkeypatch.setattr(run_mod, "decode_batch", counting)
    # The feed's batch size: a backtest's batches are 4x larger, and a decoded one costs
    # 4x more, but the claim here is about which batches are decoded at all.
    monkeypatch.setattr(inputs_mod, "SYNTH_BATCH", synthetic.BATCH)
    cfg = config.load()  # mesh.toml: the strategy acts now and then, not every few hundred events
    inp = _RawOnly(200_000, 3, BUILTIN, cfg.feed)
    batches = sum(1 for _ in SyntheticInput(200_000, 3, BUILTIN, cfg.feed).raw_batches())  # type: ignore[union-attr]
    res = run_backtest(cfg, inp, "queue")
    assert res.report["events"] == 200_000
    # the first batch is (the cores make their books in Python); with mesh.toml the strategy
    # trades early on, then the loss-streak breaker stops it: most batches never are (44 of 337)
    assert decoded, "the first batch goes through Python, so it is decoded"
    assert len(decoded) < batches // 4, f"{len(decoded)} of {batches} batches decoded"
    mr = res.report["market_run"]
    assert mr["events"] > 0.95 * 200_000, mr


def test_a_row_batch_makes_only_the_items_a_core_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[int] = []
    one = RowBatch.__getitem__

    def counting(self: RowBatch, i: int) -> Any:
        made.append(i)
        return one(self, i)

    def whole(self: RowBatch) -> list:
        raise AssertionError("the market run makes a batch's items one at a time")

    monkeypatch.setattr(RowBatch, "__getitem__", counting)
    monkeypatch.setattr(RowBatch, "items", whole)
    cfg = config.load()
    res = run_backtest(cfg, SyntheticInput(200_000, 3, BUILTIN, cfg.feed), "queue")
    assert res.report["events"] == 200_000
    mr = res.report["market_run"]
    assert mr["events"] > 0.95 * 200_000
    # each event the kernel left to Python is made, and each it applied that the strategy
    # acted on (its orders are made from it): a small share of the run
    python = 200_000 - mr["events"]
    assert python <= len(made) < 5 * python < 200_000 // 20, (len(made), python)
