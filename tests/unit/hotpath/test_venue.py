"""The venue-levels kernel: compiled, its pure-Python twin, and the numpy expression it replaced agree."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common import events
from common.hotpath.venue import venue_levels_into, venue_sides_packed
from common.router_config import VenueConfig
from common.units import BUILTIN, SymbolSpec
from common.venues import venue_levels, venue_market
from tests.unit.hotpath._twin import pure_venue

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def numpy_reference(packed: bytes, venue: VenueConfig, spec: SymbolSpec, delta: bool) -> bytes:
    """What common.venues.venue_levels computed before the kernel (numpy, whole arrays)."""
    lv = events.unpack_levels(packed).copy()
    if not len(lv):
        return packed
    lv[:, 0] += venue.price_offset_ticks * spec.tick
    lv[:, 1] = lv[:, 1] * venue.size_pct // 100 // spec.step * spec.step
    keep = lv[:, 0] > 0
    if not delta:
        keep &= lv[:, 1] > 0
    return np.ascontiguousarray(lv[keep]).tobytes()


levels_st = st.lists(st.tuples(st.integers(1, 10**9), st.integers(0, 10**12)), max_size=40)


@SETTINGS
@given(
    levels=levels_st,
    offset=st.integers(-50, 50),
    size_pct=st.integers(1, 300),
    tick=st.sampled_from([1, 5, 100]),
    step=st.sampled_from([1, 1_000, 7_000]),
    delta=st.booleans(),
)
def test_kernel_equals_numpy_and_twin(levels, offset, size_pct, tick, step, delta) -> None:
    spec = SymbolSpec("XUSDT", 2, 8, tick, step)
    venue = VenueConfig(name="v", fee_bps=0, price_offset_ticks=offset, size_pct=size_pct)
    packed = events.pack_levels(levels)
    want = numpy_reference(packed, venue, spec, delta)
    assert venue_levels(packed, venue, spec, delta) == want
    flat = np.frombuffer(packed, dtype=np.int64)
    out = np.zeros_like(flat)
    m = venue_levels_into.py_func(flat, out, offset * tick, size_pct, step, delta)
    assert out[:m].tobytes() == want


def test_empty_and_whole_book_removed() -> None:
    spec = BUILTIN["BTCUSDT"]
    venue = VenueConfig(name="v", fee_bps=0, price_offset_ticks=-10, size_pct=50)
    assert venue_levels(b"", venue, spec, True) == b""
    gone = events.pack_levels([(5, 1_000_000)])  # price 5 - 10 ticks <= 0: dropped
    assert venue_levels(gone, venue, spec, False) == b""
    body = events.BookDelta("BTCUSDT", 1, 2, gone, b"")
    vb = venue_market(body, venue, spec)
    assert isinstance(vb, events.BookDelta) and vb.bids == b"" and vb.asks == b""


@SETTINGS
@given(
    bids=levels_st,
    asks=levels_st,
    offset=st.integers(-50, 50),
    size_pct=st.integers(1, 300),
    delta=st.booleans(),
)
def test_both_sides_in_one_call_equal_one_side_at_a_time(bids, asks, offset, size_pct, delta) -> None:
    spec = BUILTIN["BTCUSDT"]
    if offset == 0 and size_pct == 100:
        size_pct = 99  # venue_market passes the feed's own event through unchanged
    venue = VenueConfig(name="v", fee_bps=0, price_offset_ticks=offset, size_pct=size_pct)
    pb, pa = events.pack_levels(bids), events.pack_levels(asks)
    want = (numpy_reference(pb, venue, spec, delta), numpy_reference(pa, venue, spec, delta))
    body = events.BookDelta("BTCUSDT", 1, 2, pb, pa) if delta else events.BookSnapshot("BTCUSDT", 1, pb, pa)
    vb = venue_market(body, venue, spec)
    assert (vb.bids, vb.asks) == want
    nb = len(pb) // 8
    for fn in (venue_sides_packed, pure_venue().venue_sides_packed):  # compiled == the all-Python twin
        out = np.zeros(nb + len(pa) // 8, dtype=np.int64)
        mb, ma = fn(pb, pa, out, offset * spec.tick, size_pct, spec.step, delta)
        assert (out[:mb].tobytes(), out[nb : nb + ma].tobytes()) == want
