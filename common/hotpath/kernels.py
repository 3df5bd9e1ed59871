"""Strategy hot-path kernels: L2 book, fair value, toxicity, quotes.

Contract
--------
* Every function here is ``@kernel`` (``njit(cache=True, _nrt=False)``)
  and takes only numpy int64 arrays and Python/numpy integers; it returns
  integers (or a tuple of them). No floats anywhere, no allocation, no
  slicing, no clock, no I/O.
  This module imports numpy, numba and the constants of ``dtypes`` only.
* Each kernel is also valid plain Python (``kernel.py_func``) and gives the
  same result: every intermediate is kept inside int64 by clamps or by the
  overflow-safe helpers ``_frac`` / ``_muldiv`` (so numpy scalars in the
  pure-Python twin never wrap), and only ``//``, ``%``, ``>>`` (floor
  semantics, identical in numba and Python) are used.
* Array layouts (book, level rows, params, state, events) are the named
  index constants of ``common.hotpath.dtypes``. Params are assumed constant
  for the life of a state array; ``default_params`` validates them.
* Per-event entry points (ONE call per event): ``on_book_snapshot``,
  ``on_book_delta``, ``on_trade``, ``on_fill``; each returns ACT_NONE,
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
* A book deeper than its capacity keeps the best ``cap`` levels per side.
"""

from __future__ import annotations

import numpy as np  # noqa: F401  (kernels take numpy arrays)
from numba import njit

from common.hotpath.dtypes import (
    ACT_CANCEL_ALL,
    ACT_NONE,
    ACT_QUOTE,
    AS_TERM_MAX,
    BK_BASE,
    BK_HDR,
    BK_LO,
    BK_PX,
    BK_QTY,
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

# ==========================================================================
# integer helpers
# ==========================================================================

SMALL_31 = 1 << 31  # two factors below this multiply below I64_SAT = 2**62


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
# L2 book
# ==========================================================================


@kernel
def book_cap(book):
    return (book.shape[0] - BK_BASE) // 2


@kernel
def book_clear(book):
    cap = (book.shape[0] - BK_BASE) // 2
    book[BK_HDR, 0] = 0
    book[BK_HDR, 1] = 0
    book[BK_LO, 0] = cap >> 1
    book[BK_LO, 1] = cap >> 1


@kernel
def _top_row(book, side):
    """Row of a side's best level (valid only when the side is not empty)."""
    cap = (book.shape[0] - BK_BASE) // 2
    return BK_BASE + side * cap + book[BK_LO, side] + book[BK_HDR, side] - 1


@kernel
def _recentre(book, side, n):
    """Move a side's run of n levels to the middle of its region (rare: the
    run reached an edge of it); returns the new lo."""
    cap = (book.shape[0] - BK_BASE) // 2
    region = BK_BASE + side * cap
    src = region + book[BK_LO, side]
    lo = (cap - n + 1) >> 1  # n < cap - 1 here: leaves lo >= 1 and lo + n < cap
    dst = region + lo
    if dst < src:
        for j in range(n):
            book[dst + j, BK_PX] = book[src + j, BK_PX]
            book[dst + j, BK_QTY] = book[src + j, BK_QTY]
    elif dst > src:
        for j in range(n - 1, -1, -1):
            book[dst + j, BK_PX] = book[src + j, BK_PX]
            book[dst + j, BK_QTY] = book[src + j, BK_QTY]
    book[BK_LO, side] = lo
    return lo


@kernel
def _row(lv, r):
    """Row r of a level array as (side, px, qty), qty clamped to QTY_MAX;
    side -1 for a row to reject (unknown side, px <= 0 or qty < 0)."""
    side = lv[r, LV_SIDE]
    px = lv[r, LV_PX]
    qty = lv[r, LV_QTY]
    if (side != SIDE_BID and side != SIDE_ASK) or px <= 0 or qty < 0:
        return -1, px, qty
    if qty > QTY_MAX:
        qty = QTY_MAX
    return side, px, qty


@kernel
def _place_sorted(book, lv, start, n):
    """Snapshot fast path: rows listed best first per side (as every snapshot and
    partial book arrives) written straight into their rows, centred in each
    side's region, with no search and no moves. A side with more than cap levels
    keeps its first (best) cap, as the general path would.

    Returns rows rejected, or -1 when a side's prices are not strictly best
    first (its rows then need the general path; the book's rows may have been
    written, its header not)."""
    cap = (book.shape[0] - BK_BASE) // 2
    nb = 0
    na = 0
    for r in range(start, start + n):  # counted first, to centre each side's run
        side, _px, qty = _row(lv, r)
        if qty > 0:
            if side == SIDE_BID:
                nb += 1
            elif side == SIDE_ASK:
                na += 1
    if nb > cap:
        nb = cap
    if na > cap:
        na = cap
    lo_b = (cap - nb + 1) >> 1
    lo_a = (cap - na + 1) >> 1
    top_b = BK_BASE + lo_b + nb - 1
    top_a = BK_BASE + cap + lo_a + na - 1
    jb = 0
    ja = 0
    last_b = 0
    last_a = 0
    bad = 0
    for r in range(start, start + n):
        side, px, qty = _row(lv, r)
        if side < 0:
            bad += 1
            continue
        if qty == 0:
            continue
        if side == SIDE_BID:
            if jb > 0 and px >= last_b:
                return -1
            if jb < nb:
                book[top_b - jb, BK_PX] = px
                book[top_b - jb, BK_QTY] = qty
            jb += 1
            last_b = px
        else:
            if ja > 0 and px <= last_a:
                return -1
            if ja < na:
                book[top_a - ja, BK_PX] = px
                book[top_a - ja, BK_QTY] = qty
            ja += 1
            last_a = px
    book[BK_HDR, SIDE_BID] = nb
    book[BK_HDR, SIDE_ASK] = na
    book[BK_LO, SIDE_BID] = lo_b
    book[BK_LO, SIDE_ASK] = lo_a
    return bad


@kernel
def book_apply_rows(book, lv, start, n, snapshot):
    """Apply rows lv[start:start+n] = (side, px, qty); qty 0 removes a level.
    snapshot != 0 clears both sides first (and skips qty-0 rows). Returns
    rows rejected.

    Layout: a side is a run of rows [lo, lo + m) inside its cap-row region,
    worst first, best last, with free rows on both ends. An insert or a
    removal moves whichever part of the run is shorter (the part toward the
    worst end moves by shifting lo), so a change at either end -- the touch,
    or the far levels a moving market drops and adds -- moves few rows. When
    the short part has no free row beyond it, the run is first re-centred in
    its region. When the side is full, a new level worse than every kept
    level is dropped, and a better one first drops the worst cap // 8 levels
    (at least one) by moving lo: a side holds between cap - cap // 8 and cap
    levels, always the best ones. A snapshot listed best first per side goes
    through ``_place_sorted`` (no search, no moves); any other snapshot is
    cleared and applied row by row like a delta.

    Search: a delta lists a side's levels in price order, so each row is
    looked up by galloping out from the rank the previous row of its side
    landed on -- a few well-predicted compares instead of a binary search's
    unpredictable ones. The search and the row moves are written out in
    this loop, not called: a numba call that passes the book array costs
    more than the whole per-row step (measured), and LLVM does not inline
    a callee this size."""
    cap = (book.shape[0] - BK_BASE) // 2
    if snapshot:
        bad = _place_sorted(book, lv, start, n)
        if bad >= 0:
            return bad
        book_clear(book)
    bad = 0
    hint_b = -1
    hint_a = -1
    for r in range(start, start + n):
        side, px, qty = _row(lv, r)
        if side < 0:
            bad += 1
            continue
        if snapshot and qty == 0:
            continue
        if side == SIDE_BID:
            sgn = 1  # key = sgn * px ascends from the worst level to the best
            g = hint_b
        else:
            sgn = -1
            g = hint_a
        region = BK_BASE + side * cap
        m = book[BK_HDR, side]
        lo = book[BK_LO, side]
        first = region + lo
        key = sgn * px
        # ---- i = smallest rank whose key >= key, galloping from g
        if g < 0 or g > m:
            g = m - 1 if m > 0 else 0  # first row of a side: start at the touch
        if g > 0 and book[first + g - 1, BK_PX] == px:
            a = g - 1  # the next level of a delta in price order: one compare
            b = g - 1
        elif g < m and sgn * book[first + g, BK_PX] < key:
            a = g + 1
            b = m
            step = 1
            j = g + 1
            while j < m:
                if sgn * book[first + j, BK_PX] >= key:
                    b = j
                    break
                a = j + 1
                step = step << 1
                j = g + step
        else:
            a = 0
            b = g
            step = 1
            j = g - 1
            while j >= 0:
                if sgn * book[first + j, BK_PX] < key:
                    a = j + 1
                    break
                b = j
                step = step << 1
                j = g - step
        while a < b:
            mid = (a + b) >> 1
            if sgn * book[first + mid, BK_PX] < key:
                a = mid + 1
            else:
                b = mid
        i = a
        if side == SIDE_BID:
            hint_b = i
        else:
            hint_a = i
        # ---- update, remove or insert at rank i
        if i < m and book[first + i, BK_PX] == px:
            if qty > 0:
                book[first + i, BK_QTY] = qty
            elif i < m - 1 - i:  # worse part is shorter: move it up one row
                for j in range(first + i, first, -1):
                    book[j, BK_PX] = book[j - 1, BK_PX]
                    book[j, BK_QTY] = book[j - 1, BK_QTY]
                book[BK_LO, side] = lo + 1
                book[BK_HDR, side] = m - 1
            else:  # better part is shorter: move it down one row
                for j in range(first + i, first + m - 1):
                    book[j, BK_PX] = book[j + 1, BK_PX]
                    book[j, BK_QTY] = book[j + 1, BK_QTY]
                book[BK_HDR, side] = m - 1
            continue
        if qty == 0:
            continue
        if m >= cap:
            if i == 0:
                continue  # worse than every kept level
            drop = cap >> 3
            if drop < 1:
                drop = 1
            if drop > i:
                drop = i  # never drop a level better than the new one
            lo += drop
            m -= drop
            i -= drop
            first += drop
            book[BK_LO, side] = lo
            book[BK_HDR, side] = m
        down = i < m - i  # worse part is shorter: move it down one row
        if (lo == 0) if down else (lo + m >= cap):  # no free row beyond it
            if m < cap - 1:
                lo = _recentre(book, side, m)
                first = region + lo
            else:
                down = not down  # the one free row is at the other end
        if down:
            for j in range(first - 1, first + i - 1):
                book[j, BK_PX] = book[j + 1, BK_PX]
                book[j, BK_QTY] = book[j + 1, BK_QTY]
            first -= 1
            book[BK_LO, side] = lo - 1
        else:  # better part is shorter: move it up one row
            for j in range(first + m, first + i, -1):
                book[j, BK_PX] = book[j - 1, BK_PX]
                book[j, BK_QTY] = book[j - 1, BK_QTY]
        book[first + i, BK_PX] = px
        book[first + i, BK_QTY] = qty
        book[BK_HDR, side] = m + 1
    return bad


@kernel
def best_px(book, side):
    """Best price of a side, NO_PRICE if empty."""
    if book[BK_HDR, side] == 0:
        return NO_PRICE
    return book[_top_row(book, side), BK_PX]


@kernel
def best_bid(book):
    return best_px(book, SIDE_BID)


@kernel
def best_ask(book):
    return best_px(book, SIDE_ASK)


@kernel
def book_valid(book):
    """1 if both sides have a level and best bid < best ask."""
    if book[BK_HDR, 0] == 0 or book[BK_HDR, 1] == 0:
        return 0
    return 1 if book[_top_row(book, SIDE_BID), BK_PX] < book[_top_row(book, SIDE_ASK), BK_PX] else 0


@kernel
def spread(book):
    """best_ask - best_bid in pipettes, NO_PRICE unless both sides exist."""
    if book[BK_HDR, 0] == 0 or book[BK_HDR, 1] == 0:
        return NO_PRICE
    return book[_top_row(book, SIDE_ASK), BK_PX] - book[_top_row(book, SIDE_BID), BK_PX]


@kernel
def depth_qty(book, side, levels):
    """Total qty of the best `levels` levels of a side (saturating)."""
    m = book[BK_HDR, side]
    if levels < m:
        m = levels
    top = _top_row(book, side)
    s = 0
    for i in range(m):
        s += book[top - i, BK_QTY]
        if s > I64_SAT:
            s = I64_SAT
    return s


@kernel
def weighted_vols(book, levels):
    """(B, A): qty weighted (levels - i) at level i, top `levels` levels."""
    cap = (book.shape[0] - BK_BASE) // 2
    if levels < 1:
        levels = 1
    if levels > cap:
        levels = cap
    nb = book[BK_HDR, 0]
    if nb > levels:
        nb = levels
    na = book[BK_HDR, 1]
    if na > levels:
        na = levels
    bv = 0
    btop = _top_row(book, SIDE_BID)
    for i in range(nb):
        bv += (levels - i) * book[btop - i, BK_QTY]
        if bv > I64_SAT:
            bv = I64_SAT
    av = 0
    atop = _top_row(book, SIDE_ASK)
    for i in range(na):
        av += (levels - i) * book[atop - i, BK_QTY]
        if av > I64_SAT:
            av = I64_SAT
    return bv, av


@kernel
def microprice(book, levels):
    """Weighted microprice in pipettes (levels=1: top of book), rounded
    down; NO_PRICE if the book is not valid. Equal (zero) volumes -> mid
    rounded down."""
    return fair_and_imbalance(book, levels)[0]


@kernel
def fair_and_imbalance(book, levels):
    """(microprice(book, levels), imbalance_bps(book, levels)) from one
    pass over the weighted volumes; (NO_PRICE, 0) on an invalid book."""
    if book_valid(book) == 0:
        return NO_PRICE, 0
    bb = best_bid(book)
    ba = best_ask(book)
    bv, av, total = _sat_vols(book, levels)
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


@kernel
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
    """(centre x2 in half-pipettes, full width in pipettes) for P_MODEL."""
    mult = state[S_MULT_BPS]
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


@kernel
def _on_book(state, book, params, lv, start, n, ts, snapshot):
    state[S_BAD_ROWS] += book_apply_rows(book, lv, start, n, snapshot)
    state[S_N_BOOK] += 1
    if state[S_SINCE_QUOTE] < I64_SAT:
        state[S_SINCE_QUOTE] += 1
    fair, imb = fair_and_imbalance(book, params[P_MP_LEVELS])
    update_fair_stats(state, params, fair, ts)
    if fair != NO_PRICE:
        state[S_IMB_BPS] = imb
    state[S_MULT_BPS] = spread_mult_bps(state[S_VPIN_BPS], state[S_VOL], params)
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
def on_book_snapshot(state, book, params, lv, start, n, ts):
    """Replace the book with rows lv[start:start+n]; then as on_book_delta."""
    return _on_book(state, book, params, lv, start, n, ts, 1)


@kernel
def on_book_delta(state, book, params, lv, start, n, ts):
    """Apply rows lv[start:start+n] (qty 0 removes), recompute fair value,
    vol, multiplier; requote if the rule allows. Returns an action."""
    return _on_book(state, book, params, lv, start, n, ts, 0)


@kernel
def fill_level_rows(lv, bids, asks):
    """Flat (price, qty) int64 pairs of both sides (as packed on the wire) -> rows
    lv[0:n] = (side, px, qty), bids first; returns n. lv holds >= n rows."""
    n = 0
    for i in range(0, bids.shape[0] - 1, 2):
        lv[n, LV_SIDE] = SIDE_BID
        lv[n, LV_PX] = bids[i]
        lv[n, LV_QTY] = bids[i + 1]
        n += 1
    for i in range(0, asks.shape[0] - 1, 2):
        lv[n, LV_SIDE] = SIDE_ASK
        lv[n, LV_PX] = asks[i]
        lv[n, LV_QTY] = asks[i + 1]
        n += 1
    return n


@kernel
def on_book_levels(state, book, params, lv, bids, asks, ts, snapshot):
    """on_book_snapshot (snapshot != 0) or on_book_delta of a book event given as its
    flat (price, qty) pairs per side: the rows are built in lv (a reusable buffer of
    >= (len(bids) + len(asks)) / 2 rows), then the same kernel runs. One call per event."""
    n = fill_level_rows(lv, bids, asks)
    return _on_book(state, book, params, lv, 0, n, ts, 1 if snapshot else 0)


@kernel
def on_trade(state, book, params, px, qty, buyer_is_maker, ts):
    """Feed one public trade: VPIN ring, distance histogram, multiplier.
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
    state[S_MULT_BPS] = spread_mult_bps(v, state[S_VOL], params)
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
