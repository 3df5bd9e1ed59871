"""The pure half of a live venue (Binance): what the core decides, never I/O.

A simulated venue lives inside the core, so its reports are the core's own
outputs. A live venue is outside: the core cannot call it (a replay must not
trade), so for each sequenced event it only *asks* -- it appends actions
(submit / cancel / cancel_all / query / snapshot / cancel_foreign) that the
execution shell performs when, and only when, it is live. What the venue
answers comes back as sequenced events from the venue's own producer
(source = the venue name): OrderAck / OrderFill / OrderCancelled /
OrderRejected / OrderExpired / CancelRejected / VenueSnapshot. The core
applies those as facts, so a replay of the log rebuilds the same orders,
positions and PnL without a single request.

Reports can arrive twice: after a restart the shell re-queries the orders it
may have sent, and Binance's REST answer and its user-data stream both
describe the same fill. An ack for an order already past `new` and a fill
whose trade id was already applied are dropped here and counted as
`duplicate_reports`; anything else the state machine refuses is counted as
illegal there.

Reconciliation against a live venue: the shell sequences a VenueSnapshot
(open orders and balances as the venue reports them). Orders are matched by
client order id, which is a pure function of the child id
(`binance.client_order_id`), so the core needs no memory of what was sent.
The first snapshot in the log sets the balance baseline (a real account holds
money before the engine starts); each later one reports a Correction when the
base asset's change since the baseline differs from the account's position
less the base-asset commissions the venue kept (`OrderFill.fee_base`, summed
per symbol over the log's fills, as the position is). The comparison is
exact, at the finer of the venue's 10**-8 and the symbol's qty scale.
"""

from __future__ import annotations

from typing import Any

from common import events
from common.accounting import Account
from common.units import ASSET_SCALE, SymbolTable
from services.execution.binance import client_order_id
from services.execution.orders import NEW, TERMINAL, OrderBook

REPORTS = (events.OrderAck, events.OrderFill, events.OrderCancelled, events.OrderRejected, events.OrderExpired)

Action = tuple[Any, ...]


class LiveVenue:
    def __init__(self, name: str, symbols: SymbolTable, orders: OrderBook, account: Account) -> None:
        self.name = name
        self.symbols = symbols
        self.orders = orders  # shared with the core: one table of child orders
        self.account = account
        self.actions: list[Action] = []
        self.trades: dict[str, list[str]] = {}  # child id -> trade ids applied (open orders only)
        self.baseline: dict[str, int] | None = None  # asset -> balance at the first snapshot
        self.base_fees: dict[str, int] = {}  # symbol -> sum of its fills' fee_base (10**-8 units)
        self.clock_ns = 0  # the sequencer's clock at the last event (how old an unsent order is)
        self.counters = {"duplicate_reports": 0, "cancel_rejects": 0, "snapshots": 0, "snapshot_failures": 0}

    # ------------------------------------------------------------ decisions -> actions
    def submit(self, child: events.ChildOrder, now: int) -> None:
        if self.orders.on_child(child, now).ok:
            self.actions.append(("submit", child))

    def cancel(self, child_id: str, symbol: str) -> None:
        o = self.orders.get(child_id)
        if o is not None and o.is_open:
            self.actions.append(("cancel", child_id, symbol))

    def cancel_all(self, symbol: str) -> None:
        """Risk's CancelAll: pull every order on the symbol(s) at the venue, ours or not."""
        syms = {o.symbol for o in self.orders.open_orders(symbol or None) if o.venue == self.name}
        if symbol:
            syms.add(symbol)
        for sym in sorted(syms):
            self.actions.append(("cancel_all", sym))

    def request_snapshot(self) -> None:
        self.actions.append(("snapshot",))

    # ------------------------------------------------------------ facts from the venue
    def on_report(self, body: events._Body, now: int) -> None:
        cid = getattr(body, "child_id", "")
        order = self.orders.get(cid)
        if isinstance(body, events.CancelRejected):
            self.counters["cancel_rejects"] += 1
            return
        if isinstance(body, events.OrderAck) and order is not None and order.state != NEW:
            self.counters["duplicate_reports"] += 1
            return
        if isinstance(body, events.OrderFill) and body.trade_id in self.trades.get(cid, ()):
            self.counters["duplicate_reports"] += 1
            return
        if not self.orders.on_report(body, now).ok:
            return
        if isinstance(body, events.OrderFill):
            self.account.on_fill(body)
            self.trades.setdefault(cid, []).append(body.trade_id)
            if body.fee_base:
                self.base_fees[body.symbol] = self.base_fees.get(body.symbol, 0) + body.fee_base
        if order is not None and order.state in TERMINAL:
            self.trades.pop(cid, None)

    def on_snapshot(self, snap: events.VenueSnapshot, service: str, sim_base: dict[str, int]) -> list[events._Body]:
        """Compare the venue's view with the log's; every difference becomes a Correction."""
        if not snap.ok:
            self.counters["snapshot_failures"] += 1
            return [events.Correction(service, "venue_unreadable", self.name, "", "", snap.detail)]
        self.counters["snapshots"] += 1
        out: list[events._Body] = []
        mine = {client_order_id(o.child_id): o for o in self.orders.open_orders() if o.venue == self.name}
        held = set()
        for cid, symbol, side, price, qty, filled in sorted(snap.orders):
            held.add(cid)
            if cid not in mine:
                out.append(
                    events.Correction(
                        service,
                        "unknown_venue_order",
                        self.name,
                        symbol,
                        cid,
                        f"venue holds {qty - filled} @ {price} side {side} (client id {cid}) "
                        "the log does not know; cancelling",
                    )
                )
                self.actions.append(("cancel_foreign", cid, symbol))
        for cid, o in sorted(mine.items(), key=lambda kv: kv[1].child_id):
            if cid not in held and o.state != NEW:
                out.append(
                    events.Correction(
                        service,
                        "missing_at_venue",
                        self.name,
                        o.symbol,
                        o.child_id,
                        f"engine had {o.leaves} open; the venue does not hold it; querying",
                    )
                )
                self.actions.append(("query", o.child_id))
        out += self._balances(snap.balances, service, sim_base)
        return out

    def _balances(self, balances: dict[str, int], service: str, sim_base: dict[str, int]) -> list[events._Body]:
        if self.baseline is None:
            self.baseline = dict(sorted(balances.items()))
            return []
        out: list[events._Body] = []
        for sym in sorted(set(self.account.positions) | set(sim_base)):
            spec = self.symbols[sym] if sym in self.symbols else None
            if spec is None:
                continue
            moved = balances.get(spec.base, 0) - self.baseline.get(spec.base, 0)
            pos = self.account.positions[sym].position if sym in self.account.positions else 0
            # Venue balances and fee_base are at 10**-8 of the asset, positions at the symbol's
            # qty scale: compare at the finer of the two, so a commission of a fraction of an
            # atom is neither lost nor a false mismatch.
            fine = max(ASSET_SCALE, spec.qty_scale)
            to_fine = 10 ** (fine - ASSET_SCALE)
            moved_fine = moved * to_fine
            expected_fine = (pos - sim_base.get(sym, 0)) * 10 ** (fine - spec.qty_scale)
            expected_fine -= self.base_fees.get(sym, 0) * to_fine
            if moved_fine != expected_fine:
                out.append(
                    events.Correction(
                        service,
                        "balance_mismatch",
                        self.name,
                        sym,
                        "",
                        f"{spec.base} moved {moved_fine} at the venue since the baseline; the log's live fills "
                        f"less base commissions say {expected_fine} (units of 10**-{fine} {spec.base})",
                    )
                )
        return out

    # ------------------------------------------------------------ state
    def state(self) -> dict[str, object]:
        return {
            "trades": {k: list(v) for k, v in sorted(self.trades.items())},
            "baseline": None if self.baseline is None else dict(sorted(self.baseline.items())),
            "base_fees": dict(sorted(self.base_fees.items())),
            "clock_ns": self.clock_ns,
            "counters": dict(sorted(self.counters.items())),
        }

    def load_state(self, st: dict[str, Any]) -> None:
        self.trades = {str(k): [str(t) for t in v] for k, v in st["trades"].items()}
        base = st["baseline"]
        self.baseline = None if base is None else {str(k): int(v) for k, v in base.items()}
        # Snapshots from before fee_base existed hold none: every fill then had fee_base 0.
        self.base_fees = {str(k): int(v) for k, v in st.get("base_fees", {}).items()}
        self.clock_ns = int(st["clock_ns"])
        self.counters.update(st["counters"])
