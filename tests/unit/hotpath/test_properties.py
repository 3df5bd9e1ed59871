"""Property tests: quote invariants on random books / flows, and the
compiled kernels against their pure-Python twins on every input."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.hotpath import default_params, new_book, new_state
from common.hotpath import dtypes as D
from common.hotpath import kernels as K
from tests.unit.hotpath._twin import call_strict, check_ladder, pure

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

params_st = st.fixed_dictionaries(
    {
        "tick": st.sampled_from([1, 5, 100]),
        "lot": st.sampled_from([1, 1_000, 7_000]),
        "order_qty": st.integers(0, 300_000),
        "max_inv": st.integers(0, 2_000_000),
        "half_spread": st.integers(0, 60),
        "gamma_ppm": st.integers(0, 3_000_000),
        "warmup": st.integers(0, 4),
        "cooldown": st.integers(0, 3),
        "requote_px": st.integers(0, 10),
        "vpin_window": st.integers(1, 60),
        "toxic_bps": st.integers(2_000, 10_001),
        "min_trades": st.integers(0, 20),
        "mp_levels": st.integers(1, 10),
        "ema_alpha_ppm": st.integers(1, 1_000_000),
        "spot": st.integers(0, 1),
        "model": st.sampled_from([D.MODEL_MM, D.MODEL_AS]),
        "as_gamma_ppm": st.integers(1, 2_000_000),
        "as_horizon_ns": st.integers(1_000_000, 100_000_000_000),
        "as_kappa_ppm": st.integers(1, 5_000_000),
    }
)


def gen_stream(seed, n_events, tick):
    """Random event array + level rows: a random-walk book (sometimes
    crossed, sometimes huge), one-sided trade bursts, partial/full fills."""
    rng = np.random.default_rng(seed)
    ev = np.zeros((n_events, D.EV_COLS), dtype=np.int64)
    lv = np.zeros((n_events * 40, D.LV_COLS), dtype=np.int64)
    mid = int(rng.integers(200, 10_000_000))
    ts = 1_700_000_000_000_000_000
    r = 0
    sell_bias = 0.5
    for i in range(n_events):
        ts += int(rng.integers(0, 200_000_000))
        mid = max(50, mid + int(rng.integers(-4, 5)))
        if rng.random() < 0.05:
            sell_bias = float(rng.choice([0.02, 0.5, 0.98]))
        u = rng.random()
        ev[i, D.EV_TS] = ts
        if u < 0.55:
            snapshot = u < 0.1
            k = int(rng.integers(1, 41 if snapshot else 7)) // (2 if snapshot else 1) + 1
            ev[i, D.EV_KIND] = D.EVK_SNAPSHOT if snapshot else D.EVK_DELTA
            ev[i, D.EV_A], ev[i, D.EV_B] = r, k
            for _ in range(k):
                side = int(rng.integers(0, 2))
                off = int(rng.integers(1, 25)) if rng.random() > 0.05 else int(rng.integers(-3, 3))
                px = (mid - off if side == D.SIDE_BID else mid + off) * tick
                if rng.random() < 0.1:
                    px += int(rng.integers(0, tick))  # off-grid level
                qty = 0 if (not snapshot and rng.random() < 0.3) else int(rng.integers(1, 10**9))
                if rng.random() < 0.02:
                    qty = int(rng.integers(1, 1 << 52))
                lv[r] = (side, max(px, 1), qty)
                r += 1
        elif u < 0.85:
            ev[i, D.EV_KIND] = D.EVK_TRADE
            ev[i, D.EV_A] = max(1, (mid + int(rng.integers(-30, 31))) * tick)
            ev[i, D.EV_B] = int(rng.integers(0, 10_000_000))
            ev[i, D.EV_C] = int(rng.random() < sell_bias)
        else:
            ev[i, D.EV_KIND] = D.EVK_FILL
            ev[i, D.EV_A] = int(rng.integers(0, 2))
            ev[i, D.EV_B] = mid * tick
            ev[i, D.EV_C] = int(rng.choice([100_000, int(rng.integers(1, 150_000)), 1_000]))
    return ev, lv


def step(state, book, params, ev, lv, i):
    k, ts, a, b, c = (int(x) for x in ev[i])
    if k == D.EVK_DELTA:
        return K.on_book_delta(state, book, params, lv, a, b, ts)
    if k == D.EVK_SNAPSHOT:
        return K.on_book_snapshot(state, book, params, lv, a, b, ts)
    if k == D.EVK_TRADE:
        return K.on_trade(state, book, params, a, b, c, ts)
    return K.on_fill_kept(state, book, params, a, b, c, kept_of(c, i), ts)


def kept_of(qty, i):
    """A base-asset commission for the i-th event's fill: none, 0.2% or 0.4% of it, or more than it."""
    return (0, qty // 500, qty // 250, qty + 7)[i % 4]


@SETTINGS
@given(params_st, st.integers(0, 2**32), st.sampled_from([4, 64]))
def test_quote_invariants_on_random_flows(kw, seed, cap):
    p = default_params(**kw)
    tick, lot = kw["tick"], kw["lot"]
    ev, lv = gen_stream(seed, 150, tick)
    s, b = new_state(), new_book(cap)
    n_quotes = 0
    for i in range(ev.shape[0]):
        act = step(s, b, p, ev, lv, i)
        check_ladder(b)
        if kw["spot"]:
            assert s[D.S_POSITION] >= 0
        if act == D.ACT_CANCEL_ALL:
            assert s[D.S_LIVE_BID] == 0 and s[D.S_LIVE_ASK] == 0 and s[D.S_HAVE_QUOTE] == 0
        if act != D.ACT_QUOTE:
            continue
        n_quotes += 1
        assert s[D.S_TOXIC] == 0
        assert s[D.S_N_BOOK] > kw["warmup"]
        bid, bq, ask, aq = (int(x) for x in s[D.S_Q_BID_PX : D.S_Q_ASK_QTY + 1])
        bb, ba = K.best_bid(b), K.best_ask(b)
        assert bb != D.NO_PRICE and ba != D.NO_PRICE and bb < ba
        assert bid < ask
        assert bid % tick == 0 and ask % tick == 0
        assert bid < ba and ask > bb  # post-only: never touch the opposite best
        assert bq % lot == 0 and aq % lot == 0
        assert 0 <= bq <= kw["order_qty"] and 0 <= aq <= kw["order_qty"]
        assert bq > 0 or aq > 0
        assert s[D.S_POSITION] + bq <= kw["max_inv"] or bq == 0
        if kw["spot"]:
            assert aq <= s[D.S_POSITION]
        if bq > 0:
            assert bid > 0


def run_all(mod, params, ev, lv, cap):
    s, b = new_state(), new_book(cap)
    acts = np.zeros(ev.shape[0], dtype=np.int64)
    nq = call_strict(mod.run_events, s, b, params, ev, lv, acts)
    return nq, acts, s, b


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(params_st, st.integers(0, 2**32), st.sampled_from([4, 64]))
def test_compiled_equals_pure_python_twin(kw, seed, cap):
    p = default_params(**kw)
    ev, lv = gen_stream(seed, 120, kw["tick"])
    nq1, a1, s1, b1 = run_all(K, p, ev, lv, cap)
    nq2, a2, s2, b2 = run_all(pure(), p, ev, lv, cap)
    assert nq1 == nq2
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_array_equal(b1, b2)


@SETTINGS
@given(params_st, st.integers(0, 2**32))
def test_entry_points_equal_py_func(kw, seed):
    """Each top-level kernel's .py_func, event by event, on copies."""
    p = default_params(**kw)
    ev, lv = gen_stream(seed, 60, kw["tick"])
    s, b = new_state(), new_book(16)
    fns = {
        D.EVK_DELTA: K.on_book_delta,
        D.EVK_SNAPSHOT: K.on_book_snapshot,
        D.EVK_TRADE: K.on_trade,
        D.EVK_FILL: K.on_fill_kept,
    }
    for i in range(ev.shape[0]):
        k, ts, a, bb, c = (int(x) for x in ev[i])
        fn = fns[k]
        args = (lv, a, bb, ts) if k in (D.EVK_DELTA, D.EVK_SNAPSHOT) else (a, bb, c, ts)
        if k == D.EVK_FILL:
            args = (a, bb, c, kept_of(c, i), ts)
        s2, b2 = s.copy(), b.copy()
        r1 = fn(s, b, p, *args)
        r2 = call_strict(fn.py_func, s2, b2, p, *args)
        assert r1 == r2
        np.testing.assert_array_equal(s, s2)
        np.testing.assert_array_equal(b, b2)


big = st.integers(0, (1 << 62))


@SETTINGS
@given(big, big, st.integers(1, 1 << 62))
def test_frac_and_muldiv_exact_or_safe(a, b, c):
    a = min(a, c)  # _frac precondition a <= c
    got = K._frac(a, b, c)
    assert got == K._frac.py_func(a, b, c)
    exact = a * b // c
    if a * b <= D.I64_SAT:
        assert got == exact
    else:
        assert 0 <= got <= exact
    b2 = b % (1 << 20)
    c2 = c % (1 << 40) + 1
    got = K._muldiv(a, b2, c2)
    assert got == K._muldiv.py_func(a, b2, c2)
    assert got == min(a * b2 // c2, D.I64_SAT)


@SETTINGS
@given(
    st.integers(1, 1 << 40),
    st.integers(1, 1 << 50),
    st.integers(1, 1 << 50),
    st.integers(1, 10**6),
    st.integers(1, 8),
)
def test_microprice_exact_and_twin(bid, spread_px, bv, av, levels):
    b = new_book(8)
    lv = np.array([[D.SIDE_BID, bid, bv], [D.SIDE_ASK, bid + spread_px, av]], dtype=np.int64)
    K.book_apply_rows(b, lv, 0, 2, 1)
    mp = K.microprice(b, levels)
    assert mp == K.microprice.py_func(b, levels) == pure().microprice(b, levels)
    w = levels
    exact = bid + (spread_px * bv * w) // (bv * w + av * w)
    if spread_px * bv * w <= D.I64_SAT:
        assert mp == exact
    assert bid <= mp < bid + spread_px or spread_px == 0
    imb = K.imbalance_bps(b, levels)
    assert imb == K.imbalance_bps.py_func(b, levels)
    assert K.fair_and_imbalance(b, levels) == (mp, imb)
    assert -10_000 <= imb <= 10_000


@SETTINGS
@given(
    params_st,
    st.integers(0, 1 << 40),
    st.integers(1, 1 << 40),
    st.integers(-(1 << 42), 1 << 42),
    st.integers(1, 5_000_000),
)
def test_quote_helpers_twin(kw, var, dt, position, kappa):
    p = default_params(**kw)
    s = new_state()
    s[D.S_VAR], s[D.S_DT], s[D.S_POSITION] = var, dt, position
    assert K.as_terms(s, p, kappa) == call_strict(pure().as_terms, s, p, kappa)
    assert K.mm_skew2(position, p) == call_strict(pure().mm_skew2, position, p)
    assert K.quote_sizes(position, p) == call_strict(pure().quote_sizes, position, p)
    risk, liq, _ = K.as_terms(s, p, kappa)
    assert 0 <= risk <= D.AS_TERM_MAX and 0 <= liq <= D.AS_TERM_MAX
