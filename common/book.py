"""A plain L2 book: price -> qty per side, with the touch kept on heaps.

Integers only. Used wherever a service needs the market's book outside the
hot path (the feed's local-book sync, risk's spread gate, the router's venue
books, tools); the strategy keeps its own array book for the numba kernels.

Most book events insert or remove levels anywhere in a deep book (measured
on the BTCUSDT captures: 80% of level updates), while most readers want only
the touch. So each side is a dict, plus a heap of its prices for the best
(lazy: a removed price leaves the heap when it reaches the top, and the
heap is rebuilt when stale entries outnumber live ones), plus a sorted price
list built only when someone asks for more than the touch, and kept until
the next change.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from heapq import heapify, heappop, heappush

from common.events import unpack_levels


def _levels_flat(buf: bytes) -> list[int]:
    """Packed little-endian int64 (price, qty) pairs -> [p0, q0, p1, q1, ...] (checked as unpack_levels)."""
    if len(buf) % 16 or sys.byteorder != "little":
        return unpack_levels(buf).reshape(-1).tolist()  # raises FrameError on a torn pair
    return memoryview(buf).cast("B").cast("q").tolist()


def _pairs(flat: list[int]) -> Iterable[tuple[int, int]]:
    it = iter(flat)
    return zip(it, it)


class PriceBook:
    __slots__ = ("bids", "asks", "_bh", "_ah", "_bs", "_as")

    def __init__(self) -> None:
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self._bh: list[int] = []  # heap of NEGATED bid prices (may hold prices no longer in bids)
        self._ah: list[int] = []  # heap of ask prices (may hold prices no longer in asks)
        self._bs: list[int] | None = None  # bid prices ascending, None until asked for after a change
        self._as: list[int] | None = None  # ask prices ascending, likewise

    def clear(self) -> None:
        self.bids.clear()
        self.asks.clear()
        self._bh.clear()
        self._ah.clear()
        self._bs = self._as = None

    def apply(self, bids: Iterable[Sequence[int]], asks: Iterable[Sequence[int]], snapshot: bool = False) -> None:
        """Set each (price, qty) level; qty 0 removes it. A snapshot replaces the book."""
        if snapshot:
            self.clear()
        self._apply(bids, asks)

    def apply_packed(self, bids: bytes, asks: bytes, snapshot: bool = False) -> None:
        """`apply` of a BookSnapshot's / BookDelta's packed (price, qty) int64 levels."""
        fb, fa = _levels_flat(bids), _levels_flat(asks)
        if snapshot:
            self.clear()
        self._apply(_pairs(fb), _pairs(fa))

    def _apply(self, bids: Iterable[Sequence[int]], asks: Iterable[Sequence[int]]) -> None:
        self._bs = self._as = None
        side, heap = self.bids, self._bh
        for px, qty in bids:
            if qty > 0:
                if px not in side:
                    heappush(heap, -px)
                side[px] = qty
            elif px in side:
                del side[px]
        while heap and -heap[0] not in side:
            heappop(heap)
        if len(heap) > 2 * len(side) + 64:
            heap[:] = [-px for px in side]
            heapify(heap)
        side, heap = self.asks, self._ah
        for px, qty in asks:
            if qty > 0:
                if px not in side:
                    heappush(heap, px)
                side[px] = qty
            elif px in side:
                del side[px]
        while heap and heap[0] not in side:
            heappop(heap)
        if len(heap) > 2 * len(side) + 64:
            heap[:] = list(side)
            heapify(heap)

    def load(self, bids: Iterable[Sequence[int]], asks: Iterable[Sequence[int]]) -> None:
        self.apply(bids, asks, snapshot=True)

    def _best_bid_px(self) -> int:
        heap, side = self._bh, self.bids
        while heap and -heap[0] not in side:  # only after someone changed the dict directly
            heappop(heap)
        return -heap[0] if heap else 0

    def _best_ask_px(self) -> int:
        heap, side = self._ah, self.asks
        while heap and heap[0] not in side:
            heappop(heap)
        return heap[0] if heap else 0

    def best_bid(self) -> tuple[int, int]:
        px = self._best_bid_px()
        return (px, self.bids[px]) if px else (0, 0)

    def best_ask(self) -> tuple[int, int]:
        px = self._best_ask_px()
        return (px, self.asks[px]) if px else (0, 0)

    def touch(self) -> tuple[int, int]:
        """(best bid, best ask) prices; 0 for an empty side."""
        return (self._best_bid_px(), self._best_ask_px())

    def crossed(self) -> bool:
        bb, ba = self._best_bid_px(), self._best_ask_px()
        return bool(bb and ba and bb >= ba)

    def _bid_prices(self) -> list[int]:
        if self._bs is None:
            self._bs = sorted(self.bids)
        return self._bs

    def _ask_prices(self) -> list[int]:
        if self._as is None:
            self._as = sorted(self.asks)
        return self._as

    def top(self, n: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """The best n levels of each side, best first."""
        return self.levels(True, n), self.levels(False, n)

    def levels(self, bid_side: bool, n: int) -> list[tuple[int, int]]:
        """One side's best n levels, best first."""
        if bid_side:
            bids = self.bids
            return [(p, bids[p]) for p in reversed(self._bid_prices()[-n:])]
        asks = self.asks
        return [(p, asks[p]) for p in self._ask_prices()[:n]]

    def dump(self) -> dict[str, list[list[int]]]:
        bids, asks = self.bids, self.asks
        return {"bids": [[p, bids[p]] for p in self._bid_prices()], "asks": [[p, asks[p]] for p in self._ask_prices()]}

    @classmethod
    def from_dump(cls, d: dict[str, list[list[int]]]) -> PriceBook:
        b = cls()
        b.load(d["bids"], d["asks"])
        return b
