"""services.execution.orders: the full transition table, legal and illegal, and the book of orders."""

from __future__ import annotations

import logging

import pytest

from common import events
from common.core import canonical
from common.events import BUY, GTC, MAKER, SELL
from services.execution.orders import (
    ACKED,
    CANCELLED,
    EXPIRED,
    FILLED,
    NEW,
    PARTIALLY_FILLED,
    REJECTED,
    STATES,
    OrderBook,
    Result,
)

QTY = 10
V, S = "SIM", "XYZ"


def child(cid: str = "c1", qty: int = QTY, symbol: str = S, side: int = BUY) -> events.ChildOrder:
    return events.ChildOrder("p1", cid, V, symbol, side, 100, qty, GTC, False, "test")


def ack(cid: str = "c1") -> events.OrderAck:
    return events.OrderAck(V, cid, f"v-{cid}", S)


def fill(qty: int, leaves: int, cid: str = "c1", price: int = 100, fee: int = 1, side: int = BUY) -> events.OrderFill:
    return events.OrderFill(V, cid, S, side, price, qty, leaves, fee, MAKER, "t")


def cancel(leaves: int, cid: str = "c1") -> events.OrderCancelled:
    return events.OrderCancelled(V, cid, S, leaves, "cancelled")


def reject(cid: str = "c1") -> events.OrderRejected:
    return events.OrderRejected(V, cid, S, "post_only_would_cross")


def expire(leaves: int, cid: str = "c1") -> events.OrderExpired:
    return events.OrderExpired(V, cid, S, leaves)


def in_state(state: str) -> OrderBook:
    """A book holding child c1 (qty 10) driven into `state` through legal reports."""
    ob = OrderBook()
    assert ob.on_child(child(), 1).ok
    steps = {
        NEW: [],
        ACKED: [ack()],
        PARTIALLY_FILLED: [ack(), fill(1, 9)],
        FILLED: [ack(), fill(10, 0)],
        CANCELLED: [ack(), cancel(10)],
        REJECTED: [reject()],
        EXPIRED: [ack(), expire(10)],
    }[state]
    for i, body in enumerate(steps):
        assert ob.on_report(body, 2 + i).ok
    assert ob.get("c1").state == state
    return ob


def report_for(kind: str, ob: OrderBook) -> events._Body:
    """A report of `kind` whose quantities are consistent with the order's leaves, so only the transition decides."""
    o = ob.get("c1")
    leaves = o.qty - o.filled
    return {
        "ack": ack(),
        "fill": fill(1, leaves - 1),
        "cancel": cancel(leaves),
        "reject": reject(),
        "expire": expire(leaves),
    }[kind]


# Written out by hand from the spec (not imported from the module under test).
LEGAL = {
    (NEW, "ack"): ACKED,
    (NEW, "reject"): REJECTED,
    (NEW, "cancel"): CANCELLED,  # a cancel that overtook the order in flight
    (ACKED, "fill"): PARTIALLY_FILLED,  # 1 of 10
    (ACKED, "cancel"): CANCELLED,
    (ACKED, "expire"): EXPIRED,
    (PARTIALLY_FILLED, "fill"): PARTIALLY_FILLED,  # 2 of 10
    (PARTIALLY_FILLED, "cancel"): CANCELLED,
    (PARTIALLY_FILLED, "expire"): EXPIRED,
}
TABLE = [(s, k) for s in STATES for k in ("ack", "fill", "cancel", "reject", "expire")]


@pytest.mark.parametrize("state, kind", TABLE, ids=[f"{s}-{k}" for s, k in TABLE])
def test_transition_table(state: str, kind: str, caplog: pytest.LogCaptureFixture) -> None:
    ob = in_state(state)
    before = ob.get("c1").state_dict()
    illegal_before = ob.counters["illegal"]
    with caplog.at_level(logging.WARNING, logger="services.execution.orders"):
        res = ob.on_report(report_for(kind, ob), 100)
    if (state, kind) in LEGAL:
        assert res == Result(True, "c1", state, LEGAL[(state, kind)])
        assert ob.get("c1").state == LEGAL[(state, kind)]
        assert ob.get("c1").updated_ns == 100
        assert ob.counters["illegal"] == illegal_before
    else:
        assert res == Result(False, "c1", state, state, f"{kind}_in_{state}")
        assert ob.get("c1").state_dict() == before  # never applied
        assert ob.counters["illegal"] == illegal_before + 1
        assert ob.counters[f"illegal:{kind}_in_{state}"] == 1
        assert f"{kind}_in_{state}" in caplog.text


def test_named_illegal_transitions() -> None:
    # Filled -> Cancelled
    ob = in_state(FILLED)
    assert ob.on_report(cancel(0), 9).reason == "cancel_in_filled"
    # an ack after a fill
    ob = in_state(PARTIALLY_FILLED)
    assert ob.on_report(ack(), 9).reason == "ack_in_partially_filled"
    # a fill before the ack
    ob = in_state(NEW)
    assert ob.on_report(fill(1, 9), 9).reason == "fill_in_new"


def test_fill_above_remaining_is_refused() -> None:
    ob = in_state(PARTIALLY_FILLED)  # 1 of 10 filled, 9 left
    res = ob.on_report(fill(10, 0), 9)
    assert (res.ok, res.reason, res.after) == (False, "overfill", PARTIALLY_FILLED)
    o = ob.get("c1")
    assert (o.filled, o.notional, o.fees) == (1, 100, 1)
    assert ob.counters["illegal:overfill"] == 1
    # the exact remainder is fine
    assert ob.on_report(fill(9, 0, price=101), 10) == Result(True, "c1", PARTIALLY_FILLED, FILLED)
    o = ob.get("c1")
    assert (o.filled, o.notional, o.fees, o.leaves, o.is_open) == (10, 100 + 909, 2, 0, False)


def test_reported_leaves_must_agree() -> None:
    ob = in_state(ACKED)
    assert ob.on_report(fill(2, 7), 5).reason == "leaves_mismatch"  # 10 - 2 = 8, not 7
    assert ob.on_report(cancel(9), 5).reason == "leaves_mismatch"
    assert ob.on_report(expire(3), 5).reason == "leaves_mismatch"
    assert ob.on_report(fill(1, 9, side=SELL), 5).reason == "side_mismatch"
    assert ob.on_report(fill(0, 10), 5).reason == "bad_fill_qty"
    assert ob.get("c1").state == ACKED and ob.counters["illegal"] == 5


def test_unknown_duplicate_and_non_report() -> None:
    ob = OrderBook()
    assert ob.on_report(ack("zz"), 1).reason == "unknown_order"
    assert ob.on_child(child(), 1).ok
    res = ob.on_child(child(qty=3), 2)
    assert (res.ok, res.reason) == (False, "duplicate_child_id")
    assert ob.get("c1").qty == QTY
    assert ob.on_report(events.Clock(1), 3).reason == "not_a_report"
    assert ob.counters == {
        "applied": 1,
        "illegal": 3,
        "illegal:unknown_order": 1,
        "illegal:duplicate_child_id": 1,
        "illegal:not_a_report": 1,
    }


def test_reject_and_cancel_reasons_are_kept() -> None:
    ob = in_state(REJECTED)
    assert ob.get("c1").reason == "post_only_would_cross"
    ob = in_state(NEW)
    ob.on_report(events.OrderCancelled(V, "c1", S, 10, "cancelled_before_arrival"), 4)
    assert ob.get("c1").reason == "cancelled_before_arrival" and ob.get("c1").state == CANCELLED


def test_open_orders_per_symbol_prune_and_state_round_trip() -> None:
    ob = OrderBook()
    ob.on_child(child("b", symbol="AAA"), 1)
    ob.on_child(child("a", symbol="AAA"), 1)
    ob.on_child(child("c", symbol="BBB", side=SELL), 1)
    ob.on_child(child("d", symbol="AAA"), 1)
    ob.on_report(events.OrderRejected(V, "d", "AAA", "x"), 2)
    ob.on_report(events.OrderAck(V, "a", "v1", "AAA"), 2)
    assert [o.child_id for o in ob.open_orders("AAA")] == ["a", "b"]
    assert [o.child_id for o in ob.open_orders()] == ["a", "b", "c"]
    assert ob.open_by_symbol() == {"AAA": ["a", "b"], "BBB": ["c"]}
    assert ob.on_report(events.OrderAck(V, "b", "v2", "BBB"), 3).reason == "symbol_mismatch"

    st = ob.state()
    other = OrderBook()
    other.load_state(st)
    assert canonical(other.state()) == canonical(st)
    assert other.get("a").venue_order_id == "v1" and other.get("a").state == ACKED

    assert ob.prune_terminal() == 1
    assert ob.get("d") is None
