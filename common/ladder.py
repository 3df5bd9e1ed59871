"""An L2 book on the hot path's price-indexed ladder, for the cores that keep the
feed's book (risk's spread gate, the router's venue levels, the simulated
exchange's venue books).

The same kernel book and the same kernels as the strategy's
(``common.hotpath``): a book event costs one kernel call however deep the
book is, where a dict per side cost a Python operation per level (measured on
the BTCUSDT capture: 30-38 us per diff in risk and the router, about 46 rows).
Like every kernel book it keeps the levels within half its window of slots
(``slots`` ticks) from the best and counts the ones it drops; with the
default 65,536 slots that is +-$327 of BTCUSDT at a $0.01 tick, where a REST
snapshot's 1,000 levels span about $210.

`dump()` gives the levels as ``common.book.PriceBook.dump`` does (both sides
ascending) plus the ladder's header (where each window sits, what was
dropped), from which `from_dump` rebuilds the very same book.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from common.events import unpack_levels
from common.hotpath import book_levels, book_restore, kernels, new_book, new_levels
from common.hotpath.dtypes import BK_DROPPED, BK_HDR_LEN, BK_KEY0, BK_Q, BK_SLOTS, BK_TICK, SIDE_ASK, SIDE_BID
from common.hotpath.venue import venue_levels_into

DEFAULT_SLOTS = 65_536


class LadderBook:
    __slots__ = ("book", "_lv", "_one")

    def __init__(self, tick: int = 1, slots: int = DEFAULT_SLOTS) -> None:
        self.book = new_book(slots, tick)
        self._lv = new_levels(64)
        self._one = new_levels(1)

    def apply_packed(self, bids: bytes, asks: bytes, snapshot: bool = False) -> int:
        """A BookSnapshot's / BookDelta's packed (price, qty) int64 levels; qty 0 removes a
        level, a snapshot replaces the book. Returns rows rejected (px <= 0, qty < 0,
        off the tick grid): the feed never sends them. A torn pair raises FrameError."""
        if len(bids) % 16 or len(asks) % 16:
            unpack_levels(bids if len(bids) % 16 else asks)  # raises the FrameError of a torn pair
        rows = (len(bids) + len(asks)) >> 4
        if rows > len(self._lv):
            self._lv = new_levels(max(rows, 2 * len(self._lv)))
        return int(kernels.book_apply_packed(self.book, self._lv, bids, asks, snapshot))

    def apply(self, bids: list[tuple[int, int]], asks: list[tuple[int, int]], snapshot: bool = False) -> int:
        """`apply_packed` of (price, qty) pairs."""
        rows = [(SIDE_BID, p, q) for p, q in bids] + [(SIDE_ASK, p, q) for p, q in asks]
        lv = np.array(rows, dtype=np.int64).reshape(-1, 3)
        return int(kernels.book_apply_rows(self.book, lv, 0, lv.shape[0], snapshot))

    def best_bid_px(self) -> int:
        """0 if the side is empty (as PriceBook)."""
        px = int(kernels.best_px(self.book, SIDE_BID))
        return px if px > 0 else 0

    def best_ask_px(self) -> int:
        px = int(kernels.best_px(self.book, SIDE_ASK))
        return px if px > 0 else 0

    def touch(self) -> tuple[int, int]:
        """(best bid, best ask) prices; 0 for an empty side."""
        return (self.best_bid_px(), self.best_ask_px())

    def levels(self, bid_side: bool, n: int) -> list[tuple[int, int]]:
        """One side's best n levels, best first."""
        return book_levels(self.book, SIDE_BID if bid_side else SIDE_ASK, n)

    def venue_levels(self, bid_side: bool, n: int, price_add: int, size_pct: int, step: int) -> list[tuple[int, int]]:
        """The best n levels as a simulated venue sees them (common.venues' transform: price
        shifted by price_add pipettes, qty scaled to size_pct percent and floored to step, a
        level left with price or qty <= 0 dropped), best first: two kernel calls."""
        if n <= 0:
            return []
        flat = np.empty(2 * n, dtype=np.int64)
        k = int(kernels.book_top_into(self.book, SIDE_BID if bid_side else SIDE_ASK, n, flat))
        out = np.empty(2 * k, dtype=np.int64)
        m = int(venue_levels_into(flat[: 2 * k], out, price_add, size_pct, step, 0))
        pairs = out[:m].tolist()
        return list(zip(pairs[::2], pairs[1::2], strict=True))

    def top(self, n: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        return self.levels(True, n), self.levels(False, n)

    def qty(self, bid_side: bool, px: int) -> int:
        """The quantity at price px on one side, 0 if no level is there."""
        book = self.book
        side = SIDE_BID if bid_side else SIDE_ASK
        w, tick = int(book[BK_SLOTS]), int(book[BK_TICK])
        d = (px if bid_side else -px) - int(book[BK_KEY0 + side])
        i, off = divmod(d, tick)
        if off or not 0 <= i < w:
            return 0
        return int(book[BK_Q + side * w + i])

    def set_qty(self, bid_side: bool, px: int, qty: int) -> None:
        """Set one level (qty 0 removes it), through the kernel like any book row."""
        lv = self._one
        lv[0, 0] = SIDE_BID if bid_side else SIDE_ASK
        lv[0, 1] = px
        lv[0, 2] = qty
        kernels.book_apply_rows(self.book, lv, 0, 1, 0)

    def within(self, bid_side: bool, limit: int) -> list[tuple[int, int]]:
        """One side's levels at limit or better (bids >= limit, asks <= limit), best first;
        limit 0: every level."""
        side = SIDE_BID if bid_side else SIDE_ASK
        if limit == 0:
            return book_levels(self.book, side)
        n = 16
        while True:
            got = book_levels(self.book, side, n)
            if len(got) < n or (got[-1][0] < limit if bid_side else got[-1][0] > limit):
                return [lv for lv in got if (lv[0] >= limit if bid_side else lv[0] <= limit)]
            n *= 4

    def dropped(self) -> int:
        """Levels dropped for lying outside the window, both sides, since the book was made."""
        return int(self.book[BK_DROPPED] + self.book[BK_DROPPED + 1])

    def dump(self) -> dict[str, list[list[int]] | list[int]]:
        """Both sides ascending (as PriceBook.dump), and the ladder's header: where its
        windows sit and what it dropped decide what it keeps next, so a book restored
        from this is the very same book (its state hash too)."""
        bids = book_levels(self.book, SIDE_BID)
        asks = book_levels(self.book, SIDE_ASK)
        return {
            "bids": [[p, q] for p, q in reversed(bids)],
            "asks": [[p, q] for p, q in asks],
            "header": self.book[:BK_HDR_LEN].tolist(),
        }

    @classmethod
    def from_dump(cls, d: dict[str, Any], tick: int = 1, slots: int = DEFAULT_SLOTS) -> LadderBook:
        """The book `dump` was taken of; ValueError if it does not fit (other tick or slots)."""
        b = cls(tick, slots)
        if "header" not in d or len(d["header"]) != BK_HDR_LEN:
            raise ValueError("not a ladder book's dump (no header: taken by another build?)")
        hdr = np.asarray(d["header"], dtype=np.int64)
        sides = []
        for side, name in ((SIDE_BID, "bids"), (SIDE_ASK, "asks")):
            px = np.asarray([p for p, _ in d[name]], dtype=np.int64)
            qty = np.asarray([q for _, q in d[name]], dtype=np.int64)
            keys = px if side == SIDE_BID else -px
            off = keys - int(hdr[BK_KEY0 + side])
            if (off % tick).any():
                raise ValueError(f"{name}: a level off this book's tick grid ({tick})")
            sides.append((off // tick, qty))
        book_restore(b.book, hdr, sides)
        return b
