"""Row batches read ahead through shared memory (prefetch._Ring).

The child copies each row batch into a free slot of a ring mapped before the
fork and sends the slot's number; the parent reads the batch in place and
hands the slot back when it asks for the next. Whatever the slot size and
count (a batch too large for a slot goes through the pipe), the run is the
one inline; a ring of one or two slots makes the child wait for slots to come back
(a slot never handed back would hang it); stopping early ends the child; an
error in the child arrives after the batches made before it.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from typing import Any

import pytest

from common import config
from common.hotpath.rowbatch import RowBatch
from common.units import BUILTIN
from services.backtest import prefetch
from services.backtest.inputs import Input, SyntheticInput
from services.backtest.run import run_backtest
from services.feed.synthetic import SyntheticMarket
from tests.unit.backtest._ring import count_takes

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(not prefetch.available(), reason="prefetching needs fork"),
]
TIMING = {"wall_s", "events_per_s", "sequenced_per_s"}
CFG = {"risk": {"max_consecutive_losses": 1_000_000}}


def _view(res: Any) -> dict:
    rep = {k: v for k, v in res.report.items() if k not in TIMING}
    rep["input"] = rep["input"].replace(" (read ahead in a child process)", "")
    return rep


@pytest.mark.parametrize(("slots", "slot_bytes"), [(8, 1 << 18), (2, 1 << 18), (1, 1 << 18), (3, 60_000), (8, 1 << 12)])
def test_any_ring_gives_the_inline_run(slots: int, slot_bytes: int, monkeypatch: pytest.MonkeyPatch) -> None:
    taken = count_takes(monkeypatch)
    monkeypatch.setattr(prefetch, "SLOTS", slots)
    monkeypatch.setattr(prefetch, "SLOT_BYTES", slot_bytes)
    cfg = config.from_dict(CFG)
    inline = run_backtest(cfg, SyntheticInput(12_000, 3, BUILTIN, cfg.feed), "queue")
    ahead = run_backtest(cfg, prefetch.Prefetched(SyntheticInput(12_000, 3, BUILTIN, cfg.feed)), "queue")
    assert inline.report["fills"] > 0
    assert _view(ahead) == _view(inline)
    assert ahead.engine.hashes() == inline.engine.hashes()
    sizes = [b.words.nbytes for b in SyntheticInput(12_000, 3, BUILTIN, cfg.feed).row_batches()]  # type: ignore[union-attr]
    assert sorted(taken) == sorted(s for s in sizes if s <= slot_bytes)  # the rest came through the pipe
    assert not multiprocessing.active_children()


class _EndlessRows(Input):
    name = "endless-rows"

    def items(self) -> Iterator[Any]:
        raise AssertionError("read as rows")

    def row_batches(self) -> Iterator[RowBatch]:
        return map(RowBatch, SyntheticMarket(2).row_batches(10**9))

    def accounting(self) -> dict[str, Any]:
        return {}


def test_stopping_early_ends_the_child() -> None:
    ahead = prefetch.Prefetched(_EndlessRows())
    it = ahead.row_batches()
    assert it is not None
    first = [next(it).n for _ in range(3)]
    assert sum(first) > 0
    it.close()
    assert not multiprocessing.active_children()
    assert ahead.process.exitcode == 0  # it ended by itself (its slots stopped coming back), not by terminate()


class _BreaksAfterRows(_EndlessRows):
    def row_batches(self) -> Iterator[RowBatch]:
        rows = SyntheticMarket(2).row_batches(10_000)
        for k, words in enumerate(rows):
            if k == 4:
                raise ValueError("the fifth batch is broken")
            yield RowBatch(words)


def test_an_error_arrives_after_the_batches_before_it() -> None:
    got: list[int] = []
    it = prefetch.Prefetched(_BreaksAfterRows()).row_batches()
    assert it is not None
    with pytest.raises(ValueError, match="fifth batch"):
        for b in it:
            got.append(b.n)
    want = [RowBatch(w).n for w in SyntheticMarket(2).row_batches(10_000)][:4]
    assert got == want
    assert not multiprocessing.active_children()


class _RowsOnlyOnce(_EndlessRows):
    """Row batches when the parent asks, none when the child does: an empty run must not pass."""

    def __init__(self) -> None:
        self.asked = 0

    def row_batches(self) -> Iterator[RowBatch] | None:  # type: ignore[override]
        self.asked += 1
        return super().row_batches() if self.asked == 1 else None


def test_a_child_that_gets_no_row_batches_fails_the_run() -> None:
    it = prefetch.Prefetched(_RowsOnlyOnce()).row_batches()
    assert it is not None
    with pytest.raises(RuntimeError, match="made no row batches"):
        next(it)
    assert not multiprocessing.active_children()
