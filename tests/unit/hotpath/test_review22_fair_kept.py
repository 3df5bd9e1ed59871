"""Review of c5addb0 (on_book_kept): rows chosen without regard for the book (any side,
any price near it or far from it, off the grid, repeated, huge quantities), crossed books,
levels 0 / 1 / 64 / past the clamp, tiny windows that move often, and the plain update
interleaved; each event compared with _on_book on a twin of the arrays."""

from __future__ import annotations

import numpy as np
import pytest

from common.hotpath import book_levels, default_params, new_book, new_state
from common.hotpath import dtypes as D
from common.hotpath import kernels as K

BID, ASK = D.SIDE_BID, D.SIDE_ASK
OFF = 5  # fv offset, as the market run's SV_FV


def _pair(slots: int, tick: int, levels: int):
    p = default_params(tick=tick, mp_levels=1, warmup=2, cooldown=0, requote_px=0)
    p[D.P_MP_LEVELS] = levels  # (default_params may refuse out-of-range values: set raw)
    return p, (new_state(), new_book(slots, tick)), (new_state(), new_book(slots, tick))


def _step(p, a, b, fv, lv, k, ts, snap, plain) -> int:
    """One event both ways, compared; 1 if a side's kept sum was reused on rows that stored."""
    a1 = K._on_book(a[0], a[1], p, lv, 0, k, ts, snap)
    reused = 0
    if plain:
        a2 = K._on_book(b[0], b[1], p, lv, 0, k, ts, snap)
    else:
        at, before = int(fv[OFF + K.FV_AT]), fv[OFF + K.FV_KEY0 : OFF + K.FV_LEN].copy()
        a2 = K.on_book_kept(b[0], b[1], p, fv, OFF, lv, 0, k, ts, snap)
        same = fv[OFF + K.FV_KEY0 : OFF + K.FV_LEN] == before
        reused = int(k > 0 and at == b[0][D.S_N_BOOK] - 1 and bool(same[[0, 2, 4]].all() or same[[1, 3, 5]].all()))
    assert a1 == a2
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    return reused


def _rows(rng, tick, mid, spread_ticks, width):
    """1..4 rows (sometimes more), prices anywhere within `width` ticks of mid."""
    n = int(rng.integers(0, 5)) if rng.random() < 0.9 else int(rng.integers(5, 9))
    out = []
    for _ in range(n):
        x = rng.random()
        side = int(rng.integers(0, 2)) if x > 0.03 else int(rng.choice([-1, 2, 7]))
        off = int(rng.integers(0, width)) if rng.random() < 0.8 else int(rng.integers(0, 40 * width))
        px = mid - off * tick if side == BID else mid + (off + spread_ticks) * tick
        if side not in (BID, ASK):
            px = mid
        if rng.random() < 0.03:
            px += 1 if tick > 1 else 0  # off the grid
        if rng.random() < 0.02:  # the other side's price range: crosses the book
            px = mid + 2 * tick if side == BID else mid - 2 * tick
        q = 0 if rng.random() < 0.35 else int(rng.integers(1, 1000))
        if rng.random() < 0.02:
            q = D.QTY_MAX * 4 if rng.random() < 0.5 else -3
        out.append((side, max(px, 1), q))
        if out and rng.random() < 0.1:  # the same price again in this delta
            out.append((side, max(px, 1), int(rng.integers(0, 3))))
    return out


def _fill(lv, rows):
    for j, r in enumerate(rows):
        lv[j] = r
    return len(rows)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize(
    ("slots", "tick", "levels", "width"),
    [(64, 1, 5, 40), (64, 3, 1, 20), (128, 1, 64, 90), (1024, 1, 5, 8), (256, 2, 0, 30), (256, 1, 999, 200)],
)
def test_rows_the_book_does_not_expect(seed, slots, tick, levels, width):
    rng = np.random.default_rng(1000 * seed + slots + levels)
    p, a, b = _pair(slots, tick, levels)
    fv = np.zeros(OFF + K.FV_LEN, dtype=np.int64)
    lv = np.zeros((64, D.LV_COLS), dtype=np.int64)
    mid = 500_000 * tick
    reused = 0
    for i in range(1500):
        x = rng.random()
        if i == 0 or x < 0.01:
            depth = int(rng.integers(1, 70))
            rows = [(BID, mid - (k + 1) * tick, int(rng.integers(1, 99))) for k in range(depth)]
            rows += [(ASK, mid + (k + 2) * tick, int(rng.integers(1, 99))) for k in range(int(rng.integers(0, 70)))]
            rows = rows[:64]
            snap = 1
        else:
            rows = _rows(rng, tick, mid, 2, width)
            snap = 0
        if rng.random() < 0.01:
            mid += int(rng.integers(-3 * slots, 3 * slots)) * tick  # the market jumps
            mid = max(mid, 10 * slots * tick)
        reused += _step(p, a, b, fv, lv, _fill(lv, rows), 1000 * i, snap, plain=rng.random() < 0.05)
    assert reused > 20, reused  # the kept path was taken, not only the fresh sums


def test_levels_64_with_a_side_shorter_than_64_then_a_row_below_the_window():
    """A side with fewer levels than summed keeps slot 0 as its limit: only rows that store
    nothing (below the window) may keep its sum; one that lands in the window sums afresh."""
    p, a, b = _pair(64, 1, 64)
    fv = np.zeros(OFF + K.FV_LEN, dtype=np.int64)
    lv = np.zeros((64, D.LV_COLS), dtype=np.int64)
    mid = 10_000
    snap = [(BID, mid - k, 5) for k in range(1, 6)] + [(ASK, mid + k, 5) for k in range(1, 6)]
    _step(p, a, b, fv, lv, _fill(lv, snap), 1, 1, False)
    lo = book_levels(b[1], BID)[-1][0]
    for ts, rows in enumerate(
        [
            [(BID, lo - 1000, 7)],  # below the window: dropped
            [(BID, lo - 1, 7)],  # in the window, below every level: summed afresh
            [(ASK, mid + 40, 3), (ASK, mid + 41, 0)],
            [(BID, lo - 1, 0), (BID, lo - 1, 9)],  # removed, then back, one delta
            [],
            [(BID, mid - 1, 0), (BID, mid - 1, 11)],  # the best removed, then back
        ],
        start=2,
    ):
        _step(p, a, b, fv, lv, _fill(lv, rows), ts, 0, False)
    assert b[1][D.BK_DROPPED + BID] >= 1


def test_a_crossed_book_and_back():
    p, a, b = _pair(1024, 1, 5)
    fv = np.zeros(OFF + K.FV_LEN, dtype=np.int64)
    lv = np.zeros((64, D.LV_COLS), dtype=np.int64)
    snap = [(BID, 1000 - k, 5) for k in range(1, 20)] + [(ASK, 1000 + k, 5) for k in range(1, 20)]
    _step(p, a, b, fv, lv, _fill(lv, snap), 1, 1, False)
    for ts, rows in enumerate(
        [
            [(BID, 1005, 3)],  # crossed
            [(BID, 990, 4)],  # still crossed, a row below the sums
            [(BID, 1005, 0)],  # valid again
            [(BID, 985, 4)],
            [(ASK, 1001, 0), (ASK, 1002, 0), (ASK, 1003, 0), (ASK, 1004, 0)],
            [(ASK, 1015, 8)],
        ],
        start=2,
    ):
        _step(p, a, b, fv, lv, _fill(lv, rows), ts, 0, False)


def test_the_saturating_sums():
    """Sides at QTY_MAX a level, 64 levels: the halving in _fair_of, from kept sums."""
    p, a, b = _pair(256, 1, 64)
    fv = np.zeros(OFF + K.FV_LEN, dtype=np.int64)
    lv = np.zeros((200, D.LV_COLS), dtype=np.int64)
    snap = [(BID, 5000 - k, D.QTY_MAX) for k in range(1, 70)] + [(ASK, 5000 + k, D.QTY_MAX) for k in range(1, 70)]
    _step(p, a, b, fv, lv, _fill(lv, snap), 1, 1, False)
    for ts in range(2, 40):
        rows = [(BID, 5000 - 66 - ts % 3, D.QTY_MAX - ts), (ASK, 5000 + 67, ts % 2)]
        _step(p, a, b, fv, lv, _fill(lv, rows), ts, 0, False)


def test_contract_a_book_replaced_under_the_same_count_goes_unseen():
    """Passes while the hazard exists (see tests/unit/backtest/test_review22_kept_after_load.py
    for the engine-level failure): FV_AT cannot see a book (and state) replaced by code that
    is not a book update and leaves S_N_BOOK where the kept sums were taken
    (StrategyCore.load_state). The kept sums of the first book are then used for the second;
    only the caller can drop them (fastpath.MarketRun._load does, since this review)."""
    p, a, b = _pair(1024, 1, 5)
    fv = np.zeros(OFF + K.FV_LEN, dtype=np.int64)
    lv = np.zeros((64, D.LV_COLS), dtype=np.int64)
    one = [(BID, 1000 - k, 5) for k in range(1, 20)] + [(ASK, 1010 + k, 5) for k in range(1, 20)]
    two = [(BID, 1000 - k, 50 * k) for k in range(1, 20)] + [(ASK, 1010 + k, 5) for k in range(1, 20)]
    _step(p, a, b, fv, lv, _fill(lv, one), 1, 1, False)
    # another state and book with the same count of book updates ("loaded")
    s3, b3 = new_state(), new_book(1024, 1)
    K._on_book(s3, b3, p, lv, 0, _fill(lv, two), 1, 1)
    a[0][:], a[1][:] = s3, b3
    b[0][:], b[1][:] = s3, b3
    rows = [(BID, 1000 - 15, 7)]  # below the summed levels
    a1 = K._on_book(a[0], a[1], p, lv, 0, _fill(lv, rows), 2, 0)
    a2 = K.on_book_kept(b[0], b[1], p, fv, OFF, lv, 0, _fill(lv, rows), 2, 0)
    np.testing.assert_array_equal(a[1], b[1])  # the same book
    assert a[0][D.S_FAIR] == K.microprice(a[1], 5)
    assert b[0][D.S_FAIR] != K.microprice(b[1], 5)  # the first book's sums, on the second book
    assert a1 == a2  # (no quote during warmup either way)


@pytest.mark.parametrize("seed", range(2))
def test_pure_twin_on_rows_the_book_does_not_expect(seed):
    """The kept path as plain Python against the compiled one, on the rows above."""
    from tests.unit.hotpath._twin import pure

    P = pure()
    rng = np.random.default_rng(77 + seed)
    p, a, b = _pair(64, 2, 5)
    fa = np.zeros(OFF + K.FV_LEN, dtype=np.int64)
    fb = np.zeros(OFF + K.FV_LEN, dtype=np.int64)
    lv = np.zeros((64, D.LV_COLS), dtype=np.int64)
    mid = 100_000
    snap = [(BID, mid - 2 * k, 9) for k in range(1, 30)] + [(ASK, mid + 2 * k + 2, 9) for k in range(1, 30)]
    rows, s = snap, 1
    for i in range(250):
        k = _fill(lv, rows)
        x = K.on_book_kept(a[0], a[1], p, fa, OFF, lv, 0, k, i, s)
        y = P.on_book_kept(b[0], b[1], p, fb, OFF, lv, 0, k, i, s)
        assert x == y
        for u, v in ((a[0], b[0]), (a[1], b[1]), (fa, fb)):
            np.testing.assert_array_equal(u, v)
        rows, s = _rows(rng, 2, mid, 2, 40), 0
