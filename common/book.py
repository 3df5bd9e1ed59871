"""A plain L2 book: price -> qty per side, with the touch kept on heaps.

Integers only. Used wherever a service needs the market's book outside the
hot path (the feed's local-book sync, risk's spread gate, the router's venue
books, tools); the strategy keeps its own array book for the numba kernels.

Most book events insert or remove levels anywhere in a deep book (measured
on the BTCUSDT captures: 80% of level updates), while most readers want only
the touch. So each side is a dict, plus a heap of its prices for the best
(lazy: a removed price leaves the heap when it reaches the top, and the
heap is rebuilt when stale entries outnumber live ones). The best n levels
come off a copy of the heap; only a full dump sorts a side. Removing levels
from the dicts directly (as the simulated exchange's book walk does) keeps
every answer right: the heaps skip prices no longer in the dict.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from heapq import heapify, heappop, heappush

from common.events import unpack_levels


_LITTLE = sys.byteorder == "little"  # the wire's int64 are little-endian; memoryview reads native


def levels_flat(buf: bytes) -> list[int]:
    """Packed little-endian int64 (price, qty) pairs -> [p0, q0, p1, q1, ...] (checked as unpack_levels)."""
    if not buf:
        return []
    if len(buf) % 16 or not _LITTLE:
        return unpack_levels(buf).reshape(-1).tolist()  # raises FrameError on a torn pair
    return memoryview(buf).cast("q").tolist()


def _pairs(flat: list[int]) -> Iterable[tuple[int, int]]:
    it = iter(flat)
    return zip(it, it)


class PriceBook:
    __slots__ = ("bids", "asks", "_bh", "_ah")

    def __init__(self) -> None:
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self._bh: list[int] = []  # heap of NEGATED bid prices (may hold prices no longer in bids)
        self._ah: list[int] = []  # heap of ask prices (may hold prices no longer in asks)

    def clear(self) -> None:
        self.bids.clear()
        self.asks.clear()
        self._bh.clear()
        self._ah.clear()

    def apply(self, bids: Iterable[Sequence[int]], asks: Iterable[Sequence[int]], snapshot: bool = False) -> None:
        """Set each (price, qty) level; qty 0 removes it. A snapshot replaces the book."""
        if snapshot:
            self.clear()
        self._apply(bids, asks)

    def apply_packed(self, bids: bytes, asks: bytes, snapshot: bool = False) -> None:
        """`apply` of a BookSnapshot's / BookDelta's packed (price, qty) int64 levels."""
        fb, fa = levels_flat(bids), levels_flat(asks)
        if snapshot:
            self.clear()
        self._apply(_pairs(fb), _pairs(fa))

    def apply_flat(self, bids: list[int], asks: list[int]) -> None:
        """`apply` of flat [p0, q0, p1, q1, ...] lists (what levels_flat returns)."""
        self._apply(_pairs(bids), _pairs(asks))

    def set_levels(self, bids: dict[int, int], asks: dict[int, int]) -> None:
        """Replace both sides with these dicts (price -> qty > 0), taken as they are."""
        self.bids = bids
        self.asks = asks
        self._bh = [-px for px in bids]
        heapify(self._bh)
        self._ah = list(asks)
        heapify(self._ah)

    def _apply(self, bids: Iterable[Sequence[int]], asks: Iterable[Sequence[int]]) -> None:
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

    def best_bid_px(self) -> int:
        """The best bid price, 0 if none (entries removed from the dict directly are skipped here)."""
        heap, side = self._bh, self.bids
        while heap and -heap[0] not in side:
            heappop(heap)
        return -heap[0] if heap else 0

    def best_ask_px(self) -> int:
        """The best ask price, 0 if none."""
        heap, side = self._ah, self.asks
        while heap and heap[0] not in side:
            heappop(heap)
        return heap[0] if heap else 0

    def best_bid(self) -> tuple[int, int]:
        px = self.best_bid_px()
        return (px, self.bids[px]) if px else (0, 0)

    def best_ask(self) -> tuple[int, int]:
        px = self.best_ask_px()
        return (px, self.asks[px]) if px else (0, 0)

    def touch(self) -> tuple[int, int]:
        """(best bid, best ask) prices; 0 for an empty side."""
        return (self.best_bid_px(), self.best_ask_px())

    def crossed(self) -> bool:
        bb, ba = self.best_bid_px(), self.best_ask_px()
        return bool(bb and ba and bb >= ba)

    def _best_prices(self, bid_side: bool, n: int) -> list[int]:
        """One side's best n prices, best first (list-slice semantics for n <= 0, as always)."""
        side = self.bids if bid_side else self.asks
        if n <= 0 or n * 8 >= len(side):
            ps = sorted(side)
            return ps[-n:][::-1] if bid_side else ps[:n]
        # The n best of a deep side: pop them off a copy of its heap (skipping removed
        # prices and the duplicates a re-added price leaves) instead of sorting it all.
        heap = (self._bh if bid_side else self._ah).copy()
        out: list[int] = []
        last = None
        while heap and len(out) < n:
            k = heappop(heap)
            if k == last:
                continue
            last = k
            px = -k if bid_side else k
            if px in side:
                out.append(px)
        return out

    def top(self, n: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """The best n levels of each side, best first."""
        return self.levels(True, n), self.levels(False, n)

    def levels(self, bid_side: bool, n: int) -> list[tuple[int, int]]:
        """One side's best n levels, best first."""
        side = self.bids if bid_side else self.asks
        return [(p, side[p]) for p in self._best_prices(bid_side, n)]

    def dump(self) -> dict[str, list[list[int]]]:
        bids, asks = self.bids, self.asks
        return {"bids": [[p, bids[p]] for p in sorted(bids)], "asks": [[p, asks[p]] for p in sorted(asks)]}

    @classmethod
    def from_dump(cls, d: dict[str, list[list[int]]]) -> PriceBook:
        b = cls()
        b.load(d["bids"], d["asks"])
        return b
