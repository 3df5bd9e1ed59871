"""The feed's three sources behind one shape: `Source.items()` yields `(event_ns, body)`.

`open_source()` builds the configured one. Synthetic and replay are
deterministic (the same config gives the same item sequence), which is what
lets a restarted feed skip what the sequencer already accepted; live is not.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Iterator
from typing import Any

from common.config import FeedConfig
from common.units import BUILTIN, SymbolTable
from services.feed.binance import Counters, Item, Normalizer
from services.feed.replay import Pacer, replay_items
from services.feed.synthetic import SyntheticMarket


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

    def __init__(self, feed: FeedConfig, table: SymbolTable = BUILTIN) -> None:
        self.markets = [
            SyntheticMarket(feed.seed + i, sym, feed.levels, table[sym]) for i, sym in enumerate(feed.symbols)
        ]
        self._counters = Counters()

    def items(self) -> Iterator[Item]:
        c = self._counters
        accepted, events = c.accepted, c.events
        streams = [m.items() for m in self.markets]
        heads: list[Item] = [next(s) for s in streams]
        n = len(heads)
        while True:
            # Merge the symbols' sessions by event time (ties: symbol order): deterministic. A
            # plain loop, not min() with a key: with one market this is the whole per-item cost.
            i = 0
            t = heads[0][0]
            for k in range(1, n):
                if heads[k][0] < t:
                    i, t = k, heads[k][0]
            item = heads[i]
            heads[i] = next(streams[i])
            c.lines += 1
            name = type(item[1]).__name__
            accepted[name] += 1
            events[name] += 1
            yield item

    def counters(self) -> Counters:
        return self._counters

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
