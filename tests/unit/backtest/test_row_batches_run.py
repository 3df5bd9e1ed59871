"""Row batches in the engine: what the kernel takes as it is, and what it must not.

The market run reads a row batch's arrays as numba sees its own scan's (one
compiled flavour of market_run, not two); a batch of another symbol's events
goes through Python item by item, as the scan leaves such events; and the
read-ahead pipe receives a batch larger than its buffer whole.
"""

from __future__ import annotations

import itertools
import multiprocessing
from pathlib import Path
from typing import Any

import numba
import numpy as np
import pytest

from common import config
from common.hotpath import rowbatch
from common.hotpath.market_run import RK_COLS
from common.units import BUILTIN
from services.backtest import prefetch
from services.backtest.inputs import SyntheticInput
from services.backtest.run import run_backtest
from services.feed.synthetic import SyntheticMarket

pytestmark = pytest.mark.timeout(300)
TIMING = {"wall_s", "events_per_s", "sequenced_per_s"}


class _ItemsOnly(SyntheticInput):
    def raw_batches(self) -> None:
        return None

    def row_batches(self) -> None:
        return None


def test_a_batch_s_arrays_are_the_scan_s_numba_types() -> None:
    rb = rowbatch.RowBatch(next(SyntheticMarket(2).row_batches(500)))
    assert numba.typeof(rb.rows) == numba.typeof(np.zeros((2, RK_COLS), dtype=np.int64))
    assert numba.typeof(rb.flat) == numba.typeof(np.zeros(4, dtype=np.int64))
    parsed = rowbatch.RowBatch.parse(memoryview(bytearray(rb.words.tobytes())))
    assert numba.typeof(parsed.rows) == numba.typeof(rb.rows)


class _TwoMarkets:
    """BTCUSDT's first 3,000 events, then ETHUSDT's: as row batches or as items."""

    total = 6_000

    def __init__(self, rows: bool) -> None:
        self.rows = rows

    def _markets(self) -> list[SyntheticMarket]:
        return [SyntheticMarket(4, "BTCUSDT"), SyntheticMarket(5, "ETHUSDT", spec=BUILTIN["ETHUSDT"])]

    def row_batches(self) -> Any:
        if not self.rows:
            return None
        return (rowbatch.RowBatch(w) for m in self._markets() for w in m.row_batches(3_000))

    def items(self) -> Any:
        return (it for m in self._markets() for it in itertools.islice(m.items(), 3_000))

    def accounting(self) -> dict:
        return {"lines": 6_000, "settled": 6_000, "accepted": {}, "dropped": {}, "rejected": {}}

    def describe(self) -> str:
        return "two markets"


def test_another_symbol_s_batches_run_as_their_items() -> None:
    # the strategy trades BTCUSDT: once every core has its book, ETHUSDT's rows arrive, which
    # the kernel must not apply as BTCUSDT's
    cfg = config.from_dict({"risk": {"max_consecutive_losses": 1_000_000}})
    rows = run_backtest(cfg, _TwoMarkets(rows=True), "queue")  # type: ignore[arg-type]
    items = run_backtest(cfg, _TwoMarkets(rows=False), "queue")  # type: ignore[arg-type]
    assert rows.report["orders"] > 0
    assert {k: v for k, v in rows.report.items() if k not in TIMING} == {
        k: v for k, v in items.report.items() if k not in TIMING
    }
    assert rows.engine.hashes() == items.engine.hashes()
    assert rows.engine.market is not None and 0 < rows.engine.market.applied <= 3_000


@pytest.mark.skipif(not prefetch.available(), reason="needs fork")
def test_a_message_larger_than_the_buffer_is_received_whole() -> None:
    recv, send = multiprocessing.Pipe(duplex=False)
    big = bytes(range(256)) * 40
    send.send_bytes(big)
    send.send_bytes(b"R" + bytes(7))
    buf = bytearray(64)
    msg, grown = prefetch._receive_into(recv, buf)
    assert bytes(msg) == big and len(grown) >= len(big)
    msg, same = prefetch._receive_into(recv, grown)
    assert bytes(msg) == b"R" + bytes(7) and same is grown
    recv.close()
    send.close()


@pytest.mark.skipif(not prefetch.available(), reason="needs fork")
def test_an_input_without_row_batches_is_not_read_ahead_as_rows() -> None:
    cfg = config.load()
    assert prefetch.Prefetched(_ItemsOnly(10, 1, BUILTIN, cfg.feed)).row_batches() is None
    two = config.from_dict({"feed": {"symbols": ["BTCUSDT", "ETHUSDT"]}})
    assert SyntheticInput(10, 1, BUILTIN, two.feed).row_batches() is None  # merged markets: items only


@pytest.mark.skipif(not hasattr(__import__("fcntl"), "F_GETPIPE_SZ"), reason="Linux pipes only")
def test_the_read_ahead_pipe_holds_several_batches() -> None:
    import fcntl

    recv, send = multiprocessing.Pipe(duplex=False)
    prefetch._widen(send)
    limit = int(Path("/proc/sys/fs/pipe-max-size").read_text())
    size = fcntl.fcntl(recv.fileno(), fcntl.F_GETPIPE_SZ)
    # (below the limit only a privileged process may widen it; else it is left as it was)
    assert size == prefetch.PIPE_BYTES or (limit < prefetch.PIPE_BYTES and size == 1 << 16)
    recv.close()
    send.close()
