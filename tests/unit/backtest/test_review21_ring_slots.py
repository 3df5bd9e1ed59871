"""Review 21: the read-ahead ring at its smallest, and the arrays it hands numba.

* A ring of one slot: the parent hands a slot back only once the next message
  has arrived, while the child waits for a slot before it sends that message.
  The run must still finish (the module's tests claim "any slot count").
  Run in a thread with a deadline, so a hang fails the test instead of
  hanging the suite.
* Batches read in place from the ring, and batches received through the pipe,
  reach the market run's kernel as the inline run's arrays do: no new numba
  specialization of market_run is compiled for them.
"""

from __future__ import annotations

import multiprocessing
import threading
from typing import Any

import numpy as np
import pytest

from common import config
from common.hotpath import market_run as K
from common.units import BUILTIN
from services.backtest import prefetch
from services.backtest.inputs import SyntheticInput
from services.backtest.run import run_backtest
from tests.unit.backtest._ring import count_takes

pytestmark = [pytest.mark.timeout(120), pytest.mark.skipif(not prefetch.available(), reason="needs fork")]
CFG = {"risk": {"max_consecutive_losses": 1_000_000}}


def _inp(n: int) -> SyntheticInput:
    cfg = config.from_dict(CFG)
    return SyntheticInput(n, 3, BUILTIN, cfg.feed)


def test_a_one_slot_ring_finishes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prefetch, "SLOTS", 1)
    want = [(b.n, b.rows.copy(), b.flat.copy()) for b in _inp(8_000).row_batches()]  # type: ignore[union-attr]
    ahead = prefetch.Prefetched(_inp(8_000))
    got: list[Any] = []
    errors: list[BaseException] = []

    def consume() -> None:
        try:
            for b in ahead.row_batches():  # type: ignore[union-attr]
                got.append((b.n, b.rows.copy(), b.flat.copy()))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    t.join(20)
    hung = t.is_alive()
    if hung:  # free the parent (its receive ends at EOF), so nothing is left behind
        ahead.process.terminate()
        t.join(10)
    assert not hung, f"a one-slot ring hangs after {len(got)} of {len(want)} batches"
    assert not errors, errors
    assert len(got) == len(want)
    for (gn, grows, gflat), (wn, wrows, wflat) in zip(got, want, strict=True):
        assert gn == wn and np.array_equal(grows, wrows) and np.array_equal(gflat, wflat)
    assert not multiprocessing.active_children()


def test_ring_and_pipe_batches_compile_no_other_market_run(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config.from_dict(CFG)
    inline = run_backtest(cfg, _inp(3_000), "queue")
    assert inline.engine.market is not None and inline.engine.market.applied > 0
    before = set(K.market_run.signatures)
    assert before
    sizes = sorted(b.words.nbytes for b in _inp(12_000).row_batches())  # type: ignore[union-attr]
    assert sizes[0] < sizes[-1]
    slot = sizes[len(sizes) // 2] // 8 * 8  # (a multiple of 8: each slot aligned for int64)
    monkeypatch.setattr(prefetch, "SLOT_BYTES", slot)  # some batches in slots, the larger through the pipe
    taken = count_takes(monkeypatch)
    ahead = run_backtest(cfg, prefetch.Prefetched(_inp(12_000)), "queue")
    assert ahead.engine.market is not None and ahead.engine.market.applied > 0
    assert sorted(taken) == [s for s in sizes if s <= slot]
    assert 0 < len(taken) < len(sizes)  # both ways were used
    assert set(K.market_run.signatures) == before
    assert not multiprocessing.active_children()
