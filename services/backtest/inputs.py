"""Where a backtest's market data comes from; every input line accounted for.

Each input is an `Input`: `items()` yields `(event_ns, body)` market events in
order (the feed's own normalized bodies) and `accounting()` says afterwards
what was read, accepted, dropped and rejected, by reason.

* `CaptureInput` -- raw capture files (``<local ns> <combined-stream JSON>``,
  plain or gzip), read in order as ONE session through ONE feed `Normalizer`
  (services.feed.replay.replay_items, the replay source's code), so a
  0808 -> 0809 continuation keeps its book. Its counters are the normalizer's.
* `LogInput` -- an event log written by the mesh (sequencer journal or the
  logger's archive): its market-data events only (BookSnapshot, BookDelta,
  Trade, BestBidOffer, and the feed's GapDeclared), in log order, with their
  event_ns; every decision in the log is ignored and re-decided.
* `SyntheticInput` -- the feed's seeded synthetic market, N events.
* `SeedInput` -- the seed's 13,334-event dataset (seeddata.py).
"""

from __future__ import annotations

import abc
import collections
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from common import eventlog, events
from common.config import FeedConfig
from common.hotpath.rowbatch import RowBatch
from common.units import SymbolTable
from services.backtest import seeddata
from services.feed import synthetic
from services.feed.binance import Item, Normalizer
from services.feed.replay import replay_items
from services.feed.sources import SyntheticSource, limit

_LOG_INPUTS = (*events.MARKET_DATA, events.GapDeclared)
# Events in a synthetic batch: each batch costs the engine about 15 us of Python (its check,
# the market run's call and the write-back after it), so 4x the feed's (1M events: 30 -> 18 ms).
SYNTH_BATCH = 4096
SYNTH_BATCH_LEVELS = 64  # up to this many book levels a side (the default is 20)


class Input(abc.ABC):
    name = "input"
    total: int | None = None  # events expected, when known (progress bar)

    @abc.abstractmethod
    def items(self) -> Iterator[Item]:
        """Normalized (event_ns, body) items, in order."""

    @abc.abstractmethod
    def accounting(self) -> dict[str, Any]:
        """Lines read, events accepted, dropped and rejected by reason."""

    def raw_batches(self) -> Iterator[bytes] | None:
        """The items as msgpack arrays of (event_ns, body), where the input can give them
        without making the objects (the market run scans the bytes and decodes a batch only
        when a core needs one of its items); None where it cannot."""
        return None

    def row_batches(self) -> Iterator[RowBatch] | None:
        """The items as row batches (common.hotpath.rowbatch: the market run's own rows, made
        by the input's kernel), where the input can make them; None where it cannot. A
        batch's arrays may be reused once the next batch is asked for."""
        return None

    def describe(self) -> str:
        return self.name


_batch_dec = msgspec.msgpack.Decoder(list[tuple[int, events.Body]])


def decode_batch(payload: bytes | memoryview) -> list[Item]:
    """A raw batch's items."""
    return _batch_dec.decode(payload)  # type: ignore[no-any-return]


class CaptureInput(Input):
    name = "capture"

    def __init__(self, files: list[str], table: SymbolTable, feed: FeedConfig) -> None:
        if not files:
            raise ValueError("--data needs at least one file")
        for f in files:
            if not Path(f).is_file():
                raise FileNotFoundError(f"capture file {f} does not exist")
        self.files = list(files)
        default = feed.symbols[0] if feed.symbols else ""
        self.normalizer = Normalizer(table, max_line_bytes=feed.max_line_bytes, default_symbol=default)

    def items(self) -> Iterator[Item]:
        return replay_items(self.files, self.normalizer)

    def accounting(self) -> dict[str, Any]:
        c = self.normalizer.counters
        d = c.as_dict()
        d["settled"] = c.settled()
        d["gaps"] = c.events.get("GapDeclared", 0)
        return d

    def describe(self) -> str:
        return "capture " + " + ".join(Path(f).name for f in self.files)


class LogInput(Input):
    name = "log"

    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir() or not eventlog.list_segments(self.directory):
            raise FileNotFoundError(f"{directory} holds no event log segments (*.seg)")
        self.records = 0
        self.accepted: collections.Counter[str] = collections.Counter()
        self.dropped: collections.Counter[str] = collections.Counter()
        self.rejected: collections.Counter[str] = collections.Counter()

    def items(self) -> Iterator[Item]:
        for _seq, payload in eventlog.read_range(self.directory, 1):
            self.records += 1
            try:
                ev = events.decode_sequenced(payload)
            except events.FrameError as exc:
                self.rejected[exc.reason.split(":")[0]] += 1
                continue
            name = type(ev.body).__name__
            if isinstance(ev.body, _LOG_INPUTS):
                self.accepted[name] += 1
                yield ev.event_ns, ev.body
            else:
                self.dropped[f"not_market_data.{name}"] += 1  # a decision: re-decided here

    def accounting(self) -> dict[str, Any]:
        return {
            "lines": self.records,
            "accepted": dict(sorted(self.accepted.items())),
            "dropped": dict(sorted(self.dropped.items())),
            "rejected": dict(sorted(self.rejected.items())),
            "settled": sum(self.accepted.values()) + sum(self.dropped.values()) + sum(self.rejected.values()),
        }

    def describe(self) -> str:
        return f"event log {self.directory}"


class SyntheticInput(Input):
    name = "synthetic"

    def __init__(self, n: int, seed: int, table: SymbolTable, feed: FeedConfig) -> None:
        if n <= 0:
            raise ValueError("--synthetic N needs N > 0")
        self.n = n
        self.total = n
        self.seed = seed
        # (the generator's level buffer grows with levels x batch: a deep book keeps the feed's)
        batch = SYNTH_BATCH if feed.levels <= SYNTH_BATCH_LEVELS else synthetic.BATCH
        self.source = SyntheticSource(dataclasses.replace(feed, seed=seed), table, batch)

    def items(self) -> Iterator[Item]:
        return limit(self.source.items(), self.n)  # type: ignore[return-value]

    def raw_batches(self) -> Iterator[bytes] | None:
        return self.source.encoded(self.n)

    def row_batches(self) -> Iterator[RowBatch] | None:
        words = self.source.row_batches(self.n)
        return None if words is None else map(RowBatch, words)

    def accounting(self) -> dict[str, Any]:
        c = self.source.counters()  # (counted from the markets on each call)
        d = c.as_dict()
        d["settled"] = c.settled()
        d.update(self.source.extra())
        return d

    def describe(self) -> str:
        return f"synthetic market, {self.n} events, seed {self.seed}"


class SeedInput(Input):
    name = "seed"
    total = seeddata.EVENTS

    def __init__(self) -> None:
        self.accepted: collections.Counter[str] = collections.Counter()

    def items(self) -> Iterator[Item]:
        for item in seeddata.items():
            self.accepted[type(item[1]).__name__] += 1
            yield item

    def accounting(self) -> dict[str, Any]:
        n = sum(self.accepted.values())
        accepted = dict(sorted(self.accepted.items()))
        return {"lines": n, "accepted": accepted, "dropped": {}, "rejected": {}, "settled": n}

    def describe(self) -> str:
        return "the seed's dataset (backtest-dataset.md formula), 13,334 events"
