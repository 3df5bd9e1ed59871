"""The backtester's quiet-market run: many market events through every core's books in one call.

Most of a backtest's events are market data that no core answers: the
strategy's kernel decides not to requote, risk and the router only move
their books, and the simulated exchanges only move theirs (and the queue
ahead of our resting orders). `market_run` does exactly that work for a run
of such events, in order, with the very kernels each core calls on its own
(`_on_book`'s work / `on_trade` on the strategy's arrays, `book_apply_rows` on
the risk, router and venue ladders), and stops where Python must take over. The
strategy's book update is `on_book_kept`: `_on_book` with the fair value's side
sums kept between calls (in sv) and reused where the rows did not reach them:
the same state, book and action, without the walk to the fifth level. Where it
stops:

* before an event no rule here covers (another symbol, a torn level pair,
  another body type), and before an event that reaches the next `Clock` or
  risk's next UTC day (the sequencer's clock and the daily reset are
  Python's);
* before an event at whose time an order or cancel arrives at a venue
  (something is due in flight), before a trade that could fill a resting
  order of ours on some venue (its price reaches the order: the matching
  stays in the simulated exchange), and, under the touch fill model, before
  a book event on a venue that holds resting orders;
* after an event on which the strategy's kernel acted (quote or cancel
  all): every core has then applied it, and only the strategy's orders
  remain to be made, in Python, from the kernel's output slots. (Unless
  the quote is one the strategy would only hold back, risk having refused
  its sides lately, with no order live: that the kernel applies itself,
  see `_held_quote`.)

`services.backtest.engine` writes the counters this accumulates back into
the cores, so their states (and state hashes) are what per-event `apply`
gives; tests/unit/backtest/test_fastpath.py checks that on real and
synthetic data.

Contract as ``common.hotpath.kernels``: int64 arrays and integers only, no
allocation, no floats, valid plain Python (``market_run.py_func``).

Layouts (index constants below):

* ``evs[i]``: one market event: RK_KIND (RK_DELTA, RK_SNAPSHOT, RK_TRADE,
  RK_BBO, RK_OTHER), RK_TS (event_ns), and either RK_OFF / RK_NB / RK_NA
  (the event's (price, qty) pairs: bids then asks, from ``flat[RK_OFF]``)
  or RK_A.. RK_D (trade: price, qty, buyer_maker; best bid/offer: bid
  price, bid qty, ask price, ask qty).
* ``sv``: the run's scalars, in and out (SV_*).
* ``vcfg[v]``: venue v's transform and counters (VC_*); ``vbooks[v]`` its
  ladder; ``rest[v, j]`` its resting order j (RS_*), ``vcfg[v, VC_NREST]``
  of them.
"""

from __future__ import annotations

import numpy as np  # noqa: F401  (kernels take numpy arrays)

from common.hotpath.dtypes import (
    ACT_NONE,
    ACT_QUOTE,
    BK_BEST,
    BK_KEY0,
    BK_LOW,
    BK_N,
    BK_Q,
    BK_SLOTS,
    BK_TICK,
    LV_PX,
    LV_QTY,
    LV_SIDE,
    S_BAD_ROWS,
    S_HAVE_QUOTE,
    S_LIVE_ASK,
    S_LIVE_BID,
    S_Q_ASK_QTY,
    S_Q_BID_QTY,
    SIDE_ASK,
    SIDE_BID,
)
from common.hotpath.kernels import (
    FV_LEN,
    _le_i64,
    best_px,
    book_apply_rows,
    book_copy,
    book_same,
    inline_kernel,
    kernel,
    on_book_kept,
    on_trade,
)
from common.hotpath.venue import venue_qty

# evs columns
RK_KIND = 0
RK_TS = 1
RK_OFF = 2
RK_NB = 3
RK_NA = 4
RK_A = 2
RK_B = 3
RK_C = 4
RK_D = 5
RK_COLS = 6
RK_DELTA = 0
RK_SNAPSHOT = 1
RK_TRADE = 2
RK_BBO = 3
RK_OTHER = 4

# sv: scalars in (I) and out (O)
SV_CLOCK = 0  # I/O the sequencer's clock (recv_ns of the last event)
SV_NEXT_CLOCK = 1  # I: stop before an event at or past it
SV_DAY_END = 2  # I: stop before an event at or past it (risk's daily reset)
SV_TOUCH = 3  # I: 1 = the touch fill model
SV_DONE = 4  # O: events applied
SV_STOP = 5  # O: why it returned (STOP_*)
SV_ACT = 6  # O: the strategy's action on the last event applied (STOP_ACT)
SV_N_KIND = 7  # O: + kind, events applied of each kind (4 slots)
SV_RISK_BAD = 11  # O: rows risk's book rejected
SV_ROUTER_BAD = 12  # O: rows the router's book rejected
SV_TOPS_MOVED = 13  # O: 1 if a book / bbo event of the call moved risk's top (SV_TOPS)
# 14, 15: unused
SV_BBO = 16  # O: the router's (bid px, bid qty, ask px, ask qty) of the last bbo, and SV_BBO + 4 = 1 if any
SV_TRADE_NS = 21  # O: recv_ns of the last trade (if SV_N_KIND + RK_TRADE)
SV_SHARED = 22  # O: the books this call applied book events to once, through the strategy's (SH_*)
# The sequencer's clocks a run may stamp itself (see _clock_ok), and what they need of risk:
SV_INTERVAL = 24  # I: sequencer.clock_interval_ms, ns
SV_MAX_GAP = 25  # I: a gap longer than this is Engine._clocks_until's (it skips idle clocks)
SV_CLOCK_DUE = 26  # I: the first clock time Python must take (a TWAP slice due; I64_MIN = every clock)
SV_N_CLOCKS = 27  # O: clocks stamped
SV_R_POS = 28  # I: risk's position in the symbol, atoms
SV_R_REAL = 29  # I: its net realized PnL, notional units
SV_R_COST = 30  # I: its cost, notional units
SV_R_EQUITY = 31  # I: its equity at the last fill price, notional units
SV_R_MUL = 32  # I: notional units -> money: * MUL // DIV (one of them 1)
SV_R_DIV = 33
SV_R_OTHER = 34  # I: every other symbol's share of total PnL, money
SV_R_KILL_AT = 35  # I: kill_base + max_loss: total below it fires the kill switch (I64 min if set)
SV_R_DAY_BASE = 36  # I
SV_R_PEAK = 37  # I/O day_peak
SV_R_DD_BASE = 38  # I: drawdown_base
SV_R_DD_BPS = 39  # I: max_drawdown_bps; -1 = the breaker is already set
# The strategy's quotes risk's refusals hold back (StrategyCore.reject_backoff): a quote on
# which every side with size is held, with no order live, is the kernel's to apply.
SV_HELD_BID = 40  # I: recv_ns until which a new bid is held back (I64_MIN: not held)
SV_HELD_ASK = 41  # I: the same for the ask
SV_NONE_LIVE = 42  # I: 1 = the strategy has no live order on the symbol
SV_N_HELD = 43  # O: sides held back (the strategy's held_back counter)
SV_SHARE_IN = 44  # I: SV_SHARED of the previous call if it ended STOP_END and no event was sequenced since, else 0
SV_TOPS = 45  # I/O: risk's (bid, ask) top, which its PnL check at a clock marks at (2 slots)
SV_FV = 47  # I/O: the strategy's fair-value sums kept between calls (kernels.FV_LEN slots)
SV_LEN = SV_FV + FV_LEN

STOP_END = 0  # every event given was applied
STOP_OTHER = 1  # before an event the run does not cover
STOP_CLOCK = 2  # before an event a Clock must precede that the run cannot stamp itself
STOP_VENUE = 3  # before an event a venue must handle in Python
STOP_ACT = 4  # after an event on which the strategy acted

# Shared books (SV_SHARED bits): risk's, the router's, venue v's (SH_VENUE << v). Every core's
# ladder gets the same rows, so books that are the same bytes stay the same: some events into
# a call (_share_at) the run compares each with the strategy's (book_same), applies later
# book events to the strategy's alone, and at its end copies that one over the shared ones
# (book_copy). Per book, the compare and the copy together cost about 2 ns per level and
# per block word of [low, best] ("units": measured on the capture's book, 4,570 of them, 3.7
# + 6.2 us), and a saved apply about 15 ns. So the run waits units / 8 events, whose applies
# cost about what the compare and the copy would, before it pays for them, as in a ski
# rental: whether the call then ends at once or runs long, it costs at most about twice
# what the better choice in hindsight would have.
# A call that follows one that ran to the end of its events, with nothing run between
# (the next batch), is given that call's bits (SV_SHARE_IN): its books were copied then
# and nothing has touched them since, so it shares from its first event, uncompared.
SH_RISK = 1
SH_ROUTER = 2
SH_VENUE = 4
SH_VENUES = 60  # venues past these keep their own books (their bits would leave the int64)
SHARE_UNITS_PER_EVENT = 8  # levels + block words of compare and copy a saved apply pays for
SHARE_AFTER = 16  # the least wait: a call's first events are often the only ones

# vcfg columns
VC_ADD = 0  # price shift, pipettes
VC_PCT = 1  # size, percent
VC_STEP = 2  # lot, atoms
VC_SAME = 3  # 1 = the venue sees the feed's market unchanged
VC_DUE = 4  # I: time of the first order / cancel due in flight (I64 max if none)
VC_NREST = 5  # I: resting orders in rest[v]
VC_MARKET = 6  # O: market events applied
VC_BAD = 7  # O: rows its book rejected
VC_COLS = 8

BIG = 1 << 62  # a product whose factors pass the BIG // x test stays inside int64
# Risk's PnL inputs (fastpath.py refuses larger ones): with |x| <= 2**60 each, every sum
# and difference _total_pnl and _clock_ok form stays inside int64.
PNL_LIM = 1 << 60
BPS = 10_000
I64_MIN = -(1 << 63)

# rest columns
RS_SIDE = 0  # SIDE_BID / SIDE_ASK
RS_PX = 1
RS_QA = 2  # I/O queue ahead
RS_COLS = 3


@kernel
def qty_at(book, side, px):
    """The quantity at price px on one side of a ladder, 0 if no level is there."""
    w = book[BK_SLOTS]
    tick = book[BK_TICK]
    d = (px if side == SIDE_BID else -px) - book[BK_KEY0 + side]
    i = d // tick
    if d - i * tick != 0 or i < 0 or i >= w:
        return 0
    return book[BK_Q + side * w + i]


@kernel
def _px_or_0(px):
    """LadderBook.touch()'s convention: 0 for an empty side."""
    return px if px > 0 else 0


@inline_kernel
def _feed_rows(lv, flat, off, nb, na):
    """The event's pairs -> level rows lv[0:nb+na] (side, px, qty), bids first."""
    for j in range(nb + na):
        lv[j, LV_SIDE] = SIDE_BID if j < nb else SIDE_ASK
        lv[j, LV_PX] = flat[off + 2 * j]
        lv[j, LV_QTY] = flat[off + 2 * j + 1]
    return nb + na


@inline_kernel
def _venue_rows(vlv, lv, n, add, pct, step, delta):
    """common.hotpath.venue's transform of level rows: price + add, qty scaled and floored
    to the lot; a row whose price is not > 0 is dropped, and (unless delta) one whose qty
    is 0. Returns the rows written to vlv."""
    m = 0
    for j in range(n):
        px = lv[j, LV_PX] + add
        qty = venue_qty(lv[j, LV_QTY], pct, step)
        if px > 0 and (delta != 0 or qty > 0):
            vlv[m, LV_SIDE] = lv[j, LV_SIDE]
            vlv[m, LV_PX] = px
            vlv[m, LV_QTY] = qty
            m += 1
    return m


@kernel
def _rows_name(lv, n, side, px):
    for j in range(n):
        if lv[j, LV_SIDE] == side and lv[j, LV_PX] == px:
            return 1
    return 0


@kernel
def _trade_reaches(rest, v, nrest, px, buyer_maker):
    """1 if a print at px could fill one of venue v's resting orders (SimExchange._on_trade's rule)."""
    for j in range(nrest):
        if buyer_maker != 0:
            if rest[v, j, RS_SIDE] == SIDE_BID and rest[v, j, RS_PX] >= px:
                return 1
        elif rest[v, j, RS_SIDE] == SIDE_ASK and rest[v, j, RS_PX] <= px:
            return 1
    return 0


@kernel
def _venue_trade(evs, i, vcfg, v):
    """(price, seen) of print i at venue v, as common.venues.venue_market makes it: an
    unchanged venue sees every print as it is; another sees it shifted and scaled, unless its
    price or qty is then not > 0. seen = -1 where the scaling would leave int64 (Python's ints
    do not: the event is Python's)."""
    px = evs[i, RK_A]
    if vcfg[v, VC_SAME] != 0:
        return px, 1
    qty = evs[i, RK_B]
    pct = vcfg[v, VC_PCT]
    if pct > 0 and qty > BIG // pct:
        return px, -1
    px += vcfg[v, VC_ADD]
    step = vcfg[v, VC_STEP]
    qty = venue_qty(qty, pct, step)
    return px, 1 if px > 0 and qty > 0 else 0


@kernel
def _venue_shared(shared, v):
    """1 if venue v's bit is set in an SV_SHARED mask (never past SH_VENUES: a shift by 64 or
    more is undefined in compiled code)."""
    return 1 if v < SH_VENUES and (shared >> v) & SH_VENUE != 0 else 0


@inline_kernel
def _venue_stops(evs, i, flat, t, vcfg, rest, vbooks, touch, book, shared):
    """1 if a venue must handle event i in Python (see the module's docstring). A venue
    sharing the strategy's book (shared) reads that one: its own is stale until the run ends."""
    k = evs[i, RK_KIND]
    for v in range(vcfg.shape[0]):
        if vcfg[v, VC_DUE] <= t:
            return 1
        nrest = vcfg[v, VC_NREST]
        if k == RK_TRADE:
            px, seen = _venue_trade(evs, i, vcfg, v)
            if seen < 0 or (seen > 0 and nrest > 0 and _trade_reaches(rest, v, nrest, px, evs[i, RK_C]) != 0):
                return 1
        if nrest == 0:
            continue
        elif touch != 0 and k == RK_SNAPSHOT:
            return 1
        elif touch != 0 and k == RK_DELTA:
            vb = book if _venue_shared(shared, v) != 0 else vbooks[v]
            if _may_touch(evs, i, flat, vcfg, v, rest, vb) != 0:
                return 1
    return 0


@kernel
def _may_touch(evs, i, flat, vcfg, v, rest, book):
    """Touch model: 1 unless delta i certainly leaves every resting order of venue v untouched.

    Once the touch model has filled what a book event touched, no resting order is touched
    (checked here too, on the book as it is). A delta can then lower the best ask to a buy's
    price only by setting an ask level at or below it (removing or shrinking levels only
    raises it), and likewise for the best bid and a sell."""
    bb = best_px(book, SIDE_BID)
    ba = best_px(book, SIDE_ASK)
    off = evs[i, RK_OFF]
    nb = evs[i, RK_NB]
    n = nb + evs[i, RK_NA]
    same = vcfg[v, VC_SAME]
    for j in range(vcfg[v, VC_NREST]):
        px = rest[v, j, RS_PX]
        buy = rest[v, j, RS_SIDE] == SIDE_BID
        if (buy and ba > 0 and ba <= px) or (not buy and bb > 0 and bb >= px):
            return 1
        lo, hi = (nb, n) if buy else (0, nb)  # the opposite side's rows
        for r in range(lo, hi):
            lpx = flat[off + 2 * r]
            lqty = flat[off + 2 * r + 1]
            if same == 0:
                lpx += vcfg[v, VC_ADD]
                lqty = venue_qty(lqty, vcfg[v, VC_PCT], vcfg[v, VC_STEP])
            if lqty > 0 and lpx > 0 and ((buy and lpx <= px) or (not buy and lpx >= px)):
                return 1
    return 0


@inline_kernel
def _venue_book(book, lv, vlv, n, vcfg, v, rest, snapshot, touch, bad):
    """Venue v's side of a book event: its transform, its ladder, and under the queue model
    the queue ahead of its resting orders (a delta moves only the levels it names; a
    snapshot may move any; the touch model keeps no queue). bad >= 0: the venue shares the
    strategy's book (`book`), which has the rows applied already, bad of them rejected."""
    rows = lv
    m = n
    if vcfg[v, VC_SAME] == 0:
        m = _venue_rows(vlv, lv, n, vcfg[v, VC_ADD], vcfg[v, VC_PCT], vcfg[v, VC_STEP], 1 - snapshot)
        rows = vlv
    vcfg[v, VC_MARKET] += 1
    vcfg[v, VC_BAD] += bad if bad >= 0 else book_apply_rows(book, rows, 0, m, snapshot)
    if touch != 0:
        return
    for j in range(vcfg[v, VC_NREST]):
        side = rest[v, j, RS_SIDE]
        px = rest[v, j, RS_PX]
        if snapshot == 0 and _rows_name(rows, m, side, px) == 0:
            continue
        level = qty_at(book, side, px)
        if level < rest[v, j, RS_QA]:
            rest[v, j, RS_QA] = level


@kernel
def _total_pnl(sv):
    """RiskCore.total_pnl at the tops in sv, or I64_MIN where an int64 could overflow (Python's)."""
    pos = sv[SV_R_POS]
    bid = sv[SV_TOPS]
    ask = sv[SV_TOPS + 1]
    native = sv[SV_R_EQUITY]
    if pos != 0 and bid > 0 and ask > 0:
        if bid >= BIG or ask >= BIG or (pos if pos > 0 else -pos) > BIG // (bid + ask):
            return I64_MIN
        native = sv[SV_R_REAL] + (pos * (bid + ask) - 2 * sv[SV_R_COST]) // 2
    mul = sv[SV_R_MUL]
    if (native if native > 0 else -native) > BIG // mul:
        return I64_MIN
    return native * mul // sv[SV_R_DIV] + sv[SV_R_OTHER]


@kernel
def _clock_ok(sv, vcfg, c):
    """1 if the Clock at time c makes no output, and then applies it: risk's PnL check (its
    dead man's switch watches nothing in a backtest) moves only day_peak; no TWAP slice and
    no venue arrival is due. Else 0 and nothing is applied (Engine._clocks_until's to do)."""
    if c >= sv[SV_DAY_END] or c >= sv[SV_CLOCK_DUE]:
        return 0
    for v in range(vcfg.shape[0]):
        if vcfg[v, VC_DUE] <= c:
            return 0
    total = _total_pnl(sv)
    if total == I64_MIN or total < sv[SV_R_KILL_AT]:
        return 0
    day = total - sv[SV_R_DAY_BASE]
    peak = sv[SV_R_PEAK] if sv[SV_R_PEAK] > day else day
    dd = sv[SV_R_DD_BPS]
    if dd >= 0:
        base = peak if peak > sv[SV_R_DD_BASE] else sv[SV_R_DD_BASE]
        if peak - day > BIG // BPS or (dd > 0 and (base if base > 0 else -base) > BIG // dd):
            return 0
        if (peak - day) * BPS > dd * base:
            return 0
    sv[SV_R_PEAK] = peak
    sv[SV_CLOCK] = c
    sv[SV_N_CLOCKS] += 1
    sv[SV_NEXT_CLOCK] = c + sv[SV_INTERVAL]
    return 1


@kernel
def _held_quote(state, sv, t):
    """StrategyCore._act of a quote when no order is live and every side with size is held
    back: nothing is sent, each such side's quote is marked not live (so the kernel quotes
    again), and counted. Returns ACT_NONE then, else ACT_QUOTE (Python makes the orders)."""
    bq = state[S_Q_BID_QTY]
    aq = state[S_Q_ASK_QTY]
    if (bq > 0 and t >= sv[SV_HELD_BID]) or (aq > 0 and t >= sv[SV_HELD_ASK]):
        return ACT_QUOTE
    if bq > 0:
        state[S_LIVE_BID] = 0
        sv[SV_N_HELD] += 1
    if aq > 0:
        state[S_LIVE_ASK] = 0
        sv[SV_N_HELD] += 1
    if state[S_LIVE_BID] == 0 and state[S_LIVE_ASK] == 0:
        state[S_HAVE_QUOTE] = 0
    return ACT_NONE


# ==========================================================================
# A chunk of (event_ns, body) items, msgpack-encoded as the wire encodes them
# (common.events: each body a positional array, its tag first), -> evs / flat
# ==========================================================================

# common.events' tags of the four market bodies and their fields after the tag (the
# backtest's fastpath checks both against the events module when it is imported)
TAG_SNAPSHOT = 1
TAG_DELTA = 2
TAG_TRADE = 3
TAG_BBO = 4
FIELDS = ((TAG_SNAPSHOT, 4), (TAG_DELTA, 5), (TAG_TRADE, 5), (TAG_BBO, 6))


@kernel
def _be(buf, p, n):
    """The n-byte (n = 1, 2, 4 or 8) big-endian unsigned integer at p, as int64 (wraps for
    n = 8). Each width is written out as one OR of shifted bytes, which LLVM folds into a
    load and a byte swap; a loop over the bytes was a chain of n shifts (every event's time
    is 8 bytes, its ids 4 or 8)."""
    if n == 1:
        return np.int64(buf[p])
    if n == 2:
        return (np.int64(buf[p]) << 8) | np.int64(buf[p + 1])
    if n == 4:
        return (
            (np.int64(buf[p]) << 24) | (np.int64(buf[p + 1]) << 16) | (np.int64(buf[p + 2]) << 8) | np.int64(buf[p + 3])
        )
    return (  # n = 8 (its callers give no other width)
        (np.int64(buf[p]) << 56)
        | (np.int64(buf[p + 1]) << 48)
        | (np.int64(buf[p + 2]) << 40)
        | (np.int64(buf[p + 3]) << 32)
        | (np.int64(buf[p + 4]) << 24)
        | (np.int64(buf[p + 5]) << 16)
        | (np.int64(buf[p + 6]) << 8)
        | np.int64(buf[p + 7])
    )


@kernel
def _mp_int(buf, p):
    """(value, next p, ok) of the msgpack integer at p; ok = 0 if p holds no integer or one
    beyond int64."""
    b = np.int64(buf[p])
    if b <= 0x7F:
        return b, p + 1, 1
    if b >= 0xE0:
        return b - 256, p + 1, 1
    if 0xCC <= b <= 0xCF:  # uint 8 / 16 / 32 / 64
        n = 1 << (b - 0xCC)
        v = _be(buf, p + 1, n)
        return v, p + 1 + n, 0 if n == 8 and v < 0 else 1
    if 0xD0 <= b <= 0xD3:  # int 8 / 16 / 32 / 64
        n = 1 << (b - 0xD0)
        v = _be(buf, p + 1, n)
        if n < 8 and v >= np.int64(1) << (8 * n - 1):
            v -= np.int64(1) << (8 * n)
        return v, p + 1 + n, 1
    return 0, p, 0


@kernel
def _mp_len(buf, p):
    """(length, payload start) of the str / bin / array / map header at p; (-1, p) if p holds
    another kind of value."""
    b = np.int64(buf[p])
    if 0x80 <= b <= 0x8F or 0x90 <= b <= 0x9F:  # fixmap / fixarray
        return b & 0x0F, p + 1
    if 0xA0 <= b <= 0xBF:  # fixstr
        return b & 0x1F, p + 1
    if b == 0xC4 or b == 0xD9:  # bin 8, str 8
        return _be(buf, p + 1, 1), p + 2
    if b == 0xC5 or b == 0xDA or b == 0xDC or b == 0xDE:  # bin / str / array / map 16
        return _be(buf, p + 1, 2), p + 3
    if b == 0xC6 or b == 0xDB or b == 0xDD or b == 0xDF:  # bin / str / array / map 32
        return _be(buf, p + 1, 4), p + 5
    return -1, p


@kernel
def _mp_skip(buf, p):
    """The position after the msgpack value at p (any kind, nested ones included)."""
    left = 1
    while left > 0:
        left -= 1
        b = np.int64(buf[p])
        if 0xCC <= b <= 0xD3:  # ints first: what the scan skips is mostly ids
            p += 1 + (1 << ((b - 0xCC) & 3))
        elif b <= 0x7F or b >= 0xE0 or b == 0xC0 or b == 0xC1 or b == 0xC2 or b == 0xC3:
            p += 1
        elif 0x80 <= b <= 0x8F or b == 0xDE or b == 0xDF:  # maps: 2 values an entry
            n, p = _mp_len(buf, p)
            left += 2 * n
        elif 0x90 <= b <= 0x9F or b == 0xDC or b == 0xDD:  # arrays
            n, p = _mp_len(buf, p)
            left += n
        elif 0xA0 <= b <= 0xBF or 0xC4 <= b <= 0xC6 or 0xD9 <= b <= 0xDB:  # str / bin
            n, p = _mp_len(buf, p)
            p += n
        elif 0xC7 <= b <= 0xC9:  # ext 8 / 16 / 32: length, type byte, data
            n = 1 << (b - 0xC7)
            p += 2 + n + _be(buf, p + 1, n)
        elif b == 0xCA:  # float 32
            p += 5
        elif b == 0xCB:  # float 64
            p += 9
        else:  # 0xD4..0xD8: fixext 1 / 2 / 4 / 8 / 16
            p += 2 + (1 << (b - 0xD4))
    return p


@kernel
def _mp_pos(buf, p):
    """(value, next p) of the msgpack integer at p if it is in [0, BIG]; value -1 otherwise."""
    v, q, ok = _mp_int(buf, p)
    if ok == 0 or v < 0 or v > BIG:
        return -1, q
    return v, q


@kernel
def _mp_pairs(buf, p, flat, f):
    """The bin at p (packed (price, qty) int64 pairs): (pairs, next p, next f), its pairs
    copied to flat[f:]; pairs -1 if p holds no bin or a torn one."""
    b = np.int64(buf[p])
    if b < 0xC4 or b > 0xC6:
        return -1, p, f
    n, q = _mp_len(buf, p)
    if n % 16 != 0:
        return -1, q + n, f
    for k in range(n >> 3):
        flat[f + k] = _le_i64(buf, q + 8 * k)
    return n >> 4, q + n, f + (n >> 3)


@kernel
def scan_items(buf, sym, evs, flat):
    """A msgpack array of (event_ns, body) items -> one evs row per item (as market_run reads
    them; RK_OTHER for an event Engine._one must take: another symbol or body type, a torn
    level pair, a time, price or qty outside [0, BIG], a trade whose buyer_maker is not a
    bool), each book event's pairs copied into
    flat. `sym` is the run's symbol as UTF-8 (empty: every event is RK_OTHER). flat holds at
    least len(buf) // 8 values. Returns the most rows one book event has.

    The items are encoded by msgspec (C) and scanned here: the per-item Python of reading
    each body's fields cost about as much as the run itself. A market body is read once,
    field by field; only other items are walked by _mp_skip."""
    n, p = _mp_len(buf, 0)
    ns_sym = len(sym)
    f = 0
    most = 0
    for i in range(n):
        start = p
        for c in range(RK_COLS):
            evs[i, c] = 0
        evs[i, RK_KIND] = RK_OTHER
        two, q = _mp_len(buf, p)
        if two != 2 or ns_sym == 0:
            p = _mp_skip(buf, start)
            continue
        ts, q = _mp_pos(buf, q)
        nf, q = _mp_len(buf, q)
        if ts < 0 or nf < 1:
            p = _mp_skip(buf, start)
            continue
        tag, q, ok = _mp_int(buf, q)
        h = np.int64(buf[q])
        ls, q = _mp_len(buf, q)
        same = ok == 1 and ls == ns_sym and (0xA0 <= h <= 0xBF or 0xD9 <= h <= 0xDB)  # a str
        if same:
            for k in range(ls):
                if buf[q + k] != sym[k]:
                    same = False
                    break
        if not same:
            p = _mp_skip(buf, start)
            continue
        q += ls
        if tag == TAG_TRADE and nf == 6:  # nf counts the tag too (see FIELDS)
            q = _mp_skip(buf, q)  # trade_id
            px, q = _mp_pos(buf, q)
            qty, q = _mp_pos(buf, q)
            bm = np.int64(buf[q])
            if px >= 0 and qty >= 0 and (bm == 0xC2 or bm == 0xC3):
                evs[i, RK_A] = px
                evs[i, RK_B] = qty
                evs[i, RK_C] = 1 if bm == 0xC3 else 0
                evs[i, RK_TS] = ts
                evs[i, RK_KIND] = RK_TRADE
                q += 1
        elif (tag == TAG_DELTA and nf == 6) or (tag == TAG_SNAPSHOT and nf == 5):
            q = _mp_skip(buf, q)  # update_id / first_id
            if tag == TAG_DELTA:
                q = _mp_skip(buf, q)  # last_id
            nb, q, f1 = _mp_pairs(buf, q, flat, f)
            if nb >= 0:
                na, q, f2 = _mp_pairs(buf, q, flat, f1)
                if na >= 0:
                    evs[i, RK_OFF] = f
                    evs[i, RK_NB] = nb
                    evs[i, RK_NA] = na
                    evs[i, RK_TS] = ts
                    evs[i, RK_KIND] = RK_DELTA if tag == TAG_DELTA else RK_SNAPSHOT
                    f = f2
                    if nb + na > most:
                        most = nb + na
        elif tag == TAG_BBO and nf == 7:
            q = _mp_skip(buf, q)  # update_id
            bp, q = _mp_pos(buf, q)
            bq, q = _mp_pos(buf, q)
            ap, q = _mp_pos(buf, q)
            aq, q = _mp_pos(buf, q)
            if bp >= 0 and bq >= 0 and ap >= 0 and aq >= 0:
                evs[i, RK_A] = bp
                evs[i, RK_B] = bq
                evs[i, RK_C] = ap
                evs[i, RK_D] = aq
                evs[i, RK_TS] = ts
                evs[i, RK_KIND] = RK_BBO
        # a market body read to its last field ends the item; anything else is skipped whole
        p = q if evs[i, RK_KIND] != RK_OTHER else _mp_skip(buf, start)
    return most


@kernel
def _share_at(book):
    """How many events into a call the books are compared (see SHARE_UNITS_PER_EVENT)."""
    units = book[BK_N] + book[BK_N + 1]
    for side in range(2):
        if book[BK_BEST + side] >= 0:
            units += ((book[BK_BEST + side] - book[BK_LOW + side]) >> 6) + 1
    return SHARE_AFTER + units // SHARE_UNITS_PER_EVENT


@kernel
def _share(book, rbook, obook, vbooks, vcfg):
    """SV_SHARED's bits: the books that are the same bytes as the strategy's."""
    m = 0
    if book_same(book, rbook) != 0:
        m |= SH_RISK
    if book_same(book, obook) != 0:
        m |= SH_ROUTER
    for v in range(min(vcfg.shape[0], SH_VENUES)):
        if vcfg[v, VC_SAME] != 0 and book_same(book, vbooks[v]) != 0:
            m |= SH_VENUE << v
    return m


@kernel
def market_run(evs, flat, start, end, sv, state, book, params, lv, vlv, rbook, obook, vbooks, vcfg, rest):
    """Apply evs[start:end] until a stop (see the module's docstring); returns the index of
    the first event not applied (sv[SV_STOP] says why, sv[SV_ACT] the strategy's action).
    Books shared during the run (SV_SHARED) are copies of the strategy's again when it returns."""
    i = _run(evs, flat, start, end, sv, state, book, params, lv, vlv, rbook, obook, vbooks, vcfg, rest)
    shared = sv[SV_SHARED]
    if shared != 0:
        if shared & SH_RISK != 0:
            book_copy(rbook, book)
        if shared & SH_ROUTER != 0:
            book_copy(obook, book)
        for v in range(vcfg.shape[0]):
            if _venue_shared(shared, v) != 0:
                book_copy(vbooks[v], book)
    return i


@kernel
def _apply_unshared(book, lv, n, snapshot):
    """book_apply_rows on risk's or the router's book while it is not the strategy's (a
    run's first events, until _share finds them equal): a call, not inlined, since it is
    rare, and each inlined copy of the book update made _run's cold compile longer."""
    return book_apply_rows(book, lv, 0, n, snapshot)


@kernel
def _run(evs, flat, start, end, sv, state, book, params, lv, vlv, rbook, obook, vbooks, vcfg, rest):
    for c in range(SV_DONE, SV_INTERVAL):  # the outputs count from 0 each call
        sv[c] = 0
    sv[SV_N_CLOCKS] = 0
    sv[SV_N_HELD] = 0
    touch = sv[SV_TOUCH]
    shared = sv[SV_SHARE_IN]
    sv[SV_SHARED] = shared
    share_at = _share_at(book) if shared == 0 else -1
    i = start
    while i < end:
        k = evs[i, RK_KIND]
        if k == RK_OTHER:
            sv[SV_STOP] = STOP_OTHER
            return i
        ts = evs[i, RK_TS]
        t = ts if ts > sv[SV_CLOCK] else sv[SV_CLOCK]
        while t >= sv[SV_NEXT_CLOCK]:
            c = sv[SV_NEXT_CLOCK]
            if t - c > sv[SV_MAX_GAP] or _clock_ok(sv, vcfg, c) == 0:
                sv[SV_STOP] = STOP_CLOCK
                return i
        if t >= sv[SV_DAY_END]:
            sv[SV_STOP] = STOP_CLOCK
            return i
        if _venue_stops(evs, i, flat, t, vcfg, rest, vbooks, touch, book, shared) != 0:
            sv[SV_STOP] = STOP_VENUE
            return i
        if sv[SV_DONE] == share_at:
            shared = _share(book, rbook, obook, vbooks, vcfg)
            sv[SV_SHARED] = shared
        sv[SV_CLOCK] = t
        act = ACT_NONE
        if k == RK_DELTA or k == RK_SNAPSHOT:
            snap = 1 if k == RK_SNAPSHOT else 0
            n = _feed_rows(lv, flat, evs[i, RK_OFF], evs[i, RK_NB], evs[i, RK_NA])
            bad = state[S_BAD_ROWS]
            act = on_book_kept(state, book, params, sv, SV_FV, lv, 0, n, ts, snap)
            bad = state[S_BAD_ROWS] - bad
            rb = rbook
            if shared & SH_RISK != 0:
                sv[SV_RISK_BAD] += bad
                rb = book
            else:
                sv[SV_RISK_BAD] += _apply_unshared(rbook, lv, n, snap)
            sv[SV_TOPS] = _px_or_0(best_px(rb, SIDE_BID))
            sv[SV_TOPS + 1] = _px_or_0(best_px(rb, SIDE_ASK))
            sv[SV_TOPS_MOVED] = 1
            sv[SV_ROUTER_BAD] += bad if shared & SH_ROUTER != 0 else _apply_unshared(obook, lv, n, snap)
            for v in range(vcfg.shape[0]):
                # One call site: _venue_book is inlined, and two would compile it twice.
                sh = _venue_shared(shared, v) != 0
                _venue_book(book if sh else vbooks[v], lv, vlv, n, vcfg, v, rest, snap, touch, bad if sh else -1)
        elif k == RK_TRADE:
            act = on_trade(state, book, params, evs[i, RK_A], evs[i, RK_B], evs[i, RK_C], ts)
            sv[SV_TRADE_NS] = t
            for v in range(vcfg.shape[0]):
                px, seen = _venue_trade(evs, i, vcfg, v)
                if seen > 0:
                    vcfg[v, VC_MARKET] += 1
        else:  # RK_BBO: only risk's top and the router's best bid/offer move
            sv[SV_TOPS] = evs[i, RK_A] if evs[i, RK_B] != 0 else 0
            sv[SV_TOPS + 1] = evs[i, RK_C] if evs[i, RK_D] != 0 else 0
            sv[SV_TOPS_MOVED] = 1
            sv[SV_BBO] = evs[i, RK_A]
            sv[SV_BBO + 1] = evs[i, RK_B]
            sv[SV_BBO + 2] = evs[i, RK_C]
            sv[SV_BBO + 3] = evs[i, RK_D]
            sv[SV_BBO + 4] = 1
        if act == ACT_QUOTE and sv[SV_NONE_LIVE] != 0:
            act = _held_quote(state, sv, t)
        sv[SV_N_KIND + k] += 1
        sv[SV_DONE] += 1
        i += 1
        if act != ACT_NONE:
            sv[SV_ACT] = act
            sv[SV_STOP] = STOP_ACT
            return i
    sv[SV_STOP] = STOP_END
    return i
