"""The kernel book's price-indexed ladder against a dict model.

Each side is a window of price slots; a row is one store at its slot, the best
is found again by a block-skipping walk when it is removed, and the window
slides when the best leaves its middle. These tests drive every path of that
(rows in price order, in reverse, shuffled; removals at the touch, at the far
end and in the middle; a ladder that walks far enough to slide the window both
ways; levels outside a small window) and compare the book with a plain dict,
compiled and pure Python alike.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.hotpath import book_levels, book_load, book_state, new_book
from common.hotpath import dtypes as D
from common.hotpath import kernels as K
from tests.unit.hotpath._twin import check_ladder, pure

BID, ASK = D.SIDE_BID, D.SIDE_ASK
SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _model_side(model, side):
    items = [(p, q) for (s, p), q in model.items() if s == side]
    return sorted(items, reverse=(side == BID))


def _apply(kernels, book, batch, snapshot=0):
    lv = np.array(batch, dtype=np.int64).reshape(-1, 3)
    return kernels.book_apply_rows(book, lv, 0, lv.shape[0], snapshot)


def _dropped(book, side):
    return int(book[D.BK_DROPPED + side])


row = st.tuples(st.sampled_from([BID, ASK]), st.integers(1, 60), st.integers(0, 5))
BAD = 7  # not a side: such a row is rejected (counted), wherever it falls in a run of one side's rows
row_or_bad = st.one_of(row, row, row, st.tuples(st.just(BAD), st.integers(1, 60), st.integers(0, 5)))
order = st.sampled_from(["as_given", "price_order", "reverse"])


@SETTINGS
@given(st.lists(st.tuples(st.lists(row_or_bad, max_size=30), order), min_size=1, max_size=40))
def test_book_equals_a_dict_of_levels_when_the_window_is_ample(batches):
    pk = pure()
    books = [new_book(1024), new_book(1024)]  # compiled, pure Python
    model: dict[tuple[int, int], int] = {}
    for batch, how in batches:
        # keep bids below asks so the rows mean the same thing to both
        rows = [(s, p if s == BID else p + 100, q) for s, p, q in batch]
        if how == "price_order":  # as Binance sends them: bids down, asks up
            rows.sort(key=lambda r: (r[0], -r[1] if r[0] == BID else r[1]))
        elif how == "reverse":
            rows.sort(key=lambda r: (r[0], r[1] if r[0] == BID else -r[1]))
        for s, p, q in rows:
            if s == BAD:
                continue
            if q == 0:
                model.pop((s, p), None)
            else:
                model[(s, p)] = q
        bad = sum(r[0] == BAD for r in rows)
        assert _apply(K, books[0], rows) == bad
        assert _apply(pk, books[1], rows) == bad
        for side in (BID, ASK):
            assert book_levels(books[0], side) == _model_side(model, side)
            assert _dropped(books[0], side) == 0
        assert np.array_equal(books[0], books[1])  # same bytes
        check_ladder(books[0])


def test_a_walking_ladder_slides_its_window_both_ways_and_stays_exact():
    """A market that drifts one way for a long time walks the best out of a small
    window again and again (up, then down): every level within W/2 slots of the
    best is kept, so a 20-deep book in a 64-slot window stays exact."""
    depth = 20
    book, twin = new_book(64), new_book(64)
    pk = pure()
    model: dict[tuple[int, int], int] = {}
    rng = np.random.default_rng(5)
    mid = 10_000
    keys0 = set()
    for step in range(1_500):
        mid += 1 if step < 1_000 else -2  # up for a long way, then down fast
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
        if step % 50 == 0:  # the pure twin is slow: every 50th step, from the same book
            twin[:] = book
            _apply(pk, twin, rows)
        _apply(K, book, rows)
        if step % 50 == 0:
            assert np.array_equal(book, twin)
        keys0.add((int(book[D.BK_KEY0]), int(book[D.BK_KEY0 + 1])))
        for side in (BID, ASK):
            assert book_levels(book, side) == _model_side(model, side)
            assert _dropped(book, side) == 0
        check_ladder(book)
    assert len(keys0) > 20  # the windows really moved


@SETTINGS
@given(st.lists(st.lists(row, max_size=40), min_size=1, max_size=30), st.sampled_from([64, 128]))
def test_a_small_window_keeps_true_levels(batches, slots):
    """Prices spread over several windows: the book holds a subset of the true levels with
    their true quantities, best first; a side that never dropped a level is exact."""
    pk = pure()
    book, twin = new_book(slots), new_book(slots)
    model: dict[tuple[int, int], int] = {}
    for batch in batches:
        rows = [(s, (p if s == BID else p + 60) * 7, q) for s, p, q in batch]  # ~400 pipettes
        for s, p, q in rows:
            if q == 0:
                model.pop((s, p), None)
            else:
                model[(s, p)] = q
        _apply(K, book, rows)
        _apply(pk, twin, rows)
        assert np.array_equal(book, twin)
        check_ladder(book)
        for side in (BID, ASK):
            got = book_levels(book, side)
            assert all(model.get((side, p)) == q for p, q in got)
            keys = [p if side == BID else -p for p, _ in got]
            assert keys == sorted(keys, reverse=True) and len(set(keys)) == len(keys)
            if _dropped(book, side) == 0:
                assert got == _model_side(model, side)


def test_levels_outside_the_window_are_dropped_and_counted():
    b = new_book(64)  # the first level lands at slot 48: 48 slots below it, 15 above
    _apply(K, b, [(BID, 1000, 5), (BID, 952, 1), (BID, 951, 2)])  # 951 is one below slot 0
    assert book_levels(b, BID) == [(1000, 5), (952, 1)] and _dropped(b, BID) == 1
    _apply(K, b, [(BID, 1010, 3)])  # within the window: no slide
    assert int(b[D.BK_KEY0]) == 952
    _apply(K, b, [(BID, 1020, 7)])  # above it: the window slides up 20 (952 leaves), 1020 sits at 48
    assert int(b[D.BK_KEY0]) == 972 and K.best_bid(b) == 1020
    assert book_levels(b, BID) == [(1020, 7), (1010, 3), (1000, 5)] and _dropped(b, BID) == 2
    _apply(K, b, [(BID, 1020, 0), (BID, 1010, 3)])  # best 1010 at slot 38: still in the top half
    assert K.best_bid(b) == 1010 and int(b[D.BK_KEY0]) == 972
    _apply(K, b, [(BID, 1010, 0), (BID, 985, 4)])  # best 1000 at slot 28: slides down 20
    assert int(b[D.BK_KEY0]) == 952 and book_levels(b, BID) == [(1000, 5), (985, 4)]
    check_ladder(b)


def test_a_removed_best_is_found_again_across_empty_blocks():
    b = new_book(1024)
    _apply(K, b, [(ASK, 5000, 1), (ASK, 5300, 2), (ASK, 5700, 3)])  # 300 and 400 slots apart
    _apply(K, b, [(ASK, 5000, 0)])
    assert K.best_ask(b) == 5300
    _apply(K, b, [(ASK, 5300, 0), (ASK, 5001, 0)])  # removing an absent level changes nothing
    assert K.best_ask(b) == 5700 and book_levels(b, ASK) == [(5700, 3)]
    _apply(K, b, [(ASK, 5700, 0), (ASK, 5650, 9), (ASK, 5650, 0), (ASK, 5660, 8)])
    assert book_levels(b, ASK) == [(5660, 8)]  # emptied and refilled within one call
    check_ladder(b)


def test_a_tick_wider_than_one_pipette_gives_a_slot_per_tick_and_rejects_off_grid_prices():
    b = new_book(64, tick=5)
    bad = _apply(K, b, [(BID, 1000, 1), (BID, 995, 2), (BID, 997, 9), (ASK, 1005, 3), (ASK, 1240, 4)])
    assert bad == 1  # 997 is off the grid
    assert book_levels(b, BID) == [(1000, 1), (995, 2)]
    assert book_levels(b, ASK) == [(1005, 3), (1240, 4)]  # 47 ticks up: one window
    check_ladder(b)


def test_book_state_round_trips_and_refuses_another_geometry():
    b = new_book(128)
    _apply(K, b, [(BID, 100, 5), (BID, 90, 2), (ASK, 101, 3), (ASK, 140, 1)])
    c = new_book(128)
    book_load(c, book_state(b))
    assert np.array_equal(b, c)
    for other in (new_book(256), new_book(128, tick=2)):
        try:
            book_load(other, book_state(b))
        except ValueError as e:
            assert "slots" in str(e)
        else:
            raise AssertionError("loaded a book of another geometry")


snap_row = st.tuples(st.sampled_from([BID, ASK, 7]), st.integers(-2, 60), st.integers(-1, 5))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(snap_row, max_size=60),
    st.sampled_from(["as_given", "best_first"]),
    st.sampled_from([64, 1024]),
    st.lists(row, max_size=20),
)
def test_a_snapshot_equals_clearing_and_applying_its_rows(rows, how, slots, before):
    """A snapshot on any earlier book gives the levels, and the rejected-row count, of a fresh
    book that gets the rows as a delta (less the valid qty-0 rows, which a snapshot skips and a
    delta would apply as removals)."""
    if how == "best_first":
        rows = sorted(rows, key=lambda r: (r[0], -r[1] if r[0] == BID else r[1]))
    as_delta = [r for r in rows if not (r[0] in (BID, ASK) and r[1] > 0 and r[2] == 0)]
    pk = pure()
    for kernels in (K, pk):
        snap, ref = new_book(slots), new_book(slots)
        _apply(kernels, snap, before)
        bad_snap = _apply(kernels, snap, rows, snapshot=1)
        bad_ref = _apply(kernels, ref, as_delta)
        assert bad_snap == bad_ref
        check_ladder(snap)
        for side in (BID, ASK):
            assert book_levels(snap, side) == book_levels(ref, side), (side, kernels)


def test_a_level_within_half_the_window_is_kept_however_the_rows_are_batched():
    """The best leaves and a level far below arrives in one call: the window slides down first
    (as it would at the end of the call), so the level is kept, as when the rows come apart."""
    pk = pure()
    for kernels in (K, pk):
        one, two = new_book(1024), new_book(1024)
        for b in (one, two):
            _apply(kernels, b, [(BID, 10_000, 1), (BID, 9_300, 1)], snapshot=1)  # slots 768 and 68
        _apply(kernels, one, [(BID, 10_000, 0), (BID, 9_200, 5)])
        _apply(kernels, two, [(BID, 10_000, 0)])
        _apply(kernels, two, [(BID, 9_200, 5)])
        assert book_levels(one, BID) == book_levels(two, BID) == [(9_300, 1), (9_200, 5)]
        assert _dropped(one, BID) == 0
        check_ladder(one)


def test_a_price_beyond_px_max_is_rejected_not_wrapped():
    pk = pure()
    for kernels in (K, pk):
        b = new_book(64)
        bad = _apply(kernels, b, [(BID, 100, 1), (BID, 2**63 - 1, 1), (ASK, D.PX_MAX + 1, 1), (ASK, 101, 1)])
        assert bad == 2 and book_levels(b, BID) == [(100, 1)] and book_levels(b, ASK) == [(101, 1)]


def test_book_load_refuses_inconsistent_data_and_leaves_the_book_alone():
    b = new_book(128)
    _apply(K, b, [(BID, 100, 5), (ASK, 101, 3)])
    good = book_state(b)
    target = new_book(128)
    _apply(K, target, [(BID, 50, 1)])
    before = target.copy()
    hdr = np.frombuffer(good[0], dtype=np.int64).copy()
    bids = np.frombuffer(good[1], dtype=np.int64).reshape(-1, 2).copy()
    for bad in (
        [good[0], (bids + [[200, 0]]).tobytes(), good[2]],  # a slot beyond the window
        [good[0], (bids * [[1, 0]]).tobytes(), good[2]],  # a zero quantity
        [good[0], (bids * [[1, 0]] + [[0, D.QTY_MAX + 1]]).tobytes(), good[2]],  # above what a row may hold
        [hdr.tobytes()[:-8], good[1], good[2]],  # a torn header
        [good[0], good[1]],  # a side missing
    ):
        try:
            book_load(target, bad)
        except ValueError:
            pass
        else:
            raise AssertionError("loaded inconsistent book data")
        assert np.array_equal(target, before)


def test_depth_qty_saturates_however_many_levels_it_sums():
    """The microprice's sums read at most MP_LEVELS_MAX levels (so they cannot leave
    int64); depth_qty reads any number, so it saturates at I64_SAT."""
    for kernels in (K, pure()):
        b = new_book(16_384)
        _apply(kernels, b, [(BID, 10_000 + i, D.QTY_MAX) for i in range(9_000)])
        assert kernels.depth_qty(b, BID, 9_000) == D.I64_SAT
        assert kernels.depth_qty(b, BID, 3) == 3 * D.QTY_MAX
        bv, _ = kernels.weighted_vols(b, D.MP_LEVELS_MAX)  # the largest weighted sum there is
        assert bv == 2_080 * D.QTY_MAX < D.I64_SAT
