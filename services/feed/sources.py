"""The feed's three sources behind one shape: `Source.items()` yields `(event_ns, body)`.

`open_source()` builds the configured one. Synthetic and replay are
deterministic (the same config gives the same item sequence), which is what
lets a restarted feed skip what the sequencer already accepted; live is not.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import numpy as np

from common.config import FeedConfig
from common.units import BUILTIN, SymbolTable
from services.feed.binance import Counters, Item, Normalizer
from services.feed.replay import Pacer, replay_items
from services.feed.synthetic import BATCH as SYNTH_BATCH
from services.feed.synthetic import SyntheticMarket

T = TypeVar("T")


class Source(abc.ABC):
    """`items()` yields `(event_ns, body)`, or None when a live source is idle (a chance to heartbeat)."""

    name = "source"
    deterministic = True

    @abc.abstractmethod
    def items(self) -> Iterator[Item | None]:
        """The session's normalized events, in order."""

    @abc.abstractmethod
    def counters(self) -> Counters:
        """Input accounting so far."""

    def close(self) -> None:  # noqa: B027 - most sources hold nothing to close
        """Stop taking input (the live source closes its websocket)."""


class SyntheticSource(Source):
    name = "synthetic"

    def __init__(self, feed: FeedConfig, table: SymbolTable = BUILTIN, batch: int = SYNTH_BATCH) -> None:
        self.markets = [
            SyntheticMarket(feed.seed + i, sym, feed.levels, table[sym], batch) for i, sym in enumerate(feed.symbols)
        ]
        self._heads: list[Item | None] = [None] * len(self.markets)  # read, not yet given

    def items(self) -> Iterator[Item]:
        streams = [m.items() for m in self.markets]
        heads = self._heads
        for k, s in enumerate(streams):
            heads[k] = next(s)
        n = len(heads)
        if n == 1:  # nothing to merge: still one item read ahead, as with several
            (stream,) = streams
            for nxt in stream:
                item = heads[0]
                heads[0] = nxt
                yield item  # type: ignore[misc]
            return
        while True:
            # Merge the symbols' sessions by event time (ties: symbol order): deterministic. A
            # plain loop, not min() with a key.
            i = 0
            t = heads[0][0]  # type: ignore[index]
            for k in range(1, n):
                if heads[k][0] < t:  # type: ignore[index]
                    i, t = k, heads[k][0]  # type: ignore[index]
            item = heads[i]
            heads[i] = next(streams[i])
            yield item  # type: ignore[misc]

    def encoded(self, limit: int) -> Iterator[bytes] | None:
        """items()' first `limit` as msgpack batches (SyntheticMarket.encoded), for one symbol
        (several are merged item by item: None). Afterwards the next item is held read ahead,
        as items() holds it, so counters() and extra() say what they say after those items."""
        return self._batches(limit, SyntheticMarket.encoded)

    def row_batches(self, limit: int) -> Iterator[np.ndarray] | None:
        """As encoded(), as row batches' words (SyntheticMarket.row_batches)."""
        return self._batches(limit, SyntheticMarket.row_batches)

    def _batches(self, limit: int, make: Callable[[SyntheticMarket, int], Iterator[T]]) -> Iterator[T] | None:
        if len(self.markets) != 1:
            return None
        (m,) = self.markets

        def batches() -> Iterator[T]:
            yield from make(m, limit)
            self._heads[0] = m.ahead

        return batches()

    def counters(self) -> Counters:
        """Items given so far: each market's, less the one it holds read ahead. Counted from
        the markets when asked (per item, two Counter updates cost more than making the item)."""
        c = Counters()
        for m, head in zip(self.markets, self._heads, strict=True):
            made = m.made()
            if head is not None:
                made[type(head[1]).__name__] -= 1
            for name, k in made.items():
                if k:
                    c.accepted[name] += k
                    c.events[name] += k
                    c.lines += k
        return c

    def extra(self) -> dict[str, Any]:
        return {
            "regime_changes": sum(m.regime_changes for m in self.markets),
            "bursts": sum(m.bursts for m in self.markets),
        }


class ReplaySource(Source):
    name = "replay"

    def __init__(
        self,
        files: list[str],
        feed: FeedConfig,
        table: SymbolTable = BUILTIN,
        speed: float | None = None,
        stop: Callable[[], bool] = lambda: False,
    ) -> None:
        if not files:
            raise ValueError("replay needs at least one file (--file or feed.replay_files)")
        self.files = files
        self.normalizer = Normalizer(
            table, max_line_bytes=feed.max_line_bytes, default_symbol=feed.symbols[0] if feed.symbols else ""
        )
        self.speed = feed.replay_speed if speed is None else speed
        self.stop = stop

    def items(self) -> Iterator[Item]:
        pacer = Pacer(self.speed, stop=self.stop) if self.speed > 0 else None
        return replay_items(self.files, self.normalizer, pacer, self.stop)

    def counters(self) -> Counters:
        return self.normalizer.counters


def limit(items: Iterator[Item | None], max_events: int) -> Iterator[Item | None]:
    """At most `max_events` events (0 = no limit); idle ticks pass through uncounted."""
    if max_events <= 0:
        yield from items
        return
    n = 0
    for item in items:
        yield item
        if item is not None:
            n += 1
            if n >= max_events:
                return


def paced(items: Iterator[Item | None], rate: float, stop: Callable[[], bool] = lambda: False) -> Iterator[Item | None]:
    """`rate` items per second of wall time (0 = full speed). Delays only; never changes an item."""
    if rate <= 0:
        yield from items
        return
    period_ns = int(1e9 / rate)
    start = time.monotonic_ns()
    for n, item in enumerate(items):
        target = start + n * period_ns
        while not stop():
            left = target - time.monotonic_ns()
            if left <= 0:
                break
            time.sleep(min(left / 1e9, 0.1))
        yield item


def summary(counters: Counters, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    out = counters.as_dict()
    out["gaps"] = counters.events.get("GapDeclared", 0)
    if extra:
        out.update(extra)
    return out
