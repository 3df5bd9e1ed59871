"""on_book_packed (an event's packed bytes in, one call) equals level_rows + on_book_delta /
on_book_snapshot, compiled and as the pure-Python twin, on random books; the byte reader under it
reads every int64 (negative ones too) as numpy does."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common import events
from common.hotpath import default_params, new_book, new_levels, new_state
from common.hotpath import dtypes as D
from common.hotpath import kernels as K
from services.strategy.core import level_rows
from tests.unit.hotpath._twin import call_strict, pure
from tests.unit.hotpath.test_properties import gen_stream, params_st

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(params_st, st.integers(0, 2**32), st.sampled_from([4, 64]))
def test_on_book_packed_equals_rows_path(kw, seed, cap):
    p = default_params(**kw)
    ev, lv = gen_stream(seed, 80, kw["tick"])
    twin = pure()
    s1, b1 = new_state(), new_book(cap)
    s2, b2 = new_state(), new_book(cap)
    s3, b3 = new_state(), new_book(cap)
    scratch = new_levels(1)
    for i in range(ev.shape[0]):
        k, ts, a, n, c = (int(x) for x in ev[i])
        if k in (D.EVK_DELTA, D.EVK_SNAPSHOT):
            rows = lv[a : a + n]
            bids = events.pack_levels(rows[rows[:, D.LV_SIDE] == D.SIDE_BID][:, 1:].tolist())
            asks = events.pack_levels(rows[rows[:, D.LV_SIDE] == D.SIDE_ASK][:, 1:].tolist())
            snap = k == D.EVK_SNAPSHOT
            old_rows, m = level_rows(bids, asks)  # what StrategyCore built before
            r1 = (K.on_book_snapshot if snap else K.on_book_delta)(s1, b1, p, old_rows, 0, m, ts)
            if len(scratch) < m:
                scratch = new_levels(m)
            r2 = K.on_book_packed(s2, b2, p, scratch, bids, asks, ts, snap)
            r3 = call_strict(twin.on_book_packed, s3, b3, p, new_levels(max(m, 1)), bids, asks, ts, snap)
            assert r1 == r2 == r3
        elif k == D.EVK_TRADE:
            for s, b in ((s1, b1), (s2, b2), (s3, b3)):
                K.on_trade(s, b, p, a, n, c, ts)
        else:
            for s, b in ((s1, b1), (s2, b2), (s3, b3)):
                K.on_fill(s, b, p, a, n, c, ts)
        np.testing.assert_array_equal(s1, s2)
        np.testing.assert_array_equal(b1, b2)
        np.testing.assert_array_equal(s1, s3)
        np.testing.assert_array_equal(b1, b3)


@SETTINGS
@given(
    st.lists(st.integers(-(2**63), 2**63 - 1), max_size=24),
    st.lists(st.integers(-(2**63), 2**63 - 1), max_size=24),
    st.integers(0, 15),
)
def test_packed_rows_read_every_int64_as_numpy_does(bid_ints, ask_ints, tail):
    """Whole (price, qty) pairs become rows, bids first; a torn tail is not read; any int64
    (the sign byte included) reads back as numpy reads it; compiled == twin."""
    bids = np.array(bid_ints[: len(bid_ints) // 2 * 2], np.int64).tobytes() + b"\x01" * tail
    asks = np.array(ask_ints[: len(ask_ints) // 2 * 2], np.int64).tobytes() + b"\xff" * (15 - tail)
    want_b = np.frombuffer(bids[: len(bids) // 16 * 16], np.int64).reshape(-1, 2)
    want_a = np.frombuffer(asks[: len(asks) // 16 * 16], np.int64).reshape(-1, 2)
    want = np.concatenate([
        np.column_stack([np.full(len(want_b), D.SIDE_BID), want_b]).reshape(-1, 3),
        np.column_stack([np.full(len(want_a), D.SIDE_ASK), want_a]).reshape(-1, 3),
    ]).astype(np.int64).reshape(-1, 3)  # fmt: skip
    for fill in (K.fill_packed_rows, pure().fill_packed_rows):
        lv = new_levels(len(want) + 1)
        n = fill(lv, bids, asks)
        assert n == len(want)
        np.testing.assert_array_equal(lv[:n], want)
    for buf, prices in ((bids, want_b[:, 0].tolist()), (asks, want_a[:, 0].tolist())):
        qtys = (want_b if buf is bids else want_a)[:, 1].tolist()
        for px in [*prices, *qtys[:3], 0, -1, 2**62]:  # a qty's value is not a price
            expect = int(px in prices)
            assert K.packed_has_price(buf, px) == pure().packed_has_price(buf, px) == expect
