"""common.ladder's LadderBook (risk's, the router's and the simulated exchange's book) against
a plain dict model: the same answers as common.book.PriceBook for every level within its window."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common import events
from common.book import PriceBook
from common.ladder import LadderBook
from tests.unit.router.test_pricebook import model_apply as dict_apply

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

level = st.tuples(st.integers(1, 400), st.integers(0, 5))
update = st.tuples(st.lists(level, max_size=30), st.lists(level, max_size=30), st.booleans())


def model_apply(bids: dict[int, int], asks: dict[int, int], u) -> None:
    """A snapshot replaces the book with its qty > 0 rows (a qty-0 row in a snapshot is
    skipped, as the kernel book and the simulated exchange always did; PriceBook would
    apply it as a removal -- Binance never sends one)."""
    ub, ua, snapshot = u
    if snapshot:
        ub, ua = [lv for lv in ub if lv[1] > 0], [lv for lv in ua if lv[1] > 0]
    dict_apply(bids, asks, (ub, ua, snapshot))


def levels_of(dump: dict) -> dict:
    return {"bids": dump["bids"], "asks": dump["asks"]}


def model_dump(bids: dict[int, int], asks: dict[int, int]) -> dict[str, list[list[int]]]:
    return {"bids": [[p, bids[p]] for p in sorted(bids)], "asks": [[p, asks[p]] for p in sorted(asks)]}


@SETTINGS
@given(
    updates=st.lists(update, max_size=15),
    n=st.integers(1, 40),
    packed=st.booleans(),
    sets=st.lists(st.tuples(st.booleans(), st.integers(1, 400), st.integers(0, 5)), max_size=10),
    limit=st.integers(0, 400),
)
def test_ladder_book_matches_the_dict_model_and_price_book(updates, n, packed, sets, limit) -> None:
    book, ref = LadderBook(), PriceBook()
    bids: dict[int, int] = {}
    asks: dict[int, int] = {}
    for u in updates:
        ub, ua, snapshot = u
        if packed:
            assert book.apply_packed(events.pack_levels(ub), events.pack_levels(ua), snapshot) == 0
        else:
            assert book.apply(ub, ua, snapshot) == 0
        model_apply(bids, asks, u)
        assert levels_of(book.dump()) == model_dump(bids, asks)
        if snapshot:
            ref = PriceBook()
            ref.apply([(p, q) for p, q in bids.items()], [(p, q) for p, q in asks.items()])
        else:
            ref.apply(ub, ua)
        assert levels_of(book.dump()) == ref.dump()
        assert book.touch() == ref.touch()
        assert book.top(n) == ref.top(n)
    for bid_side, px, qty in sets:  # the simulated exchange's taker walk sets levels one by one
        book.set_qty(bid_side, px, qty)
        model_apply(bids, asks, ([(px, qty)], [], False) if bid_side else ([], [(px, qty)], False))
    for px in range(0, 402):
        assert book.qty(True, px) == bids.get(px, 0) and book.qty(False, px) == asks.get(px, 0)
    bp, ap = sorted(bids), sorted(asks)
    if limit:
        assert book.within(True, limit) == [(p, bids[p]) for p in reversed(bp) if p >= limit]
        assert book.within(False, limit) == [(p, asks[p]) for p in ap if p <= limit]
    else:
        assert book.within(True, 0) == [(p, bids[p]) for p in reversed(bp)]
        assert book.within(False, 0) == [(p, asks[p]) for p in ap]
    again = LadderBook.from_dump(book.dump())
    assert np.array_equal(again.book, book.book) and book.dropped() == 0


def test_levels_beyond_half_the_window_from_the_best_are_dropped_and_counted() -> None:
    book = LadderBook(slots=1024)  # the first level sits at slot 768: 768 slots below it
    book.apply([(10_000, 1), (10_000 - 768, 2), (10_000 - 769, 3)], [(10_001, 1), (10_001 + 900, 4)])
    assert levels_of(book.dump()) == {"bids": [[9_232, 2], [10_000, 1]], "asks": [[10_001, 1]]}
    assert book.dropped() == 2  # a bid one slot below the window, an ask 900 above the best ask
    assert book.within(False, 20_000) == [(10_001, 1)]


def test_a_coarse_tick_gets_a_slot_per_tick_and_off_grid_rows_are_counted_not_applied() -> None:
    book = LadderBook(tick=10)
    assert book.apply([(1_000, 1), (995, 2)], [(1_010, 3)]) == 1
    assert book.touch() == (1_000, 1_010) and book.qty(True, 995) == 0 and book.qty(True, 1_000) == 1


def test_a_torn_level_pair_is_a_frame_error() -> None:
    with pytest.raises(events.FrameError):
        LadderBook().apply_packed(events.pack_levels([(1, 1)])[:-3], b"")


def test_a_restored_book_is_the_very_same_book_window_and_all() -> None:
    """A book whose best rose within its window holds levels far below it that a fresh window
    (best at 3/4) would not: the dump keeps the window, so the restored book keeps them too
    and goes on exactly as the live one."""
    live = LadderBook(slots=1024)
    live.apply([(10_000, 1), (9_300, 2)], [(10_010, 1)], snapshot=True)  # 10,000 at slot 768, 9,300 at 68
    live.apply([(10_255, 3)], [(10_300, 1)])  # the best rises to slot 1023: no slide
    live.apply([(10_000, 0)], [])
    restored = LadderBook.from_dump(live.dump(), slots=1024)
    assert np.array_equal(restored.book, live.book)
    for b in (live, restored):
        b.apply([(10_255, 0)], [])  # the best falls 955 slots: the window slides down
    assert np.array_equal(restored.book, live.book) and restored.dump()["bids"] == [[9_300, 2]]


def test_a_dump_that_does_not_fit_is_refused_before_anything_changes() -> None:
    book = LadderBook(slots=1024)
    book.apply([(100, 1), (90, 2)], [(110, 3)])
    dump = book.dump()
    for bad in (
        {"bids": dump["bids"], "asks": dump["asks"]},  # taken by the dict-book build: no header
        dict(dump, bids=dump["bids"][1:]),  # one level short of the header's count
        dict(dump, asks=[[110, 0]]),  # a zero quantity
    ):
        with pytest.raises(ValueError):
            LadderBook.from_dump(bad, slots=1024)
    with pytest.raises(ValueError, match="slots"):
        LadderBook.from_dump(dump, slots=2048)
    with pytest.raises(ValueError, match="grid"):
        LadderBook.from_dump(dump, tick=7, slots=1024)


@SETTINGS
@given(
    levels=st.lists(st.tuples(st.integers(1, 400), st.integers(1, 10_000)), max_size=40),
    n=st.integers(0, 50),
    offset=st.integers(-300, 300),
    pct=st.integers(1, 200),
    step=st.integers(1, 50),
    bid_side=st.booleans(),
)
def test_venue_levels_are_the_python_transform_of_the_top_n(levels, n, offset, pct, step, bid_side) -> None:
    book = LadderBook()
    book.apply(levels if bid_side else [], [] if bid_side else levels)
    want = []
    for px, qty in book.levels(bid_side, n):
        vpx, vqty = px + offset, qty * pct // 100 // step * step
        if vpx > 0 and vqty > 0:
            want.append((vpx, vqty))
    assert book.venue_levels(bid_side, n, offset, pct, step) == want
