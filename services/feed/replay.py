"""Replay of the raw capture format: ``<local receive ns> <combined-stream JSON>`` per line.

Several files (plain or gzip, detected by magic bytes) play in order as one
session through one `Normalizer`, so the 0808 -> 0809 continuation keeps its
book. Pacing follows the capture's own local timestamps: 1x, Nx, or full
speed (speed 0). Pacing only delays; it never changes the events.
"""

from __future__ import annotations

import gzip
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from services.feed.binance import Item, Normalizer, Reject, parse_local_ns

_CHUNK = 1 << 16


class LineTooLong:
    """Marker for a line the reader refused to load whole (its size so far)."""

    __slots__ = ("nbytes",)

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes


def open_capture(path: str | os.PathLike[str]) -> BinaryIO:
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def read_lines(path: str | os.PathLike[str], max_line_bytes: int) -> Iterator[bytes | LineTooLong]:
    """Lines of one capture file, never holding more than `max_line_bytes` of one in memory."""
    with open_capture(path) as f:
        while True:
            line = f.readline(max_line_bytes + 1)
            if not line:
                return
            if len(line) > max_line_bytes and not line.endswith(b"\n"):
                n = len(line)
                while True:  # skip the rest of the over-long line
                    more = f.readline(_CHUNK)
                    n += len(more)
                    if not more or more.endswith(b"\n"):
                        break
                yield LineTooLong(n)
                continue
            yield line


def symbol_from_name(path: str | os.PathLike[str]) -> str:
    """``btcusdt_20240808.gz`` -> ``BTCUSDT`` (a fallback for the unlabelled snapshot line)."""
    return Path(path).name.split("_", 1)[0].split(".", 1)[0].upper()


class Pacer:
    """Sleeps so that line timestamps play at `speed` x real time (0 = no pacing)."""

    def __init__(
        self,
        speed: float,
        clock: Callable[[], int] = time.monotonic_ns,
        sleep: Callable[[float], None] = time.sleep,
        stop: Callable[[], bool] = lambda: False,
    ) -> None:
        self.speed = speed
        self.clock = clock
        self.sleep = sleep
        self.stop = stop
        self._t0 = -1
        self._w0 = 0

    def wait_until(self, ts_ns: int) -> None:
        if self.speed <= 0:
            return
        if self._t0 < 0:
            self._t0, self._w0 = ts_ns, self.clock()
            return
        target = self._w0 + int((ts_ns - self._t0) / self.speed)
        while not self.stop():
            left = target - self.clock()
            if left <= 0:
                return
            self.sleep(min(left / 1e9, 0.1))


def replay_items(
    paths: Iterable[str | os.PathLike[str]],
    normalizer: Normalizer,
    pacer: Pacer | None = None,
    stop: Callable[[], bool] = lambda: False,
) -> Iterator[Item]:
    """Normalized events of the capture files, in order, as one session."""
    for path in paths:
        if not normalizer.default_symbol:
            normalizer.default_symbol = symbol_from_name(path)
        for line in read_lines(path, normalizer.max_line_bytes):
            if stop():
                return
            if isinstance(line, LineTooLong):
                normalizer.line_too_long(line.nbytes)
                continue
            if pacer is not None and pacer.speed > 0:
                try:
                    pacer.wait_until(parse_local_ns(line.partition(b" ")[0]))
                except Reject:
                    pass  # the normalizer rejects and counts it
            yield from normalizer.feed_line(line)
    yield from normalizer.finish()
