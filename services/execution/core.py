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

Reconciliation. When the execution shell goes live after catching up it
sends an OperatorCommand "reconcile"; applying it (a sequenced event, so a
replay reconciles identically) compares what each venue holds with the
order state machine and the account, and writes every difference as a
Correction event: an order the venue holds that the engine does not know is
reported and cancelled; an order the engine thinks open that the venue does
not hold is reported; a base balance that differs from the
account's position is reported. OperatorCommand "sim-inject"
(arg "venue:symbol:BUY|SELL:price:qty:child_id") places an order directly at
a simulated venue, as someone trading on the same account by hand would.

A live venue (`execution.venue = "binance"`: the router venue of that name)
is not simulated here; livevenue.py holds its pure half: the core queues
actions for the shell and applies the venue's sequenced reports as facts.
"""

from __future__ import annotations

from common import events
from common.accounting import Account
from common.config import ExecutionConfig
from common.core import Output, cause_seq, output_key
from common.router_config import RouterConfig
from common.units import SymbolTable
from common.venues import venue_market
from services.execution.livevenue import LiveVenue
from services.execution.orders import OrderBook
from services.execution.simexchange import MARKET_TYPES, SimExchange, advance_all

MS = 1_000_000
REPORTS = (events.OrderAck, events.OrderFill, events.OrderCancelled, events.OrderRejected, events.OrderExpired)
# Tested by type identity, as MARKET_TYPES (see simexchange).
_REPORT_TYPES = frozenset(REPORTS)
# Every body type apply() acts on (besides the live venue's own facts); for any other
# (most of the stream: best bid/offer, clocks, the strategy's and risk's traffic) the
# simulated venues only move their clocks.
_ACTIVE = frozenset((*MARKET_TYPES, events.ChildOrder, events.ChildCancel, events.OperatorCommand, events.CancelAll))


class ExecutionCore:
    name = "execution"

    def __init__(self, cfg: ExecutionConfig, router: RouterConfig, symbols: SymbolTable) -> None:
        self.symbols = symbols
        self.venue_cfg = {v.name: v for v in router.venues}
        live_name = "" if cfg.venue == "sim" else cfg.venue
        if live_name and live_name not in self.venue_cfg:
            raise ValueError(
                f"execution.venue = {live_name!r} needs a router venue named {live_name!r} "
                f"(router venues: {sorted(self.venue_cfg)})"
            )
        self.venues = {
            v.name: SimExchange(
                v.name, symbols, cfg.maker_fee_bps, v.fee_bps, cfg.order_latency_ms * MS, cfg.feed_latency_ms * MS
            )
            for v in router.venues
            if v.name != live_name
        }
        self.orders = OrderBook()
        self.account = Account()
        self.live = LiveVenue(live_name, symbols, self.orders, self.account) if live_name else None
        self.counters = {"children": 0, "reports": 0, "unknown_venue": 0, "cancel_all": 0, "stale": 0}
        # symbol ("" = all) -> seq of risk's latest CancelAll: a child order the router
        # made from an approval sequenced before it is refused (it can reach us after
        # the CancelAll when the router lags).
        self.halts: dict[str, int] = {}

    def apply(self, ev: events.Sequenced) -> list[Output]:
        b = ev.body
        # Venue time is the sequencer's clock: the same for market data, orders
        # and cancels, and in the log, so a replay fills exactly the same way.
        now = ev.recv_ns
        if self.live is not None:
            self.live.clock_ns = now
        reports: list[tuple[events._Body, int]] = []
        t = type(b)
        if t not in _ACTIVE and (self.live is None or ev.source != self.live.name):
            reports = advance_all(self.venues.values(), now)
            return self._outputs(ev, reports) if reports else []
        if t in MARKET_TYPES:
            spec = self.symbols.get(b.symbol)
            if spec is not None:
                for name, sim in self.venues.items():
                    vb = venue_market(b, self.venue_cfg[name], spec)
                    if vb is not None:
                        reports += sim.on_market(vb, now)
        elif self.live is not None and ev.source == self.live.name:
            # A fact from the live venue (its reports and snapshots come only from its own producer).
            if isinstance(b, (*REPORTS, events.CancelRejected)) and b.venue == self.live.name:
                self.live.on_report(b, now)
            elif isinstance(b, events.VenueSnapshot) and b.venue == self.live.name:
                sim_base = self._sim_base()
                reports += [(body, now) for body in self.live.on_snapshot(b, self.name, sim_base)]
        elif isinstance(b, events.ChildOrder):
            sim = self.venues.get(b.venue)
            halt = max(self.halts.get("", 0), self.halts.get(b.symbol, 0))
            if halt and cause_seq(ev.key) < halt:
                self.counters["stale"] += 1
                reports.append(
                    (events.OrderRejected(b.venue, b.child_id, b.symbol, "stale_after_risk_cancel_all"), now)
                )
            elif self.live is not None and b.venue == self.live.name:
                self.counters["children"] += 1
                self.live.submit(b, now)
            elif sim is None:
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
            elif self.live is not None and b.venue == self.live.name:
                self.live.cancel(b.child_id, b.symbol)
        elif isinstance(b, events.OperatorCommand) and b.command in ("reconcile", "sim-inject"):
            bodies = self._reconcile(now) if b.command == "reconcile" else self._inject(b.arg, now)
            reports += [(body, now) for body in bodies]
            if self.live is not None and b.command == "reconcile":
                self.live.request_snapshot()
        elif isinstance(b, events.CancelAll):
            self.counters["cancel_all"] += 1
            if b.origin == "risk":
                self.halts[b.symbol] = ev.seq
            for o in self.orders.open_orders(b.symbol or None):
                sim = self.venues.get(o.venue)
                if sim is not None:
                    reports += sim.on_cancel(events.ChildCancel(o.child_id, o.venue, o.symbol), now)
            if self.live is not None:
                self.live.cancel_all(b.symbol)
        reports += advance_all(self.venues.values(), now)
        return self._outputs(ev, reports) if reports else []

    def _outputs(self, ev: events.Sequenced, reports: list[tuple[events._Body, int]]) -> list[Output]:
        out = []
        for i, (body, t) in enumerate(reports):
            kind = type(body)
            if kind in _REPORT_TYPES:  # a Correction is not a report on any order
                self.orders.on_report(body, t)
            if kind is events.OrderFill:
                self.account.on_fill(body)
            out.append(Output(body, output_key(self.name, ev, i), t))
        self.counters["reports"] += len(out)
        return out

    def on_live(self) -> list[events._Body]:
        """What the shell sends on going live: ask for a reconciliation."""
        return [events.OperatorCommand("reconcile", "", self.name)]

    def _inject(self, arg: str, now: int) -> list[events._Body]:
        try:
            venue, symbol, side, price, qty, child_id = arg.split(":")
            self.venues[venue].inject_order(
                child_id, symbol, events.BUY if side == "BUY" else events.SELL, int(price), int(qty), now
            )
        except (ValueError, KeyError) as exc:
            self.counters["bad_inject"] = self.counters.get("bad_inject", 0) + 1
            return [events.Correction(self.name, "inject_refused", "", "", "", f"{arg}: {exc}")]
        return []

    def _reconcile(self, now: int) -> list[events._Body]:
        out: list[events._Body] = []
        known = {o.child_id: o for o in self.orders.open_orders()}
        held: set[str] = set()
        for name, sim in sorted(self.venues.items()):
            for vo in sim.open_orders():
                cid = str(vo["child_id"])
                held.add(cid)
                if cid not in known:
                    out.append(
                        events.Correction(
                            self.name,
                            "unknown_venue_order",
                            name,
                            str(vo["symbol"]),
                            cid,
                            f"venue holds {vo['leaves']} @ {vo['price']} side {vo['side']} "
                            "the log does not know; cancelling",
                        )
                    )
                    # The venue's OrderCancelled follows after its cancel latency.
                    out += [r for r, _t in sim.on_cancel(events.ChildCancel(cid, name, str(vo["symbol"])), now)]
            for cid, o in sorted(known.items()):
                if o.venue == name and cid not in held and o.state != "New":
                    out.append(
                        events.Correction(
                            self.name,
                            "missing_at_venue",
                            name,
                            o.symbol,
                            cid,
                            f"engine had {o.leaves} open; the venue does not hold it",
                        )
                    )
        if self.live is not None:
            # The account also holds the live venue's fills; its VenueSnapshot reconciles balances.
            self.counters["reconciles"] = self.counters.get("reconciles", 0) + 1
            return out
        base = self._sim_base()
        for sym in sorted(set(base) | set(self.account.positions)):
            mine = self.account.positions[sym].position if sym in self.account.positions else 0
            if base.get(sym, 0) != mine:
                out.append(
                    events.Correction(
                        self.name,
                        "balance_mismatch",
                        "",
                        sym,
                        "",
                        f"venues hold {base.get(sym, 0)} atoms, the account says {mine}",
                    )
                )
        self.counters["reconciles"] = self.counters.get("reconciles", 0) + 1
        return out

    def _sim_base(self) -> dict[str, int]:
        base: dict[str, int] = {}
        for sim in self.venues.values():
            for sym, bal in sim.balances().items():
                base[sym] = base.get(sym, 0) + bal["base"]
        return base

    def take_actions(self) -> list[tuple]:
        """What the live venue should be asked to do because of the events applied so far (the shell's)."""
        if self.live is None or not self.live.actions:
            return []
        out, self.live.actions = self.live.actions, []
        return out

    def state(self) -> object:
        extra = {} if self.live is None else {"live": self.live.state()}
        return {
            **extra,
            "venues": {n: s.state() for n, s in sorted(self.venues.items())},
            "orders": self.orders.state(),
            "account": self.account.state(),
            "counters": dict(sorted(self.counters.items())),
            "halts": dict(sorted(self.halts.items())),
        }

    def load_state(self, state: object) -> None:
        assert isinstance(state, dict)
        for n, st in state["venues"].items():
            if n in self.venues:
                self.venues[n].load_state(st)
        self.orders.load_state(state["orders"])
        self.account.load_state(state["account"])
        self.counters.update(state["counters"])
        self.halts = {k: int(v) for k, v in state.get("halts", {}).items()}
        if self.live is not None and "live" in state:
            self.live.load_state(state["live"])
