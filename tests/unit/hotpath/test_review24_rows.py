"""Review of 9316495 (book rows split in two): book_apply_rows as _fast_rows (the snapshot
placement and the delta fast loop, tick passed in) + _general_rows; book_apply_rows_tick1
(the strategy's _on_book) passing a literal 1 when the book's tick is 1, the book's tick
otherwise; _side_run / _place_run's window test as np.uint64(np.int64(i)); the market run's
risk and router books, while not shared, updated through the non-inlined _apply_unshared.

Checked:
* book_apply_rows_tick1 == book_apply_rows (books and rows rejected) on random deltas and
  snapshots at ticks 1, 2, 5, 100 (a book whose tick is not 1 must take the general tick:
  off-grid rows rejected, slots divided by the tick), rows below / inside / above the
  window, qty 0, rejected rows; each compiled, each .py_func, and the pure twin of each
  (numpy warnings as errors);
* tick invariance of the tick1 variant: a tick-1 book against book_apply_rows on a tick-k
  book given the prices times k;
* the entry points that use the tick1 variant (on_book_delta / on_book_snapshot /
  on_book_packed) give the book of book_apply_rows and the state and action of
  on_book_kept (which uses book_apply_rows);
* _fast_rows / _general_rows, _side_run / _place_run (rows outside the window): compiled
  == .py_func;
* _apply_unshared == book_apply_rows (compiled, .py_func, pure twin);
* market_run with sharing blocked: risk's and the router's books, updated through
  _apply_unshared, end as the strategy's book, their rejected rows counted as its.
"""

from __future__ import annotations

import numpy as np
import pytest

from common.hotpath import default_params, new_book, new_state
from common.hotpath import dtypes as D
from common.hotpath import kernels as K
from common.hotpath import market_run as MR
from tests.unit.hotpath._twin import call_strict, check_ladder, pure, pure_market_run
from tests.unit.hotpath.test_review20_share_kernel import BLOCK, _events, _setup

BID, ASK = D.SIDE_BID, D.SIDE_ASK
TICKS = [1, 2, 5, 100]


def _rows(rng, k, c, t, w) -> np.ndarray:
    """k rows around price c*t (in ticks): most inside a window of w slots, some far
    beyond it both ways, some off the grid, rejected or qty 0."""
    out = []
    for _ in range(k):
        side = int(rng.integers(0, 2)) if rng.random() > 0.06 else int(rng.choice([-1, 2, -(1 << 62)]))
        v = rng.random()
        if v < 0.55:
            off = int(rng.integers(-w // 2, w // 2))
        elif v < 0.85:
            off = int(rng.choice([-1, 1])) * int(rng.integers(w // 4, 4 * w))
        else:
            off = int(rng.integers(-3, 4))
        px = (c + off) * t
        u = rng.random()
        if t > 1 and u < 0.06:
            px += int(rng.integers(1, t))  # off the grid
        elif u < 0.1:
            px = int(rng.choice([0, -1, -t, D.PX_MAX // t * t, D.PX_MAX + 1, D.PX_MAX + t, 1 << 62, -(1 << 62), t]))
        q = rng.random()
        if q < 0.3:
            qty = 0
        elif q < 0.34:
            qty = int(rng.choice([-1, -(1 << 62), D.QTY_MAX + 1]))
        else:
            qty = int(rng.integers(1, 1000))
        out.append((side, px, qty))
    lv = np.array(out, dtype=np.int64).reshape(-1, D.LV_COLS)
    if rng.random() < 0.5:  # as a venue lists them: bids, then asks
        lv = lv[np.argsort(lv[:, D.LV_SIDE], kind="stable")]
    return lv


def _ladder(rng, c, t, w) -> np.ndarray:
    """Best-first bids, then asks (the snapshot fast path's case), now and then one level
    a window away (its fail / general path)."""
    db, da, gap = int(rng.integers(0, w + 8)), int(rng.integers(0, w + 8)), int(rng.integers(1, 4))
    out = [(BID, (c - gap - j) * t, int(rng.integers(0, 50))) for j in range(db)]
    out += [(ASK, (c + gap + j) * t, int(rng.integers(0, 50))) for j in range(da)]
    if out and rng.random() < 0.3:
        j = int(rng.integers(0, len(out)))
        out[j] = (out[j][0], out[j][1] + int(rng.choice([w, 2 * w, -w])) * t, 7)
    return np.array(out, dtype=np.int64).reshape(-1, D.LV_COLS)


def _calls(rng, t, w, k):
    """k calls (lv, start, n, snapshot) around a price that now and then jumps."""
    c = int(rng.choice([w, 2 * w, 10_000, D.PX_MAX // t - 3 * w, 5]))
    out = []
    for _ in range(k):
        lv = _ladder(rng, c, t, w) if rng.random() < 0.3 else _rows(rng, int(rng.integers(1, 30)), c, t, w)
        m = lv.shape[0]
        start = int(rng.integers(0, min(3, m) + 1))
        n = m - start if rng.random() < 0.8 else int(rng.integers(0, m - start + 1))
        out.append((lv, start, n, int(rng.random() < 0.35)))
        if rng.random() < 0.2:
            c = max(2, c + int(rng.integers(-2 * w, 2 * w)))
    return out


def _same(fns, book0, lv, start, n, snap):
    """Each fn on its own copy of book0's current state: the same return and book."""
    outs = []
    for fn, b in fns:
        outs.append((int(fn(b, lv, start, n, snap)), b))
    r0, b0 = outs[0]
    for r, b in outs[1:]:
        assert r == r0
        assert np.array_equal(b, b0)
    check_ladder(b0)
    return r0


@pytest.mark.parametrize("tick", TICKS)
@pytest.mark.parametrize("slots", [64, 128])
def test_tick1_variant_equals_book_apply_rows(tick, slots):
    rng = np.random.default_rng(2400 + tick + slots)
    for _case in range(25):
        books = [new_book(slots, tick) for _ in range(4)]
        fns = [
            (K.book_apply_rows, books[0]),
            (K.book_apply_rows_tick1, books[1]),
            (K.book_apply_rows.py_func, books[2]),
            (K.book_apply_rows_tick1.py_func, books[3]),
        ]
        for lv, start, n, snap in _calls(rng, tick, slots, int(rng.integers(1, 12))):
            _same(fns, books[0], lv, start, n, snap)
        assert books[0][D.BK_TICK] == tick


@pytest.mark.parametrize("tick", TICKS)
def test_pure_twins_of_both_variants(tick):
    """The fully pure twins (np.uint64 of a negative np.int64 must wrap, no warning)."""
    rng = np.random.default_rng(2424 + tick)
    P = pure()
    for _case in range(4):
        books = [new_book(64, tick) for _ in range(3)]
        fns = [
            (K.book_apply_rows_tick1, books[0]),
            (lambda *a: call_strict(P.book_apply_rows, *a), books[1]),
            (lambda *a: call_strict(P.book_apply_rows_tick1, *a), books[2]),
        ]
        for lv, start, n, snap in _calls(rng, tick, 64, 8):
            _same(fns, books[0], lv, start, n, snap)


def test_tick1_variant_on_tick1_equals_general_on_tick_k():
    """The literal-1 loops (tick-1 book) against the general ones (tick-k book, prices x k)."""
    rng = np.random.default_rng(2441)
    for k in (3, 100):
        for _case in range(20):
            b1, bk = new_book(64, 1), new_book(64, k)
            for lv1, start, n, snap in _calls(rng, 1, 64, int(rng.integers(1, 12))):
                lv1 = lv1.copy()
                lv1[lv1[:, D.LV_PX] > D.PX_MAX // k, D.LV_PX] = D.PX_MAX + 1  # rejected at both ticks
                lv1[lv1[:, D.LV_PX] < -(D.PX_MAX // k), D.LV_PX] = -1
                lvk = lv1.copy()
                lvk[:, D.LV_PX] *= k
                lvk[lv1[:, D.LV_PX] == D.PX_MAX + 1, D.LV_PX] = D.PX_MAX + 1
                assert K.book_apply_rows_tick1(b1, lv1, start, n, snap) == K.book_apply_rows(bk, lvk, start, n, snap)
                scaled = bk.copy()
                assert (scaled[D.BK_KEY0 : D.BK_KEY0 + 2] % k == 0).all()
                scaled[D.BK_KEY0 : D.BK_KEY0 + 2] //= k
                scaled[D.BK_TICK] = 1
                assert np.array_equal(scaled, b1)


@pytest.mark.parametrize("tick", TICKS)
def test_fast_and_general_rows_py_func(tick):
    """The two halves' own .py_func (the kernels' contract: valid plain Python, the same
    result), _fast_rows given the book's tick and, on a tick-1 book, a literal 1."""
    rng = np.random.default_rng(2430 + tick)
    for _case in range(10):
        book = new_book(64, tick)
        for lv, start, n, snap in _calls(rng, tick, 64, 8):
            t_arg = 1 if tick == 1 and rng.random() < 0.5 else tick
            b_c, b_p = book.copy(), book.copy()
            got = tuple(K._fast_rows(b_c, lv, start, n, snap, t_arg))
            assert tuple(K._fast_rows.py_func(b_p, lv, start, n, snap, t_arg)) == got
            assert np.array_equal(b_p, b_c)
            want = K.book_apply_rows(book, lv, start, n, snap)
            if got[0] < 0:
                assert got[1] == want and np.array_equal(b_c, book)
                continue
            b_p = b_c.copy()
            assert K._general_rows(b_c, lv, start, n, snap, *got) == want
            assert K._general_rows.py_func(b_p, lv, start, n, snap, *got) == want
            assert np.array_equal(b_c, book) and np.array_equal(b_p, book)


@pytest.mark.parametrize("tick", TICKS)
def test_run_loops_py_func_rows_outside_window(tick):
    """_side_run / _place_run's .py_func on rows below (i < 0, also far below) and above
    the window: np.uint64(np.int64(i)) wraps as the compiled compare does, where np.uint64
    of the compiled _slot's negative Python int raised OverflowError."""
    w, t = 64, tick
    seed = np.array([(BID, 1000 * t, 5), (ASK, 1100 * t, 6)], dtype=np.int64)
    book = new_book(w, t)
    K.book_apply_rows(book, seed, 0, 2, 1)
    for px_b, px_a in ((900 * t, 1200 * t), (t, D.PX_MAX // t * t), (1100 * t, 900 * t)):
        lv = np.array([(BID, px_b, 3), (ASK, px_a, 4)], dtype=np.int64)
        for side, r in ((BID, 0), (ASK, 1)):
            args = (lv, r, r + 1, side, w, t, 0, 0)
            got = tuple(K._side_run(book.copy(), *args))
            assert got[3] == 1  # stop: the general loop's row
            assert tuple(call_strict(K._side_run.py_func, book.copy(), *args)) == got
            b_c, b_p = new_book(w, t), new_book(w, t)
            snap = np.array([tuple(seed[side]), tuple(lv[r])], dtype=np.int64)
            got = tuple(K._place_run(b_c, snap, 0, 2, side, w, t, 0))
            assert tuple(call_strict(K._place_run.py_func, b_p, snap, 0, 2, side, w, t, 0)) == got
            assert np.array_equal(b_p, b_c)


def _packed(lv) -> tuple[bytes, bytes]:
    """The rows with a valid side as an event's packed (price, qty) bytes, bids first."""
    bids = lv[lv[:, D.LV_SIDE] == BID][:, 1:].astype("<i8").tobytes()
    asks = lv[lv[:, D.LV_SIDE] == ASK][:, 1:].astype("<i8").tobytes()
    return bids, asks


@pytest.mark.parametrize("tick", TICKS)
def test_entry_points_equal_book_apply_rows_and_on_book_kept(tick):
    rng = np.random.default_rng(2450 + tick)
    p = default_params(tick=tick)
    for _case in range(12):
        ref_b = new_book(64, tick)
        st = {k: new_state() for k in ("on", "kept", "packed", "packed_ref")}
        bk = {k: new_book(64, tick) for k in st}
        fv = np.zeros(K.FV_LEN, dtype=np.int64)
        for ts, (lv, start, n, snap) in enumerate(_calls(rng, tick, 64, 10), 1):
            sub = np.ascontiguousarray(lv[start : start + n])
            bad0 = int(st["on"][D.S_BAD_ROWS])
            fn = K.on_book_snapshot if snap else K.on_book_delta
            act = fn(st["on"], bk["on"], p, lv, start, n, ts)
            bad = K.book_apply_rows(ref_b, lv, start, n, snap)
            assert np.array_equal(bk["on"], ref_b)
            assert st["on"][D.S_BAD_ROWS] - bad0 == bad
            assert K.on_book_kept(st["kept"], bk["kept"], p, fv, 0, lv, start, n, ts, snap) == act
            assert np.array_equal(st["kept"], st["on"]) and np.array_equal(bk["kept"], bk["on"])
            # packed: the rows with a valid side, as an event carries them
            bids, asks = _packed(sub)
            scratch = np.zeros((max(1, sub.shape[0]), D.LV_COLS), dtype=np.int64)
            a1 = K.on_book_packed(st["packed"], bk["packed"], p, scratch, bids, asks, ts, snap)
            m = K.fill_packed_rows(scratch, bids, asks)
            a2 = K.on_book_kept(st["packed_ref"], bk["packed_ref"], p, np.zeros(K.FV_LEN, dtype=np.int64), 0, scratch,
                                0, m, ts, snap)  # fmt: skip
            assert a1 == a2
            assert np.array_equal(st["packed"], st["packed_ref"]) and np.array_equal(bk["packed"], bk["packed_ref"])


@pytest.mark.parametrize("tick", [1, 5])
def test_apply_unshared_equals_book_apply_rows(tick):
    rng = np.random.default_rng(2460 + tick)
    PM = pure_market_run()
    for case in range(15):
        books = [new_book(128, tick) for _ in range(4)]
        for lv, start, n, snap in _calls(rng, tick, 128, int(rng.integers(1, 10))):
            sub = np.ascontiguousarray(lv[start : start + n])
            want = K.book_apply_rows(books[0], lv, start, n, snap)
            assert MR._apply_unshared(books[1], sub, n, snap) == want
            assert MR._apply_unshared.py_func(books[2], sub, n, snap) == want
            if case < 3:
                assert call_strict(PM._apply_unshared, books[3], sub, n, snap) == want
                assert np.array_equal(books[3], books[0])
            assert np.array_equal(books[1], books[0]) and np.array_equal(books[2], books[0])


def test_market_run_unshared_books_follow_the_strategys():
    """Sharing blocked (review 20's events and books, an unused header word set on the
    others): every book event reaches risk's and the router's books through
    _apply_unshared; they must end as the strategy's and count its rejected rows."""
    evs, flat = _events(1_500, 24)
    s = _setup(block=True)
    sv = s["sv"]
    i = risk_bad = router_bad = 0
    n = evs.shape[0]
    while i < n:
        j = MR.market_run(evs, flat, i, n, sv, s["state"], s["book"], s["params"], s["lv"], s["vlv"], s["rbook"],
                          s["obook"], s["vbooks"], s["vcfg"], s["rest"])  # fmt: skip
        assert sv[MR.SV_SHARED] == 0
        risk_bad += int(sv[MR.SV_RISK_BAD])
        router_bad += int(sv[MR.SV_ROUTER_BAD])
        i = j if j > i else i + 1
    book = s["book"]
    assert s["state"][D.S_BAD_ROWS] > 0 and risk_bad == router_bad == s["state"][D.S_BAD_ROWS]
    for b in (s["rbook"], s["obook"]):
        assert b[BLOCK] == 7
        b = b.copy()
        b[BLOCK] = 0
        assert np.array_equal(b, book)
    assert book[D.BK_N] > 0 and book[D.BK_N + 1] > 0
