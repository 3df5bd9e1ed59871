"""StrategyCore driven with hand-built sequenced events (no sockets), both
quote models: warm-up, the first quote, hand-computed prices, inventory skew,
spot clamping, toxic flow, requote / cancel rules, retirement of orders,
snapshot + replay == full replay, and the state hash."""

from __future__ import annotations

import math

import numpy as np
import pytest

from common import events as E
from common.hotpath import dtypes as D
from common.hotpath import kernels as K
from services.strategy.core import StrategyCore
from tests.unit.strategy.helpers import (
    EPOCH,
    Feed,
    by_side,
    core_hash,
    intents,
    make_core,
    random_session,
    roundtrip,
)

MODELS = ["mm", "as"]
BTC = "BTCUSDT"
QTY = 100_000  # default order_qty
LOT = 1_000  # BTCUSDT step
# One level a side, equal sizes: fair = mid = 100_050 pipettes.
BID, ASK = 100_000, 100_100
BOOK = ([(BID, 1_000_000)], [(ASK, 1_000_000)])


def warm(core: StrategyCore, feed: Feed, bids=BOOK[0], asks=BOOK[1], updates: int | None = None):
    """Snapshot + neutral deltas until the first quote; returns its outputs."""
    warmup = core.cfg.warmup if updates is None else updates - 1
    assert core.apply(feed.snapshot(bids, asks)) == []
    for _ in range(warmup - 1):
        assert core.apply(feed.delta(bids[:1])) == []
    return core.apply(feed.delta(bids[:1]))


def kstate(core: StrategyCore, symbol: str = BTC) -> np.ndarray:
    return core.books[symbol].state


# ---------------------------------------------------------------- warm-up and the first quote
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("warmup", [0, 3, 6])
def test_warmup_holds_quotes_then_first_quote_is_post_only_gtc_on_grid(model: str, warmup: int) -> None:
    sym = "TESTUSDT"  # tick 10 pipettes, lot 1000 atoms
    core = make_core(model, symbol=sym, spot=False, warmup=warmup, name="mm1")
    feed = Feed(sym)
    bids, asks = [(100_000, 700_000), (99_990, 300_000)], [(100_130, 500_000), (100_140, 900_000)]
    for i in range(warmup):  # updates 1..warmup: nothing
        ev = feed.snapshot(bids, asks) if i == 0 else feed.delta([(99_980, 10_000 * i)])
        assert core.apply(ev) == [], f"quoted during warm-up at book update {i + 1}"
    ev = feed.snapshot(bids, asks) if warmup == 0 else feed.delta([(99_970, 5_000)])
    outs = core.apply(ev)
    assert [type(o.body) for o in outs] == [E.OrderIntent, E.OrderIntent]
    assert [o.key for o in outs] == [f"mm1:{EPOCH}:{ev.seq}:0", f"mm1:{EPOCH}:{ev.seq}:1"]
    assert all(o.event_ns == ev.event_ns for o in outs)
    q = by_side(outs)
    bid, ask = q[E.BUY], q[E.SELL]
    assert bid.order_id == f"mm1.{sym}.{ev.seq}.b" and ask.order_id == f"mm1.{sym}.{ev.seq}.a"
    for o in (bid, ask):
        assert (o.strategy, o.symbol, o.tif, o.post_only) == ("mm1", sym, E.GTC, True)
        assert o.price % 10 == 0, f"{o.price} off the tick grid"
        assert o.qty == QTY and o.qty % LOT == 0
    assert bid.price < 100_130 and ask.price > 100_000 and bid.price < ask.price


@pytest.mark.parametrize("model", MODELS)
def test_trades_do_not_count_as_warmup(model: str) -> None:
    core = make_core(model, spot=False, warmup=3)
    feed = Feed()
    assert core.apply(feed.snapshot(*BOOK)) == []
    for _ in range(10):
        assert core.apply(feed.trade(100_050, 1000, False)) == []
        assert core.apply(feed.trade(100_050, 1000, True)) == []
    assert core.apply(feed.delta(BOOK[0])) == []
    assert core.apply(feed.delta(BOOK[0])) == []
    assert len(intents(core.apply(feed.delta(BOOK[0])))) == 2


def test_other_symbols_and_non_market_events_are_ignored() -> None:
    core = make_core("mm", spot=False)
    feed, eth = Feed(), Feed("ETHUSDT")
    warm(core, feed)
    h = core_hash(core)
    for ev in (
        eth.snapshot(*BOOK),
        eth.trade(100_000, 1000, True),
        feed.clock(),
        feed.fill("nobody.BTCUSDT.1.b", 1, 1, 1),
    ):
        assert core.apply(ev) == []
    assert core_hash(core) == h


# ---------------------------------------------------------------- prices, hand-computed
@pytest.mark.parametrize(
    "symbol,tick,bid,ask,half,exp_bid,exp_ask",
    [
        # fair 100_050, +-10: already on the 1-pipette grid
        ("BTCUSDT", 1, 100_000, 100_100, 10, 100_040, 100_060),
        # fair 100_065: 100_055 floors to 100_050, 100_075 ceils to 100_080
        ("TESTUSDT", 10, 100_000, 100_130, 10, 100_050, 100_080),
        # fair 100_065, half 25: 100_040 (on grid), 100_090 (on grid)
        ("TESTUSDT", 10, 100_000, 100_130, 25, 100_040, 100_090),
    ],
)
def test_mm_flat_quote_is_fair_plus_minus_half_spread(symbol, tick, bid, ask, half, exp_bid, exp_ask) -> None:
    core = make_core("mm", symbol=symbol, spot=False, half_spread=half)
    feed = Feed(symbol)
    q = by_side(warm(core, feed, [(bid, 1_000_000)], [(ask, 1_000_000)]))
    fair = bid + (ask - bid) // 2
    assert core.inspect(symbol)["fair"] == fair
    assert core.inspect(symbol)["spread_mult_bps"] == 10_000  # static book: no vol, no VPIN
    assert (q[E.BUY].price, q[E.SELL].price) == (exp_bid, exp_ask)
    assert exp_bid == (fair - half) // tick * tick and exp_ask == -(-(fair + half) // tick) * tick


def test_as_flat_quote_is_symmetric_with_the_liquidity_term() -> None:
    """Static book: sigma = 0, so spread = (2/gamma) ln(1 + gamma/kappa), floored."""
    g, k = 1_000, 100_000  # ppm per pipette (config defaults)
    core = make_core("as", spot=False, as_gamma_ppm=g, as_kappa_ppm=k)
    q = by_side(warm(core, Feed()))
    width = math.floor(2 * 1e6 / g * math.log(1 + g / k))  # 19 pipettes
    assert width == 19
    fair = 100_050
    assert q[E.BUY].price == (2 * fair - width) // 2 == 100_040
    assert q[E.SELL].price == -(-(2 * fair + width) // 2) == 100_060
    assert fair - q[E.BUY].price == q[E.SELL].price - fair


# ---------------------------------------------------------------- inventory
def _flat_twin_quote(core: StrategyCore, symbol: str = BTC) -> tuple[int, int]:
    """The quote the kernel would make in the same state with position 0."""
    sb = core.books[symbol]
    st, bk = sb.state.copy(), sb.book.copy()
    st[D.S_POSITION] = 0
    assert K.make_quote(st, bk, sb.params) == D.ACT_QUOTE
    return int(st[D.S_Q_BID_PX]), int(st[D.S_Q_ASK_PX])


@pytest.mark.parametrize("model", MODELS)
def test_bid_fill_moves_position_and_lowers_the_ask(model: str) -> None:
    kw = dict(spot=False, max_inventory=200_000, gamma_ppm=1_000_000, as_gamma_ppm=10_000, as_horizon_ms=1_000)
    core = make_core(model, **kw)
    feed = Feed()
    outs = warm(core, feed)
    if model == "as":  # A-S skews by gamma*sigma^2*H: make the book move so sigma > 0
        for i in range(12):
            b = [(BID + (60 if i % 2 else 0), 1_000_000)]
            outs = core.apply(feed.delta(b, [(ASK, 1_000_000)])) or outs
        live = {s: core.orders[oid] for s, oid in core.live[BTC].items()}
        first = {s: (o.price, o.remaining) for s, o in live.items()}
        bid_id = core.live[BTC][E.BUY]
    else:
        q = by_side(outs)
        first = {s: (i.price, i.qty) for s, i in q.items()}
        bid_id = q[E.BUY].order_id
        assert first == {E.BUY: (100_040, QTY), E.SELL: (100_060, QTY)}
    ask_id = core.live[BTC][E.SELL]
    flat_bid, flat_ask = _flat_twin_quote(core)

    ev = feed.fill(bid_id, E.BUY, first[E.BUY][0], QTY)
    outs = core.apply(ev)
    assert core.inspect(BTC)["position"] == QTY
    assert core.inspect(BTC)["fills"] == 1
    bodies = [o.body for o in outs]
    # the filled bid is gone (no cancel for it); the ask is replaced, lower
    assert E.CancelIntent("strategy", BTC, bid_id) not in bodies
    assert E.CancelIntent("strategy", BTC, ask_id) in bodies
    q = by_side(outs)
    assert set(q) == {E.BUY, E.SELL}
    assert q[E.SELL].order_id == f"strategy.{BTC}.{ev.seq}.a"
    long_bid, long_ask = q[E.BUY].price, q[E.SELL].price
    flat_bid2, flat_ask2 = _flat_twin_quote(core)
    assert long_ask < flat_ask2 and long_bid < flat_bid2, "a long position must skew the quote down"
    if model == "mm":
        # skew = gamma * (pos/max_inv) * half = 1.0 * 0.5 * 10 = 5 pipettes
        assert (long_bid, long_ask) == (100_035, 100_055)
        assert (flat_bid, flat_ask) == (flat_bid2, flat_ask2) == (100_040, 100_060)
    # bid size is capped by the room left under max_inventory
    assert q[E.BUY].qty == min(QTY, 200_000 - QTY)


@pytest.mark.parametrize("model", MODELS)
def test_short_position_raises_the_bid_when_not_spot(model: str) -> None:
    core = make_core(model, spot=False, max_inventory=200_000, gamma_ppm=1_000_000)
    feed = Feed()
    q = by_side(warm(core, feed))
    ask = q[E.SELL]
    outs = core.apply(feed.fill(ask.order_id, E.SELL, ask.price, QTY))
    assert core.inspect(BTC)["position"] == -QTY
    if model == "mm":
        q2 = by_side(outs)
        assert (q2[E.BUY].price, q2[E.SELL].price) == (100_045, 100_065)


# ---------------------------------------------------------------- spot
@pytest.mark.parametrize("model", MODELS)
def test_spot_flat_quotes_no_ask_and_caps_the_ask_to_holdings(model: str) -> None:
    core = make_core(model)  # spot=True is the default
    assert core.cfg.spot
    feed = Feed()
    q = by_side(warm(core, feed))
    assert set(q) == {E.BUY}, "flat on spot: nothing to sell"
    bid = q[E.BUY]
    # a partial fill of 30_500 atoms: the rest of the bid keeps working
    assert core.apply(feed.fill(bid.order_id, E.BUY, bid.price, 30_500, leaves=QTY - 30_500)) == []
    assert core.inspect(BTC)["position"] == 30_500
    # move fair by more than the requote threshold: requote (the fill reset the cooldown)
    outs = core.apply(feed.delta([(BID + 40, 1_000_000)]))
    q = by_side(outs)
    assert q[E.SELL].qty == 30_000, "ask = holdings rounded down to the lot"
    assert E.CancelIntent("strategy", BTC, bid.order_id) in [o.body for o in outs]  # size changed
    ask = q[E.SELL]
    # a sell fill larger than the holdings: clamp at zero
    outs = core.apply(feed.fill(ask.order_id, E.SELL, ask.price, 50_000))
    st = kstate(core)
    assert core.inspect(BTC)["position"] == 0
    assert int(st[D.S_CLAMPED]) == 50_000 - 30_500
    assert int(st[D.S_SOLD]) == 30_500
    assert not [i for i in intents(outs) if i.side == E.SELL]
    for _ in range(3):
        outs = core.apply(feed.delta([(BID + 80 + _, 1_000_000)]))
        assert not [i for i in intents(outs) if i.side == E.SELL], "flat on spot must not quote an ask"


@pytest.mark.parametrize(("fee_base", "ask_qty"), [(0, 31_000), (31, 30_000)])
def test_spot_ask_is_what_is_held_after_a_base_asset_commission(fee_base: int, ask_qty: int) -> None:
    """31_000 atoms bought, 31 kept by the venue as commission (0.1% in BTC, as Binance charges
    without BNB): 30_969 are held, so the ask is 30_000 (the lot below), never the 31_000 bought."""
    core = make_core("mm")
    feed = Feed()
    bid = by_side(warm(core, feed))[E.BUY]
    core.apply(feed.fill(bid.order_id, E.BUY, bid.price, 31_000, leaves=QTY - 31_000, fee_base=fee_base))
    assert core.inspect(BTC)["position"] == 31_000 - fee_base
    q = by_side(core.apply(feed.delta([(BID + 40, 1_000_000)])))
    assert q[E.SELL].qty == ask_qty


# ---------------------------------------------------------------- toxic flow
@pytest.mark.parametrize("model", MODELS)
def test_toxic_burst_cancels_all_and_holds_until_it_subsides(model: str) -> None:
    core = make_core(model, spot=False, vpin_window=10, min_trades=5, toxic_bps=8_000)
    feed = Feed()
    first = by_side(warm(core, feed))
    old_ids = {i.order_id for i in first.values()}
    for _ in range(4):  # one-sided, but fewer than min_trades: nothing
        assert core.apply(feed.trade(ASK, 10_000, False)) == []
    assert core.inspect(BTC)["toxic"] == 0
    ev = feed.trade(ASK, 10_000, False)
    outs = core.apply(ev)
    assert [o.body for o in outs] == [E.CancelAll("strategy", BTC, "toxic_flow")]
    assert outs[0].key == f"strategy:{EPOCH}:{ev.seq}:0"
    assert core.inspect(BTC)["toxic"] == 1 and core.inspect(BTC)["vpin_bps"] >= 8_000
    # while toxic: book moves and more trades emit nothing
    for i in range(4):
        assert core.apply(feed.delta([(BID + 20 * (i + 1), 1_000_000)])) == []
        assert core.apply(feed.trade(ASK, 10_000, False)) == []
    # balance the flow: last 10 trades = 5 buys + 5 sells -> VPIN 0
    for _ in range(5):
        assert core.apply(feed.trade(BID, 10_000, True)) == []
    assert core.inspect(BTC)["toxic"] == 0
    outs = core.apply(feed.delta([(BID + 90, 1_000_000)]))
    assert [type(o.body) for o in outs] == [E.OrderIntent, E.OrderIntent], "no cancels: CancelAll already pulled them"
    assert not {i.order_id for i in intents(outs)} & old_ids


# ---------------------------------------------------------------- requote rules
@pytest.mark.parametrize("model", MODELS)
def test_requote_cancels_then_replaces_and_unchanged_emits_nothing(model: str) -> None:
    core = make_core(model, spot=False, cooldown=2, requote_threshold=5)
    feed = Feed()
    first = by_side(warm(core, feed))
    for _ in range(5):  # same book: fair unchanged, nothing
        assert core.apply(feed.delta(BOOK[0])) == []
    ev = feed.delta([(BID, 0), (BID + 20, 1_000_000)])  # fair 100_050 -> 100_060
    outs = core.apply(ev)
    b, a = first[E.BUY].order_id, first[E.SELL].order_id
    nb, na = f"strategy.{BTC}.{ev.seq}.b", f"strategy.{BTC}.{ev.seq}.a"
    assert [(type(o.body).__name__, o.body.order_id) for o in outs] == [
        ("CancelIntent", b),
        ("OrderIntent", nb),
        ("CancelIntent", a),
        ("OrderIntent", na),
    ]
    assert [o.key for o in outs] == [f"strategy:{EPOCH}:{ev.seq}:{n}" for n in range(4)]
    q = by_side(outs)
    if model == "mm":
        # fair 100_060; |d fair| = 10 -> vol EMA 500 milli-pipettes -> mult 1.05 -> width 21
        assert core.inspect(BTC)["spread_mult_bps"] == 10_500
        assert (q[E.BUY].price, q[E.SELL].price) == (100_049, 100_071)
    assert q[E.BUY].price > first[E.BUY].price and q[E.SELL].price > first[E.SELL].price
    # the cancelled orders are remembered until the venue confirms (a late fill still counts)
    assert b in core.orders and a in core.orders
    assert core.live[BTC] == {E.BUY: nb, E.SELL: na}


@pytest.mark.parametrize("model", MODELS)
def test_kernel_requote_at_the_same_prices_emits_nothing(model: str) -> None:
    sym = "TESTUSDT"  # tick 10: a 1-pipette fair move keeps both prices
    core = make_core(model, symbol=sym, spot=False, requote_threshold=0, cooldown=0, microprice_levels=1)
    feed = Feed(sym)
    first = by_side(warm(core, feed, [(100_000, 65_000)], [(100_130, 65_000)]))
    assert core.inspect(sym)["fair"] == 100_065
    n_quotes = core.inspect(sym)["quotes"]
    outs = core.apply(feed.delta([(100_000, 66_000)], [(100_130, 64_000)]))  # fair 100_066
    assert core.inspect(sym)["fair"] == 100_066
    assert core.inspect(sym)["quotes"] == n_quotes + 1, "the kernel did requote"
    st = core.books[sym].state
    assert (int(st[D.S_Q_BID_PX]), int(st[D.S_Q_ASK_PX])) == (first[E.BUY].price, first[E.SELL].price)
    assert outs == [], "same price and size: keep the orders (and their queue position)"


# ---------------------------------------------------------------- retirement
RETIRE = {
    "risk_rejected": lambda f, oid: f.risk_rejected(oid),
    "cancelled": lambda f, oid: f.cancelled(oid, QTY),
    "expired": lambda f, oid: f.expired(oid, QTY),
    "rejected": lambda f, oid: f.rejected(oid),
}


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("kind", sorted(RETIRE))
def test_terminal_report_retires_the_order_and_the_side_is_quoted_again(model: str, kind: str) -> None:
    core = make_core(model, spot=False, reject_backoff_ms=0)  # (the backoff after a refusal: below)
    feed = Feed()
    first = by_side(warm(core, feed))
    b, a = first[E.BUY].order_id, first[E.SELL].order_id
    assert core.apply(RETIRE[kind](feed, b)) == []
    assert b not in core.orders and E.BUY not in core.live[BTC]
    assert int(kstate(core)[D.S_LIVE_BID]) == 0
    # the next requote re-quotes the bid without cancelling the retired order
    core.apply(feed.delta(BOOK[0]))
    outs = core.apply(feed.delta([(BID, 0), (BID + 20, 1_000_000)]))
    bodies = [o.body for o in outs]
    assert E.CancelIntent("strategy", BTC, b) not in bodies
    assert E.CancelIntent("strategy", BTC, a) in bodies
    assert set(by_side(outs)) == {E.BUY, E.SELL}
    # both sides retired: no quote is live, so the next book update quotes (no fair move needed)
    live = dict(core.live[BTC])
    for oid in live.values():
        core.apply(RETIRE[kind](feed, oid))
    assert core.live[BTC] == {} and int(kstate(core)[D.S_HAVE_QUOTE]) == 0
    assert core.apply(feed.delta([(BID + 20, 1_000_000)])) == []  # cooldown (2 updates) since the last quote
    outs = core.apply(feed.delta([(BID + 20, 1_000_000)]))
    assert set(by_side(outs)) == {E.BUY, E.SELL}
    assert not [o for o in outs if isinstance(o.body, E.CancelIntent)]


@pytest.mark.parametrize("model", MODELS)
def test_a_fill_of_a_replaced_order_still_moves_the_position(model: str) -> None:
    core = make_core(model, spot=False)
    feed = Feed()
    first = by_side(warm(core, feed))
    core.apply(feed.delta(BOOK[0]))
    outs = core.apply(feed.delta([(BID, 0), (BID + 20, 1_000_000)]))
    assert E.CancelIntent("strategy", BTC, first[E.BUY].order_id) in [o.body for o in outs]
    core.apply(feed.fill(first[E.BUY].order_id, E.BUY, first[E.BUY].price, QTY))  # raced the cancel
    assert core.inspect(BTC)["position"] == QTY
    assert first[E.BUY].order_id not in core.orders


@pytest.mark.parametrize("model", MODELS)
def test_cancel_of_one_child_keeps_the_rest_of_the_parent_live(model: str) -> None:
    core = make_core(model, spot=False)
    feed = Feed()
    bid = by_side(warm(core, feed))[E.BUY]
    # the router split the bid into child .1 (70k) and child .2 (30k); .2 is cancelled
    assert core.apply(feed.cancelled(bid.order_id, 30_000, child=2)) == []
    # 40k of child .1 fills: 30k of the parent still rests on the venue
    outs = core.apply(feed.fill(bid.order_id, E.BUY, bid.price, 40_000, leaves=30_000, child=1))
    new_bids = [i for i in intents(outs) if i.side == E.BUY]
    cancels = [o.body for o in outs if isinstance(o.body, E.CancelIntent)]
    assert not new_bids or E.CancelIntent("strategy", BTC, bid.order_id) in cancels, (
        "a new bid while 30k of the old one still rests, with no cancel for it"
    )
    assert core.orders[bid.order_id].remaining == 30_000


# ---------------------------------------------------------------- snapshot + replay
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("seed", [1, 2])
def test_snapshot_plus_replay_equals_full_replay(model: str, seed: int) -> None:
    evs, outs = random_session(model, seed)
    kinds = {type(o.body) for oo in outs for o in oo}
    assert {E.OrderIntent, E.CancelIntent} <= kinds, "the session must exercise requotes"
    full = make_core(model, **_session_cfg())
    full_outs = [full.apply(ev) for ev in evs]
    assert full_outs == outs, "the same events must give the same outputs"
    final = core_hash(full)
    for cut in (1, 5, len(evs) // 3, len(evs) // 2 + 1, len(evs) - 1):
        a = make_core(model, **_session_cfg())
        for ev in evs[:cut]:
            a.apply(ev)
        h_cut = core_hash(a)
        b = make_core(model, **_session_cfg())
        b.load_state(roundtrip(a.state()))
        assert core_hash(b) == h_cut, f"load_state(state()) changed the hash at cut {cut}"
        rest = [b.apply(ev) for ev in evs[cut:]]
        assert rest == outs[cut:], f"outputs after restoring at cut {cut} differ"
        assert core_hash(b) == final
        assert b.counters == full.counters


def _session_cfg() -> dict[str, object]:
    return dict(spot=False, vpin_window=12, min_trades=6, toxic_bps=7000, max_inventory=400_000, gamma_ppm=500_000)


def test_load_state_into_a_core_that_already_ran_replaces_everything() -> None:
    evs, _ = random_session("mm", 3)
    a = make_core("mm", **_session_cfg())
    for ev in evs[:200]:
        a.apply(ev)
    dirty = make_core("mm", **_session_cfg())
    for ev in evs[:50]:
        dirty.apply(ev)
    dirty.load_state(roundtrip(a.state()))
    assert core_hash(dirty) == core_hash(a)
    assert [dirty.apply(ev) for ev in evs[200:]] == [a.apply(ev) for ev in evs[200:]]


# ---------------------------------------------------------------- state hash
@pytest.mark.parametrize("model", MODELS)
def test_state_hash_changes_with_every_state_change(model: str) -> None:
    evs, outs = random_session(model, 4)
    core = make_core(model, **_session_cfg())
    seen = {core_hash(core)}
    checked = 0
    for ev, exp in zip(evs, outs, strict=True):
        before = core_hash(core)
        known = True
        if isinstance(ev.body, E.OrderFill):
            known = ev.body.child_id.rsplit(".", 1)[0] in core.orders
        assert core.apply(ev) == exp
        after = core_hash(core)
        if isinstance(ev.body, E.Clock):
            assert after == before, "an ignored event must not change the state"
        elif isinstance(ev.body, (E.BookDelta, E.BookSnapshot, E.Trade)) or (
            isinstance(ev.body, E.OrderFill) and known
        ):
            assert after != before, f"{type(ev.body).__name__} at seq {ev.seq} changed state but not the hash"
            checked += 1
        seen.add(after)
    assert checked > 200
    # every market event bumps a counter, so no state ever repeats
    assert len(seen) > checked


def test_state_hash_is_sensitive_to_orders_and_model() -> None:
    a, b = make_core("mm", spot=False), make_core("mm", spot=False)
    fa, fb = Feed(), Feed()
    warm(a, fa)
    q = by_side(warm(b, fb))
    assert core_hash(a) == core_hash(b)
    b.apply(fb.risk_rejected(q[E.BUY].order_id))
    assert core_hash(a) != core_hash(b)
    c = make_core("as", spot=False)
    warm(c, Feed())
    assert core_hash(c) != core_hash(a)


def test_a_snapshot_whose_book_does_not_fit_is_refused_before_anything_changes() -> None:
    """A snapshot from another book layout or book_slots raises ValueError and leaves
    the core exactly as it was (the shell then replays the log instead)."""
    evs, _ = random_session("mm", 4)
    a = make_core("mm", **_session_cfg())
    for ev in evs[:150]:
        a.apply(ev)
    snap = roundtrip(a.state())
    b = make_core("mm", **_session_cfg(), book_slots=128)
    for ev in evs[:20]:
        b.apply(ev)
    before = core_hash(b)
    with pytest.raises(ValueError, match="book_slots"):
        b.load_state(snap)
    assert core_hash(b) == before
    bad = roundtrip(a.state())
    bad["books"][BTC] = [bad["books"][BTC][0], bytes(32)]  # the sorted-run layout's book was one blob
    c = make_core("mm", **_session_cfg())
    with pytest.raises(ValueError, match="does not fit"):
        c.load_state(bad)


# ---------------------------------------------------------------- backoff after a refusal
def quote_again(core: StrategyCore, feed: Feed, n: int) -> list[dict[int, E.OrderIntent]]:
    """n book updates that each move the fair value (so the kernel requotes): intents by side."""
    out = []
    for i in range(n):
        up, down = (20, 0) if i % 2 == 0 else (0, 20)  # the book steps 20 pipettes up, then back
        out.append(
            by_side(
                core.apply(
                    feed.delta(
                        [(BID + down, 0), (BID + up, 1_000_000)],
                        [(ASK + down, 0), (ASK + up, 1_000_000)],
                    )
                )
            )
        )
    return out


def test_a_refused_side_waits_then_doubles_and_an_approval_resets_it() -> None:
    """risk refuses the bid: no new bid for reject_backoff_ms of sequencer time (events are
    100 ms apart here) while the ask goes on quoting; a second refusal in a row waits twice
    as long; an approval ends it. A core that never meets a refusal hashes as one without
    the backoff at all (its state has no backoff key)."""
    core = make_core("mm", spot=False, reject_backoff_ms=500, reject_backoff_max_ms=800, cooldown=0)
    feed = Feed()
    first = by_side(warm(core, feed))
    assert "backoff" not in core.state()  # type: ignore[operator]
    core.apply(feed.risk_rejected(first[E.BUY].order_id))
    quotes = quote_again(core, feed, 8)
    bids = [i for i, q in enumerate(quotes) if E.BUY in q]
    assert all(E.SELL in q for q in quotes[:1]) and bids and bids[0] == 4  # 500 ms: events 1..4 later
    assert core.counters["held_back"] == 4
    # a second refusal in a row: 1,000 ms, capped at 800
    core.apply(feed.risk_rejected(quotes[bids[0]][E.BUY].order_id))
    quotes = quote_again(core, feed, 12)
    bids = [i for i, q in enumerate(quotes) if E.BUY in q]
    assert bids[0] == 7  # 800 ms (the cap), not 1,000
    # approved: the next refusal starts again from 500 ms
    core.apply(feed.approved(quotes[bids[0]][E.BUY]))
    assert "backoff" not in core.state()  # type: ignore[operator]
    core.apply(feed.risk_rejected(quotes[bids[0]][E.BUY].order_id))
    quotes = quote_again(core, feed, 8)
    assert [i for i, q in enumerate(quotes) if E.BUY in q][0] == 4


def test_backoff_survives_a_snapshot_and_zero_turns_it_off() -> None:
    core = make_core("mm", spot=False, reject_backoff_ms=1000, cooldown=0)
    feed = Feed()
    first = by_side(warm(core, feed))
    core.apply(feed.risk_rejected(first[E.BUY].order_id))
    again = make_core("mm", spot=False, reject_backoff_ms=1000, cooldown=0)
    again.load_state(roundtrip(core.state()))
    assert core_hash(again) == core_hash(core)
    feed2 = Feed(seq=feed.seq, ts=feed.ts)
    assert quote_again(core, feed, 6) == quote_again(again, feed2, 6)
    assert core_hash(again) == core_hash(core)
    off = make_core("mm", spot=False, reject_backoff_ms=0, cooldown=0)
    feed = Feed()
    first = by_side(warm(off, feed))
    off.apply(feed.risk_rejected(first[E.BUY].order_id))
    assert E.BUY in quote_again(off, feed, 1)[0]
    assert "backoff" not in off.state() and "held_back" not in off.counters  # type: ignore[operator]


def test_an_operator_reset_of_risk_ends_every_backoff() -> None:
    core = make_core("mm", spot=False, reject_backoff_ms=60_000, cooldown=0)
    feed = Feed()
    first = by_side(warm(core, feed))
    core.apply(feed.risk_rejected(first[E.BUY].order_id))
    bids = lambda: [E.BUY in q for q in quote_again(core, feed, 2)]  # noqa: E731  (up, then back)
    assert bids() == [False, False]
    core.apply(feed.wrap(E.OperatorCommand("venue-down", "sim-a", "op")))  # not a reset of risk
    assert bids() == [False, False]
    core.apply(feed.wrap(E.OperatorCommand("reset-breaker", "", "op")))
    assert "backoff" not in core.state()  # type: ignore[operator]
    assert bids() == [True, True]


def test_backoff_config_is_checked() -> None:
    from common import config

    with pytest.raises(config.ConfigError, match="reject_backoff_max_ms"):
        config.from_dict({"strategy": {"reject_backoff_ms": 2000, "reject_backoff_max_ms": 1000}})
    with pytest.raises(config.ConfigError, match="reject_backoff_max_ms"):
        config.from_dict({"strategy": {"reject_backoff_ms": 10, "reject_backoff_max_ms": 0}})
    assert config.from_dict({"strategy": {"reject_backoff_ms": 0, "reject_backoff_max_ms": 0}}).strategy
