"""How a simulated venue's market differs from the feed's, shared by router and execution.

Each simulated venue sees the feed's market shifted by `price_offset_ticks`
ticks and scaled to `size_pct` percent of the size, floored to the lot grid
(see common/router_config.py). The router decides on these books and the
execution engine's simulated exchanges fill on them, so both must derive
them identically: this is the one place that does.
"""

from __future__ import annotations

import numpy as np

from common import events
from common.hotpath.venue import venue_levels_into, venue_sides_packed
from common.router_config import VenueConfig
from common.units import SymbolSpec


def venue_levels(packed: bytes, venue: VenueConfig, spec: SymbolSpec, delta: bool) -> bytes:
    if not packed:
        return packed
    flat = events.unpack_levels(packed).reshape(-1)  # validates whole (price, qty) pairs
    out = np.empty_like(flat)
    m = venue_levels_into(flat, out, venue.price_offset_ticks * spec.tick, venue.size_pct, spec.step, delta)
    return out[:m].tobytes()


def _venue_sides(bids: bytes, asks: bytes, venue: VenueConfig, spec: SymbolSpec, delta: bool) -> tuple[bytes, bytes]:
    """(venue_levels(bids, ...), venue_levels(asks, ...)) with one kernel call on the packed bytes."""
    if len(bids) % 16 or len(asks) % 16:
        events.unpack_levels(bids)  # raises the FrameError of a torn (price, qty) pair
        events.unpack_levels(asks)
    nb = len(bids) >> 3
    out = np.empty(nb + (len(asks) >> 3), np.int64)
    mb, ma = venue_sides_packed(bids, asks, out, venue.price_offset_ticks * spec.tick, venue.size_pct, spec.step, delta)
    return (out[:mb].tobytes() if bids else bids), (out[nb : nb + ma].tobytes() if asks else asks)


def venue_market(body: events._Body, venue: VenueConfig, spec: SymbolSpec) -> events._Body | None:
    """The venue's version of a feed market-data event (None if nothing is left of it)."""
    if venue.price_offset_ticks == 0 and venue.size_pct == 100:
        return body
    t = type(body)  # body types are final: identity is cheaper than isinstance() on msgspec structs
    if t is events.Trade:  # the most frequent first
        px = body.price + venue.price_offset_ticks * spec.tick
        qty = body.qty * venue.size_pct // 100 // spec.step * spec.step
        if px <= 0 or qty <= 0:
            return None
        return events.Trade(body.symbol, body.trade_id, px, qty, body.buyer_maker)
    if t is events.BookDelta:
        bids, asks = _venue_sides(body.bids, body.asks, venue, spec, True)
        return events.BookDelta(body.symbol, body.first_id, body.last_id, bids, asks)
    if t is events.BookSnapshot:
        bids, asks = _venue_sides(body.bids, body.asks, venue, spec, False)
        return events.BookSnapshot(body.symbol, body.update_id, bids, asks)
    return body
