"""Review of e355032 / 7b4d55d (book rows): the window tests of _side_run and _place_run as
one unsigned compare, and the delta / snapshot row loops run with tick a literal 1 when the
book's tick is 1.

Checked against
* an independent reference (a dict of levels a side) on rows kept inside a band of W/4
  slots, where the ladder's window never drops or slides a level: bad sides, px <= 0,
  px at and past PX_MAX, off the grid, qty 0 / negative / past QTY_MAX, repeated prices,
  interleaved sides, snapshots and deltas, ticks 1, 5, 7;
* tick invariance: the same rows on a tick-1 book and, prices times k, on a tick-k book
  (the literal-1 loops against the general ones) give the same ladder, with windows that
  slide and levels dropped below them;
* hand-computed rows at and past both window edges (deltas and snapshots, both sides);
* each call also through the fully pure twin (numpy warnings as errors: np.uint64 of a
  negative np.int64 must wrap as the compiled compare does) and book_apply_rows.py_func;
* the helpers' own .py_func on a row below the window (the kernels' contract: each one's
  py_func is valid plain Python giving the same result).
"""

from __future__ import annotations

import numpy as np
import pytest

from common.hotpath import book_levels, default_params, new_book, new_state
from common.hotpath import dtypes as D
from common.hotpath import kernels as K
from tests.unit.hotpath._twin import call_strict, check_ladder, pure

BID, ASK = D.SIDE_BID, D.SIDE_ASK


def _rows(rows) -> np.ndarray:
    return np.array(rows, dtype=np.int64).reshape(-1, D.LV_COLS)


def _apply(book, lv, start, n, snap) -> int:
    """book_apply_rows compiled on `book`; the pure twin and .py_func on copies must agree."""
    b_pure, b_pyf = book.copy(), book.copy()
    got = K.book_apply_rows(book, lv, start, n, snap)
    assert call_strict(pure().book_apply_rows, b_pure, lv, start, n, snap) == got
    assert call_strict(K.book_apply_rows.py_func, b_pyf, lv, start, n, snap) == got
    assert np.array_equal(b_pure, book)
    assert np.array_equal(b_pyf, book)
    check_ladder(book)
    return int(got)


# --------------------------------------------------------------------------
# reference model
# --------------------------------------------------------------------------


class _Ref:
    """Levels a side as {px: qty}: what the ladder holds while no level leaves its window."""

    def __init__(self, tick: int):
        self.tick = tick
        self.side: list[dict[int, int]] = [{}, {}]

    def apply(self, lv, start, n, snap) -> int:
        if snap:
            self.side = [{}, {}]
        bad = 0
        for side, px, qty in lv[start : start + n].tolist():
            if side not in (BID, ASK) or px <= 0 or px > D.PX_MAX or qty < 0 or px % self.tick:
                bad += 1
                continue
            qty = min(qty, D.QTY_MAX)
            if qty == 0:
                if not snap:  # a snapshot skips qty-0 rows (an earlier row of its price stays)
                    self.side[side].pop(px, None)
            else:
                self.side[side][px] = qty
        return bad

    def levels(self, side):
        return sorted(self.side[side].items(), reverse=side == BID)


def _band_rows(rng, k, lo, width, tick):
    """k rows, every valid price in [lo, lo + width*tick): the rest rejected or off the grid."""
    out = []
    for _ in range(k):
        u = rng.random()
        side = int(rng.integers(0, 2)) if u > 0.08 else int(rng.choice([-1, 2, 3, -(1 << 62)]))
        v = rng.random()
        if v < 0.75:
            px = lo + int(rng.integers(0, width)) * tick
        elif v < 0.85:
            px = lo + int(rng.integers(0, width * tick))  # off the grid unless tick 1
        else:
            px = int(rng.choice([0, -1, -tick, D.PX_MAX + 1, D.PX_MAX + tick, 1 << 62, -(1 << 62), -D.PX_MAX]))
        w = rng.random()
        if w < 0.25:
            qty = 0
        elif w < 0.3:
            qty = int(rng.choice([-1, -(1 << 62), D.QTY_MAX, D.QTY_MAX + 1, 1 << 62]))
        else:
            qty = int(rng.integers(1, 1000))
        out.append((side, px, qty))
    lv = _rows(out)
    if rng.random() < 0.5:  # as a venue lists them: bids, then asks (the run loops' case)
        lv = lv[np.argsort(lv[:, D.LV_SIDE], kind="stable")]
    return lv


@pytest.mark.parametrize("tick", [1, 5, 7])
@pytest.mark.parametrize("slots", [64, 128])
def test_rows_match_reference(tick, slots):
    rng = np.random.default_rng(2300 + 10 * tick + slots)
    width = slots // 4 - 1  # every level within W/4 slots: never dropped, no slide
    bases = [1, 1_000 * tick, (D.PX_MAX // tick - width + 1) * tick, D.PX_MAX - width * tick // 2]
    for case in range(30):
        lo = bases[case % len(bases)]
        lo = max(tick, lo // tick * tick)
        book, ref = new_book(slots, tick), _Ref(tick)
        for _ in range(int(rng.integers(1, 10))):
            lv = _band_rows(rng, int(rng.integers(0, 16)) + 2, lo, width, tick)
            start = int(rng.integers(0, 3))
            n = lv.shape[0] - start
            snap = int(rng.random() < 0.3)
            assert _apply(book, lv, start, n, snap) == ref.apply(lv, start, n, snap)
            for side in (BID, ASK):
                assert book_levels(book, side) == ref.levels(side)
            assert book[D.BK_DROPPED] == book[D.BK_DROPPED + 1] == 0


@pytest.mark.parametrize("tick", [1, 5])
def test_entry_points_match_reference(tick):
    """on_book_delta / on_book_snapshot (book_apply_rows inlined) on the same rows."""
    rng = np.random.default_rng(2323 + tick)
    p = default_params(tick=tick)
    width = 15
    for _case in range(15):
        lo = 1_000 * tick
        state, book, ref = new_state(), new_book(64, tick), _Ref(tick)
        for ts in range(8):
            lv = _band_rows(rng, int(rng.integers(0, 12)) + 1, lo, width, tick)
            snap = int(rng.random() < 0.3)
            fn = K.on_book_snapshot if snap else K.on_book_delta
            bad0 = int(state[D.S_BAD_ROWS])
            fn(state, book, p, lv, 0, lv.shape[0], ts)
            assert state[D.S_BAD_ROWS] - bad0 == ref.apply(lv, 0, lv.shape[0], snap)
            for side in (BID, ASK):
                assert book_levels(book, side) == ref.levels(side)
            check_ladder(book)


# --------------------------------------------------------------------------
# tick 1 (the literal-1 loops) against tick k (the general ones), windows moving
# --------------------------------------------------------------------------


def _wide_rows(rng, k, center, slots):
    out = []
    for _ in range(k):
        side = int(rng.integers(0, 2)) if rng.random() > 0.05 else int(rng.choice([-1, 2]))
        v = rng.random()
        if v < 0.6:
            off = int(rng.integers(-slots // 2, slots // 2))
        elif v < 0.9:
            off = int(rng.choice([-1, 1])) * int(rng.integers(slots // 2, 3 * slots))
        else:
            off = int(rng.integers(-3, 4))
        px = center + off
        if rng.random() < 0.03:
            px = int(rng.choice([0, -1, -(1 << 40)]))
        qty = 0 if rng.random() < 0.3 else (-1 if rng.random() < 0.03 else int(rng.integers(1, 500)))
        out.append((side, px, qty))
    lv = _rows(out)
    if rng.random() < 0.5:
        lv = lv[np.argsort(lv[:, D.LV_SIDE], kind="stable")]
    return lv


@pytest.mark.parametrize("k", [5, 7])
def test_tick_one_equals_tick_k_scaled(k):
    rng = np.random.default_rng(2377 + k)
    slots = 64
    for case in range(40):
        center = int(rng.choice([slots, 2 * slots, 10_000, D.PX_MAX // k - 3 * slots]))
        b1, bk = new_book(slots, 1), new_book(slots, k)
        for _ in range(int(rng.integers(1, 14))):
            lv1 = _wide_rows(rng, int(rng.integers(0, 14)) + 1, center, slots)
            lv1[lv1[:, D.LV_PX] > D.PX_MAX // k, D.LV_PX] = D.PX_MAX + 1  # rejected at both ticks
            lvk = lv1.copy()
            lvk[:, D.LV_PX] *= k
            lvk[lv1[:, D.LV_PX] > D.PX_MAX // k, D.LV_PX] = D.PX_MAX + 1
            snap = int(rng.random() < 0.3)
            if rng.random() < 0.15:
                center += int(rng.integers(-slots, slots))
            n = lv1.shape[0]
            assert _apply(b1, lv1, 0, n, snap) == _apply(bk, lvk, 0, n, snap), case
            scaled = bk.copy()
            assert (scaled[D.BK_KEY0 : D.BK_KEY0 + 2] % k == 0).all()
            scaled[D.BK_KEY0 : D.BK_KEY0 + 2] //= k
            scaled[D.BK_TICK] = 1
            assert np.array_equal(scaled, b1), case


# --------------------------------------------------------------------------
# hand-computed rows at the window's edges (W = 64: the first level at slot 48)
# --------------------------------------------------------------------------

W = 64
TOP = 48


def _seeded(tick):
    """A book with one bid at 1000 and one ask at 1100 (ticks), each at slot 48."""
    book = new_book(W, tick)
    assert _apply(book, _rows([(BID, 1000 * tick, 5), (ASK, 1100 * tick, 6)]), 0, 2, 1) == 0
    assert book[D.BK_KEY0] == (1000 - TOP) * tick and book[D.BK_KEY0 + 1] == (-1100 - TOP) * tick
    return book


@pytest.mark.parametrize("tick", [1, 5, 7])
def test_delta_edges(tick):
    t = tick
    book = _seeded(t)
    # bid slots: 952 -> 0, 951 -> -1, 1015 -> 63, 1016 -> 64; ask slots: 1148 -> 0, 1149 -> -1, 1085 -> 63
    rows = [(BID, 952 * t, 1), (BID, 951 * t, 2), (BID, 1015 * t, 3), (ASK, 1148 * t, 4), (ASK, 1149 * t, 5),
            (ASK, 1085 * t, 7)]  # fmt: skip
    assert _apply(book, _rows(rows), 0, len(rows), 0) == 0
    assert book_levels(book, BID) == [(1015 * t, 3), (1000 * t, 5), (952 * t, 1)]
    assert book_levels(book, ASK) == [(1085 * t, 7), (1100 * t, 6), (1148 * t, 4)]
    assert list(book[D.BK_DROPPED : D.BK_DROPPED + 2]) == [1, 1]
    assert book[D.BK_BEST] == 63 and book[D.BK_LOW] == 0
    # qty 0 below the window: not a drop; far below (i about -2**52 / tick): a drop
    rows = [(BID, 951 * t, 0), (BID, t, 9), (ASK, D.PX_MAX // t * t, 9), (ASK, 1149 * t, 0)]
    assert _apply(book, _rows(rows), 0, len(rows), 0) == 0
    assert list(book[D.BK_DROPPED : D.BK_DROPPED + 2]) == [2, 2]
    assert book_levels(book, BID) == [(1015 * t, 3), (1000 * t, 5), (952 * t, 1)]
    # one slot above the window: the window slides up 16 slots and the old low level (slot 0) is dropped
    assert _apply(book, _rows([(BID, 1016 * t, 8)]), 0, 1, 0) == 0
    assert book[D.BK_KEY0] == (1016 - TOP) * t and book[D.BK_BEST] == TOP
    assert book_levels(book, BID) == [(1016 * t, 8), (1015 * t, 3), (1000 * t, 5)]
    assert book[D.BK_DROPPED] == 3
    # off the grid, bad side, qty < 0, px past PX_MAX: rejected, nothing stored
    before = book.copy()
    bad = [(BID, 1001 * t + 1, 1), (2, 1000 * t, 1), (ASK, 1100 * t, -1), (BID, D.PX_MAX + t, 1), (-1, -1, -1)]
    assert _apply(book, _rows(bad), 0, len(bad), 0) == (5 if t > 1 else 4)
    if t > 1:
        assert np.array_equal(book, before)


@pytest.mark.parametrize("tick", [1, 5, 7])
def test_snapshot_edges(tick):
    t = tick
    # below the first row's window: dropped (and counted); repeated price: the last row wins
    book = new_book(W, t)
    rows = [(BID, 1000 * t, 5), (BID, 952 * t, 1), (BID, 951 * t, 2), (BID, 1000 * t, 9), (BID, 951 * t, 0),
            (ASK, 1100 * t, 6), (ASK, 1149 * t, 3), (ASK, 1148 * t, 4), (ASK, 1085 * t, 2)]  # fmt: skip
    assert _apply(book, _rows(rows), 0, len(rows), 1) == 0
    assert book_levels(book, BID) == [(1000 * t, 9), (952 * t, 1)]
    assert book_levels(book, ASK) == [(1085 * t, 2), (1100 * t, 6), (1148 * t, 4)]
    assert list(book[D.BK_DROPPED : D.BK_DROPPED + 2]) == [1, 1]
    # above it: the general path (the drops the fast path counted are undone), the window slid
    rows = [(BID, 1000 * t, 5), (BID, 951 * t, 2), (BID, 1016 * t, 7), (ASK, 1100 * t, 6), (ASK, 1084 * t, 1)]
    assert _apply(book, _rows(rows), 0, len(rows), 1) == 0
    assert book_levels(book, BID) == [(1016 * t, 7), (1000 * t, 5)]
    assert book_levels(book, ASK) == [(1084 * t, 1), (1100 * t, 6)]
    assert book[D.BK_KEY0] == (1016 - TOP) * t and book[D.BK_KEY0 + 1] == (-1084 - TOP) * t
    assert list(book[D.BK_DROPPED : D.BK_DROPPED + 2]) == [2, 1]  # 951: below, row by row too
    # an empty snapshot, and one of rejected rows only: both sides cleared
    assert _apply(book, _rows([(3, 1000 * t, 1), (BID, 0, 1), (ASK, -t, 1)]), 0, 3, 1) == 3
    assert book[D.BK_BEST] == book[D.BK_BEST + 1] == -1 and book[D.BK_N] == book[D.BK_N + 1] == 0
    assert _apply(book, _rows([(BID, 1000 * t, 1)]), 0, 0, 1) == 0


# --------------------------------------------------------------------------
# the helpers' own py_func twins (they call the compiled _row / _slot, which return int)
# --------------------------------------------------------------------------


@pytest.mark.parametrize("tick", [1, 5])
def test_side_run_py_func_row_below_window(tick):
    """_side_run stops at a row below its window (i < 0); its py_func must too. With the
    unsigned compare, np.uint64 of the compiled _slot's (negative Python int) result raises
    OverflowError under numpy 2 where the compiled kernel returns stop = 1."""
    book = _seeded(tick)
    lv = _rows([(BID, 900 * tick, 3)])
    w = book[D.BK_SLOTS]
    args = (BID, w, tick, 0, 0)
    got = K._side_run(book.copy(), lv, 0, 1, *args)
    assert tuple(got) == (0, 0, 0, 1)
    assert tuple(call_strict(K._side_run.py_func, book.copy(), lv, 0, 1, *args)) == tuple(got)


@pytest.mark.parametrize("tick", [1, 5])
def test_place_run_py_func_row_below_window(tick):
    """The same for a snapshot row below its side's first row's window (a drop)."""
    lv = _rows([(BID, 1000 * tick, 5), (BID, 900 * tick, 3)])
    b_c, b_p = new_book(W, tick), new_book(W, tick)
    got = K._place_run(b_c, lv, 0, 2, BID, W, tick, 0)
    assert tuple(got) == (2, 0, 0) and b_c[D.BK_DROPPED] == 1
    assert tuple(call_strict(K._place_run.py_func, b_p, lv, 0, 2, BID, W, tick, 0)) == tuple(got)
    assert np.array_equal(b_p, b_c)
