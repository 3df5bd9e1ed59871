"""A plain L2 book: price -> qty per side, with the touch kept on heaps.

Integers only, exact at any depth. Used where a book must hold every level
the exchange sent (the feed's local-book sync, the dashboard, tools); the
cores keep the numba kernels' ladder book (common.ladder, common.hotpath).

Most book events insert or remove levels anywhere in a deep book (measured
on the BTCUSDT captures: 80% of level updates), while most readers want only
the touch. So each side is a dict, plus a heap of its prices for the best
(lazy: a removed price leaves the heap when it reaches the top, and the
heap is rebuilt when stale entries outnumber live ones), plus a sorted price
list built only when someone asks for more than the touch (the router's
routes, a state dump) and kept until the next change. Removing levels from
the dicts directly keeps every answer right: the heaps and the sorted list
skip prices no longer in the dict.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from heapq import heapify, heappop, heappush

from common.events import unpack_levels

_LITTLE = sys.byteorder == "little"  # the wire's int64 are little-endian; memoryview reads native


# The last few levels_flat results by the identity of their buffer: the same BookDelta
# can reach several readers in one process (PriceBooks of the same feed), and its bytes
# are immutable, so the answer is the same.
_recent: dict[int, tuple[bytes, list[int]]] = {}


def levels_flat(buf: bytes) -> list[int]:
    """Packed little-endian int64 (price, qty) pairs -> [p0, q0, p1, q1, ...] (checked as unpack_levels).

    The list may be shared with other callers: read it, never change it."""
    if not buf:
        return []
    hit = _recent.get(id(buf))
    if hit is not None and hit[0] is buf:
        return hit[1]
    if len(buf) % 16 or not _LITTLE or type(buf) is not bytes:  # only immutable bytes are remembered
        return unpack_levels(buf).reshape(-1).tolist()  # raises FrameError on a torn pair
    flat = memoryview(buf).cast("q").tolist()
    if len(_recent) >= 8:
        _recent.clear()
    _recent[id(buf)] = (buf, flat)
    return flat


def _pairs(flat: list[int]) -> Iterable[tuple[int, int]]:
    it = iter(flat)
    return zip(it, it, strict=True)


def _apply_heaped(side: dict[int, int], heap: list[int], sign: int, levels: Iterable[Sequence[int]]) -> None:
    """Set levels on one side whose heap holds sign * price (bids -1: the best bid is the top)."""
    for px, qty in levels:
        if qty > 0:
            if px not in side:
                heappush(heap, sign * px)
            side[px] = qty
        elif px in side:
            del side[px]
    while heap and sign * heap[0] not in side:
        heappop(heap)
    if len(heap) > 2 * len(side) + 64:  # stale entries outnumber live ones: rebuild
        heap[:] = [sign * px for px in side]
        heapify(heap)


class PriceBook:
    __slots__ = ("bids", "asks", "_bh", "_ah", "_bs", "_as")

    def __init__(self) -> None:
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self._bh: list[int] = []  # heap of NEGATED bid prices (may hold prices no longer in bids)
        self._ah: list[int] = []  # heap of ask prices (may hold prices no longer in asks)
        self._bs: list[int] | None = None  # bid prices ascending: built when asked for, dropped on a change
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
        self._bs = self._as = None

    def _apply(self, bids: Iterable[Sequence[int]], asks: Iterable[Sequence[int]]) -> None:
        self._bs = self._as = None
        _apply_heaped(self.bids, self._bh, -1, bids)
        _apply_heaped(self.asks, self._ah, 1, asks)

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

    def _sorted(self, bid_side: bool) -> list[int]:
        """One side's prices ascending (kept until the next change; levels removed from the
        dict directly since are dropped from it)."""
        side = self.bids if bid_side else self.asks
        ps = self._bs if bid_side else self._as
        if ps is None or len(ps) != len(side):
            ps = sorted(side) if ps is None else [p for p in ps if p in side]
            if bid_side:
                self._bs = ps
            else:
                self._as = ps
        return ps

    def _best_prices(self, bid_side: bool, n: int) -> list[int]:
        """One side's best n prices, best first (list-slice semantics for n <= 0, as always)."""
        ps = self._sorted(bid_side)
        return ps[-n:][::-1] if bid_side else ps[:n]

    def top(self, n: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """The best n levels of each side, best first."""
        return self.levels(True, n), self.levels(False, n)

    def levels(self, bid_side: bool, n: int) -> list[tuple[int, int]]:
        """One side's best n levels, best first."""
        side = self.bids if bid_side else self.asks
        return [(p, side[p]) for p in self._best_prices(bid_side, n)]

    def dump(self) -> dict[str, list[list[int]]]:
        bids, asks = self.bids, self.asks
        return {
            "bids": [[p, bids[p]] for p in self._sorted(True)],
            "asks": [[p, asks[p]] for p in self._sorted(False)],
        }

    @classmethod
    def from_dump(cls, d: dict[str, list[list[int]]]) -> PriceBook:
        b = cls()
        b.load(d["bids"], d["asks"])
        return b
