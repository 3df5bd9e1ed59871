"""common.book's PriceBook (the feed's local book, the dashboard's) against a plain dict model."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common import events
from common.book import PriceBook

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

level = st.tuples(st.integers(1, 60), st.integers(0, 5))  # narrow prices: many repeats, removals, crossings
update = st.tuples(st.lists(level, max_size=12), st.lists(level, max_size=12), st.booleans())


def model_apply(bids: dict[int, int], asks: dict[int, int], u) -> None:
    ub, ua, snapshot = u
    if snapshot:
        bids.clear()
        asks.clear()
    for side, levels in ((bids, ub), (asks, ua)):
        for px, qty in levels:
            if qty > 0:
                side[px] = qty
            else:
                side.pop(px, None)


@SETTINGS
@given(
    updates=st.lists(update, max_size=15),
    n=st.integers(-3, 8),
    packed=st.booleans(),
    cls=st.just(PriceBook),
)
def test_book_matches_the_dict_model(updates, n, packed, cls) -> None:
    book = cls()
    bids: dict[int, int] = {}
    asks: dict[int, int] = {}
    for u in updates:
        ub, ua, snapshot = u
        if packed:
            book.apply_packed(events.pack_levels(ub), events.pack_levels(ua), snapshot)
        else:
            book.apply(ub, ua, snapshot)
        model_apply(bids, asks, u)
        bp, ap = sorted(bids), sorted(asks)
        assert book.bids == bids and book.asks == asks
        assert book.dump() == {"bids": [[p, bids[p]] for p in bp], "asks": [[p, asks[p]] for p in ap]}
        assert book.touch() == (bp[-1] if bp else 0, ap[0] if ap else 0)
        assert book.best_bid() == ((bp[-1], bids[bp[-1]]) if bp else (0, 0))
        assert book.best_ask() == ((ap[0], asks[ap[0]]) if ap else (0, 0))
        assert book.crossed() == bool(bp and ap and bp[-1] >= ap[0])
        want_b = [(p, bids[p]) for p in reversed(bp[-n:])]  # the list-slice semantics it always had
        want_a = [(p, asks[p]) for p in ap[:n]]
        assert book.top(n) == (want_b, want_a)
        assert book.levels(True, n) == want_b and book.levels(False, n) == want_a
    again = cls.from_dump(book.dump())
    assert again.dump() == book.dump() and again.touch() == book.touch()
    other = cls()
    other.set_levels(dict(bids), dict(asks))
    assert other.dump() == book.dump() and other.top(n) == book.top(n) and other.touch() == book.touch()


deep_update = st.tuples(
    st.lists(st.tuples(st.integers(1, 400), st.integers(0, 3)), max_size=60),
    st.lists(st.tuples(st.integers(1, 400), st.integers(0, 3)), max_size=60),
    st.booleans(),
)


@SETTINGS
@given(
    updates=st.lists(deep_update, min_size=1, max_size=12),
    n=st.integers(1, 12),
    removals=st.lists(st.integers(1, 400), max_size=20),
)
def test_deep_book_top_n_and_direct_removals(updates, n, removals) -> None:
    """The heap path of levels() (n well below the depth), and dict entries removed directly
    (the simulated exchange's book walk does that) are never reported again."""
    book = PriceBook()
    bids: dict[int, int] = {}
    asks: dict[int, int] = {}
    for i, u in enumerate(updates):
        ub, ua, snapshot = u
        if i % 2 and not snapshot:
            book.apply_flat([x for lv in ub for x in lv], [x for lv in ua for x in lv])
        else:
            book.apply(ub, ua, snapshot)
        model_apply(bids, asks, u)
    for px in removals:
        for side, mine in ((book.bids, bids), (book.asks, asks)):
            if px in mine:
                del side[px]
                del mine[px]
    bp, ap = sorted(bids), sorted(asks)
    assert book.levels(True, n) == [(p, bids[p]) for p in reversed(bp[-n:])]
    assert book.levels(False, n) == [(p, asks[p]) for p in ap[:n]]
    assert book.touch() == (bp[-1] if bp else 0, ap[0] if ap else 0)
    other = PriceBook()
    other.set_levels(dict(bids), dict(asks))
    assert other.dump() == book.dump() and other.top(n) == book.top(n)


def test_levels_flat_reads_packed_levels_exactly() -> None:
    import pytest

    from common.book import levels_flat

    levels = [(1, 2), (3, (1 << 62) + 5), (7, 0)]
    packed = events.pack_levels(levels)
    assert levels_flat(packed) == [x for lv in levels for x in lv]
    assert levels_flat(packed) is levels_flat(packed)  # the same immutable buffer: read once
    buf = bytearray(packed)
    first = levels_flat(buf)
    buf[0] = 9  # a mutable buffer is never remembered
    assert levels_flat(buf) != first and levels_flat(buf)[0] == 9
    assert levels_flat(b"") == []
    with pytest.raises(events.FrameError):
        levels_flat(packed[:-8])
