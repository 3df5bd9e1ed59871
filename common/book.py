"""A plain L2 book: price -> qty per side, with sorted price lists for the touch.

Integers only. Used wherever a service needs the market's book outside the
hot path (the feed's local-book sync, risk's spread gate, the router's venue
books, tools); the strategy keeps its own array book for the numba kernels.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence


class PriceBook:
    __slots__ = ("bids", "asks", "_bp", "_ap")

    def __init__(self) -> None:
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self._bp: list[int] = []  # ascending; best bid is the last
        self._ap: list[int] = []  # ascending; best ask is the first

    def clear(self) -> None:
        self.bids.clear()
        self.asks.clear()
        self._bp.clear()
        self._ap.clear()

    @staticmethod
    def _set(side: dict[int, int], prices: list[int], px: int, qty: int) -> None:
        if qty > 0:
            if px not in side:
                bisect.insort(prices, px)
            side[px] = qty
        elif px in side:
            del side[px]
            del prices[bisect.bisect_left(prices, px)]

    def apply(self, bids: Iterable[Sequence[int]], asks: Iterable[Sequence[int]], snapshot: bool = False) -> None:
        """Set each (price, qty) level; qty 0 removes it. A snapshot replaces the book."""
        if snapshot:
            self.clear()
        for px, qty in bids:
            self._set(self.bids, self._bp, px, qty)
        for px, qty in asks:
            self._set(self.asks, self._ap, px, qty)

    def load(self, bids: Iterable[Sequence[int]], asks: Iterable[Sequence[int]]) -> None:
        self.apply(bids, asks, snapshot=True)

    def best_bid(self) -> tuple[int, int]:
        if not self._bp:
            return (0, 0)
        px = self._bp[-1]
        return (px, self.bids[px])

    def best_ask(self) -> tuple[int, int]:
        if not self._ap:
            return (0, 0)
        px = self._ap[0]
        return (px, self.asks[px])

    def touch(self) -> tuple[int, int]:
        """(best bid, best ask) prices; 0 for an empty side."""
        return (self._bp[-1] if self._bp else 0, self._ap[0] if self._ap else 0)

    def crossed(self) -> bool:
        return bool(self._bp and self._ap and self._bp[-1] >= self._ap[0])

    def top(self, n: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """The best n levels of each side, best first."""
        bids = [(p, self.bids[p]) for p in reversed(self._bp[-n:])]
        asks = [(p, self.asks[p]) for p in self._ap[:n]]
        return bids, asks

    def levels(self, bid_side: bool, n: int) -> list[tuple[int, int]]:
        """One side's best n levels, best first."""
        if bid_side:
            return [(p, self.bids[p]) for p in reversed(self._bp[-n:])]
        return [(p, self.asks[p]) for p in self._ap[:n]]

    def dump(self) -> dict[str, list[list[int]]]:
        return {"bids": [[p, self.bids[p]] for p in self._bp], "asks": [[p, self.asks[p]] for p in self._ap]}

    @classmethod
    def from_dump(cls, d: dict[str, list[list[int]]]) -> PriceBook:
        b = cls()
        b.load(d["bids"], d["asks"])
        return b
