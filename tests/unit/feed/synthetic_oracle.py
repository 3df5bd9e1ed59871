"""The synthetic market as plain Python: the oracle for the compiled generator.

This is `services/feed/synthetic.py`'s SyntheticMarket as it was until the
generator moved into numba (`common/hotpath/synth.py`), unchanged but for
this docstring, its constants, which it imports, and two helpers factored
out of `_refill` for the sorting variant: test_synthetic_kernel.py holds the compiled one to it, item
for item, and test_fast_paths.py's sorting variant derives from it.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from common.events import BookDelta, BookSnapshot, Trade, _Body, pack_pairs
from common.hotpath.synth import BURST_MAX as _BURST_MAX
from common.hotpath.synth import BURST_MIN as _BURST_MIN
from common.hotpath.synth import BURST_START_PPM as _BURST_START_PPM
from common.hotpath.synth import BURST_TRADE_SHARE as _BURST_TRADE_SHARE
from common.hotpath.synth import REGIME_SWITCH_PPM as _REGIME_SWITCH_PPM
from common.units import BUILTIN, SymbolSpec

# The model's data (start time, ids, the exponential quantiles, the regimes, the trade
# sizes) is the service's: the oracle is its algorithm.
from services.feed.synthetic import _EXP_Q, _REGIMES, _TRADE_SIZES, FIRST_TRADE_ID, FIRST_UPDATE_ID, NORMAL, START_NS

Item = tuple[int, _Body]


class SyntheticMarket:
    """Generates `(event_ns, body)` items; `items()` is the whole (infinite) session."""

    def __init__(self, seed: int, symbol: str = "BTCUSDT", levels: int = 20, spec: SymbolSpec | None = None) -> None:
        self.spec = spec or BUILTIN[symbol]
        self.symbol = self.spec.symbol
        self.levels = max(1, levels)
        self._gen = np.random.Generator(np.random.PCG64(seed))
        self._buf: list[int] = []
        self.now_ns = START_NS
        self.update_id = FIRST_UPDATE_ID
        self.trade_id = FIRST_TRADE_ID
        self.regime = NORMAL
        self.regime_changes = 0
        self.burst_left = 0
        self.burst_side_buy = True
        self.bursts = 0
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        # 60,000.00 in pipettes, on the tick grid
        self._start_px = (60_000 * 10**self.spec.price_scale // self.spec.tick) * self.spec.tick
        self._size_unit = max(self.spec.step, 10 ** max(self.spec.qty_scale - 4, 0))  # 0.0001 BTC
        total = sum(w for _, w in _TRADE_SIZES)
        self._size_total = total

    # ------------------------------------------------------------ integer randomness
    def _u32(self) -> int:
        if not self._buf:
            self._fill()
        return self._buf.pop()

    def _fill(self) -> None:
        # In place: _below holds on to the list across the refill.
        self._buf[:] = self._gen.integers(0, 1 << 32, size=4096, dtype=np.uint64).tolist()[::-1]

    def _below(self, n: int) -> int:
        # _u32 inlined: this is the generator's most frequent call (several per event).
        buf = self._buf
        if not buf:
            self._fill()
        return (buf.pop() * n) >> 32

    def _chance(self, ppm: int) -> bool:
        return self._below(1_000_000) < ppm

    def _exp_ns(self, mean_ns: int) -> int:
        return max(1, mean_ns * _EXP_Q[self._u32() >> 20] // 1_000_000)

    # ------------------------------------------------------------ book helpers
    def _queue(self, depth: int) -> int:
        """A queue size: 0.2-0.6 BTC at the touch, growing ~25% per level, on the step grid."""
        base = 20_000_000 + self._below(40_000_000)  # atoms at qty_scale 8
        base = base * 10**self.spec.qty_scale // 10**8
        q = base * (4 + depth) // 4
        q -= q % self.spec.step
        return max(q, self.spec.step)

    def _gap(self) -> int:
        return (1 + self._below(_REGIMES[self.regime][4])) * self.spec.tick

    def best_bid(self) -> int:
        return max(self.bids)

    def best_ask(self) -> int:
        return min(self.asks)

    def _set(self, side: dict[int, int], changed: dict[int, int], px: int, qty: int) -> None:
        if qty:
            side[px] = qty
        else:
            side.pop(px, None)
        changed[px] = qty

    def _refill(self, cb: dict[int, int], ca: dict[int, int]) -> None:
        """Keep exactly `levels` levels a side: trim the far end, extend it with fresh queues."""
        if len(self.bids) == self.levels and len(self.asks) == self.levels:
            return  # most events: nothing to trim or extend on either side
        for side, changed, sign in ((self.bids, cb, -1), (self.asks, ca, 1)):
            # Most events leave a side at `levels`: then there is nothing to do (and nothing to sort).
            if len(side) > self.levels:
                for px in sorted(side, reverse=(sign < 0))[self.levels :]:
                    self._set(side, changed, px, 0)
            if len(side) == self.levels:
                continue
            # the far end: the lowest bid, the highest ask
            far = (min(side) if sign < 0 else max(side)) if side else self._restart_far(sign)
            self._extend(side, changed, sign, far)

    def _restart_far(self, sign: int) -> int:
        """Where an emptied side (levels == 1) restarts: next to the other touch."""
        other = self.asks if sign < 0 else self.bids
        return (min(other) if sign < 0 else max(other)) if other else self._start_px

    def _extend(self, side: dict[int, int], changed: dict[int, int], sign: int, far: int) -> None:
        """Fresh queues beyond `far` until the side holds `levels` levels (or prices reach 0)."""
        while len(side) < self.levels:
            far += sign * self._gap()
            if far <= 0:
                break
            self._set(side, changed, far, self._queue(len(side)))

    def _delta(self, cb: dict[int, int], ca: dict[int, int]) -> BookDelta | None:
        if not cb and not ca:
            return None
        self.update_id += 1
        bids = sorted(cb.items(), reverse=True)
        asks = sorted(ca.items())
        return BookDelta(self.symbol, self.update_id, self.update_id, pack_pairs(bids), pack_pairs(asks))

    # ------------------------------------------------------------ the session
    def snapshot(self) -> BookSnapshot:
        cb: dict[int, int] = {}
        ca: dict[int, int] = {}
        self._set(self.bids, cb, self._start_px - self.spec.tick, self._queue(0))
        self._set(self.asks, ca, self._start_px, self._queue(0))
        self._refill(cb, ca)
        bids = sorted(self.bids.items(), reverse=True)
        asks = sorted(self.asks.items())
        return BookSnapshot(self.symbol, self.update_id, pack_pairs(bids), pack_pairs(asks))

    def items(self) -> Iterator[Item]:
        yield self.now_ns, self.snapshot()
        while True:
            yield from self.step()

    def step(self) -> list[Item]:
        """One market event: a trade (and the queue it consumed) or a book change."""
        below = self._below
        if below(1_000_000) < _REGIME_SWITCH_PPM:  # _chance, inlined: several draws per event
            self.regime = (self.regime + 1 + below(2)) % 3
            self.regime_changes += 1
        mean_ns, trade_ppm, move_ppm, max_jump, _ = _REGIMES[self.regime]
        if self.burst_left:
            trade_ppm = _BURST_TRADE_SHARE
        self.now_ns += self._exp_ns(mean_ns)
        if below(1_000_000) < trade_ppm:
            return self._trade()
        cb: dict[int, int] = {}
        ca: dict[int, int] = {}
        if below(1_000_000) < move_ppm:
            self._move(max_jump, cb, ca)
        else:
            self._requote(cb, ca)
        self._refill(cb, ca)
        delta = self._delta(cb, ca)
        return [(self.now_ns, delta)] if delta is not None else []

    def _trade(self) -> list[Item]:
        if not self.burst_left and self._chance(_BURST_START_PPM):
            self.burst_left = _BURST_MIN + self._below(_BURST_MAX - _BURST_MIN + 1)
            self.burst_side_buy = self._below(2) == 0
            self.bursts += 1
        if self.burst_left:
            self.burst_left -= 1
            buy = self.burst_side_buy
        else:
            buy = self._below(2) == 0
        pick = self._below(self._size_total)
        units = _TRADE_SIZES[-1][0]
        for size, w in _TRADE_SIZES:
            if pick < w:
                units = size
                break
            pick -= w
        if self.burst_left:
            units *= 4  # informed flow trades bigger and walks the book
        side = self.asks if buy else self.bids
        px = self.best_ask() if buy else self.best_bid()
        qty = min(units * self._size_unit, side[px])
        qty -= qty % self.spec.step
        qty = max(qty, min(self.spec.step, side[px]))
        self.trade_id += 1
        trade = Trade(self.symbol, self.trade_id, px, qty, not buy)  # buyer_maker: the aggressor sold
        cb: dict[int, int] = {}
        ca: dict[int, int] = {}
        self._set(side, ca if buy else cb, px, side[px] - qty)
        self._refill(cb, ca)
        out: list[Item] = [(self.now_ns, trade)]
        delta = self._delta(cb, ca)
        if delta is not None:
            out.append((self.now_ns, delta))
        return out

    def _move(self, max_jump: int, cb: dict[int, int], ca: dict[int, int]) -> None:
        """Shift the touch by a random number of ticks; informed bursts drift their way."""
        tick = self.spec.tick
        jump = (1 + self._below(max_jump)) * tick
        up = self._below(2) == 0
        if self.burst_left:
            up = self.burst_side_buy if self._chance(800_000) else not self.burst_side_buy
        spread = tick * (1 if self._chance(800_000) else 1 + self._below(1 + 4 * (self.regime + 1)))
        if up:
            bb = self.best_bid() + jump
            ba = max(self.best_ask(), bb + spread)
            ba = bb + spread if ba - bb > spread * 8 else ba
        else:
            ba = self.best_ask() - jump
            bb = min(self.best_bid(), ba - spread)
            bb = ba - spread if ba - bb > spread * 8 else bb
        if bb <= 0:
            return
        for px in [p for p in self.bids if p > bb]:
            self._set(self.bids, cb, px, 0)
        for px in [p for p in self.asks if p < ba]:
            self._set(self.asks, ca, px, 0)
        if bb not in self.bids:
            self._set(self.bids, cb, bb, self._queue(0))
        if ba not in self.asks:
            self._set(self.asks, ca, ba, self._queue(0))

    def _requote(self, cb: dict[int, int], ca: dict[int, int]) -> None:
        """A queue changes size (orders join or cancel), near the touch more often."""
        buy_side = self._below(2) == 0
        side, changed = (self.bids, cb) if buy_side else (self.asks, ca)
        prices = sorted(side, reverse=buy_side)
        depth = min(self._below(len(prices)), self._below(len(prices)))  # skewed to the touch
        px = prices[depth]
        change = self._queue(depth) // (2 + self._below(4))
        change -= change % self.spec.step
        if self._below(2) == 0:
            qty = side[px] + change
        else:
            qty = side[px] - change
            if qty <= 0 and depth == 0:
                qty = self.spec.step  # never empty the touch by a cancel here
            qty = max(qty, 0)
        self._set(side, changed, px, qty)


def synthetic_items(seed: int, symbol: str = "BTCUSDT", levels: int = 20) -> Iterator[Item]:
    return SyntheticMarket(seed, symbol, levels).items()
