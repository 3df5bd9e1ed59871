"""Hand-computed checks of every hot-path formula and rule."""

from __future__ import annotations

import math

import numpy as np
import pytest

from common.hotpath import book_levels, default_params, new_book, new_state
from common.hotpath import dtypes as D
from common.hotpath import kernels as K

BID, ASK = D.SIDE_BID, D.SIDE_ASK


def rows(*levels):
    """rows((side, px, qty), ...) -> int64 (n, 3) level array."""
    return np.array(levels, dtype=np.int64).reshape(-1, 3)


def snap(book, *levels):
    lv = rows(*levels)
    K.book_apply_rows(book, lv, 0, lv.shape[0], 1)


def side_levels(book, side):
    return book_levels(book, side)  # best first


def feed(state, book, params, *levels, ts=0, snapshot=True):
    lv = rows(*levels)
    fn = K.on_book_snapshot if snapshot else K.on_book_delta
    return fn(state, book, params, lv, 0, lv.shape[0], ts)


def wide_book(mid=100_000, half=100, qty=1_000_000):
    """Symmetric book: fair == mid with equal volumes."""
    return ((BID, mid - half, qty), (ASK, mid + half, qty))


def quote(state):
    return (
        int(state[D.S_Q_BID_PX]),
        int(state[D.S_Q_BID_QTY]),
        int(state[D.S_Q_ASK_PX]),
        int(state[D.S_Q_ASK_QTY]),
    )


def warmed(params, mid=100_000, position=0):
    """State + book after warm-up, with the first quote just made."""
    s, b = new_state(), new_book()
    s[D.S_POSITION] = position
    acts = [feed(s, b, params, *wide_book(mid), ts=i * 100_000_000) for i in range(params[D.P_WARMUP] + 1)]
    assert acts[-1] == D.ACT_QUOTE
    return s, b


# --------------------------------------------------------------------------
# book
# --------------------------------------------------------------------------


def test_snapshot_sorts_and_delta_updates_inserts_removes():
    b = new_book(8)
    snap(b, (BID, 100, 5), (ASK, 105, 1), (BID, 102, 7), (ASK, 103, 2), (BID, 101, 3), (ASK, 104, 0))
    assert side_levels(b, BID) == [(102, 7), (101, 3), (100, 5)]
    assert side_levels(b, ASK) == [(103, 2), (105, 1)]  # qty-0 row skipped
    lv = rows((BID, 101, 0), (ASK, 104, 9), (BID, 100, 6), (ASK, 103, 0), (BID, 99, 0))
    K.book_apply_rows(b, lv, 0, lv.shape[0], 0)
    assert side_levels(b, BID) == [(102, 7), (100, 6)]
    assert side_levels(b, ASK) == [(104, 9), (105, 1)]
    assert (K.best_bid(b), K.best_ask(b), K.spread(b)) == (102, 104, 2)
    assert K.depth_qty(b, BID, 1) == 7 and K.depth_qty(b, BID, 10) == 13
    assert K.depth_qty(b, ASK, 2) == 10


def test_rows_window_and_bad_rows():
    b = new_book(4)
    lv = rows((BID, 1, 1), (BID, 100, 5), (ASK, 101, 5), (7, 100, 5), (BID, -3, 5), (ASK, 1, 1))
    bad = K.book_apply_rows(b, lv, 1, 4, 0)  # rows 1..4 only
    assert bad == 2
    assert side_levels(b, BID) == [(100, 5)] and side_levels(b, ASK) == [(101, 5)]


def test_empty_book_sentinels():
    b = new_book()
    assert K.best_bid(b) == D.NO_PRICE and K.best_ask(b) == D.NO_PRICE
    assert K.spread(b) == D.NO_PRICE and K.microprice(b, 5) == D.NO_PRICE
    snap(b, (BID, 105, 1), (ASK, 104, 1))  # crossed
    assert K.book_valid(b) == 0 and K.microprice(b, 1) == D.NO_PRICE


def test_a_side_keeps_the_levels_within_half_its_window_of_the_best():
    b = new_book(64)
    snap(b, *[(BID, 100 - i, 1 + i) for i in range(40)], *[(ASK, 110 + i, 1) for i in range(60)])
    # The best is placed at slot 48, with 48 slots below it: asks 110..158 fit, 159.. do not.
    assert [p for p, _ in side_levels(b, BID)] == list(range(100, 60, -1))
    assert [p for p, _ in side_levels(b, ASK)] == list(range(110, 159))
    assert int(b[D.BK_DROPPED + ASK]) == 11
    K.book_apply_rows(b, rows((BID, 101, 9), (BID, 40, 9), (ASK, 111, 0)), 0, 3, 0)
    assert side_levels(b, BID)[:2] == [(101, 9), (100, 1)] and int(b[D.BK_DROPPED + BID]) == 1
    assert [p for p, _ in side_levels(b, ASK)][:2] == [110, 112]


# --------------------------------------------------------------------------
# microprice / imbalance
# --------------------------------------------------------------------------


def test_top_of_book_microprice_rounds_down():
    b = new_book()
    snap(b, (BID, 100, 300), (ASK, 110, 100))
    # (110*300 + 100*100) / 400 = 107.5 -> 107
    assert K.microprice(b, 1) == 107
    assert K.imbalance_bps(b, 1) == 5_000
    snap(b, (BID, 100, 100), (ASK, 110, 300))
    assert K.microprice(b, 1) == 102  # 102.5 -> 102
    assert K.imbalance_bps(b, 1) == -5_000


def test_weighted_microprice_linear_weights():
    b = new_book()
    snap(b, (BID, 100, 300), (BID, 99, 100), (BID, 98, 999), (ASK, 110, 100), (ASK, 111, 500))
    # L=2: B = 2*300 + 1*100 = 700, A = 2*100 + 1*500 = 700 -> 105
    assert K.weighted_vols(b, 2) == (700, 700)
    assert K.microprice(b, 2) == 105
    assert K.imbalance_bps(b, 2) == 0
    # L=3: B = 900 + 200 + 999 = 2099, A = 300 + 1000 = 1300
    assert K.weighted_vols(b, 3) == (2099, 1300)
    assert K.microprice(b, 3) == 100 + (10 * 2099) // 3399
    assert K.imbalance_bps(b, 3) == (799 * 10_000) // 3399


def test_microprice_no_overflow_at_btc_scale():
    b = new_book()
    bid, ask, bv, av = 7_322_350, 7_322_361, 10**15, 3 * 10**14 + 7
    snap(b, (BID, bid, bv), (ASK, ask, av))
    exact = (ask * bv + bid * av) // (bv + av)  # Python ints: exact
    assert K.microprice(b, 1) == exact
    assert K.microprice.py_func(b, 1) == exact


# --------------------------------------------------------------------------
# toxicity, volatility, multiplier
# --------------------------------------------------------------------------


def test_vpin_aggressor_side_and_rolling_window():
    p = default_params(vpin_window=4, min_trades=100)
    s, b = new_state(), new_book()
    for _ in range(3):
        K.on_trade(s, b, p, 100, 100, 0, 0)  # buyer taker -> buy
    K.on_trade(s, b, p, 100, 100, 1, 0)  # buyer is maker -> aggressor SOLD
    assert (s[D.S_BUY_VOL], s[D.S_SELL_VOL]) == (300, 100)
    assert s[D.S_VPIN_BPS] == 5_000
    K.on_trade(s, b, p, 100, 200, 1, 0)  # evicts the first buy
    assert (s[D.S_BUY_VOL], s[D.S_SELL_VOL]) == (200, 300)
    assert s[D.S_VPIN_BPS] == 2_000
    assert s[D.S_RING_N] == 4


@pytest.mark.parametrize("model", [D.MODEL_MM, D.MODEL_AS])
def test_vol_and_variance_ema(model):
    p = default_params(ema_alpha_ppm=500_000, warmup=100, model=model)
    s, b = new_state(), new_book()
    fairs = []
    for i, mid in enumerate([100_000, 100_010, 100_010, 100_004]):
        feed(s, b, p, *wide_book(mid), ts=i * 1_000, snapshot=True)
        fairs.append(s[D.S_FAIR])
    assert fairs == [100_000, 100_010, 100_010, 100_004]
    # |d| = 10, 0, 6: vol seeded 10_000, then 5_000, then 5_500 (milli)
    assert s[D.S_VOL] == 5_500
    if model == D.MODEL_AS:
        # d^2*1000 = 100_000, 0, 36_000: 100_000 -> 50_000 -> 43_000
        assert s[D.S_VAR] == 43_000
        assert s[D.S_DT] == 1_000
    else:  # only the A-S model reads them, so the MM model does not keep them
        assert s[D.S_VAR] == 0
        assert s[D.S_DT] == 0


def test_spread_multiplier_components_and_cap():
    p = default_params()
    assert K.spread_mult_bps(0, 0, p) == 10_000
    assert K.spread_mult_bps(5_000, 0, p) == 15_000
    assert K.spread_mult_bps(0, 5_000, p) == 15_000  # vol 5 pip vs ref 10
    assert K.spread_mult_bps(5_000, 5_000, p) == 20_000
    assert K.spread_mult_bps(10_000, 50_000, p) == 30_000  # 3.0x cap


def test_multiplier_widens_quote():
    p = default_params(warmup=0, cooldown=0)
    s, b = new_state(), new_book()
    s[D.S_VPIN_BPS] = 5_000  # as if trades had been seen
    assert feed(s, b, p, *wide_book()) == D.ACT_QUOTE
    # half = 10 * 1.5 = 15
    assert quote(s)[0] == 99_985 and quote(s)[2] == 100_015


def test_a_quote_uses_the_multiplier_of_its_moment_and_keeps_it():
    """The multiplier is made when a quote is: trades after a quote change VPIN
    (and so the multiplier a quote would use now) but not the last quote's."""
    p = default_params(warmup=0, cooldown=0, min_trades=1000, vpin_window=20)
    s, b = new_state(), new_book()
    assert feed(s, b, p, *wide_book()) == D.ACT_QUOTE
    assert s[D.S_MULT_BPS] == 10_000 and quote(s)[0] == 99_990  # half 10
    for _ in range(3):  # sells: VPIN 10_000 bps -> 2x (never toxic: min_trades)
        assert K.on_trade(s, b, p, 99_950, 1_000, 1, 0) == D.ACT_NONE
    assert s[D.S_VPIN_BPS] == 10_000
    assert s[D.S_MULT_BPS] == 10_000  # still the last quote's
    assert K.spread_mult_bps(s[D.S_VPIN_BPS], s[D.S_VOL], p) == 20_000  # what a quote would use now
    assert feed(s, b, p, *wide_book(100_020)) == D.ACT_QUOTE  # fair moved 20 > 5: requote
    assert s[D.S_MULT_BPS] == K.spread_mult_bps(s[D.S_VPIN_BPS], s[D.S_VOL], p)
    mult = int(s[D.S_MULT_BPS])
    assert mult > 20_000  # VPIN 2x plus the volatility of the 20-pipette move
    assert s[D.S_WIDTH2] == 2 * 10 * mult // 10_000


def test_toxic_flow_pulls_every_quote_and_recovers():
    p = default_params(min_trades=10, vpin_window=20)
    s, b = warmed(p, position=1_000_000)
    assert quote(s)[1] > 0 and quote(s)[3] > 0
    acts = [K.on_trade(s, b, p, 99_900, 1_000, 1, 0) for _ in range(10)]
    assert acts[:9] == [D.ACT_NONE] * 9  # below min_trades
    assert acts[9] == D.ACT_CANCEL_ALL
    assert s[D.S_TOXIC] == 1 and s[D.S_HAVE_QUOTE] == 0
    assert s[D.S_LIVE_BID] == 0 and s[D.S_LIVE_ASK] == 0
    assert K.on_trade(s, b, p, 99_900, 1_000, 1, 0) == D.ACT_NONE  # once only
    for i in range(5):  # a moving book never quotes while toxic
        assert feed(s, b, p, *wide_book(100_000 + 50 * i), snapshot=True) == D.ACT_NONE
    for _ in range(10):  # balancing buys: VPIN 0 -> no longer toxic
        assert K.on_trade(s, b, p, 100_100, 1_000, 0, 0) == D.ACT_NONE
    assert s[D.S_VPIN_BPS] == 0 and s[D.S_TOXIC] == 0
    assert feed(s, b, p, *wide_book(), snapshot=True) == D.ACT_QUOTE


# --------------------------------------------------------------------------
# MM quote model
# --------------------------------------------------------------------------


def test_flat_quotes_are_symmetric():
    p = default_params()
    s, _ = warmed(p)
    assert quote(s) == (99_990, 100_000, 100_010, 0)  # spot, flat: no ask
    s, _ = warmed(default_params(spot=0))
    assert quote(s) == (99_990, 100_000, 100_010, 100_000)


def test_skew_values():
    p = default_params(gamma_ppm=1_000_000)  # gamma 1.0, half spread 10
    assert K.mm_skew2(10_000_000, p) == 10  # 0.5 * 10 = 5 pipettes
    assert K.mm_skew2(-10_000_000, p) == -10
    assert K.mm_skew2(0, p) == 0
    # seed defaults: 0.1 * 1.0 * 10 = 1 pipette at max inventory
    assert K.mm_skew2(20_000_000, default_params()) == 2
    assert K.mm_skew2(10_000_000, default_params()) == 1  # half a pipette


def test_long_position_lowers_the_ask():
    p = default_params(gamma_ppm=1_000_000)
    s, _ = warmed(p, position=10_000_000)
    # centre = 100_000 - 5 -> bid 99_985, ask 100_005 (flat: 100_010)
    assert quote(s) == (99_985, 100_000, 100_005, 100_000)
    s, _ = warmed(default_params(), position=20_000_000)
    assert quote(s)[2] == 100_009
    assert quote(s)[1] == 0  # at max inventory: no bid size


def test_rounding_to_tick_bid_down_ask_up():
    p = default_params(tick=5, half_spread=7, warmup=0)
    s, b = new_state(), new_book()
    assert feed(s, b, p, (BID, 99_900, 10), (ASK, 100_103, 10)) == D.ACT_QUOTE
    # fair = 99_900 + 203//2 = 100_001; bid 99_994 -> 99_990, ask 100_008 -> 100_010
    assert s[D.S_FAIR] == 100_001
    assert quote(s)[0] == 99_990 and quote(s)[2] == 100_010


def test_post_only_never_touches_opposite_best():
    p = default_params(half_spread=1, warmup=0, spot=0, gamma_ppm=1_000_000)
    s, b = new_state(), new_book()
    s[D.S_POSITION] = 20_000_000  # skew 1 pipette down
    # one-tick book; fair = 100 + (1*900)//1000 = 100
    assert feed(s, b, p, (BID, 100, 900), (ASK, 101, 100)) == D.ACT_QUOTE
    bid, _, ask, _ = quote(s)
    assert bid < 101 and ask > 100 and bid < ask
    assert (bid, ask) == (98, 101)
    assert K.quote_prices(2 * 120, 2, 5, 95, 100) == (95, 125)  # bid pushed below 100
    assert K.quote_prices(2 * 80, 2, 5, 95, 100) == (75, 100)  # ask pushed above 95


def test_sizes_on_lot_grid_and_sell_capped_to_holdings():
    p = default_params(lot=1_000)
    assert K.quote_sizes(50_500, p) == (100_000, 50_000)
    assert K.quote_sizes(0, p) == (100_000, 0)
    assert K.quote_sizes(19_950_500, p) == (49_000, 100_000)
    assert K.quote_sizes(-5, p) == (100_000, 0)


def test_spot_position_clamped_at_zero():
    p = default_params()
    s, b = warmed(p, position=100_000)
    assert quote(s)[3] == 100_000
    act = K.on_fill(s, b, p, ASK, 100_010, 300_000, 0)
    assert s[D.S_POSITION] == 0 and s[D.S_CLAMPED] == 200_000 and s[D.S_SOLD] == 100_000
    assert act == D.ACT_QUOTE  # ask emptied -> immediate requote
    assert quote(s)[3] == 0  # nothing left to sell
    p2 = default_params(spot=0)
    s2, b2 = warmed(p2, position=100_000)
    K.on_fill(s2, b2, p2, ASK, 100_010, 300_000, 0)
    assert s2[D.S_POSITION] == -200_000 and s2[D.S_CLAMPED] == 0


# --------------------------------------------------------------------------
# requote rule
# --------------------------------------------------------------------------


def test_warmup_holds_quotes_back():
    p = default_params(warmup=3)
    s, b = new_state(), new_book()
    acts = [feed(s, b, p, *wide_book(100_000 + 20 * i)) for i in range(5)]
    assert acts == [D.ACT_NONE] * 3 + [D.ACT_QUOTE, D.ACT_NONE]
    s, b = new_state(), new_book()
    s[D.S_POSITION] = 500_000
    feed(s, b, p, *wide_book())
    assert K.on_fill(s, b, p, ASK, 100_000, 500_000, 0) == D.ACT_NONE  # still warming


def test_threshold_and_cooldown():
    p = default_params(warmup=0, cooldown=2, requote_px=5)
    s, b = new_state(), new_book()
    assert feed(s, b, p, *wide_book(100_000)) == D.ACT_QUOTE
    assert feed(s, b, p, *wide_book(100_020)) == D.ACT_NONE  # cooldown (1 < 2)
    assert feed(s, b, p, *wide_book(100_005)) == D.ACT_NONE  # moved exactly 5
    assert feed(s, b, p, *wide_book(100_006)) == D.ACT_QUOTE  # moved 6 > 5
    assert s[D.S_LAST_QUOTE_FAIR] == 100_006
    assert feed(s, b, p, *wide_book(100_000)) == D.ACT_NONE  # cooldown again
    assert feed(s, b, p, *wide_book(100_002)) == D.ACT_NONE  # only 4 from 100_006
    assert s[D.S_N_QUOTES] == 2


def test_full_fill_requotes_at_once():
    p = default_params(warmup=0, cooldown=5)
    s, b = new_state(), new_book()
    assert feed(s, b, p, *wide_book()) == D.ACT_QUOTE
    assert quote(s) == (99_990, 100_000, 100_010, 0)
    act = K.on_fill(s, b, p, BID, 99_990, 100_000, 0)
    assert act == D.ACT_QUOTE  # despite cooldown 5
    assert s[D.S_POSITION] == 100_000
    assert quote(s) == (99_990, 100_000, 100_010, 100_000)


def test_a_commission_kept_in_the_base_asset_shrinks_holdings_and_the_next_ask():
    """Binance keeps a buy's commission out of the BTC received: the requote that follows offers
    what is held (99_900), not what was bought (100_000) -- a sell of the gross qty would fail."""
    p = default_params(warmup=0, cooldown=5)
    s, b = new_state(), new_book()
    feed(s, b, p, *wide_book())
    assert K.on_fill_kept(s, b, p, BID, 99_990, 100_000, 100, 0) == D.ACT_QUOTE
    assert (s[D.S_POSITION], s[D.S_BOUGHT]) == (99_900, 100_000)
    assert quote(s) == (99_990, 100_000, 100_010, 99_000)  # 99_900 held, down to the 1,000 lot
    # On a sell the commission leaves holdings too; spot holdings never go below zero.
    assert K.on_fill_kept(s, b, p, ASK, 100_010, 99_000, 60, 0) == D.ACT_QUOTE
    assert (s[D.S_POSITION], s[D.S_SOLD]) == (840, 99_000)
    assert quote(s)[3] == 0  # 840 held: less than a lot
    K.on_fill_kept(s, b, p, ASK, 100_010, 900, 0, 0)  # more than is held (a venue's odd report)
    assert (s[D.S_POSITION], s[D.S_SOLD], s[D.S_CLAMPED]) == (0, 99_840, 60)
    # kept = 0 is on_fill exactly
    s1, b1, s2, b2 = new_state(), new_book(), new_state(), new_book()
    for st, bk in ((s1, b1), (s2, b2)):
        feed(st, bk, p, *wide_book())
    K.on_fill(s1, b1, p, BID, 99_990, 40_000, 0)
    K.on_fill_kept(s2, b2, p, BID, 99_990, 40_000, 0, 0)
    assert np.array_equal(s1, s2) and np.array_equal(b1, b2)


def test_partial_fill_keeps_quote_and_resets_cooldown():
    p = default_params(warmup=0, cooldown=3)
    s, b = new_state(), new_book()
    feed(s, b, p, *wide_book())
    assert K.on_fill(s, b, p, BID, 99_990, 40_000, 0) == D.ACT_NONE
    assert s[D.S_LIVE_BID] == 60_000 and s[D.S_HAVE_QUOTE] == 1
    assert quote(s)[1] == 100_000  # the order itself is untouched
    # without the reset this would wait 3 updates
    assert feed(s, b, p, *wide_book(100_010)) == D.ACT_QUOTE
    s2, b2 = new_state(), new_book()
    feed(s2, b2, p, *wide_book())
    assert feed(s2, b2, p, *wide_book(100_010)) == D.ACT_NONE  # control: no fill


# --------------------------------------------------------------------------
# Avellaneda-Stoikov
# --------------------------------------------------------------------------


def test_ln_q30_matches_log():
    for y in [1.0, 1.01, 1.1, 1.5, 1.9, 2.0, 3.0, 10.0, 12345.678, 2.0**32]:
        got = K.ln_q30(int(y * D.Q30_ONE)) / D.Q30_ONE
        assert got == pytest.approx(math.log(y), abs=2e-8)


def as_state(var=25_000, dt=100_000_000, position=0):
    s = new_state()
    s[D.S_VAR], s[D.S_DT], s[D.S_N_SAMPLES], s[D.S_POSITION] = var, dt, 1, position
    return s


def test_as_terms_hand_computed():
    p = default_params(model=D.MODEL_AS)  # gamma 0.001/pip, H 60 s, kappa 0.1/pip
    s = as_state()
    risk, liq, s2t = K.as_terms(s, p, 100_000)
    # 600 updates per horizon x 25 pip^2 = 15_000 pip^2; gamma * that = 15
    assert s2t == 15_000_000 and risk == 15
    # (2 / 0.001) * ln(1 + 0.001 / 0.1) = 19.9007 -> 19
    assert liq == 19 == math.floor(2 / 0.001 * math.log1p(0.01))


def test_as_quotes_flat_and_long():
    p = default_params(model=D.MODEL_AS, warmup=0, spot=0)
    b = new_book()
    snap(b, *wide_book())
    s = as_state()
    s[D.S_FAIR] = 100_000
    assert K.make_quote(s, b, p) == D.ACT_QUOTE
    # total spread 34 -> r -+ 17
    assert quote(s) == (99_983, 100_000, 100_017, 100_000)
    s = as_state(position=100_000)  # q = 1 lot: r = s - 1*15
    s[D.S_FAIR] = 100_000
    K.make_quote(s, b, p)
    assert quote(s)[0] == 99_968 and quote(s)[2] == 100_002
    s = as_state(position=-150_000)  # q = -1.5: r = s + 22.5
    s[D.S_FAIR] = 100_000
    K.make_quote(s, b, p)
    # bid2 = 200_045 - 34 -> 100_005 (floor of .5), ask2 = 200_079 -> 100_040
    assert quote(s)[0] == 100_005 and quote(s)[2] == 100_040


def test_as_kappa_from_trade_distances():
    p = default_params(model=D.MODEL_AS, min_trades=2)
    s, b = new_state(), new_book()
    snap(b, *wide_book())  # mid 100_000
    K.on_trade(s, b, p, 100_000, 10, 0, 0)  # d = 0
    assert K.as_kappa_ppm(s, p) == 100_000  # below min_trades: default
    K.on_trade(s, b, p, 100_010, 10, 1, 0)  # d = 10
    assert s[D.S_HIST + 0] == 1 and s[D.S_HIST + 10] == 1
    # mean distance (0.5 + 10.5) / 2 = 5.5 -> kappa 1/5.5 = 181_818 ppm
    assert K.as_kappa_ppm(s, p) == 181_818
    p5 = default_params(model=D.MODEL_AS, min_trades=2, tick=5)
    s5 = new_state()
    K.on_trade(s5, b, p5, 100_000, 10, 0, 0)
    K.on_trade(s5, b, p5, 100_052, 10, 0, 0)  # 52 pipettes = 10 ticks
    assert K.as_kappa_ppm(s5, p5) == 4_000_000 // (22 * 5)


def test_as_through_events_widens_with_variance():
    p = default_params(model=D.MODEL_AS, warmup=0, cooldown=0, spot=0)
    s, b = new_state(), new_book()
    widths = []
    for i, mid in enumerate([100_000, 100_000, 100_030, 100_000, 100_030]):
        feed(s, b, p, *wide_book(mid, half=300), ts=i * 100_000_000, snapshot=True)
        widths.append(int(s[D.S_WIDTH2]))
    assert widths[0] == widths[1] == 19  # sigma 0: liquidity term only
    assert widths[2] > widths[1] and widths[3] > widths[2]


# --------------------------------------------------------------------------
# defaults / allocators
# --------------------------------------------------------------------------


def test_default_params_and_allocators():
    p = default_params()
    assert p[D.P_ORDER_QTY] == 100_000 and p[D.P_MAX_INV] == 20_000_000
    assert p[D.P_HALF_SPREAD] == 10 and p[D.P_GAMMA_PPM] == 100_000
    assert p[D.P_WARMUP] == 3 and p[D.P_COOLDOWN] == 2 and p[D.P_REQUOTE_PX] == 5
    assert p[D.P_VPIN_WINDOW] == 200 and p[D.P_TOXIC_BPS] == 8_000
    assert default_params(half_spread=12)[D.P_HALF_SPREAD] == 12
    with pytest.raises(ValueError, match="nope"):
        default_params(nope=1)
    with pytest.raises(ValueError, match="vpin_window"):
        default_params(vpin_window=D.VPIN_CAP + 1)
    assert new_state().shape == (D.STATE_LEN,) and new_book(8).shape == (D.book_len(64),)


def test_kernels_are_compiled_without_reference_counting_on_this_numba():
    """The option is underscored, so a numba that dropped it would silently cost the 12-25% it saves."""
    assert K._HAS_NRT_OPTION
    assert K.on_trade.targetoptions.get("_nrt") is False
