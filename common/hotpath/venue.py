"""Simulated-venue hot path: deriving a venue's book levels from the feed's.

Contract (as common.hotpath.kernels): every function is ``@kernel``
(``njit(cache=True, _nrt=False)``), takes only numpy int64 arrays, integers
and (the packed entry point) a book event's own ``bytes``, returns integers,
allocates nothing (the caller passes the output array), reads no clock, does
no I/O, and is valid plain Python with the same result (``kernel.py_func``
calls the compiled helpers; tests/unit/hotpath/_twin.py loads a twin that is
Python all the way down). Called
by ``common.venues`` for router and execution alike, so the live services
and the backtester derive venue books with this one kernel.

Arithmetic is int64 with numpy's semantics (floor ``//``), exactly what the
former numpy expression computed, element by element.
"""

from __future__ import annotations

import numpy as np  # noqa: F401  (kernels take numpy arrays)

from common.hotpath.kernels import _le_i64, inline_kernel, kernel


@inline_kernel
def venue_qty(qty, size_pct, step):
    """A feed quantity as the venue sees it: scaled to size_pct percent, floored to whole
    steps (the one place this rule is written in the kernels; common.venues has it for a
    print in Python)."""
    return qty * size_pct // 100 // step * step


@kernel
def venue_levels_into(flat, out, price_add, size_pct, step, delta):
    """Flat (price, qty) int64 pairs -> the venue's pairs in `out`; returns the int64 count written.

    Each level's price is shifted by `price_add` pipettes and its qty scaled
    to `size_pct` percent, floored to whole `step`s. A level whose price is
    not > 0 is dropped; unless `delta`, a level whose qty is 0 is dropped too
    (a delta's qty 0 means "remove the level"). `out` holds >= len(flat).
    """
    m = 0
    for i in range(0, flat.shape[0] - 1, 2):
        px = flat[i] + price_add
        qty = venue_qty(flat[i + 1], size_pct, step)
        if px > 0 and (delta or qty > 0):
            out[m] = px
            out[m + 1] = qty
            m += 2
    return m


@kernel
def _venue_packed_into(buf, out, o, price_add, size_pct, step, delta):
    """venue_levels_into of a side's packed bytes, written from out[o]; returns the count."""
    m = 0
    for off in range(0, len(buf) - 15, 16):
        px = _le_i64(buf, off) + price_add
        qty = venue_qty(_le_i64(buf, off + 8), size_pct, step)
        if px > 0 and (delta or qty > 0):
            out[o + m] = px
            out[o + m + 1] = qty
            m += 2
    return m


@kernel
def venue_sides_packed(bids, asks, out, price_add, size_pct, step, delta):
    """venue_levels_into of both sides of a book event, straight from its packed bytes
    (whole 16-byte pairs; the caller rejects torn input), in one call: the bids' pairs go
    to out[0:mb], the asks' to out[nb:nb + ma] with nb = len(bids) // 8; returns (mb, ma).
    `out` holds >= (len(bids) + len(asks)) // 8 int64s. Bytes in, not numpy views: two
    np.frombuffer calls cost more Python time than the whole kernel."""
    mb = _venue_packed_into(bids, out, 0, price_add, size_pct, step, delta)
    ma = _venue_packed_into(asks, out, len(bids) >> 3, price_add, size_pct, step, delta)
    return mb, ma
