"""Strategy hot-path kernels: L2 book, fair value, toxicity, quotes.

Contract
--------
* Every function here is ``@kernel`` (``njit(cache=True, _nrt=False)``; the
  per-event book and fair-value steps ``@inline_kernel``, the same inlined by numba)
  and takes only numpy int64 arrays, Python/numpy integers and (the packed
  book entry points) the events' own ``bytes`` of (price, qty) pairs; it returns
  integers (or a tuple of them). No floats anywhere, no allocation, no
  slicing, no clock, no I/O.
  This module imports numpy, numba and the constants of ``dtypes`` only.
* Each kernel is also valid plain Python (``kernel.py_func``) and gives the
  same result: every intermediate is kept inside int64 by clamps or by the
  overflow-safe helpers ``_frac`` / ``_muldiv`` (so numpy scalars in the
  pure-Python twin never wrap), and only ``//``, ``%``, ``>>`` (floor
  semantics, identical in numba and Python) are used. (The book's block
  bitmaps use bit 63 too: they are only shifted, masked and tested, never
  added to.)
* Array layouts (book, level rows, params, state, events) are the named
  index constants of ``common.hotpath.dtypes``. Params are assumed constant
  for the life of a state array; ``default_params`` validates them.
* Per-event entry points (ONE call per event): ``on_book_snapshot``,
  ``on_book_delta`` (``on_book_packed`` from an event's packed bytes),
  ``on_trade``, ``on_fill``; each returns ACT_NONE,
  ACT_QUOTE (the new quote is in the state's output slot S_Q_*) or
  ACT_CANCEL_ALL. ``run_events`` drives them over an event array.

Fixed-point scales (every one used here)
----------------------------------------
* prices: int64 pipettes; quantities: int64 atoms; time: int64 ns.
* P_TICK pipettes per tick; P_LOT atoms per lot (quote sizes are whole
  lots, rounded down).
* imbalance, VPIN, toxic threshold, spread multiplier: bps (1.0 = 10_000).
  Multiplier = 10_000 + VPIN_bps*P_MULT_VPIN_BPS/10_000
  + vol*P_MULT_VOL_BPS/(P_MULT_VOL_REF*1000), clamped to
  [10_000, P_MULT_MAX_BPS] (default 30_000 = 3.0x); each term floored.
* MM skew gamma P_GAMMA_PPM and every EMA alpha P_EMA_ALPHA_PPM: ppm.
  EMA step: e += alpha*(x - e) // 1e6 (floor); the first sample seeds e.
* volatility S_VOL: EMA of |d fair| per book update in milli-pipettes
  (pipettes * 1_000); variance S_VAR: EMA of (d fair)^2 in
  milli-pipettes^2 (pipettes^2 * 1_000), |d fair| clamped to 2**15
  pipettes before squaring; S_DT: EMA of the gap between book updates, ns.
  S_VAR and S_DT feed the A-S model only and are kept only when P_MODEL is
  A-S (under MM they stay 0: no book update pays for what no quote reads).
* S_MULT_BPS is the multiplier of the last quote attempt: it is computed
  when a quote is made (or tried: no side may have size), from the VPIN and
  S_VOL of that moment (both kept on every event), not on every event;
  ``spread_mult_bps`` gives the current one.
* Switching P_MODEL from MM to A-S on a state that ran under MM starts
  S_VAR and S_DT from 0 (not re-seeded: samples were taken), so A-S widths
  are narrow until those EMAs warm up (about 1e6 / P_EMA_ALPHA_PPM book
  updates: 20 at the default); replay from the start of the log to avoid it.
* A-S gamma P_AS_GAMMA_PPM and kappa (P_AS_KAPPA_PPM, S_AS_KAPPA): per
  pipette, ppm. Inventory q of A-S is in lots of P_ORDER_QTY, as ppm.
* ln() is a deterministic Q30 fixed-point routine (30 fractional bits,
  range reduction by powers of two plus a 12-term atanh series, absolute
  error < 2e-8, floors only): no float is used for A-S either.

Formulas and rounding
---------------------
* Weighted microprice over the top L = P_MP_LEVELS levels, weights
  (L - i) for level i: B = sum w_i*bid_qty_i, A = sum w_i*ask_qty_i,
  fair = best_bid + floor((best_ask - best_bid) * B / (B + A)), i.e.
  (ask*B + bid*A)/(A + B) rounded DOWN, computed without the
  price*qty product (no overflow). L = 1 is the top-of-book microprice.
  Imbalance = (B - A)*10_000/(B + A) truncated toward zero.
* VPIN = |buy - sell| * 10_000 // (buy + sell) over the last
  P_VPIN_WINDOW trades (ring buffer in the state). buyer_is_maker = 1
  means the aggressor SOLD. Toxic when the ring holds >= P_MIN_TRADES
  trades and VPIN >= P_TOXIC_BPS: every quote is pulled (CANCEL_ALL) and
  no quote is made until VPIN falls back.
* MM model: skew = gamma*(position/max_inv)*half_spread, with
  position/max_inv floored to ppm first, kept in half-pipettes and
  truncated toward zero; centre = fair - skew; half width =
  half_spread*mult/10_000.
* A-S model (rolling horizon H = P_AS_HORIZON_NS replaces T - t):
  sigma^2*H = S_VAR * (H // S_DT) (variance per update times updates per
  horizon, both clamped), r = fair - q*gamma*sigma^2*H (truncated toward
  zero), total spread = gamma*sigma^2*H + (2/gamma)*ln(1 + gamma/kappa)
  (each term floored to pipettes), times mult/10_000. kappa is fitted by
  maximum likelihood of an exponential decay of trade distance from the
  mid: distances d in whole ticks, |2*px - bid - ask| // (2*tick), kept in
  a KAPPA_BINS histogram over the same rolling trade window; with the
  half-tick continuity correction the mean distance is
  sum(2d+1)*tick/(2N) pipettes and kappa = 1/mean, i.e.
  kappa_ppm = 2e6*N // (sum(2d+1)*tick). Below P_MIN_TRADES trades in the
  window (or with no book at trade time) P_AS_KAPPA_PPM is used.
* Quote: bid = floor_to_tick(centre - width/2), ask = ceil_to_tick(centre
  + width/2); post-only: a bid >= best ask is pushed to the highest tick
  strictly below best ask, an ask <= best bid to the lowest tick strictly
  above best bid. Requires a valid book (both sides, best_bid < best_ask),
  which makes bid < ask hold afterwards. Bid qty = min(order_qty,
  max_inv - position); ask qty = min(order_qty, position) on spot (sells
  capped to holdings), min(order_qty, max_inv + position) otherwise; both
  rounded down to lots; qty 0 = no order on that side.
* Requote (book update): only after more than P_WARMUP book updates, when
  not toxic, when >= P_COOLDOWN updates passed since the last quote, and
  when no quote is live or |fair - fair at last quote| > P_REQUOTE_PX.
* Fill: position += / -= qty, less the base-asset commission the venue
  kept (spot: never below 0; the excess is counted in S_CLAMPED). A fill
  that empties its side requotes at once (cooldown reset); a partial fill
  leaves the rest of the quote live and resets the cooldown so the next
  book update may requote.
* The book is a price-indexed ladder of W slots a side (dtypes); every level
  within W/2 slots of a side's best is kept, farther ones may be dropped
  (counted in BK_DROPPED).
"""

from __future__ import annotations

import numpy as np  # noqa: F401  (kernels take numpy arrays)
from numba import njit
from numba.extending import overload

try:  # numba's count-leading-zeros intrinsic (a module numba calls unsafe, not public)
    from numba.cpython.unsafe.numbers import leading_zeros
except ImportError:  # pragma: no cover - depends on the numba installed
    leading_zeros = None

from common.hotpath.dtypes import (
    ACT_CANCEL_ALL,
    ACT_NONE,
    ACT_QUOTE,
    AS_TERM_MAX,
    BK_BEST,
    BK_DROPPED,
    BK_HDR_LEN,
    BK_KEY0,
    BK_LOW,
    BK_N,
    BK_Q,
    BK_SLOTS,
    BK_TICK,
    BPS_ONE,
    DT_MAX_NS,
    EV_A,
    EV_B,
    EV_C,
    EV_KIND,
    EV_TS,
    EVK_DELTA,
    EVK_FILL,
    EVK_SNAPSHOT,
    EVK_TRADE,
    HORIZON_EVENTS_MAX,
    I64_SAT,
    KAPPA_BINS,
    LN2_Q30,
    LN_SERIES_TERMS,
    LV_PX,
    LV_QTY,
    LV_SIDE,
    MODEL_AS,
    MP_LEVELS_MAX,
    NO_PRICE,
    P_AS_GAMMA_PPM,
    P_AS_HORIZON_NS,
    P_AS_KAPPA_PPM,
    P_COOLDOWN,
    P_EMA_ALPHA_PPM,
    P_GAMMA_PPM,
    P_HALF_SPREAD,
    P_LOT,
    P_MAX_INV,
    P_MIN_TRADES,
    P_MODEL,
    P_MP_LEVELS,
    P_MULT_MAX_BPS,
    P_MULT_VOL_BPS,
    P_MULT_VOL_REF,
    P_MULT_VPIN_BPS,
    P_ORDER_QTY,
    P_REQUOTE_PX,
    P_SPOT,
    P_TICK,
    P_TOXIC_BPS,
    P_VPIN_WINDOW,
    P_WARMUP,
    PPM_ONE,
    PX_MAX,
    Q30_ONE,
    Q30_SHIFT,
    Q_PPM_MAX,
    QTY_MAX,
    S_AS_KAPPA,
    S_AS_S2T,
    S_BAD_ROWS,
    S_BOUGHT,
    S_BUY_VOL,
    S_CENTER2,
    S_CLAMPED,
    S_DT,
    S_FAIR,
    S_HAVE_QUOTE,
    S_HIST,
    S_IMB_BPS,
    S_K_N,
    S_K_SUM,
    S_LAST_QUOTE_FAIR,
    S_LAST_TS,
    S_LIVE_ASK,
    S_LIVE_BID,
    S_MULT_BPS,
    S_N_BOOK,
    S_N_CANCELS,
    S_N_FILLS,
    S_N_QUOTES,
    S_N_SAMPLES,
    S_N_TRADES,
    S_POSITION,
    S_Q_ASK_PX,
    S_Q_ASK_QTY,
    S_Q_BID_PX,
    S_Q_BID_QTY,
    S_RING_DIST,
    S_RING_HEAD,
    S_RING_N,
    S_RING_VOL,
    S_SELL_VOL,
    S_SINCE_QUOTE,
    S_SOLD,
    S_TOXIC,
    S_VAR,
    S_VOL,
    S_VPIN_BPS,
    S_WIDTH2,
    SIDE_ASK,
    SIDE_BID,
    VAR_DELTA_MAX,
    VAR_SCALE,
    VOL_DELTA_MAX,
    VOL_SCALE,
    VPIN_CAP,
)

# Kernels allocate nothing, so they need no reference counting of their
# array arguments. Without `_nrt=False` numba wraps every call that passes an
# array (the entry points, and every callee LLVM does not inline) in an atomic
# incref/decref pair per array; measured in an interleaved A/B on this
# machine, dropping them made a trade 24% and a depth-5 book update 12-20%
# cheaper. A kernel that tried to allocate would now fail to compile.
# `_nrt` is an underscored option (numba 0.60-0.68 accept it, and an unknown
# option fails only at the first compile); should a later numba drop it, the
# kernels still compile, with the refcounts.
try:
    from numba.core.cpu import CPUTargetOptions as _CPUOptions

    _HAS_NRT_OPTION = hasattr(_CPUOptions, "_nrt")
except ImportError:  # pragma: no cover - depends on the numba installed
    _HAS_NRT_OPTION = False
kernel = njit(cache=True, _nrt=False) if _HAS_NRT_OPTION else njit(cache=True)
# The book's per-event entry points are inlined into their callers by numba itself:
# LLVM would not (they are large), and the call passed two array structs per event
# (measured: a depth-5 diff 7-14 ns cheaper). Only where a call costs that much.
inline_kernel = njit(cache=True, _nrt=False, inline="always") if _HAS_NRT_OPTION else njit(cache=True, inline="always")

# ==========================================================================
# integer helpers
# ==========================================================================

SMALL_31 = 1 << 31  # two factors below this multiply below I64_SAT = 2**62


def _hibit(x):
    """Index of the highest set bit of an int64 (63 for a negative one), -1 for 0. Plain
    Python here (what the pure twin runs); compiled code gets the overload below, one
    count-leading-zeros instruction."""
    x = int(x)
    return 63 if x < 0 else x.bit_length() - 1


@overload(_hibit, jit_options={"cache": True})
def _hibit_compiled(x):
    if leading_zeros is not None:

        def impl(x):
            return 63 - leading_zeros(np.int64(x))

        return impl

    return _hibit_halving  # should numba move the intrinsic


def _hibit_halving(x):
    """_hibit in six halving steps, plain and compilable (the fallback above)."""
    v = np.int64(x)
    if v < 0:
        return 63
    if v == 0:
        return -1
    n = 0
    for s in (32, 16, 8, 4, 2, 1):
        if v >= np.int64(1) << s:
            v >>= s
            n += s
    return n


@kernel
def _frac(a, b, c):
    """floor(a * b / c) for 0 <= a <= c, b >= 0, c > 0, never overflowing.

    When a*b would exceed I64_SAT, a is halved down and c up together, so
    the result never exceeds the exact floor (a microprice stays below the
    ask) and is within a few ulps of the ratio's precision; deterministic."""
    if c <= 0 or a <= 0 or b <= 0:
        return 0
    if a < SMALL_31 and b < SMALL_31:
        return (a * b) // c  # a*b < 2**62: no overflow test, and so no extra division
    while a > I64_SAT // b:
        a = a >> 1
        c = (c + 1) >> 1
    return (a * b) // c


@kernel
def _muldiv(a, b, c):
    """floor(a * b / c) for a, b >= 0, c > 0 with b * c < 2**63.

    Exact (a = q*c + r), saturates at I64_SAT."""
    if c <= 0 or a <= 0 or b <= 0:
        return 0
    if a < SMALL_31 and b < SMALL_31:
        return (a * b) // c  # exact, one division instead of two
    q = a // c
    r = a - q * c
    if q > I64_SAT // b:
        return I64_SAT
    hi = q * b
    lo = (r * b) // c
    if hi > I64_SAT - lo:
        return I64_SAT
    return hi + lo


@kernel
def _clamp(x, lo, hi):
    if x < lo:
        return lo
    if x > hi:
        return hi
    return x


@kernel
def _ema(e, x, alpha_ppm, first):
    """One EMA step in the units of x: e + alpha*(x - e)//1e6 (floor)."""
    if first:
        return x
    return e + (alpha_ppm * (x - e)) // PPM_ONE


@kernel
def ln_q30(y_q):
    """ln(y) in Q30 for y = y_q / 2**30 >= 1 (y_q >= 2**30), deterministic.

    y = 2**k * m with m in [1, 2) (low bits dropped by the shifts), then
    ln m = 2*atanh(z), z = (m-1)/(m+1) <= 1/3, summed over 12 odd terms."""
    if y_q <= Q30_ONE:
        return 0
    k = 0
    m = y_q
    while m >= 2 * Q30_ONE:
        m = m >> 1
        k += 1
    z = ((m - Q30_ONE) << Q30_SHIFT) // (m + Q30_ONE)
    z2 = (z * z) >> Q30_SHIFT
    s = 0
    t = z
    for i in range(LN_SERIES_TERMS):
        s += t // (2 * i + 1)
        t = (t * z2) >> Q30_SHIFT
    return k * LN2_Q30 + 2 * s


# ==========================================================================
# L2 book: a price-indexed ladder per side (layout in dtypes)
# ==========================================================================


@kernel
def _blocks(book, side):
    """Index of side's first block bitmap."""
    w = book[BK_SLOTS]
    return BK_Q + 2 * w + side * (w >> 6)


@kernel
def _clear_side(book, side):
    """Empty a side: zero its slots and block bitmaps in [low, best] only."""
    best = book[BK_BEST + side]
    if best >= 0:
        low = book[BK_LOW + side]
        q = BK_Q + side * book[BK_SLOTS]
        for i in range(low, best + 1):
            book[np.uint64(q + i)] = 0
        cb = _blocks(book, side)
        for k in range(low >> 6, (best >> 6) + 1):
            book[np.uint64(cb + k)] = 0
    book[BK_BEST + side] = -1
    book[BK_N + side] = 0
    book[BK_LOW + side] = book[BK_SLOTS]


@kernel
def book_clear(book):
    _clear_side(book, SIDE_BID)
    _clear_side(book, SIDE_ASK)


@kernel
def book_same(a, b):
    """1 if ladders a and b hold the same bytes, else 0; reads only the block words of each
    side's [low, best] and the slots they mark, not the window. That suffices under the layout's
    invariants (a slot holds a level iff its block bitmap's bit is set; no level lies
    outside [low, best]): equal headers and equal bitmaps leave only the marked slots to
    compare. (The backtest's market run applies a book event once to books
    proven the same here, see common.hotpath.market_run.)"""
    if a.shape[0] != b.shape[0]:
        return 0
    for c in range(BK_HDR_LEN):
        if a[c] != b[c]:
            return 0
    w = a[BK_SLOTS]
    for side in range(2):
        best = a[BK_BEST + side]
        if best < 0:
            continue
        q = BK_Q + side * w
        cb = _blocks(a, side)
        for k in range(a[BK_LOW + side] >> 6, (best >> 6) + 1):
            bits = a[np.uint64(cb + k)]
            if bits != b[np.uint64(cb + k)]:
                return 0
            i0 = q + (k << 6)
            while bits != 0:  # the marked slots only: far from the touch a block holds few
                j = _hibit(bits)
                if a[np.uint64(i0 + j)] != b[np.uint64(i0 + j)]:
                    return 0
                bits ^= np.int64(1) << j
    return 1


@kernel
def book_copy(dst, src):
    """Make ladder dst the same bytes as src (of the same length): dst's marked slots are
    zeroed, src's copied, then the header; the cost is the levels and the block words of
    [low, best], not the window (under book_same's invariants, which both books keep).
    Onto itself it does nothing (zeroing dst would zero the source)."""
    if dst.ctypes.data == src.ctypes.data:
        return
    w = src[BK_SLOTS]
    for side in range(2):
        q = BK_Q + side * w
        cb = _blocks(src, side)
        best = dst[BK_BEST + side]
        if best >= 0:
            for k in range(dst[BK_LOW + side] >> 6, (best >> 6) + 1):
                bits = dst[np.uint64(cb + k)]
                dst[np.uint64(cb + k)] = 0
                i0 = q + (k << 6)
                while bits != 0:
                    j = _hibit(bits)
                    dst[np.uint64(i0 + j)] = 0
                    bits ^= np.int64(1) << j
        best = src[BK_BEST + side]
        if best >= 0:
            for k in range(src[BK_LOW + side] >> 6, (best >> 6) + 1):
                bits = src[np.uint64(cb + k)]
                dst[np.uint64(cb + k)] = bits
                i0 = q + (k << 6)
                while bits != 0:
                    j = _hibit(bits)
                    dst[np.uint64(i0 + j)] = src[np.uint64(i0 + j)]
                    bits ^= np.int64(1) << j
    for c in range(BK_HDR_LEN):
        dst[c] = src[c]


@kernel
def _next_below(book, side, i):
    """Highest slot below i that holds a level, -1 if none: the highest set bit of the
    block bitmaps at or below slot i - 1, one block (not one slot) a step."""
    cb = _blocks(book, side)
    low = book[BK_LOW + side]
    j = i - 1
    if j < low:  # low >= 0 and no level lies below it
        return -1
    k = j >> 6
    bits = book[np.uint64(cb + k)] & ~(np.int64(-2) << (j & 63))  # slots <= j of its block (shifts only)
    stop = low >> 6
    while bits == 0:
        if k <= stop:
            return -1
        k -= 1
        bits = book[np.uint64(cb + k)]
    return (k << 6) + _hibit(bits)


@kernel
def _next_level(book, side, i):
    """_next_below(book, side, i), trying the next slot first: near the touch a
    liquid book has a level at every tick."""
    if i > 0 and book[BK_Q + side * book[BK_SLOTS] + i - 1] != 0:
        return i - 1
    return _next_below(book, side, i)


@kernel
def _recount(book, side, lo, hi):
    """Rebuild a side's block bitmaps, level count, best and low from its slots, given that
    every level lies in slots [lo, hi] and every block bitmap outside that range's blocks
    is already 0 (after the window moved): only those blocks are read."""
    w = book[BK_SLOTS]
    q = BK_Q + side * w
    cb = _blocks(book, side)
    n = 0
    best = -1
    low = w
    if lo < 0:
        lo = 0
    if hi > w - 1:
        hi = w - 1
    if lo <= hi:
        for k in range(lo >> 6, (hi >> 6) + 1):
            bits = np.int64(0)
            for i in range(k << 6, (k + 1) << 6):
                if book[np.uint64(q + i)] != 0:
                    bits |= np.int64(1) << (i & 63)
                    n += 1
                    best = i
                    if low == w:
                        low = i
            book[np.uint64(cb + k)] = bits
    book[BK_N + side] = n
    book[BK_BEST + side] = best
    book[BK_LOW + side] = low


@kernel
def _move_window(book, side, d):
    """Slide a side's window d slots toward better prices (d > 0) or worse
    (d < 0): slot i then holds what slot i + d held. Levels that leave the
    window are dropped and counted. Only when the best walks out of the
    middle of the window.

    Every level lies in [BK_LOW, BK_BEST], and 0 <= BK_LOW (the invariants _clear_side
    relies on; book_restore refuses a header that breaks them), so only that range of
    this side is moved, cleared and recounted, not the whole window: a sparse
    book (levels dollars apart, or a low bound left far below by levels since removed)
    made each slide cost two passes over all W slots, and the synthetic market slides a
    65,536-slot window every few thousand events."""
    w = book[BK_SLOTS]
    q = BK_Q + side * w
    book[BK_KEY0 + side] += d * book[BK_TICK]
    best = book[BK_BEST + side]
    if best < 0:  # an empty side holds no level anywhere
        book[BK_N + side] = 0
        book[BK_LOW + side] = w
        return
    low = book[BK_LOW + side]
    cb = _blocks(book, side)
    for k in range(low >> 6, (best >> 6) + 1):
        book[np.uint64(cb + k)] = 0
    dropped = 0
    if d > 0:
        e = d if d < w else w
        for i in range(low, e if e <= best else best + 1):  # below the new window
            if book[np.uint64(q + i)] != 0:
                dropped += 1
        for i in range(e if e > low else low, best + 1):
            book[np.uint64(q + i - e)] = book[np.uint64(q + i)]
        for i in range(best - e + 1 if best - e + 1 > low else low, best + 1):  # not written over
            book[np.uint64(q + i)] = 0
        lo, hi = low - e, best - e
    else:
        e = -d if -d < w else w
        for i in range(w - e if w - e > low else low, best + 1):  # above the new window
            if book[np.uint64(q + i)] != 0:
                dropped += 1
        for i in range(best if best < w - e else w - e - 1, low - 1, -1):
            book[np.uint64(q + i + e)] = book[np.uint64(q + i)]
        for i in range(low, low + e if low + e <= best else best + 1):  # not written over
            book[np.uint64(q + i)] = 0
        lo, hi = low + e, best + e
    book[BK_DROPPED + side] += dropped
    _recount(book, side, lo, hi)


@kernel
def _row(lv, r, tick):
    """Row r (>= 0) of a level array as (side, px, qty), qty clamped to QTY_MAX;
    side -1 for a row to reject (unknown side, px <= 0 or > PX_MAX or off the
    tick grid, qty < 0). The row index is unsigned so numba leaves out its
    negative-index wraparound test on each of the three reads: that made a
    depth-20 diff's rows about 15% cheaper."""
    u = np.uint64(r)
    side = lv[u, LV_SIDE]
    px = lv[u, LV_PX]
    qty = lv[u, LV_QTY]
    if (side != SIDE_BID and side != SIDE_ASK) or px <= 0 or px > PX_MAX or qty < 0:
        return -1, px, qty
    if tick != 1 and px % tick != 0:
        return -1, px, qty
    if qty > QTY_MAX:
        qty = QTY_MAX
    return side, px, qty


@inline_kernel
def _place_run(book, lv, r, end, side, w, tick, bad):
    """Rows r.. of a snapshot while they are for `side` (or rejected), placed into the
    cleared side with its header in registers (each row a store; block bitmaps set a
    block at a time), the header written back at the end. Returns (next row, rows
    rejected, fail): fail when a row lies above the window its side's first row
    placed (the caller then clears the book and takes the general path)."""
    top = w - (w >> 2)
    key0 = book[BK_KEY0 + side]
    hi = book[BK_BEST + side]
    lo = book[BK_LOW + side]
    m = book[BK_N + side]
    q = BK_Q + side * w
    cb = BK_Q + 2 * w + side * (w >> 6)
    # New levels are marked in the block bitmaps one block at a time (a best-first
    # snapshot fills a block before it moves to the next): marking each row in memory
    # chained every row of a block through a store and a load.
    blk = -1
    bits = np.int64(0)
    fail = 0
    # The header load and the row loop's head are written out as in _side_run: a shared
    # inline helper for them (next row of the run, rejected rows skipped) made both loops
    # 15-30% slower in an A/B.
    while r < end:
        s, px, qty = _row(lv, r, tick)
        if s != side:
            if s >= 0:
                break  # the other side's rows: back to the caller
            bad += 1
            r += 1
            continue
        r += 1
        if qty == 0:
            continue
        key = px if side == SIDE_BID else -px
        if hi < 0:
            key0 = key - top * tick  # the side's first level: its window goes here
        i = _slot(key - key0, tick)
        if np.uint64(np.int64(i)) >= np.uint64(w):  # outside the window: one compare for rows inside it
            if i >= w:
                fail = 1
                break
            book[BK_DROPPED + side] += 1
            continue
        if i < lo:  # below every level placed so far: a new one (the best-first case, with no load)
            lo = i
            if hi < 0:
                hi = i
        elif book[np.uint64(q + i)] != 0:  # a repeated price: its last row wins
            book[np.uint64(q + i)] = qty
            continue
        elif i > hi:
            hi = i
        if (i >> 6) != blk:
            if bits != 0:
                book[np.uint64(cb + blk)] |= bits
            blk = i >> 6
            bits = np.int64(0)
        bits |= np.int64(1) << (i & 63)
        m += 1
        book[np.uint64(q + i)] = qty
    if bits != 0:
        book[np.uint64(cb + blk)] |= bits
    if hi >= 0:
        book[BK_KEY0 + side] = key0
        book[BK_N + side] = m
        book[BK_BEST + side] = hi
        book[BK_LOW + side] = lo
    return r, bad, fail


@inline_kernel
def _place_snapshot(book, lv, start, n, tick):
    """A snapshot's rows into a cleared book, a run of one side's rows at a time (a
    snapshot lists its bids, then its asks). Returns rows rejected, or -1, with the
    book left cleared, when a row lies above the window its side's first row placed
    (the rows then need the general path)."""
    w = book[BK_SLOTS]
    bad = 0
    r = start
    end = start + n
    while r < end:
        side = lv[np.uint64(r), LV_SIDE]
        if side == SIDE_BID:
            r, bad, fail = _place_run(book, lv, r, end, SIDE_BID, w, tick, bad)
        elif side == SIDE_ASK:
            r, bad, fail = _place_run(book, lv, r, end, SIDE_ASK, w, tick, bad)
        else:
            bad += 1
            r += 1
            continue
        if fail:
            book_clear(book)
            return -1
    return bad


@kernel
def _slot(d, tick):
    """Slots from a side's window origin to a key d pipettes above it (floor)."""
    return d if tick == 1 else d // tick


@kernel
def _store_level(book, q, cb, i, qty, n, best, low, dirty):
    """Store qty at slot i (book index q) of a side whose block bitmaps start at cb,
    given the side's level count, best, low bound and best-removed flag in registers;
    returns them updated."""
    old = book[np.uint64(q)]
    book[np.uint64(q)] = qty
    if old == 0:
        if qty > 0:
            book[np.uint64(cb + (i >> 6))] |= np.int64(1) << (i & 63)
            n += 1
            if i > best:
                best = i
            if i < low:
                low = i
    elif qty == 0:
        book[np.uint64(cb + (i >> 6))] &= ~(np.int64(1) << (i & 63))
        n -= 1
        if i == best:
            dirty = 1
    return n, best, low, dirty


@inline_kernel
def _side_run(book, lv, r, end, side, w, tick, bad, dirty):
    """Rows r.. of a delta while they are for `side` (or rejected), with that side's
    header in registers. Returns (next row, rows rejected, best removed, stop): stop
    when a row needs book_apply_rows' general loop (the side is empty, or the row
    is outside its window)."""
    key0 = book[BK_KEY0 + side]
    n = book[BK_N + side]
    best = book[BK_BEST + side]
    low = book[BK_LOW + side]
    q = BK_Q + side * w
    cb = BK_Q + 2 * w + side * (w >> 6)
    stop = 0
    while r < end:
        s, px, qty = _row(lv, r, tick)
        if s != side:
            if s >= 0:
                break  # the other side's rows: back to the caller
            bad += 1
            r += 1
            continue
        i = _slot((px if side == SIDE_BID else -px) - key0, tick)
        if n == 0 or np.uint64(np.int64(i)) >= np.uint64(w):  # i < 0 or i >= w in one compare
            stop = 1
            break
        n, best, low, dirty = _store_level(book, q + i, cb, i, qty, n, best, low, dirty)
        r += 1
    book[BK_N + side] = n
    book[BK_BEST + side] = best
    book[BK_LOW + side] = low
    return r, bad, dirty, stop


@inline_kernel
def _delta_rows(book, lv, start, end, tick):
    """The common rows of a delta, start..end: each row one store at its slot (and a
    block bit when a level appears or goes). A run of rows for one side (a diff
    lists its bids, then its asks) is applied with that side's header in registers.
    Stops at the first row that needs book_apply_rows' general loop (a row for an
    empty side, or outside its side's window), headers written back. Returns (next
    row, rows rejected, bid best removed, ask best removed).

    Why a second loop: the general one reloads and stores the headers around
    every row (the row's store into the same array may alias them, so LLVM
    cannot keep them in registers); this one made a depth-20 diff's rows about
    a third cheaper, and one side at a time keeps fewer values live than both."""
    w = book[BK_SLOTS]
    bad = 0
    dirty_b = 0
    dirty_a = 0
    r = start
    while r < end:
        side = lv[np.uint64(r), LV_SIDE]
        if side == SIDE_BID:
            r, bad, dirty_b, stop = _side_run(book, lv, r, end, SIDE_BID, w, tick, bad, dirty_b)
        elif side == SIDE_ASK:
            r, bad, dirty_a, stop = _side_run(book, lv, r, end, SIDE_ASK, w, tick, bad, dirty_a)
        else:
            bad += 1
            r += 1
            continue
        if stop:
            break
    return r, bad, dirty_b, dirty_a


@inline_kernel
def _fast_rows(book, lv, start, n, snapshot, tick):
    """book_apply_rows' row loops for the common rows, with the book's tick passed in (a
    constant 1 in book_apply_rows_tick1's copy). Returns (r0, bad, dirty_b, dirty_a):
    r0 = -1 when done (a snapshot placed whole, bad rows rejected), else the rows from
    r0 on need _general_rows (with bad and the dirty flags so far)."""
    if snapshot:
        book_clear(book)
        dropped_b = book[BK_DROPPED]
        dropped_a = book[BK_DROPPED + 1]
        bad = _place_snapshot(book, lv, start, n, tick)
        if bad >= 0:
            return -1, bad, 0, 0
        book[BK_DROPPED] = dropped_b  # a row beyond its side's window: row by row, as a delta
        book[BK_DROPPED + 1] = dropped_a
        return start, 0, 0, 0
    return _delta_rows(book, lv, start, start + n, tick)


@inline_kernel
def _general_rows(book, lv, start, n, snapshot, r0, bad, dirty_b, dirty_a):
    """book_apply_rows' general loop, rows r0.. (see _fast_rows), then the best levels
    settled and the windows slid where the rows left them; nothing when r0 < 0 (done)."""
    if r0 < 0:
        return bad
    w = book[BK_SLOTS]
    tick = book[BK_TICK]
    top = w - (w >> 2)  # where a new window puts the best level
    for r in range(r0, start + n):
        side, px, qty = _row(lv, r, tick)
        if side < 0:
            bad += 1
            continue
        if qty == 0 and snapshot:
            continue
        key = px if side == SIDE_BID else -px
        if book[BK_N + side] == 0:
            if qty == 0:
                continue
            book[BK_KEY0 + side] = key - top * tick  # an empty side: place its window here
            book[BK_BEST + side] = -1
            book[BK_LOW + side] = w
        d = key - book[BK_KEY0 + side]
        i = _slot(d, tick)
        if i >= w:
            if qty == 0:
                continue  # no level that far up
            _move_window(book, side, i - top)  # recounts: the best is exact again
            i = top
        elif i < 0:
            if qty == 0:
                continue  # no level that far down
            # Below the window. If the best left earlier in this call, the window may have
            # to slide down first (as it would at the end of the call): settle the best now,
            # so no level within W/2 of it is dropped because of how rows were batched.
            if (dirty_b if side == SIDE_BID else dirty_a) != 0:
                best = book[BK_BEST + side]  # the side is not empty (an empty one was re-placed above)
                if book[BK_Q + side * w + best] == 0:
                    best = _next_below(book, side, best)
                book[BK_BEST + side] = best
                if side == SIDE_BID:
                    dirty_b = 0
                else:
                    dirty_a = 0
                if best < (w >> 1):
                    _move_window(book, side, best - top)
                    d = key - book[BK_KEY0 + side]
                    i = _slot(d, tick)
            if i < 0:
                book[BK_DROPPED + side] += 1
                continue
        q = BK_Q + side * w + i
        old = book[q]
        book[q] = qty
        if old == 0:
            if qty > 0:
                book[_blocks(book, side) + (i >> 6)] |= np.int64(1) << (i & 63)
                book[BK_N + side] += 1
                if i > book[BK_BEST + side]:
                    book[BK_BEST + side] = i
                if i < book[BK_LOW + side]:
                    book[BK_LOW + side] = i
        elif qty == 0:
            book[_blocks(book, side) + (i >> 6)] &= ~(np.int64(1) << (i & 63))
            book[BK_N + side] -= 1
            if i == book[BK_BEST + side]:
                if side == SIDE_BID:
                    dirty_b = 1
                else:
                    dirty_a = 1
    for side in range(2):
        if (dirty_b if side == SIDE_BID else dirty_a) == 0:
            continue
        # The best level was removed at some point; BK_BEST is at or above the true
        # best (inserts only raise it), so the true best is there or the next below.
        if book[BK_N + side] == 0:
            book[BK_BEST + side] = -1
            book[BK_LOW + side] = w
            continue
        best = book[BK_BEST + side]
        if book[BK_Q + side * w + best] == 0:
            book[BK_BEST + side] = _next_below(book, side, best)
    for side in range(2):
        best = book[BK_BEST + side]
        if 0 <= best < (w >> 1):
            _move_window(book, side, best - top)
    return bad


@inline_kernel
def book_apply_rows(book, lv, start, n, snapshot):
    """Apply rows lv[start:start+n] = (side, px, qty); qty 0 removes a level.
    snapshot != 0 clears both sides first (and skips qty-0 rows). Returns
    rows rejected (bad side, px <= 0 or > PX_MAX, qty < 0, px off the tick grid).

    A row is one store at its price's slot: no search, no moves. The best
    slot only moves up on an insert above it; removing the best level finds
    the next one below by a walk over the 64-slot blocks' bitmaps (one
    highest-set-bit a block), once per call. Window: the first level of an empty side is placed 3/4 of the way
    up its window (room above for better prices, most of it below for
    depth). A better level beyond the top slides the window up so it lands
    there again, and a best that falls into the bottom half slides it down;
    both move the side's occupied range (at most W slots) and are rare (the
    market must move W/4 slots). A level below
    the window is not kept (counted in BK_DROPPED); since the best always
    sits in the top half, every level within W/2 slots of it is kept."""
    r0, bad, dirty_b, dirty_a = _fast_rows(book, lv, start, n, snapshot, book[BK_TICK])
    return _general_rows(book, lv, start, n, snapshot, r0, bad, dirty_b, dirty_a)


@inline_kernel
def book_apply_rows_tick1(book, lv, start, n, snapshot):
    """book_apply_rows, with its common rows' loops compiled a second time for a book
    whose tick is 1 (every built-in symbol: its prices are kept in units of its tick),
    chosen once a call. With tick a constant, a row's slot is its key's offset: no
    multiply, no test of the grid. The strategy's book update (_on_book) uses it; the
    backtest's market run, which inlines the book update, uses book_apply_rows: with
    this copy at its sites, its kernel's cold compile took 84 s instead of 45."""
    if book[BK_TICK] == 1:
        r0, bad, dirty_b, dirty_a = _fast_rows(book, lv, start, n, snapshot, 1)
    else:
        r0, bad, dirty_b, dirty_a = _fast_rows(book, lv, start, n, snapshot, book[BK_TICK])
    return _general_rows(book, lv, start, n, snapshot, r0, bad, dirty_b, dirty_a)


@kernel
def best_px(book, side):
    """Best price of a side, NO_PRICE if empty."""
    best = book[BK_BEST + side]
    if best < 0:
        return NO_PRICE
    key = book[BK_KEY0 + side] + best * book[BK_TICK]
    return key if side == SIDE_BID else -key


@kernel
def best_bid(book):
    return best_px(book, SIDE_BID)


@kernel
def best_ask(book):
    return best_px(book, SIDE_ASK)


@kernel
def book_valid(book):
    """1 if both sides have a level and best bid < best ask."""
    if book[BK_BEST] < 0 or book[BK_BEST + 1] < 0:
        return 0
    return 1 if best_px(book, SIDE_BID) < best_px(book, SIDE_ASK) else 0


@kernel
def spread(book):
    """best_ask - best_bid in pipettes, NO_PRICE unless both sides exist."""
    if book[BK_BEST] < 0 or book[BK_BEST + 1] < 0:
        return NO_PRICE
    return best_px(book, SIDE_ASK) - best_px(book, SIDE_BID)


@kernel
def depth_qty(book, side, levels):
    """Total qty of the best `levels` levels of a side, saturating at I64_SAT (any
    number of levels: unlike the microprice's sums, which read at most
    MP_LEVELS_MAX)."""
    q = BK_Q + side * book[BK_SLOTS]
    i = book[BK_BEST + side]
    v = 0
    k = 0
    while i >= 0 and k < levels:
        v += book[q + i]
        if v > I64_SAT:
            v = I64_SAT
        k += 1
        if k < levels:
            i = _next_level(book, side, i)
    return v


@kernel
def book_top_into(book, side, n, out):
    """The best n levels of a side as (px, qty) pairs, best first, into out[0:2k];
    returns k (fewer when the side holds fewer). out holds >= 2n."""
    q = BK_Q + side * book[BK_SLOTS]
    key0 = book[BK_KEY0 + side]
    tick = book[BK_TICK]
    i = book[BK_BEST + side]
    k = 0
    while i >= 0 and k < n:
        key = key0 + i * tick
        out[2 * k] = key if side == SIDE_BID else -key
        out[2 * k + 1] = book[q + i]
        k += 1
        i = _next_level(book, side, i)
    return k


@inline_kernel
def _side_sum(book, side, levels):
    """(sum over the best `levels` levels of a side of qty_k * (levels - k), the slot
    of the last level summed if the side has `levels` levels, else 0), for
    levels <= MP_LEVELS_MAX (weighted_vols clamps it). It needs no
    saturation test: a level holds at most QTY_MAX = 2**50 (every row is clamped,
    and book_restore refuses more) and the weights of MP_LEVELS_MAX = 64 levels
    sum to 2,080 < 2**12, so the sum stays below 2**62 = I64_SAT. Slots are read
    unsigned (no wraparound test)."""
    q = BK_Q + side * book[BK_SLOTS]
    i = book[BK_BEST + side]
    v = 0
    k = 0
    while i >= 0 and k < levels:
        v += (levels - k) * book[np.uint64(q + i)]
        k += 1
        if k < levels:
            # _next_level written out: calling it (a kernel of its own) cost a
            # depth-5 diff ~1.5 ns and a depth-20 one ~4 in an A/B
            if i > 0 and book[np.uint64(q + i - 1)] != 0:
                i = i - 1
            else:
                i = _next_below(book, side, i)
    return v, (i if k == levels else 0)


@inline_kernel
def weighted_vols(book, levels):
    """(B, A): qty weighted (levels - i) at level i, top `levels` levels."""
    if levels < 1:
        levels = 1
    if levels > MP_LEVELS_MAX:
        levels = MP_LEVELS_MAX
    return _side_sum(book, SIDE_BID, levels)[0], _side_sum(book, SIDE_ASK, levels)[0]


@kernel
def microprice(book, levels):
    """Weighted microprice in pipettes (levels=1: top of book), rounded
    down; NO_PRICE if the book is not valid. Equal (zero) volumes -> mid
    rounded down."""
    return fair_and_imbalance(book, levels)[0]


@inline_kernel
def fair_and_imbalance(book, levels):
    """(microprice(book, levels), imbalance_bps(book, levels)) from one
    pass over the weighted volumes; (NO_PRICE, 0) on an invalid book."""
    if book_valid(book) == 0:
        return NO_PRICE, 0
    bv, av = weighted_vols(book, levels)
    return _fair_of(book, bv, av)


@inline_kernel
def _fair_of(book, bv, av):
    """(fair value, imbalance) of a valid book from its weighted side volumes."""
    if bv > I64_SAT - av:  # halved together when their sum would leave int64
        bv = bv >> 1
        av = av >> 1
    total = bv + av
    bb = best_bid(book)
    ba = best_ask(book)
    if total <= 0:
        return bb + (ba - bb) // 2, 0
    return bb + _frac(bv, ba - bb, total), _imbalance(bv, av, total)


@kernel
def imbalance_bps(book, levels):
    """(B - A) * 10_000 / (B + A) of the weighted volumes, toward zero."""
    bv, av, total = _sat_vols(book, levels)
    if total <= 0:
        return 0
    return _imbalance(bv, av, total)


@inline_kernel
def _sat_vols(book, levels):
    """Weighted volumes halved together when their sum would leave int64."""
    bv, av = weighted_vols(book, levels)
    if bv > I64_SAT - av:
        bv = bv >> 1
        av = av >> 1
    return bv, av, bv + av


@kernel
def _imbalance(bv, av, total):
    if bv >= av:
        return _frac(bv - av, BPS_ONE, total)
    return -_frac(av - bv, BPS_ONE, total)


# ==========================================================================
# toxicity / volatility / multiplier
# ==========================================================================


@kernel
def vpin_bps(buy, sell):
    total = buy + sell
    if total <= 0:
        return 0
    d = buy - sell if buy >= sell else sell - buy
    return _frac(d, BPS_ONE, total)


@kernel
def spread_mult_bps(vpin, vol_milli, params):
    """10_000 + VPIN and volatility terms, clamped to [10_000, max]."""
    m = BPS_ONE + (vpin * params[P_MULT_VPIN_BPS]) // BPS_ONE
    ref = params[P_MULT_VOL_REF] * VOL_SCALE
    if ref > 0 and vol_milli > 0:
        v = _muldiv(vol_milli, params[P_MULT_VOL_BPS], ref)
        if v > I64_SAT - m:
            v = I64_SAT - m
        m += v
    hi = params[P_MULT_MAX_BPS]
    if hi < BPS_ONE:
        hi = BPS_ONE
    return _clamp(m, BPS_ONE, hi)


@kernel
def update_fair_stats(state, params, fair, ts):
    """Vol / variance / gap EMAs from the change of fair value."""
    alpha = params[P_EMA_ALPHA_PPM]
    prev = state[S_FAIR]
    if prev != NO_PRICE and fair != NO_PRICE:
        d = fair - prev
        if d < 0:
            d = -d
        first = state[S_N_SAMPLES] == 0
        dv = d if d < VOL_DELTA_MAX else VOL_DELTA_MAX
        state[S_VOL] = _ema(state[S_VOL], dv * VOL_SCALE, alpha, first)
        if params[P_MODEL] == MODEL_AS:
            dq = d if d < VAR_DELTA_MAX else VAR_DELTA_MAX
            state[S_VAR] = _ema(state[S_VAR], dq * dq * VAR_SCALE, alpha, first)
            dt = ts - state[S_LAST_TS]
            dt = _clamp(dt, 0, DT_MAX_NS)
            state[S_DT] = _ema(state[S_DT], dt, alpha, first)
        state[S_N_SAMPLES] += 1
    if fair != NO_PRICE:
        state[S_FAIR] = fair
        state[S_LAST_TS] = ts


# ==========================================================================
# quote models
# ==========================================================================


@kernel
def mm_skew2(position, params):
    """Seed skew gamma*(pos/max_inv)*half_spread in HALF-pipettes,
    truncated toward zero (pos/max_inv floored-to-zero in ppm first)."""
    mx = params[P_MAX_INV]
    if mx <= 0 or position == 0:
        return 0
    ap = position if position > 0 else -position
    q_ppm = _muldiv(ap, PPM_ONE, mx)
    if q_ppm > Q_PPM_MAX:
        q_ppm = Q_PPM_MAX
    # gamma_ppm * q_ppm <= 1e9 * 1e12 would overflow: go through _muldiv
    g = params[P_GAMMA_PPM]
    gq = _muldiv(q_ppm, g, PPM_ONE)  # ratio*gamma in ppm
    s2 = _muldiv(gq, 2 * params[P_HALF_SPREAD], PPM_ONE)
    return s2 if position > 0 else -s2


@kernel
def as_kappa_ppm(state, params):
    """kappa per pipette in ppm: MLE of the exponential distance decay."""
    n = state[S_K_N]
    if n < params[P_MIN_TRADES] or n <= 0 or state[S_K_SUM] <= 0:
        return params[P_AS_KAPPA_PPM]
    k = (2 * PPM_ONE * n) // (state[S_K_SUM] * params[P_TICK])
    return k if k > 1 else 1


@kernel
def as_terms(state, params, kappa_ppm):
    """(gamma*sigma^2*H in pipettes, (2/gamma)*ln(1+gamma/kappa) in
    pipettes, sigma^2*H in milli-pipettes^2); all floored, clamped."""
    g = params[P_AS_GAMMA_PPM]
    dt = state[S_DT]
    if dt < 1:
        dt = 1
    nh = params[P_AS_HORIZON_NS] // dt
    nh = _clamp(nh, 1, HORIZON_EVENTS_MAX)
    s2t = state[S_VAR] * nh  # VAR < 2**41, nh <= 2**20
    # gamma (ppm/pipette) * s2t (milli-pipette^2) / 1e9 -> pipettes
    risk = _muldiv(s2t, g, PPM_ONE * VAR_SCALE)
    if risk > AS_TERM_MAX:
        risk = AS_TERM_MAX
    # ln(1 + gamma/kappa) in Q30; (2/gamma) with gamma = g/1e6 per pipette
    if kappa_ppm < 1:
        kappa_ppm = 1
    x_q = _muldiv(g, Q30_ONE, kappa_ppm)
    if x_q > (1 << 61):
        x_q = 1 << 61
    ln_q = ln_q30(Q30_ONE + x_q)
    liq = (ln_q * (2 * PPM_ONE)) // (g << Q30_SHIFT)
    if liq > AS_TERM_MAX:
        liq = AS_TERM_MAX
    return risk, liq, s2t


@kernel
def _centre_width(state, params, fair):
    """(centre x2 in half-pipettes, full width in pipettes) for P_MODEL. The spread
    multiplier is computed here, from the VPIN and volatility of this moment, and
    kept in S_MULT_BPS: only a quote reads it, so book updates and trades (most
    events) do not pay its division."""
    mult = spread_mult_bps(state[S_VPIN_BPS], state[S_VOL], params)
    state[S_MULT_BPS] = mult
    pos = state[S_POSITION]
    if params[P_MODEL] == MODEL_AS:
        kappa = as_kappa_ppm(state, params)
        risk, liq, s2t = as_terms(state, params, kappa)
        state[S_AS_KAPPA] = kappa
        state[S_AS_S2T] = s2t
        oq = params[P_ORDER_QTY]
        shift2 = 0
        if pos != 0 and oq > 0:
            ap = pos if pos > 0 else -pos
            q_ppm = _muldiv(ap, PPM_ONE, oq)
            if q_ppm > Q_PPM_MAX:
                q_ppm = Q_PPM_MAX
            shift2 = _muldiv(2 * risk, q_ppm, PPM_ONE)
            if shift2 > AS_TERM_MAX:
                shift2 = AS_TERM_MAX
            if pos < 0:
                shift2 = -shift2
        width = _muldiv(risk + liq, mult, BPS_ONE)
        return 2 * fair - shift2, width
    width = _muldiv(2 * params[P_HALF_SPREAD], mult, BPS_ONE)
    return 2 * fair - mm_skew2(pos, params), width


@kernel
def quote_prices(center2, width, tick, bb, ba):
    """(bid, ask) on the tick grid, post-only against (bb, ba).

    bid = floor((center2 - width) / (2*tick)) * tick, ask = ceil of
    (center2 + width) likewise; a bid >= ba goes to the highest tick < ba,
    an ask <= bb to the lowest tick > bb."""
    t2 = 2 * tick
    bid = ((center2 - width) // t2) * tick
    ask = -((-(center2 + width)) // t2) * tick
    if bid >= ba:
        bid = ((ba - 1) // tick) * tick
    if ask <= bb:
        ask = (bb // tick + 1) * tick
    return bid, ask


@kernel
def quote_sizes(position, params):
    """(bid_qty, ask_qty) on the lot grid; spot caps sells to holdings."""
    oq = params[P_ORDER_QTY]
    mx = params[P_MAX_INV]
    lot = params[P_LOT]
    if lot < 1:
        lot = 1
    room = mx - position
    bq = oq if oq < room else room
    if bq < 0:
        bq = 0
    if params[P_SPOT] != 0:
        cap_a = position if position > 0 else 0
    else:
        cap_a = mx + position
    aq = oq if oq < cap_a else cap_a
    if aq < 0:
        aq = 0
    return bq - bq % lot, aq - aq % lot


@kernel
def make_quote(state, book, params):
    """Build the quote for the current fair / state into the output slot.

    Returns ACT_QUOTE, or ACT_CANCEL_ALL / ACT_NONE when no side can be
    quoted (invalid book, no size)."""
    if book_valid(book) == 0 or state[S_FAIR] == NO_PRICE:
        return ACT_NONE
    bb = best_bid(book)
    ba = best_ask(book)
    fair = state[S_FAIR]
    tick = params[P_TICK]
    center2, width = _centre_width(state, params, fair)
    bid, ask = quote_prices(center2, width, tick, bb, ba)
    bq, aq = quote_sizes(state[S_POSITION], params)
    if bid <= 0:
        bq = 0
    if bid >= ask:  # unreachable on a valid book; never emit a crossed quote
        bq = 0
        aq = 0
    if bq == 0 and aq == 0:
        if state[S_HAVE_QUOTE] != 0:
            return _cancel_all(state)
        return ACT_NONE
    state[S_CENTER2] = center2
    state[S_WIDTH2] = width
    state[S_Q_BID_PX] = bid
    state[S_Q_BID_QTY] = bq
    state[S_Q_ASK_PX] = ask
    state[S_Q_ASK_QTY] = aq
    state[S_LIVE_BID] = bq
    state[S_LIVE_ASK] = aq
    state[S_HAVE_QUOTE] = 1
    state[S_LAST_QUOTE_FAIR] = fair
    state[S_SINCE_QUOTE] = 0
    state[S_N_QUOTES] += 1
    return ACT_QUOTE


@kernel
def _cancel_all(state):
    state[S_HAVE_QUOTE] = 0
    state[S_LIVE_BID] = 0
    state[S_LIVE_ASK] = 0
    state[S_Q_BID_QTY] = 0
    state[S_Q_ASK_QTY] = 0
    state[S_N_CANCELS] += 1
    return ACT_CANCEL_ALL


@kernel
def should_requote(state, params):
    """Warm-up, toxicity, cooldown and fair-move threshold gate."""
    if state[S_N_BOOK] <= params[P_WARMUP]:
        return 0
    if state[S_TOXIC] != 0 or state[S_FAIR] == NO_PRICE:
        return 0
    if state[S_SINCE_QUOTE] < params[P_COOLDOWN]:
        return 0
    if state[S_HAVE_QUOTE] == 0:
        return 1
    d = state[S_FAIR] - state[S_LAST_QUOTE_FAIR]
    if d < 0:
        d = -d
    return 1 if d > params[P_REQUOTE_PX] else 0


# ==========================================================================
# per-event entry points
# ==========================================================================


@inline_kernel
def _book_done(state, book, params, fair, imb, ts):
    """A book update once the book is applied and its fair value and imbalance known."""
    state[S_N_BOOK] += 1
    if state[S_SINCE_QUOTE] < I64_SAT:
        state[S_SINCE_QUOTE] += 1
    update_fair_stats(state, params, fair, ts)
    if fair != NO_PRICE:
        state[S_IMB_BPS] = imb
    if state[S_TOXIC] != 0:
        if state[S_HAVE_QUOTE] != 0:
            return _cancel_all(state)
        return ACT_NONE
    if fair == NO_PRICE:
        return ACT_NONE
    if should_requote(state, params) == 0:
        return ACT_NONE
    return make_quote(state, book, params)


@kernel
def _on_book(state, book, params, lv, start, n, ts, snapshot):
    state[S_BAD_ROWS] += book_apply_rows_tick1(book, lv, start, n, snapshot)
    fair, imb = fair_and_imbalance(book, params[P_MP_LEVELS])
    return _book_done(state, book, params, fair, imb, ts)


# --------------------------------------------------------------------------
# the same book update, with the fair value's side sums kept between updates
# --------------------------------------------------------------------------
# fv[o + FV_*]: a caller's scratch (not strategy state: nothing here enters a state hash).
FV_LEVELS = 0  # levels the sums are over; 0 = none kept
FV_AT = 1  # state[S_N_BOOK] when they were taken: they hold only while the two are equal
FV_KEY0 = 2  # + side: the side's window origin (BK_KEY0) when its sum was taken
FV_LIM = 4  # + side: the slot of its last summed level (0 if it had fewer levels)
FV_SUM = 6  # + side: its weighted sum (_side_sum)
FV_LEN = 8
# Only a delta of at most this many rows is looked at before it is applied; any other
# update (a snapshot, a Binance diff, which nearly always reaches the summed levels)
# sums afresh.
FV_KEEP_ROWS = 4


@inline_kernel
def _rows_top(book, lv, start, n):
    """(highest bid slot, highest ask slot) rows lv[start:start+n] would store to in
    their side's window as it is now, -1 = none. Read before the rows are applied: if
    a window then moves, _kept_sum sees it (BK_KEY0), and a row the book rejects or
    drops stores nothing, so counting it only errs toward summing afresh."""
    tick = book[BK_TICK]
    hi_b = -1
    hi_a = -1
    for r in range(start, start + n):
        side, px, _qty = _row(lv, r, tick)
        if side == SIDE_BID:
            i = _slot(px - book[BK_KEY0], tick)
            if i > hi_b:
                hi_b = i
        elif side == SIDE_ASK:
            i = _slot(-px - book[BK_KEY0 + 1], tick)
            if i > hi_a:
                hi_a = i
    return hi_b, hi_a


@inline_kernel
def _kept_sum(fv, o, book, side, levels, hi, kept):
    """_side_sum(book, side, levels)[0], from fv when the sum kept there still holds: the
    rows since stored only to slots below its last level (hi, the highest of them, -1 =
    none). The window's origin is compared too, as a guard: it moves only on a row at
    or above the best, which no kept sum survives anyway."""
    if kept and hi < fv[o + FV_LIM + side] and book[BK_KEY0 + side] == fv[o + FV_KEY0 + side]:
        return fv[o + FV_SUM + side]
    v, lim = _side_sum(book, side, levels)
    fv[o + FV_SUM + side] = v
    fv[o + FV_LIM + side] = lim
    fv[o + FV_KEY0 + side] = book[BK_KEY0 + side]
    return v


@inline_kernel
def on_book_kept(state, book, params, fv, o, lv, start, n, ts, snapshot):
    """_on_book, with the fair value's side sums kept in fv[o : o + FV_LEN] (zeros at
    first) and reused where they still hold: the same state, book and action, for
    the backtest's market run. Another book update (through _on_book) drops them
    by itself (FV_AT); a state or book written any other way (a snapshot loaded)
    may leave S_N_BOOK where it was, so the caller must then zero fv[o + FV_LEVELS].

    Why: on a book whose updates mostly land below the five summed levels (a deep
    book changed a level or two at a time, as the synthetic market's is) the walk
    to the fifth level of each side was the larger part of an update. Why not in
    _on_book itself: the live service's diffs gain nothing, and a depth-5 diff
    paid 2-7 ns for the look at its rows and the bookkeeping (measured)."""
    levels = _clamp(params[P_MP_LEVELS], 1, MP_LEVELS_MAX)  # as weighted_vols
    kept = snapshot == 0 and n <= FV_KEEP_ROWS and fv[o + FV_AT] == state[S_N_BOOK] and fv[o + FV_LEVELS] == levels
    hi_b = -1
    hi_a = -1
    if kept:
        hi_b, hi_a = _rows_top(book, lv, start, n)
    state[S_BAD_ROWS] += book_apply_rows(book, lv, start, n, snapshot)
    if book_valid(book) == 0:  # FV_AT is left behind: what is kept no longer holds
        return _book_done(state, book, params, NO_PRICE, 0, ts)
    bv = _kept_sum(fv, o, book, SIDE_BID, levels, hi_b, kept)
    av = _kept_sum(fv, o, book, SIDE_ASK, levels, hi_a, kept)
    fv[o + FV_LEVELS] = levels
    fv[o + FV_AT] = state[S_N_BOOK] + 1  # what _book_done makes it
    fair, imb = _fair_of(book, bv, av)
    return _book_done(state, book, params, fair, imb, ts)


@kernel
def on_book_snapshot(state, book, params, lv, start, n, ts):
    """Replace the book with rows lv[start:start+n]; then as on_book_delta."""
    return _on_book(state, book, params, lv, start, n, ts, 1)


@kernel
def on_book_delta(state, book, params, lv, start, n, ts):
    """Apply rows lv[start:start+n] (qty 0 removes), recompute fair value and
    vol; requote if the rule allows. Returns an action."""
    return _on_book(state, book, params, lv, start, n, ts, 0)


@kernel
def _le_i64(buf, off):
    """The little-endian int64 at byte `off` of a bytes object (as LEVEL_DTYPE packs it).

    Written as one OR of shifted bytes so LLVM can fold it into a single load; the
    top byte is sign-extended without a branch, so a negative value reads back
    negative in numba and in the Python twin alike (no shift ever overflows)."""
    top = np.int64(buf[off + 7])
    top -= (top >> 7) << 8
    return (
        np.int64(buf[off])
        | (np.int64(buf[off + 1]) << 8)
        | (np.int64(buf[off + 2]) << 16)
        | (np.int64(buf[off + 3]) << 24)
        | (np.int64(buf[off + 4]) << 32)
        | (np.int64(buf[off + 5]) << 40)
        | (np.int64(buf[off + 6]) << 48)
        | (top << 56)
    )


@kernel
def fill_packed_rows(lv, bids, asks):
    """A book event's packed levels -> rows lv[0:n] = (side, px, qty), bids first; returns n.

    `bids` / `asks` are the BookSnapshot's / BookDelta's own bytes (whole 16-byte
    little-endian (price, qty) pairs; a trailing partial pair is ignored, the caller
    rejects torn input first); lv holds >= n rows. Bytes in, not numpy views: two
    np.frombuffer calls per event cost about 2 us of Python, more than the kernel."""
    n = 0
    for off in range(0, len(bids) - 15, 16):
        lv[n, LV_SIDE] = SIDE_BID
        lv[n, LV_PX] = _le_i64(bids, off)
        lv[n, LV_QTY] = _le_i64(bids, off + 8)
        n += 1
    for off in range(0, len(asks) - 15, 16):
        lv[n, LV_SIDE] = SIDE_ASK
        lv[n, LV_PX] = _le_i64(asks, off)
        lv[n, LV_QTY] = _le_i64(asks, off + 8)
        n += 1
    return n


@kernel
def packed_has_price(buf, px):
    """1 if a side's packed (price, qty) bytes name price `px`, else 0 (whole pairs only)."""
    for off in range(0, len(buf) - 15, 16):
        if _le_i64(buf, off) == px:
            return 1
    return 0


@kernel
def book_apply_packed(book, lv, bids, asks, snapshot):
    """book_apply_rows of a book event's packed levels (rows built in the scratch lv, see
    fill_packed_rows); returns rows rejected. One call per event."""
    n = fill_packed_rows(lv, bids, asks)
    return book_apply_rows(book, lv, 0, n, snapshot)


@kernel
def on_book_packed(state, book, params, lv, bids, asks, ts, snapshot):
    """on_book_snapshot (snapshot != 0) or on_book_delta of a book event given as its
    packed levels (rows built in the scratch lv, see fill_packed_rows). One call per event."""
    n = fill_packed_rows(lv, bids, asks)
    return _on_book(state, book, params, lv, 0, n, ts, 1 if snapshot else 0)


@kernel
def on_trade(state, book, params, px, qty, buyer_is_maker, ts):
    """Feed one public trade: VPIN ring, distance histogram, toxicity.
    Returns ACT_CANCEL_ALL when flow turns toxic with quotes live."""
    if qty <= 0:
        return ACT_NONE
    if qty > QTY_MAX:
        qty = QTY_MAX
    w = params[P_VPIN_WINDOW]
    w = _clamp(w, 1, VPIN_CAP)
    head = state[S_RING_HEAD]
    if head >= w:
        head = 0
    if state[S_RING_N] >= w:  # evict the oldest trade
        old = state[S_RING_VOL + head]
        if old > 0:
            state[S_BUY_VOL] -= old
        else:
            state[S_SELL_VOL] += old
        od = state[S_RING_DIST + head]
        if od >= 0:
            state[S_HIST + od] -= 1
            state[S_K_N] -= 1
            state[S_K_SUM] -= 2 * od + 1
    else:
        state[S_RING_N] += 1
    if buyer_is_maker != 0:  # aggressor sold
        state[S_RING_VOL + head] = -qty
        state[S_SELL_VOL] += qty
    else:
        state[S_RING_VOL + head] = qty
        state[S_BUY_VOL] += qty
    d = -1
    if book_valid(book) != 0:
        x = 2 * px - best_bid(book) - best_ask(book)
        if x < 0:
            x = -x
        d = x // (2 * params[P_TICK])
        if d >= KAPPA_BINS:
            d = KAPPA_BINS - 1
        state[S_HIST + d] += 1
        state[S_K_N] += 1
        state[S_K_SUM] += 2 * d + 1
    state[S_RING_DIST + head] = d
    head += 1
    state[S_RING_HEAD] = head if head < w else 0
    state[S_N_TRADES] += 1
    v = vpin_bps(state[S_BUY_VOL], state[S_SELL_VOL])
    state[S_VPIN_BPS] = v
    toxic = state[S_RING_N] >= params[P_MIN_TRADES] and v >= params[P_TOXIC_BPS]
    if toxic:
        state[S_TOXIC] = 1
        if state[S_HAVE_QUOTE] != 0:
            return _cancel_all(state)
        return ACT_NONE
    state[S_TOXIC] = 0
    return ACT_NONE


@kernel
def on_fill(state, book, params, side, px, qty, ts):
    """Our order on `side` filled `qty` atoms at `px`: on_fill_kept with
    nothing kept by the venue."""
    return on_fill_kept(state, book, params, side, px, qty, 0, ts)


@kernel
def on_fill_kept(state, book, params, side, px, qty, kept, ts):
    """Our order on `side` filled `qty` atoms at `px`, and the venue kept
    `kept` atoms of the base asset as its commission (Binance does on a buy
    without BNB), so holdings change by +qty - kept on a bid, -qty - kept on
    an ask. Updates inventory (spot: never below zero, excess counted in
    S_CLAMPED), the live qty of that side (by qty: the order's own fill) and
    the cooldown. A fill that empties its side requotes at once (ACT_QUOTE),
    sized on the holdings after the commission; a partial fill keeps the
    rest live (ACT_NONE)."""
    if qty <= 0 or (side != SIDE_BID and side != SIDE_ASK):
        return ACT_NONE
    if qty > QTY_MAX:
        qty = QTY_MAX
    kept = _clamp(kept, 0, QTY_MAX)
    state[S_N_FILLS] += 1
    pos = state[S_POSITION]
    if side == SIDE_BID:
        held = pos + qty - kept
        if params[P_SPOT] != 0 and held < 0:
            state[S_CLAMPED] -= held
            held = 0
        state[S_POSITION] = held
        state[S_BOUGHT] += qty
        live = state[S_LIVE_BID] - qty
        state[S_LIVE_BID] = live if live > 0 else 0
        emptied = live <= 0
    else:
        sold = qty
        gone = qty + kept
        if params[P_SPOT] != 0 and gone > pos:
            gone = pos if pos > 0 else 0
            state[S_CLAMPED] += qty + kept - gone
            if sold > gone:
                sold = gone
        state[S_POSITION] = pos - gone
        state[S_SOLD] += sold
        live = state[S_LIVE_ASK] - qty
        state[S_LIVE_ASK] = live if live > 0 else 0
        emptied = live <= 0
    if state[S_LIVE_BID] == 0 and state[S_LIVE_ASK] == 0:
        state[S_HAVE_QUOTE] = 0
    cd = params[P_COOLDOWN]
    if state[S_SINCE_QUOTE] < cd:
        state[S_SINCE_QUOTE] = cd  # cooldown reset
    if not emptied:
        return ACT_NONE
    if state[S_N_BOOK] <= params[P_WARMUP] or state[S_TOXIC] != 0:
        return ACT_NONE
    return make_quote(state, book, params)


@kernel
def run_events(state, book, params, events, lv, actions):
    """Drive the entry points over an event array (layout EV_*, see
    dtypes); actions[i] receives the action of event i. Returns the number
    of ACT_QUOTE actions."""
    nq = 0
    for i in range(events.shape[0]):
        k = events[i, EV_KIND]
        ts = events[i, EV_TS]
        a = ACT_NONE
        if k == EVK_DELTA:
            a = on_book_delta(state, book, params, lv, events[i, EV_A], events[i, EV_B], ts)
        elif k == EVK_TRADE:
            a = on_trade(state, book, params, events[i, EV_A], events[i, EV_B], events[i, EV_C], ts)
        elif k == EVK_FILL:
            a = on_fill(state, book, params, events[i, EV_A], events[i, EV_B], events[i, EV_C], ts)
        elif k == EVK_SNAPSHOT:
            a = on_book_snapshot(state, book, params, lv, events[i, EV_A], events[i, EV_B], ts)
        actions[i] = a
        if a == ACT_QUOTE:
            nq += 1
    return nq
