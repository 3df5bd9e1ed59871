"""The synthetic market's generator, compiled: `services.feed.synthetic` drives it.

The feed's synthetic market was plain Python and cost about 6 us an event;
`--synthetic 1000000` spent most of its wall time generating its input. The
same model runs here in numba over int64 arrays, draw for draw: the random
stream is the uint32 blocks the wrapper draws from numpy's PCG64 (as before,
4,096 at a time), consumed in the same order by the same integer formulas,
so a seed gives the very events it gave before
(tests/unit/feed/test_synthetic_kernel.py holds the kernel to the old Python
generator, kept there as the oracle, item for item and byte for byte).

State (`st`, ST_* below), the book (`bk` keys, `bq` quantities, shape
(2, levels + 2): side 0 bids, 1 asks; a bid's key is -price and an ask's
its price, so each side is sorted ascending by key, best first) and the
levels the current step changed (`ck`, `cq`, shape (2, 2 * levels + 4),
sorted the same way, a removal held as qty 0) are int64 arrays the wrapper
owns. `synth_run` appends events to `ev` (EV_* columns) and their level
rows to `lv` ((price, qty) pairs: a delta's changed bids best first, then
its asks; a snapshot's whole book) until `max_ev` events, the room left in
`lv`, or the random numbers left would not cover one more step.

Bounds: a step draws at most `need_random(levels)` numbers; a side holds at
most levels + 1 levels within a step and a step changes at most 2 * levels
+ 2 of them. The wrapper refuses a symbol whose queue sizes could leave
int64 (see `services.feed.synthetic`).
"""

from __future__ import annotations

from common.hotpath.kernels import inline_kernel, kernel
from common.hotpath.market_run import (
    BIG,
    RK_A,
    RK_B,
    RK_C,
    RK_D,
    RK_DELTA,
    RK_KIND,
    RK_NA,
    RK_NB,
    RK_OFF,
    RK_SNAPSHOT,
    RK_TRADE,
    RK_TS,
)

# st: the generator's state and its constants
ST_NOW = 0
ST_UID = 1  # last book update id
ST_TID = 2  # last trade id
ST_REGIME = 3
ST_RCHG = 4  # regime changes so far
ST_BLEFT = 5  # informed trades left in the burst
ST_BBUY = 6  # the burst's side: 1 buy
ST_BURSTS = 7
ST_RI = 8  # next random number
ST_RN = 9  # random numbers held
ST_N = 10  # levels held, bids / asks (2)
ST_CN = 12  # levels changed this step, bids / asks (2)
ST_LEVELS = 14
ST_TICK = 15
ST_STEP = 16
ST_QMUL = 17  # a queue's base in atoms: draw * QMUL // QDIV (10**qty_scale / 10**8, reduced)
ST_QDIV = 18
ST_START_PX = 19
ST_UNIT = 20  # trade size unit in atoms (0.0001 BTC)
ST_SIZE_TOTAL = 21  # sum of the trade size weights
ST_STARTED = 22  # the snapshot was made
ST_ERR = 23  # ERR_*: the step that would fail was not made
ST_MADE = 24  # events made, by kind (3: K_SNAPSHOT, K_DELTA, K_TRADE)
ST_LEN = 27

ERR_EMPTY_SIDE = 1  # a trade, move or requote found a side with no level (the Python one raised)
ERR_BOUNDS = 2  # a step needed more levels or random numbers than the bounds above allow

# ev columns
EV_KIND = 0
EV_TS = 1
EV_ID = 2  # update id (snapshot, delta) or trade id
EV_PX = 3
EV_QTY = 4
EV_BM = 5  # buyer_maker
EV_LV = 6  # first row in lv
EV_NB = 7
EV_NA = 8
EV_RCHG = 9  # regime changes after the step
EV_BURSTS = 10
EV_MADE = 11  # events made by kind (3), this one included
EV_COLS = 14
K_SNAPSHOT, K_DELTA, K_TRADE = 0, 1, 2

# regimes' columns (a (3, 5) table): mean ns between events, trade share ppm, move share ppm,
# max jump ticks, max level gap ticks
RG_MEAN, RG_TRADE, RG_MOVE, RG_JUMP, RG_GAP = 0, 1, 2, 3, 4
REGIME_SWITCH_PPM = 600
BURST_START_PPM = 3_000
BURST_MIN, BURST_MAX = 25, 60
BURST_TRADE_SHARE = 700_000
DRIFT_PPM = 800_000  # a burst's move goes its way, and a move's spread is one tick, this often


@kernel
def need_random(levels):
    """Random numbers one step can draw, at most: a handful, plus two per level refilled."""
    return 32 + 4 * levels


@inline_kernel
def _u32(st, rnd):
    """The next random number. Past the end (the bound in need_random broken): 0, and the
    step is refused, rather than a read outside the array."""
    i = st[ST_RI]
    if i >= st[ST_RN]:
        st[ST_ERR] = ERR_BOUNDS
        return 0
    st[ST_RI] = i + 1
    return rnd[i]


@inline_kernel
def _below(st, rnd, n):
    return (_u32(st, rnd) * n) >> 32


@inline_kernel
def _lower(keys, s, n, k):
    lo = 0
    hi = n
    while lo < hi:
        mid = (lo + hi) >> 1
        if keys[s, mid] < k:
            lo = mid + 1
        else:
            hi = mid
    return lo


@inline_kernel
def _put(keys, vals, st, at, s, k, v, drop_zero):
    """Key k of side s's sorted run (its length in st[at + s]) to v; v == 0 removes it if drop_zero."""
    n = st[at + s]
    i = _lower(keys, s, n, k)
    found = i < n and keys[s, i] == k
    if v == 0 and drop_zero:
        if found:
            for j in range(i, n - 1):
                keys[s, j] = keys[s, j + 1]
                vals[s, j] = vals[s, j + 1]
            st[at + s] = n - 1
        return
    if found:
        vals[s, i] = v
        return
    if n >= keys.shape[1]:  # the bounds above broken: refuse the step, never write past the array
        st[ST_ERR] = ERR_BOUNDS
        return
    for j in range(n, i, -1):
        keys[s, j] = keys[s, j - 1]
        vals[s, j] = vals[s, j - 1]
    keys[s, i] = k
    vals[s, i] = v
    st[at + s] = n + 1


@inline_kernel
def _set(st, bk, bq, ck, cq, s, px, qty):
    """A level of side s to qty (0 removes it), remembered as changed this step."""
    k = -px if s == 0 else px
    _put(bk, bq, st, ST_N, s, k, qty, True)
    _put(ck, cq, st, ST_CN, s, k, qty, False)


@inline_kernel
def _px(bk, s, i):
    return -bk[s, i] if s == 0 else bk[s, i]


@inline_kernel
def _queue(st, rnd, depth):
    """A queue: 0.2-0.6 BTC at the touch, a quarter more per level down, on the step grid."""
    base = 20_000_000 + _below(st, rnd, 40_000_000)
    base = base * st[ST_QMUL] // st[ST_QDIV]
    q = base * (4 + depth) // 4
    step = st[ST_STEP]
    q -= q % step
    return max(q, step)


@inline_kernel
def _refill(st, bk, bq, ck, cq, rnd, regimes):
    """Each side back to `levels` levels: the far end trimmed, or extended with fresh queues."""
    levels = st[ST_LEVELS]
    if st[ST_N] == levels and st[ST_N + 1] == levels:
        return
    for s in range(2):
        while st[ST_N + s] > levels:  # (a removal always succeeds)
            _set(st, bk, bq, ck, cq, s, _px(bk, s, st[ST_N + s] - 1), 0)
        n = st[ST_N + s]
        if n == levels:
            continue
        if n > 0:
            far = _px(bk, s, n - 1)
        elif st[ST_N + 1 - s] > 0:
            far = _px(bk, 1 - s, 0)  # the side emptied (levels == 1): next to the other touch
        else:
            far = st[ST_START_PX]
        sign = -1 if s == 0 else 1
        while st[ST_N + s] < levels and st[ST_ERR] == 0:
            far += sign * (1 + _below(st, rnd, regimes[st[ST_REGIME], RG_GAP])) * st[ST_TICK]
            if far <= 0:
                break
            _set(st, bk, bq, ck, cq, s, far, _queue(st, rnd, st[ST_N + s]))


@inline_kernel
def _chance(st, rnd, ppm):
    return _below(st, rnd, 1_000_000) < ppm


@kernel
def _move(st, bk, bq, ck, cq, rnd, max_jump):
    """Shift the touch a random number of ticks; informed bursts drift their way. False: a side was empty."""
    tick = st[ST_TICK]
    jump = (1 + _below(st, rnd, max_jump)) * tick
    up = _below(st, rnd, 2) == 0
    if st[ST_BLEFT] != 0:
        buy = st[ST_BBUY] != 0
        up = buy if _chance(st, rnd, DRIFT_PPM) else not buy
    if _chance(st, rnd, DRIFT_PPM):
        spread = tick
    else:
        spread = tick * (1 + _below(st, rnd, 1 + 4 * (st[ST_REGIME] + 1)))
    if st[ST_N] == 0 or st[ST_N + 1] == 0:
        return False
    best_bid = _px(bk, 0, 0)
    best_ask = _px(bk, 1, 0)
    if up:
        bb = best_bid + jump
        ba = max(best_ask, bb + spread)
        if ba - bb > spread * 8:
            ba = bb + spread
    else:
        ba = best_ask - jump
        bb = min(best_bid, ba - spread)
        if ba - bb > spread * 8:
            bb = ba - spread
    if bb <= 0:
        return True
    while st[ST_N] > 0 and _px(bk, 0, 0) > bb:
        _set(st, bk, bq, ck, cq, 0, _px(bk, 0, 0), 0)
    while st[ST_N + 1] > 0 and _px(bk, 1, 0) < ba:
        _set(st, bk, bq, ck, cq, 1, _px(bk, 1, 0), 0)
    i = _lower(bk, 0, st[ST_N], -bb)
    if not (i < st[ST_N] and bk[0, i] == -bb):
        _set(st, bk, bq, ck, cq, 0, bb, _queue(st, rnd, 0))
    i = _lower(bk, 1, st[ST_N + 1], ba)
    if not (i < st[ST_N + 1] and bk[1, i] == ba):
        _set(st, bk, bq, ck, cq, 1, ba, _queue(st, rnd, 0))
    return True


@inline_kernel
def _requote(st, bk, bq, ck, cq, rnd):
    """A queue changes size (orders join or cancel), near the touch more often. False: the side was empty."""
    s = 0 if _below(st, rnd, 2) == 0 else 1
    n = st[ST_N + s]
    depth = min(_below(st, rnd, n), _below(st, rnd, n))  # skewed to the touch
    if n == 0:
        return False
    change = _queue(st, rnd, depth)
    change = change // (2 + _below(st, rnd, 4))
    step = st[ST_STEP]
    change -= change % step
    qty = bq[s, depth]
    if _below(st, rnd, 2) == 0:
        qty += change
    else:
        qty -= change
        if qty <= 0 and depth == 0:
            qty = step  # never empty the touch by a cancel here
        qty = max(qty, 0)
    _set(st, bk, bq, ck, cq, s, _px(bk, s, depth), qty)
    return True


@inline_kernel
def _made(st, ev, e, kind):
    st[ST_MADE + kind] += 1
    for k in range(3):
        ev[e, EV_MADE + k] = st[ST_MADE + k]


@inline_kernel
def _emit(st, ev, e, kind, ident, lv, nl, bk, bq, nb, na):
    """Event row e (a book event) with the side arrays' first nb bids and na asks as its levels."""
    ev[e, EV_KIND] = kind
    ev[e, EV_TS] = st[ST_NOW]
    ev[e, EV_ID] = ident
    ev[e, EV_PX] = 0
    ev[e, EV_QTY] = 0
    ev[e, EV_BM] = 0
    ev[e, EV_LV] = nl
    ev[e, EV_NB] = nb
    ev[e, EV_NA] = na
    ev[e, EV_RCHG] = st[ST_RCHG]
    ev[e, EV_BURSTS] = st[ST_BURSTS]
    _made(st, ev, e, kind)
    for s in range(2):
        for i in range(nb if s == 0 else na):
            lv[nl, 0] = _px(bk, s, i)
            lv[nl, 1] = bq[s, i]
            nl += 1
    return nl


@inline_kernel
def _trade(st, bk, bq, ck, cq, rnd, sizes, ev, e):
    """A trade at the touch into row e (its book change follows it). False: the side was empty."""
    if st[ST_BLEFT] == 0 and _chance(st, rnd, BURST_START_PPM):
        st[ST_BLEFT] = BURST_MIN + _below(st, rnd, BURST_MAX - BURST_MIN + 1)
        st[ST_BBUY] = 1 if _below(st, rnd, 2) == 0 else 0
        st[ST_BURSTS] += 1
    if st[ST_BLEFT] != 0:
        st[ST_BLEFT] -= 1
        buy = st[ST_BBUY] != 0
    else:
        buy = _below(st, rnd, 2) == 0
    pick = _below(st, rnd, st[ST_SIZE_TOTAL])
    units = sizes[sizes.shape[0] - 1, 0]
    for i in range(sizes.shape[0]):
        if pick < sizes[i, 1]:
            units = sizes[i, 0]
            break
        pick -= sizes[i, 1]
    if st[ST_BLEFT] != 0:
        units *= 4  # informed flow trades bigger and walks the book
    s = 1 if buy else 0
    if st[ST_N + s] == 0:
        return False
    px = _px(bk, s, 0)
    have = bq[s, 0]
    step = st[ST_STEP]
    qty = min(units * st[ST_UNIT], have)
    qty -= qty % step
    qty = max(qty, min(step, have))
    st[ST_TID] += 1
    ev[e, EV_KIND] = K_TRADE
    ev[e, EV_TS] = st[ST_NOW]
    ev[e, EV_ID] = st[ST_TID]
    ev[e, EV_PX] = px
    ev[e, EV_QTY] = qty
    ev[e, EV_BM] = 0 if buy else 1  # buyer_maker: the aggressor sold
    ev[e, EV_LV] = 0
    ev[e, EV_NB] = 0
    ev[e, EV_NA] = 0
    _set(st, bk, bq, ck, cq, s, px, have - qty)
    return True


@inline_kernel
def _step(st, bk, bq, ck, cq, rnd, expq, regimes, sizes, ev, e):
    """One market event's state change; returns events written at row e (0-2), or -1 on an empty side."""
    if _below(st, rnd, 1_000_000) < REGIME_SWITCH_PPM:
        st[ST_REGIME] = (st[ST_REGIME] + 1 + _below(st, rnd, 2)) % 3
        st[ST_RCHG] += 1
    r = st[ST_REGIME]
    trade_ppm = regimes[r, RG_TRADE] if st[ST_BLEFT] == 0 else BURST_TRADE_SHARE
    st[ST_NOW] += max(1, regimes[r, RG_MEAN] * expq[_u32(st, rnd) >> 20] // 1_000_000)
    st[ST_CN] = 0
    st[ST_CN + 1] = 0
    if _below(st, rnd, 1_000_000) < trade_ppm:
        if not _trade(st, bk, bq, ck, cq, rnd, sizes, ev, e):
            return -1
        made = 1
    else:
        made = 0
        if _below(st, rnd, 1_000_000) < regimes[r, RG_MOVE]:
            ok = _move(st, bk, bq, ck, cq, rnd, regimes[r, RG_JUMP])
        else:
            ok = _requote(st, bk, bq, ck, cq, rnd)
        if not ok:
            return -1
    _refill(st, bk, bq, ck, cq, rnd, regimes)
    return made


@kernel
def synth_run(st, bk, bq, ck, cq, rnd, expq, regimes, sizes, ev, lv, max_ev):
    """Generate events into ev / lv from row 0; returns (events, level rows, steps): none,
    with ST_ERR 0, when fewer than need_random() random numbers are left; ERR_BOUNDS when
    ev or lv has no room for one step."""
    ne = 0
    nl = 0
    steps = 0
    need = need_random(st[ST_LEVELS])
    room = 2 * ck.shape[1]  # level rows one step can write
    if st[ST_ERR] != 0:
        return 0, 0, 0  # nothing after a refused step
    if st[ST_RN] - st[ST_RI] < need:
        return 0, 0, 0  # the caller draws more
    if max_ev > ev.shape[0]:
        max_ev = ev.shape[0]
    if max_ev < 2 or lv.shape[0] < max(room, 2 * bk.shape[1]):
        st[ST_ERR] = ERR_BOUNDS  # no room for one step: said, rather than returning nothing forever
        return 0, 0, 0
    if st[ST_STARTED] == 0:
        st[ST_CN] = 0
        st[ST_CN + 1] = 0
        _set(st, bk, bq, ck, cq, 0, st[ST_START_PX] - st[ST_TICK], _queue(st, rnd, 0))
        _set(st, bk, bq, ck, cq, 1, st[ST_START_PX], _queue(st, rnd, 0))
        _refill(st, bk, bq, ck, cq, rnd, regimes)
        if st[ST_ERR] != 0:
            return 0, 0, 0
        nl = _emit(st, ev, 0, K_SNAPSHOT, st[ST_UID], lv, 0, bk, bq, st[ST_N], st[ST_N + 1])
        st[ST_STARTED] = 1
        ne = 1
    while ne + 2 <= max_ev and nl + room <= lv.shape[0] and st[ST_RN] - st[ST_RI] >= need:
        made = _step(st, bk, bq, ck, cq, rnd, expq, regimes, sizes, ev, ne)
        if st[ST_ERR] != 0:
            break  # the step's events are not given: its state is not one the model can be in
        if made < 0:
            st[ST_ERR] = ERR_EMPTY_SIDE
            break
        steps += 1
        if made == 1:  # the trade's row: its rest, now the step's book is final
            ev[ne, EV_RCHG] = st[ST_RCHG]
            ev[ne, EV_BURSTS] = st[ST_BURSTS]
            _made(st, ev, ne, K_TRADE)
            ne += 1
        if st[ST_CN] + st[ST_CN + 1] > 0:
            st[ST_UID] += 1
            nl = _emit(st, ev, ne, K_DELTA, st[ST_UID], lv, nl, ck, cq, st[ST_CN], st[ST_CN + 1])
            ne += 1
    return ne, nl, steps


# --------------------------------------------------------------------------
# msgpack, as msgspec encodes a list of (event_ns, body) items
# --------------------------------------------------------------------------
# A body is a tagged array: [tag, symbol, fields...] (common.events; services/feed/synthetic.py
# checks the three bodies' fields at import, and test_synthetic_kernel.py the bytes against
# msgspec's). Ints take msgpack's smallest form, as msgspec writes them.


def msgpack_bound(events: int, level_rows: int, symbol_len: int) -> int:
    """Bytes synth_msgpack can write for that many events and level rows, at most."""
    return 5 + events * (64 + symbol_len) + 16 * level_rows


@kernel
def _w_be(out, p, v, n):
    for k in range(n):
        out[p + k] = (v >> (8 * (n - 1 - k))) & 0xFF
    return p + n


@kernel
def _w_int(out, p, v):
    if v >= 0:
        if v < 0x80:
            out[p] = v
            return p + 1
        if v < 0x100:
            out[p] = 0xCC
            return _w_be(out, p + 1, v, 1)
        if v < 0x10000:
            out[p] = 0xCD
            return _w_be(out, p + 1, v, 2)
        if v < 0x100000000:
            out[p] = 0xCE
            return _w_be(out, p + 1, v, 4)
        out[p] = 0xCF
        return _w_be(out, p + 1, v, 8)
    if v >= -32:
        out[p] = v & 0xFF
        return p + 1
    if v >= -0x80:
        out[p] = 0xD0
        return _w_be(out, p + 1, v, 1)
    if v >= -0x8000:
        out[p] = 0xD1
        return _w_be(out, p + 1, v, 2)
    if v >= -0x80000000:
        out[p] = 0xD2
        return _w_be(out, p + 1, v, 4)
    out[p] = 0xD3
    return _w_be(out, p + 1, v, 8)


@kernel
def _w_len(out, p, n, fix, fix_max, c8, c16, c32):
    """A length header: fix|n below fix_max, else the 8 (if any), 16 or 32-bit form."""
    if n < fix_max:
        out[p] = fix | n
        return p + 1
    if c8 != 0 and n < 0x100:
        out[p] = c8
        return _w_be(out, p + 1, n, 1)
    if n < 0x10000:
        out[p] = c16
        return _w_be(out, p + 1, n, 2)
    out[p] = c32
    return _w_be(out, p + 1, n, 4)


@kernel
def _w_levels(out, p, lv, a, n):
    """Level rows lv[a:a+n] as one bin: little-endian int64 price, qty pairs (events.pack_pairs)."""
    p = _w_len(out, p, 16 * n, 0, 0, 0xC4, 0xC5, 0xC6)
    for r in range(a, a + n):
        for c in range(2):
            v = lv[r, c]
            for k in range(8):
                out[p + k] = (v >> (8 * k)) & 0xFF
            p += 8
    return p


@kernel
def synth_msgpack(ev, lv, n, sym, tags, out):
    """Events ev[:n] as the msgpack of a list of (event_ns, body) items; returns the bytes
    written to out (msgpack_bound of room; -1 if out is smaller). sym: the symbol's UTF-8 bytes; tags: the bodies'
    tags by kind (K_SNAPSHOT, K_DELTA, K_TRADE)."""
    p = _w_len(out, 0, n, 0x90, 16, 0, 0xDC, 0xDD)
    for e in range(n):
        kind = ev[e, EV_KIND]
        if p + 64 + sym.shape[0] + 16 * (ev[e, EV_NB] + ev[e, EV_NA]) > out.shape[0]:
            return -1  # beyond msgpack_bound: never written past out
        out[p] = 0x92
        p = _w_int(out, p + 1, ev[e, EV_TS])
        out[p] = 0x96 if kind != K_SNAPSHOT else 0x95
        p = _w_int(out, p + 1, tags[kind])
        p = _w_len(out, p, sym.shape[0], 0xA0, 32, 0xD9, 0xDA, 0xDB)
        for k in range(sym.shape[0]):
            out[p + k] = sym[k]
        p = _w_int(out, p + sym.shape[0], ev[e, EV_ID])
        if kind == K_TRADE:
            p = _w_int(out, p, ev[e, EV_PX])
            p = _w_int(out, p, ev[e, EV_QTY])
            out[p] = 0xC3 if ev[e, EV_BM] != 0 else 0xC2
            p += 1
            continue
        if kind == K_DELTA:
            p = _w_int(out, p, ev[e, EV_ID])  # last_id: one update a delta
        at = ev[e, EV_LV]
        nb = ev[e, EV_NB]
        p = _w_levels(out, p, lv, at, nb)
        p = _w_levels(out, p, lv, at + nb, ev[e, EV_NA])
    return p


@kernel
def synth_rows(ev, lv, n, rows, flat):
    """Events ev[:n] as the backtest market run's rows (common.hotpath.rowbatch): row e for
    event e, a book event's level pairs copied to flat (2 * its level rows of room). What
    scan_items makes of synth_msgpack's bytes, but for RK_OFF's values and RK_D, which holds
    the event's id here. Returns the most level rows one book event has, or -1 if an event's
    time, price or qty is outside [0, BIG] (the scan would leave it to Python, and the rows
    have no kind for that; the generator's bounds make none)."""
    f = 0
    most = 0
    for e in range(n):
        kind = ev[e, EV_KIND]
        ts = ev[e, EV_TS]
        if ts < 0 or ts > BIG:
            return -1
        rows[e, RK_TS] = ts
        rows[e, RK_D] = ev[e, EV_ID]
        if kind == K_TRADE:
            px = ev[e, EV_PX]
            qty = ev[e, EV_QTY]
            if px < 0 or px > BIG or qty < 0 or qty > BIG:
                return -1
            rows[e, RK_KIND] = RK_TRADE
            rows[e, RK_A] = px
            rows[e, RK_B] = qty
            rows[e, RK_C] = 1 if ev[e, EV_BM] != 0 else 0
            continue
        rows[e, RK_KIND] = RK_DELTA if kind == K_DELTA else RK_SNAPSHOT
        nb = ev[e, EV_NB]
        na = ev[e, EV_NA]
        rows[e, RK_OFF] = f
        rows[e, RK_NB] = nb
        rows[e, RK_NA] = na
        at = ev[e, EV_LV]
        for r in range(at, at + nb + na):
            flat[f] = lv[r, 0]
            flat[f + 1] = lv[r, 1]
            f += 2
        if nb + na > most:
            most = nb + na
    return most
