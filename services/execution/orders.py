"""The order state machine and the table of child orders, keyed by child id.

States (plain strings, so state() is plain data)::

    new --ack--> acked --fill--> partially_filled --fill--> filled
     |             |  \\--fill (whole qty)---------------------^
     |             |                 |
     +--reject--> rejected           |
     +--cancel--> cancelled <--------+--cancel-- (acked, partially_filled)
                  expired   <--------+--expire-- (acked, partially_filled: IOC/FOK/market leftovers)

`new --cancel--> cancelled` is the venue cancelling an order that its cancel
overtook in flight (it never rested, so it was never acked).

A fill before the ack is illegal on purpose: every venue adapter (and the
simulated exchange) reports the ack first, so a fill on a `new` order means the
reports are out of order and the book would be wrong to guess.

Every report is checked before it is applied: the transition must be in the
table, a fill must be > 0 and <= the leaves, and the leaves the venue reports
(fill, cancel, expire) must equal ours. A report that fails is never applied:
the caller gets a `Result` with ok=False and a reason code, the reason is
logged and counted (`counters["illegal"]` and `counters["illegal:<reason>"]`).
Nothing here raises on bad input.

Terminal orders (filled / cancelled / rejected / expired) stay in the table so
late or duplicate reports are recognised as illegal rather than unknown, until
`prune_terminal()` drops them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from common import events

log = logging.getLogger(__name__)

NEW = "new"
ACKED = "acked"
PARTIALLY_FILLED = "partially_filled"
FILLED = "filled"
CANCELLED = "cancelled"
REJECTED = "rejected"
EXPIRED = "expired"
STATES = (NEW, ACKED, PARTIALLY_FILLED, FILLED, CANCELLED, REJECTED, EXPIRED)
TERMINAL = frozenset((FILLED, CANCELLED, REJECTED, EXPIRED))
OPEN = frozenset((NEW, ACKED, PARTIALLY_FILLED))

# report kinds
ACK, FILL, CANCEL, REJECT, EXPIRE = "ack", "fill", "cancel", "reject", "expire"
REPORTS = (ACK, FILL, CANCEL, REJECT, EXPIRE)

# (state, report) -> next state; FILL's target is decided by the leaves.
TRANSITIONS: dict[tuple[str, str], str] = {
    (NEW, ACK): ACKED,
    (NEW, REJECT): REJECTED,
    (NEW, CANCEL): CANCELLED,
    (ACKED, FILL): PARTIALLY_FILLED,
    (ACKED, CANCEL): CANCELLED,
    (ACKED, EXPIRE): EXPIRED,
    (PARTIALLY_FILLED, FILL): PARTIALLY_FILLED,
    (PARTIALLY_FILLED, CANCEL): CANCELLED,
    (PARTIALLY_FILLED, EXPIRE): EXPIRED,
}

_REPORT_OF = {
    events.OrderAck: ACK,
    events.OrderFill: FILL,
    events.OrderCancelled: CANCEL,
    events.OrderRejected: REJECT,
    events.OrderExpired: EXPIRE,
}


@dataclass(frozen=True, slots=True)
class Result:
    ok: bool
    child_id: str
    before: str  # state before ("" if the order is unknown)
    after: str  # state after (== before when not applied)
    reason: str = ""  # reason code when not applied


@dataclass(slots=True)
class Order:
    child_id: str
    parent_id: str
    venue: str
    symbol: str
    side: int
    price: int  # 0 = market
    qty: int
    tif: int
    post_only: bool
    created_ns: int
    state: str = NEW
    filled: int = 0
    notional: int = 0  # sum of fill price*qty
    fees: int = 0
    venue_order_id: str = ""
    updated_ns: int = 0
    reason: str = ""  # reject / cancel reason from the venue

    @property
    def leaves(self) -> int:
        return self.qty - self.filled if self.state in OPEN else 0

    @property
    def is_open(self) -> bool:
        return self.state in OPEN

    _FIELDS = (
        "child_id", "parent_id", "venue", "symbol", "side", "price", "qty", "tif", "post_only", "created_ns",
        "state", "filled", "notional", "fees", "venue_order_id", "updated_ns", "reason",
    )  # fmt: skip

    def state_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self._FIELDS}

    @classmethod
    def from_state(cls, st: dict[str, object]) -> Order:
        return cls(**{name: st[name] for name in cls._FIELDS})  # type: ignore[arg-type]


class OrderBook:
    """Child orders by child id, with open orders per symbol. All methods return Results, never raise."""

    def __init__(self) -> None:
        self.orders: dict[str, Order] = {}
        self.counters: dict[str, int] = {"applied": 0, "illegal": 0}

    # ------------------------------------------------------------ inputs
    def on_child(self, child: events.ChildOrder, event_ns: int) -> Result:
        """Register a new child order (state `new`)."""
        cid = child.child_id
        if cid in self.orders:
            return self._illegal(cid, self.orders[cid].state, "duplicate_child_id", "child order")
        if child.qty <= 0:
            return self._illegal(cid, "", "bad_qty", "child order")
        self.orders[cid] = Order(
            child_id=cid,
            parent_id=child.parent_id,
            venue=child.venue,
            symbol=child.symbol,
            side=child.side,
            price=child.price,
            qty=child.qty,
            tif=child.tif,
            post_only=child.post_only,
            created_ns=event_ns,
            updated_ns=event_ns,
        )
        self.counters["applied"] += 1
        return Result(True, cid, "", NEW)

    def on_report(self, body: events._Body, event_ns: int) -> Result:
        """Apply an OrderAck / OrderFill / OrderCancelled / OrderRejected / OrderExpired."""
        kind = _REPORT_OF.get(type(body))
        cid = getattr(body, "child_id", "")
        if kind is None:
            return self._illegal(cid, "", "not_a_report", type(body).__name__)
        order = self.orders.get(cid)
        if order is None:
            return self._illegal(cid, "", "unknown_order", kind)
        before = order.state
        target = TRANSITIONS.get((before, kind))
        if target is None:
            return self._illegal(cid, before, f"{kind}_in_{before}", kind)
        if getattr(body, "symbol", order.symbol) != order.symbol:
            return self._illegal(cid, before, "symbol_mismatch", kind)

        if kind == FILL:
            assert isinstance(body, events.OrderFill)
            leaves = order.qty - order.filled
            if body.qty <= 0:
                return self._illegal(cid, before, "bad_fill_qty", kind)
            if body.qty > leaves:
                return self._illegal(cid, before, "overfill", kind)
            if body.leaves_qty != leaves - body.qty:
                return self._illegal(cid, before, "leaves_mismatch", kind)
            if body.side != order.side:
                return self._illegal(cid, before, "side_mismatch", kind)
            order.filled += body.qty
            order.notional += body.price * body.qty
            order.fees += body.fee
            target = FILLED if order.filled == order.qty else PARTIALLY_FILLED
        elif kind in (CANCEL, EXPIRE):
            reported = body.leaves_qty  # type: ignore[attr-defined]
            if reported != order.qty - order.filled:
                return self._illegal(cid, before, "leaves_mismatch", kind)
            if kind == CANCEL:
                order.reason = body.reason  # type: ignore[attr-defined]
        elif kind == REJECT:
            order.reason = body.reason  # type: ignore[attr-defined]
        elif kind == ACK:
            order.venue_order_id = body.venue_order_id  # type: ignore[attr-defined]

        order.state = target
        order.updated_ns = event_ns
        self.counters["applied"] += 1
        return Result(True, cid, before, target)

    # ------------------------------------------------------------ queries
    def get(self, child_id: str) -> Order | None:
        return self.orders.get(child_id)

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        """Open orders (new / acked / partially filled), by child id; one symbol or all."""
        return [
            o for _, o in sorted(self.orders.items()) if o.state in OPEN and (symbol is None or o.symbol == symbol)
        ]

    def open_by_symbol(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for o in self.open_orders():
            out.setdefault(o.symbol, []).append(o.child_id)
        return out

    def prune_terminal(self) -> int:
        """Drop terminal orders; return how many were dropped."""
        gone = [cid for cid, o in self.orders.items() if o.state in TERMINAL]
        for cid in gone:
            del self.orders[cid]
        return len(gone)

    # ------------------------------------------------------------ state
    def state(self) -> dict[str, object]:
        return {
            "orders": {cid: o.state_dict() for cid, o in sorted(self.orders.items())},
            "counters": dict(sorted(self.counters.items())),
        }

    def load_state(self, st: dict[str, object]) -> None:
        orders = st["orders"]
        counters = st["counters"]
        assert isinstance(orders, dict) and isinstance(counters, dict)
        self.orders = {str(cid): Order.from_state(o) for cid, o in sorted(orders.items())}
        self.counters = {str(k): int(v) for k, v in counters.items()}

    # ------------------------------------------------------------ internals
    def _illegal(self, cid: str, state: str, reason: str, what: str) -> Result:
        self.counters["illegal"] += 1
        key = f"illegal:{reason}"
        self.counters[key] = self.counters.get(key, 0) + 1
        log.warning("illegal %s for child %r in state %r: %s (not applied)", what, cid, state or "-", reason)
        return Result(False, cid, state, state, reason)
