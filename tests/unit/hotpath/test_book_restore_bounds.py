"""Review of the range-only window slide (kernels._move_window): it trusts BK_LOW to be a
slot of the side (0 <= low), but book_restore / book_load checked only low <= the lowest
level, so a header with a negative low bound was accepted (now refused). The old slide rebuilt the whole
window (and healed the bound); the new one reads and clears slots [low, best] and blocks
[low >> 6, best >> 6], which for the ask side with low < 0 are the bid side's slots and
last block bitmap.
"""

from __future__ import annotations

import numpy as np

from common.hotpath import book_levels, book_load, book_state, new_book
from common.hotpath import dtypes as D
from common.hotpath import kernels as K
from tests.unit.hotpath._twin import check_ladder, pure

BID, ASK = D.SIDE_BID, D.SIDE_ASK
W = 64


def _apply(kernels, book, rows):
    lv = np.array(rows, dtype=np.int64).reshape(-1, 3)
    return kernels.book_apply_rows(book, lv, 0, lv.shape[0], 0)


def _book_with_ask_low(low: int) -> np.ndarray | None:
    """A book with bids at 1000..993 and asks at 1001..1004, loaded from its state with the
    ask side's low bound set to `low`; None if book_load refuses it."""
    b = new_book(W)
    _apply(K, b, [(BID, 1000 - k, 5) for k in range(8)] + [(ASK, 1001 + k, 3) for k in range(4)])
    state = book_state(b)
    hdr = np.frombuffer(state[0], dtype=np.int64).copy()
    hdr[D.BK_LOW + ASK] = low
    out = new_book(W)
    try:
        book_load(out, [hdr.tobytes(), state[1], state[2]])
    except ValueError:
        return None
    return out


def test_a_restored_low_bound_outside_the_side_is_refused():
    """book_restore refuses a negative low bound (a slide would then read and clear the
    other side's slots and bitmaps), and keeps accepting every bound a book really has."""
    for low in (-1, -64):
        assert _book_with_ask_low(low) is None
    real = new_book(W)
    _apply(K, real, [(BID, 1000 - k, 5) for k in range(8)] + [(ASK, 1001 + k, 3) for k in range(4)])
    low = int(real[D.BK_LOW + ASK])
    for ok in (0, low):
        b = _book_with_ask_low(ok)
        assert b is not None
        bids = book_levels(b, BID)
        for kernels in (K, pure()):
            c = b.copy()
            _apply(kernels, c, [(ASK, 900, 2)])  # the ask window slides up: the bids stay
            assert book_levels(c, BID) == bids
            assert int(c[D.BK_DROPPED + ASK]) == 4
            check_ladder(c)
    empty = new_book(W)
    state = book_state(empty)
    for bad in (-1, W + 1):
        hdr = np.frombuffer(state[0], dtype=np.int64).copy()
        hdr[D.BK_LOW + BID] = bad
        try:
            book_load(new_book(W), [hdr.tobytes(), state[1], state[2]])
        except ValueError:
            continue
        raise AssertionError(f"an empty side's low bound {bad} was accepted")
