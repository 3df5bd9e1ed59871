"""Live Binance spot: the combined websocket stream plus REST depth snapshots.

A reader thread owns the websocket (websocket-client): it connects, puts every
text message with its local receive time on a queue, and on any error or
close reconnects after an exponential backoff (feed.reconnect_min_ms ..
reconnect_max_ms) with jitter from a seeded RNG. The consuming side (the
generator `LiveSource.items()`, run by the service loop) feeds each message
to the same `Normalizer` replay uses, and whenever a symbol waits for a
snapshot with diffs buffered -- at start, and after every declared gap -- it
GETs /api/v3/depth and feeds the body in. Diffs keep queueing meanwhile, so
the documented procedure (buffer, snapshot, drop u <= lastUpdateId, bridge,
continue) holds. A reconnect needs no special case: the next diff either
continues the ids or declares a gap and triggers a resync.

`--record FILE` writes every raw message (and every REST snapshot body) in
the capture format, so a recording replays through the replay source.
"""

from __future__ import annotations

import gzip
import logging
import queue
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import IO

import websocket

from common.config import FeedConfig
from common.units import BUILTIN, SymbolTable
from services.feed.binance import Counters, Item, Normalizer
from services.feed.sources import Source

log = logging.getLogger(__name__)

_DISCONNECTED = object()


def stream_url(ws_url: str, symbols: tuple[str, ...] | list[str]) -> str:
    names = []
    for sym in symbols:
        s = sym.lower()
        names += [f"{s}@depth@100ms", f"{s}@depth20@100ms", f"{s}@trade", f"{s}@bookTicker"]
    return f"{ws_url.rstrip('/')}/stream?streams={'/'.join(names)}"


def snapshot_url(rest_url: str, symbol: str, limit: int) -> str:
    return f"{rest_url.rstrip('/')}/api/v3/depth?symbol={symbol.upper()}&limit={limit}"


class Backoff:
    """Exponential reconnect delays with seeded jitter: uniform in [d/2, d], d doubling to the max."""

    def __init__(self, min_ms: int, max_ms: int, seed: int) -> None:
        self.min_ms = min_ms
        self.max_ms = max(max_ms, min_ms)
        self.rng = random.Random(seed)
        self.attempt = 0

    def next_s(self) -> float:
        d = min(self.max_ms, self.min_ms << min(self.attempt, 30))
        self.attempt += 1
        return (d // 2 + self.rng.randint(0, d - d // 2)) / 1000.0

    def reset(self) -> None:
        self.attempt = 0


class Recorder:
    """Appends ``<local ns> <raw JSON>`` lines (gzip when the name ends in .gz)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._f: IO[bytes] = gzip.open(path, "ab") if path.endswith(".gz") else open(path, "ab")  # noqa: SIM115
        self.lines = 0

    def write(self, local_ns: int, payload: bytes) -> None:
        # JSON never needs a raw newline (inside strings it is escaped), so a
        # newline can only be whitespace: flatten it to keep one message a line.
        if b"\n" in payload or b"\r" in payload:
            payload = payload.replace(b"\r", b" ").replace(b"\n", b" ")
        self._f.write(b"%d %s\n" % (local_ns, payload))
        self.lines += 1

    def close(self) -> None:
        self._f.close()


def fetch_snapshot(url: str, timeout_s: float, max_bytes: int) -> bytes:
    req = urllib.request.Request(url, headers={"User-Agent": "atomic-mesh-feed"})
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310 - the configured REST url
        body: bytes = resp.read(max_bytes + 1)
    if len(body) > max_bytes:
        raise ValueError(f"snapshot body over {max_bytes} bytes")
    return body


class LiveSource(Source):
    name = "binance"
    deterministic = False

    def __init__(
        self,
        feed: FeedConfig,
        table: SymbolTable = BUILTIN,
        stop: Callable[[], bool] = lambda: False,
        record: str = "",
        idle_s: float = 0.1,
        rest_timeout_s: float = 5.0,
    ) -> None:
        self.feed = feed
        self.symbols = tuple(s.upper() for s in feed.symbols)
        self.url = stream_url(feed.ws_url, self.symbols)
        self.normalizer = Normalizer(
            table, max_line_bytes=feed.max_line_bytes, default_symbol=self.symbols[0] if self.symbols else ""
        )
        self.stop = stop
        self.record_path = record or feed.record
        self.idle_s = idle_s
        self.rest_timeout_s = rest_timeout_s
        self.backoff = Backoff(feed.reconnect_min_ms, feed.reconnect_max_ms, feed.seed)
        self.snapshot_backoff = Backoff(feed.reconnect_min_ms, feed.reconnect_max_ms, feed.seed + 1)
        self.stats = {"connects": 0, "disconnects": 0, "snapshots_fetched": 0, "snapshot_errors": 0}
        self._q: queue.Queue[tuple[int, bytes] | object] = queue.Queue()
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
        self._ws: websocket.WebSocket | None = None
        self._lock = threading.Lock()

    def counters(self) -> Counters:
        return self.normalizer.counters

    # ------------------------------------------------------------ reader thread
    def _reader(self) -> None:
        while not self._halt.is_set():
            got_any = False
            try:
                ws = websocket.create_connection(self.url, timeout=5, enable_multithread=True)
            except (OSError, websocket.WebSocketException) as exc:
                log.warning("feed: connect to %s failed: %s", self.url, exc)
            else:
                with self._lock:
                    self._ws = ws
                self.stats["connects"] += 1
                log.info("feed: connected to %s", self.url)
                ws.settimeout(0.25)
                try:
                    while not self._halt.is_set():
                        try:
                            opcode, data = ws.recv_data()  # answers pings itself
                        except websocket.WebSocketTimeoutException:
                            continue
                        if opcode == websocket.ABNF.OPCODE_CLOSE:
                            log.info("feed: server closed the websocket")
                            break
                        now = time.time_ns()
                        got_any = True
                        self._q.put((now, data.encode() if isinstance(data, str) else bytes(data)))
                except (OSError, websocket.WebSocketException) as exc:
                    log.warning("feed: websocket dropped: %s", exc)
                finally:
                    with self._lock:
                        self._ws = None
                    try:
                        ws.close(timeout=0.2)
                    except (OSError, websocket.WebSocketException):
                        pass
                self.stats["disconnects"] += 1
                self._q.put(_DISCONNECTED)
            if got_any:
                self.backoff.reset()
            if self._halt.wait(self.backoff.next_s()):
                return

    # ------------------------------------------------------------ consumer
    def _snapshots(self, recorder: Recorder | None, next_try: dict[str, float]) -> Iterator[Item]:
        for sym in self.normalizer.needs_snapshot():
            if time.monotonic() < next_try.get(sym, 0.0):
                continue
            url = snapshot_url(self.feed.rest_url, sym, self.feed.snapshot_limit)
            try:
                body = fetch_snapshot(url, self.rest_timeout_s, self.feed.max_line_bytes)
            except (OSError, ValueError, urllib.error.URLError) as exc:
                self.stats["snapshot_errors"] += 1
                next_try[sym] = time.monotonic() + self.snapshot_backoff.next_s()
                log.warning("feed: snapshot %s failed: %s", url, exc)
                continue
            now = time.time_ns()
            self.stats["snapshots_fetched"] += 1
            if recorder is not None:
                recorder.write(now, body)
            out = self.normalizer.feed_message(now, body, snapshot_symbol=sym)
            if out:
                self.snapshot_backoff.reset()
                next_try.pop(sym, None)
            else:  # too old for the buffered diffs, or malformed: try again soon
                next_try[sym] = time.monotonic() + self.snapshot_backoff.next_s()
            yield from out

    def items(self) -> Iterator[Item | None]:
        recorder = Recorder(self.record_path) if self.record_path else None
        self._halt.clear()
        self._thread = threading.Thread(target=self._reader, name="feed-ws", daemon=True)
        self._thread.start()
        next_try: dict[str, float] = {}
        try:
            while not self.stop():
                try:
                    got = self._q.get(timeout=self.idle_s)
                except queue.Empty:
                    yield None
                else:
                    if got is _DISCONNECTED:
                        log.info("feed: disconnected; reconnecting (books kept until the ids say otherwise)")
                    else:
                        local_ns, payload = got  # type: ignore[misc]
                        if recorder is not None:
                            recorder.write(local_ns, payload)
                        yield from self.normalizer.feed_message(local_ns, payload)
                yield from self._snapshots(recorder, next_try)
        finally:
            self.close()
            if recorder is not None:
                recorder.close()

    def drop_connection(self) -> None:
        """Close the current websocket (tests; an operator's forced reconnect)."""
        with self._lock:
            ws = self._ws
        if ws is not None:
            try:
                ws.sock and ws.sock.shutdown(2)
            except OSError:
                pass

    def close(self) -> None:
        self._halt.set()
        self.drop_connection()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)
            self._thread = None
