"""The execution engine's pure core: child orders in, venue reports out.

Venues here are the simulated exchanges (one per router venue, same fees and
same derived books as the router sees, via common/venues.py). Every sequenced
event advances venue time to its event_ns, so resting orders fill as trades
print, latencies elapse on event time, and a replay produces the very same
reports. The order state machine (orders.py) checks every report; an illegal
transition is logged and counted, never applied.

CancelAll is acted on here directly (not only through the router's
ChildCancels) because risk's dead man's switch must be able to pull every
order when the router or the strategy is the thing that hung.
"""

from __future__ import annotations

from common import events
from common.accounting import Account
from common.config import ExecutionConfig
from common.core import Output, output_key
from common.router_config import RouterConfig
from common.units import SymbolTable
from common.venues import venue_market
from services.execution.orders import OrderBook
from services.execution.simexchange import SimExchange

MS = 1_000_000
MARKET = (events.BookSnapshot, events.BookDelta, events.Trade)
REPORTS = (events.OrderAck, events.OrderFill, events.OrderCancelled, events.OrderRejected, events.OrderExpired)


class ExecutionCore:
    name = "execution"

    def __init__(self, cfg: ExecutionConfig, router: RouterConfig, symbols: SymbolTable) -> None:
        self.symbols = symbols
        self.venue_cfg = {v.name: v for v in router.venues}
        self.venues = {
            v.name: SimExchange(
                v.name, symbols, cfg.maker_fee_bps, v.fee_bps, cfg.order_latency_ms * MS, cfg.feed_latency_ms * MS
            )
            for v in router.venues
        }
        self.orders = OrderBook()
        self.account = Account()
        self.counters = {"children": 0, "reports": 0, "unknown_venue": 0, "cancel_all": 0}

    def apply(self, ev: events.Sequenced) -> list[Output]:
        b = ev.body
        # Venue time is the sequencer's clock: the same for market data, orders
        # and cancels, and in the log, so a replay fills exactly the same way.
        now = ev.recv_ns
        reports: list[tuple[events._Body, int]] = []
        if isinstance(b, MARKET):
            if b.symbol in self.symbols:
                spec = self.symbols[b.symbol]
                for name, sim in self.venues.items():
                    vb = venue_market(b, self.venue_cfg[name], spec)
                    if vb is not None:
                        reports += sim.on_market(vb, now)
        elif isinstance(b, events.ChildOrder):
            sim = self.venues.get(b.venue)
            if sim is None:
                self.counters["unknown_venue"] += 1
                reports.append((events.OrderRejected(b.venue, b.child_id, b.symbol, "unknown_venue"), now))
            else:
                self.counters["children"] += 1
                self.orders.on_child(b, now)
                reports += sim.on_order(b, now)
        elif isinstance(b, events.ChildCancel):
            sim = self.venues.get(b.venue)
            if sim is not None:
                reports += sim.on_cancel(b, now)
        elif isinstance(b, events.CancelAll):
            self.counters["cancel_all"] += 1
            for o in self.orders.open_orders(b.symbol or None):
                sim = self.venues.get(o.venue)
                if sim is not None:
                    reports += sim.on_cancel(events.ChildCancel(o.child_id, o.venue, o.symbol), now)
        for sim in self.venues.values():
            reports += sim.advance(now)
        out = []
        for i, (body, t) in enumerate(reports):
            self.orders.on_report(body, t)
            if isinstance(body, events.OrderFill):
                self.account.on_fill(body)
            out.append(Output(body, output_key(self.name, ev, i), t))
        self.counters["reports"] += len(out)
        return out

    def state(self) -> object:
        return {
            "venues": {n: s.state() for n, s in sorted(self.venues.items())},
            "orders": self.orders.state(),
            "account": self.account.state(),
            "counters": dict(sorted(self.counters.items())),
        }

    def load_state(self, state: object) -> None:
        assert isinstance(state, dict)
        for n, st in state["venues"].items():
            if n in self.venues:
                self.venues[n].load_state(st)
        self.orders.load_state(state["orders"])
        self.account.load_state(state["account"])
        self.counters.update(state["counters"])
