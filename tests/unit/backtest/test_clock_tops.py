"""A clock the market run stamps before any book event of its call marks risk's PnL at the
tops it was given (fastpath's _load writes risk's tops into SV_TOPS), as RiskCore's own
check does at that clock: the kernel must not have cleared them as outputs.

Found at stop 20: they were cleared, so such a clock valued a position at its last fill
price instead of the mid. The per-event comparisons never saw it: in six runs of 40,000
synthetic events (fees 0, no loss-streak breaker, peaks above 0) the other valuation never
moved the day's peak or fired a check that the mid would not have.
"""

from __future__ import annotations

import numpy as np

from common.hotpath import default_params, new_book, new_state
from common.hotpath import dtypes as D
from common.hotpath import market_run as K

I64_MAX = 2**63 - 1


def _run(tops: tuple[int, int]):
    sv = np.zeros(K.SV_LEN, dtype=np.int64)
    sv[K.SV_NEXT_CLOCK] = 1_000
    sv[K.SV_INTERVAL] = 1_000
    sv[K.SV_MAX_GAP] = I64_MAX
    sv[K.SV_DAY_END] = I64_MAX
    sv[K.SV_CLOCK_DUE] = I64_MAX
    sv[K.SV_HELD_BID] = sv[K.SV_HELD_ASK] = K.I64_MIN
    sv[K.SV_R_POS] = 10  # long 10 bought at 100
    sv[K.SV_R_COST] = 1_000
    sv[K.SV_R_EQUITY] = -100  # what the position is worth at its last fill price (not the mid)
    sv[K.SV_R_MUL] = sv[K.SV_R_DIV] = 1
    sv[K.SV_R_KILL_AT] = K.I64_MIN
    sv[K.SV_R_DD_BPS] = -1
    sv[K.SV_TOPS], sv[K.SV_TOPS + 1] = tops
    evs = np.zeros((1, K.RK_COLS), dtype=np.int64)
    evs[0, K.RK_KIND] = K.RK_TRADE
    evs[0, K.RK_TS] = 1_500  # past the clock due at 1,000: the kernel stamps it first
    evs[0, K.RK_A], evs[0, K.RK_B] = 121, 1
    vcfg = np.zeros((1, K.VC_COLS), dtype=np.int64)
    vcfg[0, K.VC_SAME] = 1
    vcfg[0, K.VC_DUE] = I64_MAX
    lv = np.zeros((8, D.LV_COLS), dtype=np.int64)
    for run in (K.market_run, K.market_run.py_func):
        out = sv.copy()
        book, rbook, obook, vbook = (new_book(256) for _ in range(4))
        flat = np.zeros(2, dtype=np.int64)
        rest = np.zeros((1, 1, K.RS_COLS), dtype=np.int64)
        state, params = new_state(), default_params()
        j = run(evs, flat, 0, 1, out, state, book, params, lv, lv.copy(), rbook, obook, (vbook,), vcfg.copy(), rest)
        assert j == 1 and out[K.SV_N_CLOCKS] == 1
        yield out


def test_a_clock_before_any_book_event_marks_at_the_given_tops() -> None:
    for out in _run((120, 122)):
        # mid 121: 10 * 121 - 1,000 = +210, the day's new peak
        assert out[K.SV_R_PEAK] == 210
        assert out[K.SV_TOPS_MOVED] == 0  # no book or bbo event: no new tops for fastpath to store
    for out in _run((0, 0)):  # no tops: the position at its last fill price, below the peak of 0
        assert out[K.SV_R_PEAK] == 0
