"""on_book_levels (packed levels in, one call) equals level_rows + on_book_delta / on_book_snapshot,
compiled and as the pure-Python twin, on random books."""

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
def test_on_book_levels_equals_rows_path(kw, seed, cap):
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
            fb, fa = np.frombuffer(bids, events.LEVEL_DTYPE), np.frombuffer(asks, events.LEVEL_DTYPE)
            r2 = K.on_book_levels(s2, b2, p, scratch, fb, fa, ts, snap)
            r3 = call_strict(twin.on_book_levels, s3, b3, p, new_levels(max(m, 1)), fb, fa, ts, snap)
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
