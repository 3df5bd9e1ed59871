"""The kernel book's run-in-a-region layout against a dict model.

Each side keeps its levels as a run of rows that can grow or shrink at
either end and is re-centred when it reaches a region edge, and a delta's
rows are searched from the rank the previous row landed on. These tests
drive every path of that (rows in price order, in reverse, shuffled;
removals at the touch, at the far end and in the middle; a ladder that
walks far enough to force re-centring; a full side) and compare the book
with a plain dict, compiled and pure Python alike.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.hotpath import book_levels, new_book
from common.hotpath import dtypes as D
from common.hotpath import kernels as K
from tests.unit.hotpath._twin import pure

BID, ASK = D.SIDE_BID, D.SIDE_ASK
SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _model_side(model, side):
    items = [(p, q) for (s, p), q in model.items() if s == side]
    return sorted(items, reverse=(side == BID))


def _check_layout(book):
    cap = (book.shape[0] - D.BK_BASE) // 2
    for side in (BID, ASK):
        n, lo = int(book[D.BK_HDR, side]), int(book[D.BK_LO, side])
        assert 0 <= n <= cap and 0 <= lo and lo + n <= cap, (side, n, lo, cap)


def _apply(kernels, book, batch):
    lv = np.array(batch, dtype=np.int64).reshape(-1, 3)
    kernels.book_apply_rows(book, lv, 0, lv.shape[0], 0)


row = st.tuples(st.sampled_from([BID, ASK]), st.integers(1, 60), st.integers(0, 5))
order = st.sampled_from(["as_given", "price_order", "reverse"])


@SETTINGS
@given(st.lists(st.tuples(st.lists(row, max_size=30), order), min_size=1, max_size=40))
def test_book_equals_a_dict_of_levels_when_capacity_is_ample(batches):
    pk = pure()
    books = [new_book(128), new_book(128)]  # compiled, pure Python
    model: dict[tuple[int, int], int] = {}
    for batch, how in batches:
        # keep bids below asks so the rows mean the same thing to both
        rows = [(s, p if s == BID else p + 100, q) for s, p, q in batch]
        if how == "price_order":  # as Binance sends them: bids down, asks up
            rows.sort(key=lambda r: (r[0], -r[1] if r[0] == BID else r[1]))
        elif how == "reverse":
            rows.sort(key=lambda r: (r[0], r[1] if r[0] == BID else -r[1]))
        for s, p, q in rows:
            if q == 0:
                model.pop((s, p), None)
            else:
                model[(s, p)] = q
        _apply(K, books[0], rows)
        _apply(pk, books[1], rows)
        for side in (BID, ASK):
            assert book_levels(books[0], side) == _model_side(model, side)
        assert np.array_equal(books[0], books[1])  # same bytes, stale rows included
        _check_layout(books[0])


def test_a_walking_ladder_recentres_and_stays_exact():
    """A market that drifts one way for a long time removes at one end of each
    side and adds at the other, pushing the run to a region edge again and again."""
    depth, cap = 20, 32
    book = new_book(cap)
    model: dict[tuple[int, int], int] = {}
    rng = np.random.default_rng(5)
    mid = 10_000
    for step in range(3_000):
        mid += 1 if step < 2_000 else -2  # up for a long way, then down fast
        rows = []
        for side, sign in ((BID, -1), (ASK, 1)):
            want = {mid + sign * (1 + i) for i in range(depth)}
            for s, p in [k for k in model if k[0] == side and k[1] not in want]:
                rows.append((s, p, 0))
                del model[(s, p)]
            for p in sorted(want, reverse=(side == BID)):
                q = int(rng.integers(1, 1_000))
                rows.append((side, p, q))
                model[(side, p)] = q
        _apply(K, book, rows)
        for side in (BID, ASK):
            assert book_levels(book, side) == _model_side(model, side)
        _check_layout(book)


@SETTINGS
@given(st.lists(st.lists(row, max_size=40), min_size=1, max_size=30), st.sampled_from([1, 2, 3, 8, 9]))
def test_a_small_book_keeps_true_levels_and_its_best(batches, cap):
    """With capacity pressure the book holds a subset of the true levels, with
    their true quantities, and never loses the true best to the capacity rule
    while that best was never dropped."""
    pk = pure()
    book, twin = new_book(cap), new_book(cap)
    model: dict[tuple[int, int], int] = {}
    for batch in batches:
        rows = [(s, p if s == BID else p + 100, q) for s, p, q in batch]
        for s, p, q in rows:
            if q == 0:
                model.pop((s, p), None)
            else:
                model[(s, p)] = q
        _apply(K, book, rows)
        _apply(pk, twin, rows)
        assert np.array_equal(book, twin)
        _check_layout(book)
        for side in (BID, ASK):
            got = book_levels(book, side)
            assert len(got) <= cap
            assert all(model.get((side, p)) == q for p, q in got)
            keys = [p if side == BID else -p for p, _ in got]
            assert keys == sorted(keys, reverse=True)  # best first, strictly
            assert len(set(keys)) == len(keys)


snap_row = st.tuples(st.sampled_from([BID, ASK, 7]), st.integers(-2, 60), st.integers(-1, 5))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(snap_row, max_size=60),
    st.sampled_from(["as_given", "best_first"]),
    st.sampled_from([4, 16, 64]),
)
def test_a_snapshot_equals_clearing_and_applying_its_rows(rows, how, cap):
    """The snapshot fast path (rows best first: placed without search) and its fallback (any other
    order, repeated prices) give the levels, and the rejected-row count, of a cleared book that
    gets the rows as a delta (less the valid qty-0 rows, which a snapshot skips and a delta would
    apply as removals) -- also past capacity, where the best `cap` levels stay."""
    if how == "best_first":
        rows = sorted(rows, key=lambda r: (r[0], -r[1] if r[0] == BID else r[1]))
    lv = np.array(rows, dtype=np.int64).reshape(-1, 3)
    as_delta = [r for r in rows if not (r[0] in (BID, ASK) and r[1] > 0 and r[2] == 0)]
    dv = np.array(as_delta, dtype=np.int64).reshape(-1, 3)
    pk = pure()
    for kernels in (K, pk):
        snap, ref = new_book(cap), new_book(cap)
        ref[D.BK_HDR + 2 :] = 99  # stale rows differ: only the run matters
        bad_snap = kernels.book_apply_rows(snap, lv, 0, lv.shape[0], 1)
        kernels.book_clear(ref)
        bad_ref = kernels.book_apply_rows(ref, dv, 0, dv.shape[0], 0)
        assert bad_snap == bad_ref
        _check_layout(snap)
        for side in (BID, ASK):
            assert book_levels(snap, side) == book_levels(ref, side), (side, kernels)
    compiled, twin = new_book(cap), new_book(cap)
    K.book_apply_rows(compiled, lv, 0, lv.shape[0], 1)
    pk.book_apply_rows(twin, lv, 0, lv.shape[0], 1)
    assert np.array_equal(compiled, twin)
