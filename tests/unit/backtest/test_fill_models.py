"""Fill models by hand: the queue model (the default), fill on touch, latency and fees.

SimExchange directly (symbol XYZ: tick 1, step 1, scale 0, so every number
is checkable by hand), and through the backtest engine where the engine's own
plumbing matters (latency on event time, fee accounting in the report).
"""

from __future__ import annotations

import pytest

from common import config, events
from common.accounting import fee
from common.events import BUY, GTC, MAKER, SELL
from common.units import BUILTIN, SymbolSpec, SymbolTable
from services.backtest import report
from services.backtest.inputs import SyntheticInput
from services.backtest.run import run_backtest
from services.execution.simexchange import SimExchange

V, S = "SIM", "XYZ"
SYMS = SymbolTable([SymbolSpec(S, price_scale=0, qty_scale=0, tick=1, step=1)])
MS = 1_000_000


def sim(fill_model: str = "queue", maker: int = 0, lat: int = 0) -> SimExchange:
    x = SimExchange(V, SYMS, maker, 10, lat, 0, fill_model=fill_model)
    x.on_market(snap([(100, 5), (99, 7)], [(102, 4), (103, 9)]), 0)
    return x


def snap(bids, asks) -> events.BookSnapshot:  # type: ignore[no-untyped-def]
    return events.BookSnapshot(S, 1, events.pack_levels(bids), events.pack_levels(asks))


def delta(bids=(), asks=()) -> events.BookDelta:  # type: ignore[no-untyped-def]
    return events.BookDelta(S, 2, 2, events.pack_levels(list(bids)), events.pack_levels(list(asks)))


def sell_print(price: int, qty: int, tid: int = 1) -> events.Trade:
    return events.Trade(S, tid, price, qty, True)  # buyer_maker: the aggressor sold into the bids


def bid(cid: str = "o1", price: int = 100, qty: int = 2) -> events.ChildOrder:
    return events.ChildOrder("p", cid, V, S, BUY, price, qty, GTC, True, "test")


def fills(out: list) -> list[tuple[int, int, int]]:  # type: ignore[type-arg]
    return [(b.price, b.qty, b.leaves_qty) for b, _ in out if isinstance(b, events.OrderFill)]


# ---------------------------------------------------------------- queue (default)
def test_queue_model_is_the_default() -> None:
    assert SimExchange(V, SYMS, 0, 0, 0, 0).fill_model == "queue"
    with pytest.raises(ValueError, match="fill_model"):
        SimExchange(V, SYMS, 0, 0, 0, 0, fill_model="optimistic")


def test_behind_five_units_a_three_unit_trade_does_not_fill_and_the_next_three_do() -> None:
    x = sim()
    x.on_order(bid(qty=2), 1)  # joins the back of the 100 level: 5 units ahead
    assert x.open_orders()[0]["queue_ahead"] == 5
    assert fills(x.on_market(sell_print(100, 3), 2)) == []  # 3 of the 5 ahead trade
    assert x.open_orders()[0]["queue_ahead"] == 2
    out = x.on_market(sell_print(100, 3, tid=2), 3)  # 2 more ahead, then 1 is ours
    assert fills(out) == [(100, 1, 1)]
    out = x.on_market(sell_print(100, 3, tid=3), 4)
    assert fills(out) == [(100, 1, 0)]  # the rest of ours; the other 2 units are not ours
    assert x.open_orders() == []


def test_queue_model_book_touch_without_a_print_does_not_fill() -> None:
    x = sim()
    x.on_order(bid(qty=2), 1)
    assert fills(x.on_market(delta(asks=[(100, 3), (102, 0)]), 2)) == []  # the ask comes down to our bid
    assert len(x.open_orders()) == 1


# ---------------------------------------------------------------- touch (optimistic)
def test_touch_model_fills_in_full_when_the_opposite_best_touches() -> None:
    x = sim("touch")
    x.on_order(bid(qty=2), 1)
    assert fills(x.on_market(delta(asks=[(101, 1)]), 2)) == []  # best ask 101 > our 100: no touch
    out = x.on_market(delta(asks=[(100, 1), (101, 0)]), 3)  # best ask 100 touches our bid
    assert fills(out) == [(100, 2, 0)]
    assert [b.liquidity for b, _ in out] == [MAKER]
    assert x.open_orders() == []


def test_touch_model_a_print_at_the_limit_fills_all_whatever_the_queue_and_size() -> None:
    x = sim("touch")
    x.on_order(bid(qty=4), 1)
    assert fills(x.on_market(sell_print(101, 1), 2)) == []  # above our bid: not ours
    assert fills(x.on_market(sell_print(100, 1, tid=2), 3)) == [(100, 4, 0)]


def test_touch_state_names_its_model_and_queue_state_is_unchanged() -> None:
    assert "fill_model" not in sim().state()["config"]  # type: ignore[operator]
    assert sim("touch").state()["config"]["fill_model"] == "touch"  # type: ignore[index]
    with pytest.raises(ValueError, match="differently configured"):
        sim().load_state(sim("touch").state())


# ---------------------------------------------------------------- latency
def test_latency_delays_arrival_on_event_time() -> None:
    x = sim(lat=5 * MS)
    out = x.on_order(bid(qty=2), 10 * MS)
    assert out == [] and x.in_flight() == 1  # not at the venue yet: no ack
    # a print at our price 4 ms later cannot touch an order that has not arrived
    assert fills(x.on_market(sell_print(100, 50), 14 * MS)) == []
    out = x.advance(15 * MS)
    assert [type(b).__name__ for b, _ in out] == ["OrderAck"] and out[0][1] == 15 * MS


def test_engine_acks_arrive_exactly_order_latency_after_the_child_order() -> None:
    cfg = config.replace(config.from_dict({}), "execution", order_latency_ms=7)
    res = run_backtest(cfg, SyntheticInput(3000, 3, BUILTIN, cfg.feed), "queue", keep_events=True)
    evs = res.engine.events
    assert evs is not None
    sent = {e.body.child_id: e.recv_ns for e in evs if isinstance(e.body, events.ChildOrder)}
    acks = [e for e in evs if isinstance(e.body, events.OrderAck)]
    assert acks, "no order reached a venue"
    for a in acks:
        assert a.event_ns - sent[a.body.child_id] == 7 * MS


# ---------------------------------------------------------------- fees
def test_maker_fee_is_charged_exactly() -> None:
    x = sim(maker=2)
    x.on_order(bid(qty=3, price=100), 1)
    x.on_market(sell_print(100, 8), 2)  # 5 ahead, 3 ours
    assert x.balances()[S] == {"base": 3, "quote": -300 - fee(100, 3, 2), "fees": fee(100, 3, 2)}
    assert fee(100, 3, 2) == 1  # 0.06 rounded up: never in the payer's favour


def test_fees_reduce_realized_pnl_exactly_in_the_report() -> None:
    stats = report.Stats(BUILTIN)
    # BTCUSDT: buy 0.001 @ 60,000.00 then sell it @ 60,001.00, each paying its fee
    pxs = [(BUY, 6_000_000), (SELL, 6_000_100)]
    fees_paid = [fee(px, 100_000, 2) for _, px in pxs]
    for i, ((side, px), f) in enumerate(zip(pxs, fees_paid, strict=True), 1):
        body = events.OrderFill(V, f"c{i}", "BTCUSDT", side, px, 100_000, 0, f, MAKER, f"t{i}")
        stats(events.Sequenced(1, i, 1, i, "execution", i, f"k{i}", i, i, body))
    p = stats.account.positions["BTCUSDT"]
    assert p.realized == 100 * 100_000  # $1.00 gross at notional scale 10
    assert stats.trips == [100 * 100_000 - sum(fees_paid)]
    assert [r.realized for r in stats.fills] == [-fees_paid[0], 100 * 100_000 - sum(fees_paid)]


def test_same_run_with_and_without_maker_fee_differs_by_exactly_the_fees() -> None:
    base = config.from_dict({"risk": {"max_consecutive_losses": 1_000_000}})
    runs = {}
    for bps in (0, 2):
        cfg = config.replace(base, "execution", maker_fee_bps=bps)
        runs[bps] = run_backtest(cfg, SyntheticInput(4000, 5, BUILTIN, cfg.feed), "touch")
    f0 = [(r.seq, r.side, r.price, r.qty) for r in runs[0].stats.fills]
    f2 = [(r.seq, r.side, r.price, r.qty) for r in runs[2].stats.fills]
    assert f0 and f0 == f2, "the fee changed the decisions; pick a run where it does not"
    expected = sum(fee(p, q, 2) for _, _, p, q in f2)
    u0, u2 = runs[0].report["units"], runs[2].report["units"]
    assert u0["fees"] == 0 and u2["fees"] == expected
    assert u0["gross_pnl"] == u2["gross_pnl"]
    assert u0["realized_pnl"] - u2["realized_pnl"] == expected
