"""book_same and book_copy: what lets the backtest's market run apply a book event once to
books that are the same bytes (common/hotpath/market_run.py, SV_SHARED).

Both read only the blocks of [low, best] that hold levels, so they are checked here against
the whole array: book_same against np.array_equal, book_copy by the array it leaves, on
books driven through every path the ladder has (deltas in any order, removals of the best,
window slides both ways, snapshots, levels dropped outside a small window, an emptied
side), compiled and pure Python alike.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.hotpath import dtypes as D
from common.hotpath import kernels as K
from common.hotpath import new_book
from tests.unit.hotpath._twin import pure

BID, ASK = D.SIDE_BID, D.SIDE_ASK
SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

row = st.tuples(st.sampled_from([BID, ASK]), st.integers(1, 400), st.integers(0, 4))
batch = st.tuples(st.lists(row, max_size=12), st.integers(0, 9))  # 0: a snapshot, else a delta
history = st.lists(batch, max_size=25)


def _drive(kernels, book: np.ndarray, batches) -> np.ndarray:
    """Bids at 1..400, asks at 401..800 (times the book's tick): on 64- and 128-slot windows
    these slide the window both ways and drop levels."""
    tick = int(book[D.BK_TICK])
    for rows, kind in batches:
        lv = np.array([(s, tick * (p if s == BID else p + 400), q) for s, p, q in rows], dtype=np.int64)
        lv = lv.reshape(-1, 3)
        kernels.book_apply_rows(book, lv, 0, lv.shape[0], 1 if kind == 0 else 0)
    return book


def _walk(kernels, book: np.ndarray, steps: int, stride: int) -> np.ndarray:
    """A ten-level ladder a side walked `steps` times by `stride` pipettes (slides the window)."""
    for k in range(steps):
        mid = 5_000 + k * stride
        rows = [(BID, mid - 1 - i, 1 + (k + i) % 3) for i in range(10)]
        rows += [(ASK, mid + 1 + i, 1 + (k * i) % 4) for i in range(10)]
        kernels.book_apply_rows(book, np.array(rows, dtype=np.int64), 0, len(rows), 1 if k % 7 == 0 else 0)
    return book


@SETTINGS
@given(history, history, st.sampled_from([64, 128, 1024]), st.integers(0, 3), st.sampled_from([1, 5]))
def test_book_same_is_array_equality(first, second, slots, how, tick):
    """On any two books of one geometry: equal histories give 1, and book_same says 1 exactly
    when the arrays are equal (the compare reads only the marked slots)."""
    a = _drive(K, new_book(slots, tick), first)
    if how == 0:
        b = _drive(K, new_book(slots, tick), first)  # the same history: the same bytes
    elif how == 1:
        b = _drive(K, new_book(slots, tick), first + second)
    elif how == 2:
        b = _drive(K, new_book(slots, tick), second)
    else:  # the same levels reached another way: equal only if every header word agrees too
        b = _drive(K, new_book(slots, tick), second + first)
    equal = int(np.array_equal(a, b))
    for kernels in (K, pure()):
        assert kernels.book_same(a, b) == equal
        assert kernels.book_same(b, a) == equal
    if how == 0:
        assert equal == 1


@SETTINGS
@given(history, history, st.sampled_from([64, 1024]))
def test_book_copy_leaves_the_same_array(dst_history, src_history, slots):
    for kernels in (K, pure()):
        src = _drive(K, new_book(slots), src_history)
        dst = _drive(K, new_book(slots), dst_history)
        kernels.book_copy(dst, src)
        assert np.array_equal(dst, src)
        assert kernels.book_same(dst, src) == 1


def test_book_copy_and_same_across_window_slides():
    """A walked ladder (its window slid many times, both ways) copied over a book that walked
    elsewhere, and over an empty one; and then both walked on together stay the same."""
    for kernels in (K, pure()):
        up = _walk(kernels, new_book(256), 300, 3)
        down = _walk(kernels, new_book(256), 300, -2)
        assert kernels.book_same(up, down) == 0
        kernels.book_copy(down, up)
        assert np.array_equal(down, up)
        empty = new_book(256)
        kernels.book_copy(empty, up)
        assert np.array_equal(empty, up)
        kernels.book_copy(up, new_book(256))  # copying an empty book empties it
        assert np.array_equal(up, new_book(256))
        a, b = _walk(kernels, new_book(256), 50, 5), _walk(kernels, new_book(256), 50, 5)
        assert kernels.book_same(a, b) == 1


def test_every_single_difference_is_seen():
    """One slot, one header word or one bitmap word changed: book_same says 0."""
    base = _walk(K, new_book(1024), 40, 1)
    w = int(base[D.BK_SLOTS])
    for side in (BID, ASK):
        best = int(base[D.BK_BEST + side])
        slot = D.BK_Q + side * w + best
        block = D.BK_Q + 2 * w + side * (w >> 6) + (best >> 6)
        deeper = int(K._next_below(base, side, best))  # a level below the best: not the first compared
        for idx in (slot, D.BK_Q + side * w + deeper, block, D.BK_N + side, D.BK_DROPPED + side, D.BK_LOW + side):
            other = base.copy()
            other[idx] += 1
            for kernels in (K, pure()):
                assert kernels.book_same(base, other) == 0, idx
                assert kernels.book_same(other, base) == 0, idx
    assert K.book_same(base, new_book(512)) == 0  # another geometry
    assert K.book_same(base, base.copy()) == 1
    kept = base.copy()
    for kernels in (K, pure()):
        kernels.book_copy(base, base)  # onto itself: nothing changes
        assert np.array_equal(base, kept)
