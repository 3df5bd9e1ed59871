"""The live Binance client against a local websocket + REST server playing a real capture.

The client must build the same book as the replay of the same capture, even
though the server skips a diff (an injected gap: GapDeclared, snapshot
refetch, recovery) and drops the connection once (reconnect with backoff,
more messages lost meanwhile, another resync). Its recording replays to the
same book.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from common.config import FeedConfig
from common.events import GapDeclared, Trade
from services.feed.binance import Normalizer
from services.feed.live import Backoff, LiveSource, stream_url
from services.feed.replay import replay_items
from tests.shared_data import BINANCE_SPOT
from tests.support.books import EventBook as Book
from tests.support.ws_server import FakeBinance, load_capture

pytestmark = pytest.mark.timeout(60)

CAPTURE = BINANCE_SPOT / "btcusdt_20240808.gz"


@pytest.fixture(scope="module")
def capture():
    if not CAPTURE.exists():
        pytest.skip(f"real Binance capture {CAPTURE} is absent (shared/data not mounted)")
    return load_capture(CAPTURE)


def _final_u(messages: list[bytes]) -> int:
    for m in reversed(messages):
        if b"@depth@" in m[:40]:
            return json.loads(m)["data"]["u"]
    raise AssertionError("no diff in the capture")


def _replay_book() -> Book:
    book = Book()
    for _, body in replay_items([CAPTURE], Normalizer()):
        book.on(body)
    return book


def _feed_cfg(server: FakeBinance, **over: object) -> FeedConfig:
    base = dict(
        source="binance",
        symbols=("BTCUSDT",),
        ws_url=server.ws_url,
        rest_url=server.rest_url,
        snapshot_limit=5000,
        reconnect_min_ms=10,
        reconnect_max_ms=200,
        seed=7,
    )
    base.update(over)
    return FeedConfig(**base)  # type: ignore[arg-type]


def _run_live(source: LiveSource, until_id: int, deadline_s: float = 40.0) -> tuple[Book, list, list[int]]:
    stop = threading.Event()
    source.stop = stop.is_set
    book = Book()
    gaps: list[GapDeclared] = []
    trades: list[int] = []
    end = time.monotonic() + deadline_s
    for item in source.items():
        if time.monotonic() > end:
            stop.set()
            break
        if item is None:
            continue
        _, body = item
        book.on(body)
        if isinstance(body, GapDeclared):
            gaps.append(body)
        elif isinstance(body, Trade):
            trades.append(body.trade_id)
        if book.last_id == until_id:
            stop.set()
            break
    return book, gaps, trades


def test_live_builds_the_replay_book_through_a_gap_and_a_reconnect(capture, tmp_path):
    messages, snapshot = capture
    diff_idx = [i for i, m in enumerate(messages) if b"@depth@" in m[:40]]
    skip = {diff_idx[1500]}  # one diff never sent: the client must notice the ids jump
    drop_at = diff_idx[2500] - 3  # the connection dies here, and 40 messages are lost meanwhile
    final_u = _final_u(messages)
    expected = _replay_book()
    assert expected.last_id == final_u
    record = tmp_path / "rec.gz"
    # The drop waits for the resync after the skip (a 2nd snapshot served), so the
    # messages lost in it always fall after the client's book: a 2nd gap, by construction.
    with FakeBinance(messages, snapshot, skip=skip, drop_at=drop_at, lost_on_drop=40, drop_after_snapshots=2) as server:
        source = LiveSource(_feed_cfg(server), record=str(record))
        book, gaps, trades = _run_live(source, final_u)
        assert book.last_id == final_u, f"client stopped at {book.last_id}, server at {server.pos}/{len(messages)}"
        # the same book as the replay, level for level
        assert book.bids == expected.bids and book.asks == expected.asks
        # The skipped diff is always a gap. The messages lost in the drop are a
        # second gap only if the client had applied the 2nd snapshot (not just
        # asked for it) before the drop; under load it may still be buffering,
        # and then they are merely stale. Either way the book ends identical.
        assert [g.reason for g in gaps] in (["depth_gap"], ["depth_gap", "depth_gap"])
        assert server.connections >= 2 and source.stats["connects"] >= 2
        assert server.snapshot_requests >= 3  # start, after the skip, after the reconnect
        assert server.pongs >= 1  # the client answered the server's ping
        assert server.paths[0] == "/stream?streams=" + "/".join(
            f"btcusdt@{s}" for s in ("depth@100ms", "depth20@100ms", "trade", "bookTicker")
        )
        assert len(trades) > 1000 and trades == sorted(set(trades))  # in order, none doubled (some lost in the drop)
        c = source.counters()
        assert c.rejected.get("depth_gap") == 2
    # the recording (every raw message and every REST snapshot) replays to the same book
    replayed = Book()
    n = Normalizer()
    for _, body in replay_items([record], n):
        replayed.on(body)
    assert replayed.bids == expected.bids and replayed.asks == expected.asks
    assert n.counters.settled() == n.counters.lines
    assert n.counters.accepted["BookSnapshot"] >= 3


def test_backoff_is_exponential_bounded_and_seeded():
    a = Backoff(100, 3000, seed=1)
    delays = [a.next_s() for _ in range(8)]
    assert all(0.05 <= d <= 3.0 for d in delays)
    assert delays[0] <= 0.1 and max(delays[5:]) >= 1.5  # doubles to the cap
    b = Backoff(100, 3000, seed=1)
    assert [b.next_s() for _ in range(8)] == delays  # seeded jitter: reproducible
    c = Backoff(100, 3000, seed=2)
    assert [c.next_s() for _ in range(8)] != delays


def test_stream_url_names_the_four_streams():
    assert stream_url("wss://x:9443", ["BTCUSDT"]).endswith(
        "/stream?streams=btcusdt@depth@100ms/btcusdt@depth20@100ms/btcusdt@trade/btcusdt@bookTicker"
    )


def test_unreachable_server_keeps_retrying_without_raising():
    cfg = FeedConfig(
        source="binance",
        ws_url="ws://127.0.0.1:9",
        rest_url="http://127.0.0.1:9",
        reconnect_min_ms=5,
        reconnect_max_ms=20,
    )
    stop = threading.Event()
    source = LiveSource(cfg, stop=stop.is_set, idle_s=0.02)
    idle = 0
    for item in source.items():
        assert item is None
        idle += 1
        if idle >= 20:
            stop.set()
    assert source.stats["connects"] == 0
