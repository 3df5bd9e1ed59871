"""A seeded synthetic market: the feed's default source.

A BTCUSDT-like book of `levels` price levels a side on the symbol's tick grid,
queues of a few tenths of a BTC at the touch growing with depth (on the step
grid), a mid that random-walks with volatility regimes (calm / normal /
volatile, switching as a Markov chain), Poisson trade arrivals that consume
queue at the touch, and bursts of one-sided informed flow that walk the price.

Everything is integer: the random stream is PCG64 (numpy) drawn as uint32
blocks, exponential inter-arrival times come from a fixed integer quantile
table, and event time starts at a fixed instant, so the same seed gives the
same events byte for byte, whatever the pacing.

The model runs compiled (`common/hotpath/synth.py`, draw for draw what the
Python generator it replaced did: tests/unit/feed/synthetic_oracle.py keeps
that one as the oracle). This class draws the random blocks, hands the
kernel its arrays and turns its rows into events, a batch at a time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import TypeVar

import numpy as np

from common.events import BookDelta, BookSnapshot, Trade, _Body
from common.hotpath import rowbatch
from common.hotpath import synth as K
from common.units import BUILTIN, SymbolSpec

Item = tuple[int, _Body]
T = TypeVar("T")

START_NS = 1_704_067_200_000_000_000  # 2024-01-01T00:00:00Z
FIRST_UPDATE_ID = 1_000_000
FIRST_TRADE_ID = 1

# -ln((i + 0.5) / 4096) in millionths: inverse CDF of Exp(1) at 4096 quantiles.
# Built once; rounding to integers makes it independent of libm's last bit.
_EXP_Q = tuple(round(-math.log((i + 0.5) / 4096) * 1_000_000) for i in range(4096))

CALM, NORMAL, VOLATILE = 0, 1, 2
REGIME_NAMES = ("calm", "normal", "volatile")
# per regime: mean ns between events, trade share (ppm of events),
# mid-move share (ppm of non-trade events), max mid jump (ticks), max level gap (ticks)
_REGIMES = (
    (4_000_000, 250_000, 150_000, 20, 30),
    (2_000_000, 300_000, 250_000, 150, 60),
    (600_000, 350_000, 450_000, 1_200, 150),
)
# The kernel's own constants: a regime switch per event ~1,700 events apart
# (K.REGIME_SWITCH_PPM), a burst of K.BURST_MIN-K.BURST_MAX informed trades every ~330
# trades (K.BURST_START_PPM), trades K.BURST_TRADE_SHARE of events during one.
# Trade sizes in units of 0.0001 BTC (weights in parentheses-free pairs).
_TRADE_SIZES = ((1, 30), (5, 20), (10, 15), (20, 12), (50, 10), (100, 6), (250, 4), (1000, 2), (3000, 1))


BATCH = 1024  # items per kernel call (the feed's; a backtest asks for more, see services.backtest.inputs)
_RANDOM_BLOCK = 4096  # uint32 draws per numpy call: any even size gives the same stream (see _draw)
assert _RANDOM_BLOCK % 2 == 0
_DRAWS_PER_ITEM = 8  # a step draws about 7 numbers an item: a call's block covers its batch
_LEVEL_BYTES = 16  # a level row: price, qty as little-endian int64s (events.pack_pairs' layout)
_I64_ROOM = 1 << 62


class SyntheticMarket:
    """Generates `(event_ns, body)` items; `items()` is the whole (infinite) session.

    `now_ns`, `regime_changes` and `bursts` are as of the last item `items()` gave
    (the kernel runs up to `batch` items ahead); `book()` is the generator's own book,
    as of the last step it made."""

    def __init__(
        self, seed: int, symbol: str = "BTCUSDT", levels: int = 20, spec: SymbolSpec | None = None, batch: int = BATCH
    ) -> None:
        self.spec = spec or BUILTIN[symbol]
        self.symbol = self.spec.symbol
        self.levels = max(1, levels)
        self.batch = max(1, batch)
        # A kernel call stops when the random numbers held run short, so a batch larger than
        # the feed's draws a larger block (even, as _draw needs) before any call that holds
        # less than one (the feed's draws only when a call could not make one more step).
        self._block = _RANDOM_BLOCK if self.batch <= BATCH else _DRAWS_PER_ITEM * self.batch
        sp = self.spec
        qs = sp.qty_scale
        qmul, qdiv = (10 ** (qs - 8), 1) if qs >= 8 else (10**qs, 10**8)
        # a queue's product before its division by 4 (depth <= levels), and the largest trade:
        # both must stay well inside int64, where the Python generator's ints had no bound
        unit = max(sp.step, 10 ** max(qs - 4, 0))  # 0.0001 BTC
        biggest = max(60_000_000 * qmul // qdiv * (5 + self.levels), 4 * unit * _TRADE_SIZES[-1][0])
        start_px = (60_000 * 10**sp.price_scale // sp.tick) * sp.tick  # 60,000.00 in pipettes
        # one step moves a price by at most ~1,200 ticks (a jump) plus 150 (a level gap): with
        # 2**16 ticks of room the int64 products stay exact however the walk goes (far from it)
        if biggest >= _I64_ROOM or start_px + (1 << 16) * sp.tick >= _I64_ROOM or sp.step < 1 or sp.tick < 1:
            raise ValueError(
                f"{sp.symbol}: the synthetic market's sizes or prices at qty_scale {qs}, price_scale "
                f"{sp.price_scale}, tick {sp.tick}, {self.levels} levels would leave int64"
            )
        if start_px <= sp.tick:
            # its first bid would sit at a price <= 0, which no event may carry (the Python
            # generator made such events anyway; typed decoding refuses them)
            raise ValueError(
                f"{sp.symbol}: a tick of {sp.tick} leaves no positive price below the synthetic "
                f"market's start ({start_px})"
            )
        st = np.zeros(K.ST_LEN, dtype=np.int64)
        st[K.ST_NOW] = START_NS
        st[K.ST_UID] = FIRST_UPDATE_ID
        st[K.ST_TID] = FIRST_TRADE_ID
        st[K.ST_REGIME] = NORMAL
        st[K.ST_LEVELS] = self.levels
        st[K.ST_TICK] = sp.tick
        st[K.ST_STEP] = sp.step
        st[K.ST_QMUL] = qmul
        st[K.ST_QDIV] = qdiv
        st[K.ST_START_PX] = start_px
        st[K.ST_UNIT] = unit
        st[K.ST_SIZE_TOTAL] = sum(w for _, w in _TRADE_SIZES)
        self._st = st
        self._bk = np.zeros((2, self.levels + 2), dtype=np.int64)
        self._bq = np.zeros_like(self._bk)
        self._ck = np.zeros((2, 2 * self.levels + 4), dtype=np.int64)
        self._cq = np.zeros_like(self._ck)
        self._ev = np.zeros((self.batch + 2, K.EV_COLS), dtype=np.int64)
        self._lv = np.zeros((max(2 * self._ck.shape[1], 2 * self._bk.shape[1]) * (self.batch + 2), 2), dtype="<i8")
        self._gen = np.random.Generator(np.random.PCG64(seed))
        self._rnd = np.zeros(0, dtype=np.int64)
        self._need = K.need_random(self.levels)
        # draw before a call that holds fewer (and always before one that could not make a step)
        self._low = self._need if self.batch <= BATCH else max(self._need, self._block)
        self._sym = np.frombuffer(self.symbol.encode(), dtype=np.uint8)
        self._last = [0] * K.EV_COLS  # the row of the last item given
        self._last[K.EV_TS] = START_NS

    @property
    def now_ns(self) -> int:
        return self._last[K.EV_TS]

    @property
    def regime_changes(self) -> int:
        return self._last[K.EV_RCHG]

    @property
    def bursts(self) -> int:
        return self._last[K.EV_BURSTS]

    def made(self) -> dict[str, int]:
        """Items given so far, by body type name."""
        m = K.EV_MADE
        last = self._last
        return {"BookSnapshot": last[m + K.K_SNAPSHOT], "BookDelta": last[m + K.K_DELTA], "Trade": last[m + K.K_TRADE]}

    def book(self) -> tuple[dict[int, int], dict[int, int]]:
        """(bids, asks) as {price: qty}: the generator's book after the last step it made."""
        st, bk, bq = self._st, self._bk, self._bq
        nb, na = int(st[K.ST_N]), int(st[K.ST_N + 1])
        bids = dict(zip((-bk[0, :nb]).tolist(), bq[0, :nb].tolist(), strict=True))
        asks = dict(zip(bk[1, :na].tolist(), bq[1, :na].tolist(), strict=True))
        return bids, asks

    def _draw(self) -> None:
        """Random numbers for at least the next step, the stream continued block by block."""
        st = self._st
        left = self._rnd[st[K.ST_RI] : st[K.ST_RN]]
        parts = [left]
        n = len(left)
        while n < max(self._need, self._block):
            # numpy's integers(0, 2**32, dtype=uint64) stream, twice as fast: for that range it
            # takes PCG64's 32-bit draws, each 64-bit output's low half then its high half
            # (pcg64_next32), and a block is even, so no half is left over between calls.
            raw = self._gen.bit_generator.random_raw(self._block // 2)
            parts.append(raw.astype("<u8", copy=False).view("<u4").astype(np.int64))
            n += len(parts[-1])
        self._rnd = np.concatenate(parts)
        st[K.ST_RI] = 0
        st[K.ST_RN] = n

    def _run(self) -> tuple[int, int, int]:
        return K.synth_run(  # type: ignore[no-any-return]
            self._st, self._bk, self._bq, self._ck, self._cq, self._rnd, _EXP_Q_ARR, _REGIMES_ARR, _SIZES_ARR,
            self._ev, self._lv, self.batch + 1,
        )  # fmt: skip

    def _calls(self) -> Iterator[tuple[int, int]]:
        """Kernel calls, forever: each fills self._ev / self._lv and yields (events, level rows)."""
        st = self._st
        while True:
            if st[K.ST_RN] - st[K.ST_RI] < self._low:
                self._draw()
            ne, nl, _steps = self._run()
            yield ne, nl
            err = st[K.ST_ERR]
            if err == K.ERR_EMPTY_SIDE:  # after the items made before it, as the Python generator raised
                raise ValueError(
                    f"{self.symbol}: the synthetic market emptied a side of its book ({self.levels} levels)"
                )
            if err:
                raise RuntimeError(f"{self.symbol}: the synthetic market's kernel broke its own bounds (error {err})")

    def _item(self, row: list[int], lvb: bytes) -> Item:
        kind, ts, ident, px, qty, bm, at, nb, na = row[:9]
        if kind == K.K_TRADE:
            return ts, Trade(self.symbol, ident, px, qty, bm != 0)
        w = _LEVEL_BYTES
        mid = (at + nb) * w
        if kind == K.K_DELTA:
            return ts, BookDelta(self.symbol, ident, ident, lvb[at * w : mid], lvb[mid : mid + na * w])
        return ts, BookSnapshot(self.symbol, ident, lvb[at * w : mid], lvb[mid : mid + na * w])

    def items(self) -> Iterator[Item]:
        item = self._item
        for ne, nl in self._calls():
            rows = self._ev[:ne].tolist()
            lvb = self._lv[:nl].tobytes()
            for row in rows:
                self._last = row
                yield item(row, lvb)

    def encoded(self, limit: int) -> Iterator[bytes]:
        """The first `limit` items as msgpack arrays of (event_ns, body), one per kernel call,
        byte for byte what msgspec makes of the items() objects, made without them. Then the
        next item is held in `ahead` (see _limited)."""
        out = np.zeros(0, dtype=np.uint8)

        def encode(take: int, nl: int) -> bytes:
            nonlocal out
            room = K.msgpack_bound(take, nl, len(self._sym))
            if room > len(out):
                out = np.zeros(room, dtype=np.uint8)
            n = K.synth_msgpack(self._ev, self._lv, take, self._sym, _TAGS, out)
            if n < 0:
                raise RuntimeError(f"{self.symbol}: the synthetic market's encoding outgrew its bound")
            return out[:n].tobytes()

        return self._limited(limit, encode)

    def row_batches(self, limit: int) -> Iterator[np.ndarray]:
        """The first `limit` items as row batches (common.hotpath.rowbatch: the backtest's
        market run reads them as they are), one per kernel call; then the next item is held
        in `ahead` (see _limited)."""
        sym = self.symbol.encode()

        def rows(take: int, nl: int) -> np.ndarray:
            # (room for the call's level rows: more than take events use where the limit cuts it)
            words, out, flat = rowbatch.allocate(sym, take, 2 * nl)
            most = K.synth_rows(self._ev, self._lv, take, out, flat)
            if most < 0:
                raise RuntimeError(f"{self.symbol}: the synthetic market made a time, price or qty outside [0, 2**62]")
            words[rowbatch.MOST] = most
            return words

        return self._limited(limit, rows)

    def _limited(self, limit: int, make: Callable[[int, int], T]) -> Iterator[T]:
        """make(events, level rows) of each kernel call's first events, until `limit` items.
        Then the next item is generated and held in `ahead`, as a source that reads one item
        ahead holds it (should the market fail making it, the error raises here, as items()
        raises there)."""
        if limit < 1:
            raise ValueError(f"a batch limit needs limit >= 1, got {limit}")
        self.ahead: Item | None = None
        left = limit
        calls = self._calls()
        for ne, nl in calls:
            take = min(ne, left)
            if take:
                payload = make(take, nl)
                self._last = self._ev[take - 1].tolist()
                left -= take
                yield payload
            if left == 0:
                while take == ne:  # one more call for the item after the last (an error raises)
                    ne, nl = next(calls)
                    take = 0
                row = self._ev[take].tolist()
                self._last = row
                self.ahead = self._item(row, self._lv[:nl].tobytes())
                return


_EXP_Q_ARR = np.array(_EXP_Q, dtype=np.int64)
_REGIMES_ARR = np.array(_REGIMES, dtype=np.int64)
_SIZES_ARR = np.array(_TRADE_SIZES, dtype=np.int64)


def _check_bodies() -> np.ndarray:
    """synth_msgpack writes the three bodies' fields in this order: their tags, by kind."""
    want = {
        BookSnapshot: ("symbol", "update_id", "bids", "asks"),
        BookDelta: ("symbol", "first_id", "last_id", "bids", "asks"),
        Trade: ("symbol", "trade_id", "price", "qty", "buyer_maker"),
    }
    for t, fields in want.items():
        if t.__struct_fields__ != fields or not isinstance(t.__struct_config__.tag, int):
            raise RuntimeError(f"common.events.{t.__name__} is {t.__struct_fields__}; synth_msgpack writes {fields}")
    tags = [BookSnapshot.__struct_config__.tag, BookDelta.__struct_config__.tag, Trade.__struct_config__.tag]
    return np.array(tags, dtype=np.int64)  # K_SNAPSHOT, K_DELTA, K_TRADE


_TAGS = _check_bodies()


def synthetic_items(seed: int, symbol: str = "BTCUSDT", levels: int = 20) -> Iterator[Item]:
    return SyntheticMarket(seed, symbol, levels).items()
