"""The pre-trade risk gate's pure core: one decision per OrderIntent, no sockets, no clock.

`RiskCore.apply(ev)` consumes every sequenced event and returns the events
risk emits because of it: exactly one `RiskApproved` or `RiskRejected` per
`OrderIntent`, and a `CancelAll(origin="risk")` whenever the kill switch, the
circuit breaker or the dead man's switch fires.

Time is the sequencer's clock only: `now` is the largest recv_ns (the
sequencer's stamp, in the log, so a replay sees the same clock) seen so far.
Exchange timestamps (event_ns of market data) run on another clock -- a
synthetic market or a replayed capture may be years off -- so they never
drive a rule. Taking the max means a stamp that lags cannot move the clock
backwards; the rate limit,
the daily reset (UTC day of `now`) and the dead man's switch (evaluated on
the sequencer's Clock events) all read it.

Tiers, checked in this order (the first failing check is the reason code):

  kill_switch      Tier 3 is set (total PnL < max_loss, or OperatorCommand "kill")
  circuit_breaker  Tier 2 is set (loss streak or drawdown)
  deadman          a watched heartbeat (service) or the symbol's market data is silent
  unknown_symbol   the symbol is not in the symbol table
  duplicate_order_id  an open order already has this id
  tick_size / lot_size  price off the tick grid / qty off the lot grid
  max_order_qty    qty > max_order_qty
  spread           no two-sided touch for the symbol, or ask - bid > max_spread
  position_limit   |worst-case position| > max_position_qty
  notional         |worst-case position| x reference price > max_notional
  max_open_orders  open parent orders >= max_open_orders
  rate_limit       approvals in the last 1 s of event time >= max_orders_per_second

Worst-case position: for a buy, position + qty of every open buy (its
unfilled remainder) + this qty; for a sell, position - open sells - qty. The
reference price of the notional check is the order's limit price, or for a
market order (price 0) the opposite touch (ask for a buy, bid for a sell).
The notional is converted to money units (see config.py).

Open orders are counted per parent order id from the moment risk approves
it (so two intents in one burst cannot both take the last slot) until its
whole quantity is accounted for by fills, child cancels/expiries/rejects, or
the router's own reports: `OrderRejected(venue="router", child_id=<parent>)`
closes the whole parent, `OrderCancelled(venue="router", child_id=<parent>,
leaves_qty=q)` releases q (e.g. unreleased TWAP slices). Children map to
their parent through the sequenced `ChildOrder` events.

PnL comes from common.accounting (one `Position` per symbol: position,
exact signed cost basis, realized PnL, fees, round trips, all in the
symbol's notional units, pipettes x atoms). Unrealized PnL marks the
position at the mid of the latest touch (exactly: (pos * (bid + ask) -
2 * cost) // 2), or at the last fill price when there is no two-sided touch.
Total PnL = realized - fees + unrealized, converted to money units and
summed over symbols, measured since start or since the last "reset-kill"
(an operator who resets the kill switch grants a fresh max_loss budget;
otherwise the switch would re-fire at once).

Round trip (accounting's definition): begins when a symbol's position
leaves flat and closes when it returns to flat; a fill that flips the sign
closes one and opens the next, its fee split pro rata. Its PnL is realized
net of fees: < 0 is a loss (streak + 1), > 0 a win (streak reset), 0
neither. The streak is global across symbols.

Drawdown (Tier 2) is on the day's PnL (total PnL minus its value at the last
daily reset): peak = max of that since the reset, and the breaker fires
when (peak - pnl) * 10_000 > max_drawdown_bps * max(peak, drawdown_base).
For peak <= 0 (or a small peak) the drop is thus measured against the
configured base instead of a meaningless ratio over a non-positive peak.
PnL triggers are evaluated on fills, on Clock events and before every
decision, not on every book tick.

Daily reset (the UTC day of `now` advances): breaker cleared, loss streak
reset, the day's PnL, peak and volume zeroed. Position, cost basis and the
kill switch are NOT touched (zeroing a held position's cost would invent
PnL; only a human clears the kill switch).

Dead man's switch: the last event_ns of a Heartbeat from each watched
service and of market data per symbol. A source is watched from the first
time it is seen. On each Clock, a source silent for more than deadman_ms
(Clock's time minus its last event_ns) starts an outage: one
CancelAll (symbol "" for a service, the symbol for its market data) and
intents rejected with "deadman" -- all intents for a service outage, that
symbol's intents for a market-data outage -- until the source is heard from
again.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from common import events as E
from common.accounting import Account, Position
from common.core import Output, outputs_for
from common.ladder import LadderBook
from common.risk_config import CMD_KILL, CMD_RESET_BREAKER, CMD_RESET_KILL, RiskConfig
from common.units import BUILTIN, SymbolSpec, SymbolTable

NAME = "risk"
DAY_NS = 86_400 * 10**9
SEC_NS = 10**9
MS_NS = 10**6
BPS = 10_000

# Reason codes of RiskRejected.
R_KILL = "kill_switch"
R_BREAKER = "circuit_breaker"
R_DEADMAN = "deadman"
R_UNKNOWN_SYMBOL = "unknown_symbol"
R_DUPLICATE = "duplicate_order_id"
R_TICK = "tick_size"
R_LOT = "lot_size"
R_MAX_QTY = "max_order_qty"
R_SPREAD = "spread"
R_POSITION = "position_limit"
R_NOTIONAL = "notional"
R_OPEN_ORDERS = "max_open_orders"
R_RATE = "rate_limit"
R_STALE = "stale_intent"
REASONS = (
    R_KILL, R_BREAKER, R_DEADMAN, R_UNKNOWN_SYMBOL, R_DUPLICATE, R_TICK, R_LOT, R_MAX_QTY,
    R_SPREAD, R_POSITION, R_NOTIONAL, R_OPEN_ORDERS, R_RATE, R_STALE,
)

# The other body types apply() acts on besides market data; it ignores the rest (its own
# answers, the router's and execution's orders and cancels, ...).
_ACTS_ON = frozenset((
    E.Clock, E.OrderIntent, E.OrderFill, E.ChildOrder, E.OrderCancelled, E.OrderExpired, E.OrderRejected,
    E.OrderAck, E.Heartbeat, E.OperatorCommand,
))  # fmt: skip

_APPROVED_HAS_ALGO = "algo" in E.RiskApproved.__struct_fields__


class RiskCore:
    name = NAME

    def __init__(self, config: RiskConfig | None = None, symbols: SymbolTable | None = None) -> None:
        self.cfg = config or RiskConfig()
        self.symbols = symbols if symbols is not None else BUILTIN
        self._reset_state()

    # ------------------------------------------------------------ state
    def _reset_state(self) -> None:
        self.now_ns = 0
        self.day = -1  # UTC day number of now_ns; -1 = no event yet
        self.books: dict[str, LadderBook] = {}
        self.tops: dict[str, list[int]] = {}  # symbol -> [bid, ask], from whichever event came last
        self.account = Account(keep_trips=0)  # positions, cost, realized PnL, fees, round trips
        self.orders: dict[str, list[Any]] = {}  # parent id -> [symbol, side, open qty, price]
        self.children: dict[str, list[Any]] = {}  # child id -> [parent id, leaves]
        self.rate: deque[int] = deque()  # event ns of recent approvals
        self.kill = ""  # "" = not fired, else why
        self.breaker = ""
        self.loss_streak = 0
        self.kill_base = 0  # total PnL (money) at the last reset-kill
        self.day_base = 0  # total PnL (money) at the last daily reset
        self.day_peak = 0  # peak of the day's PnL since the last reset
        self.day_volume = 0  # notional traded today, money units
        self.day_fills = 0
        self.last_seen: dict[str, int] = {}  # "svc:<name>" / "md:<symbol>" -> event ns
        self.dead: set[str] = set()
        self.counters: dict[str, int] = {}

    def state(self) -> dict[str, Any]:
        return {
            "now_ns": self.now_ns,
            "day": self.day,
            "books": {s: self.books[s].dump() for s in sorted(self.books)},
            "tops": {s: list(self.tops[s]) for s in sorted(self.tops)},
            "account": self.account.state(),
            "orders": {k: list(self.orders[k]) for k in sorted(self.orders)},
            "children": {k: list(self.children[k]) for k in sorted(self.children)},
            "rate": list(self.rate),
            "kill": self.kill,
            "breaker": self.breaker,
            "loss_streak": self.loss_streak,
            "kill_base": self.kill_base,
            "day_base": self.day_base,
            "day_peak": self.day_peak,
            "day_volume": self.day_volume,
            "day_fills": self.day_fills,
            "last_seen": dict(sorted(self.last_seen.items())),
            "dead": sorted(self.dead),
            "counters": dict(sorted(self.counters.items())),
        }

    def load_state(self, state: object) -> None:
        s: dict[str, Any] = state  # type: ignore[assignment]
        self._reset_state()
        self.now_ns = int(s["now_ns"])
        self.day = int(s["day"])
        self.books = {k: LadderBook.from_dump(v, self._tick(k)) for k, v in s["books"].items()}
        self.tops = {k: [int(v[0]), int(v[1])] for k, v in s["tops"].items()}
        self.account.load_state(s["account"])
        self.orders = {k: [v[0], int(v[1]), int(v[2]), int(v[3])] for k, v in s["orders"].items()}
        self.children = {k: [v[0], int(v[1])] for k, v in s["children"].items()}
        self.rate = deque(int(x) for x in s["rate"])
        self.kill = str(s["kill"])
        self.breaker = str(s["breaker"])
        self.loss_streak = int(s["loss_streak"])
        self.kill_base = int(s["kill_base"])
        self.day_base = int(s["day_base"])
        self.day_peak = int(s["day_peak"])
        self.day_volume = int(s["day_volume"])
        self.day_fills = int(s["day_fills"])
        self.last_seen = {k: int(v) for k, v in s["last_seen"].items()}
        self.dead = set(s["dead"])
        self.counters = {k: int(v) for k, v in s["counters"].items()}

    # ------------------------------------------------------------ helpers
    def _count(self, key: str, n: int = 1) -> None:
        self.counters[key] = self.counters.get(key, 0) + n

    def _spec(self, symbol: str) -> SymbolSpec | None:
        return self.symbols.get(symbol)

    def _to_money(self, x: int, symbol: str) -> int:
        spec = self.symbols.get(symbol)
        ns = spec.notional_scale() if spec else self.cfg.pnl_scale
        d = self.cfg.pnl_scale - ns
        return x * 10**d if d >= 0 else x // 10 ** (-d)

    def total_pnl(self) -> int:
        """Realized - fees + unrealized at mid, money units, since start (not rebased)."""
        total = 0
        for sym, p in self.account.positions.items():  # a sum of ints: any order
            total += self._to_money(self.native_pnl(sym, p), sym)
        return total

    def native_pnl(self, symbol: str, p: Position) -> int:
        """One position's realized - fees + unrealized at mid, in its notional units (marked
        at the last fill price while the symbol has no two-sided top)."""
        bid, ask = self.tops.get(symbol, (0, 0))
        if p.position and bid > 0 and ask > 0:
            return p.net_realized() + (p.position * (bid + ask) - 2 * p.cost) // 2
        return p.equity()

    def position(self, symbol: str) -> int:
        p = self.account.positions.get(symbol)
        return p.position if p else 0

    def _open_qty(self, symbol: str, side: int) -> int:
        return sum(o[2] for o in self.orders.values() if o[0] == symbol and o[1] == side)

    # ------------------------------------------------------------ tiers 2/3
    def _fire_kill(self, why: str, out: list[E._Body]) -> None:
        if self.kill:
            return
        self.kill = why
        self._count("kill_fired")
        out.append(E.CancelAll(origin=NAME, symbol="", reason=f"{R_KILL}:{why}"))

    def _fire_breaker(self, why: str, out: list[E._Body]) -> None:
        if self.breaker:
            return
        self.breaker = why
        self._count("breaker_fired")
        out.append(E.CancelAll(origin=NAME, symbol="", reason=f"{R_BREAKER}:{why}"))

    def _check_pnl(self, out: list[E._Body]) -> None:
        total = self.total_pnl()
        if not self.kill and total - self.kill_base < self.cfg.max_loss:
            self._fire_kill("max_loss", out)
        day = total - self.day_base
        if day > self.day_peak:
            self.day_peak = day
        if not self.breaker:
            base = max(self.day_peak, self.cfg.drawdown_base)
            if (self.day_peak - day) * BPS > self.cfg.max_drawdown_bps * base:
                self._fire_breaker("drawdown", out)

    def _daily_reset(self) -> None:
        self._count("daily_resets")
        self.breaker = ""
        self.loss_streak = 0
        self.day_base = self.total_pnl()
        self.day_peak = 0
        self.day_volume = 0
        self.day_fills = 0

    # ------------------------------------------------------------ apply
    def apply(self, ev: E.Sequenced) -> list[Output]:
        if ev.recv_ns > self.now_ns:
            self.now_ns = ev.recv_ns
        day = self.now_ns // DAY_NS
        if day != self.day:
            if self.day >= 0:
                self._daily_reset()
            self.day = day
        body = ev.body
        t = type(body)
        # Market data (most of the stream) never makes an output: no output list for it,
        # and the most frequent types are tested first.
        if t is E.BestBidOffer:
            bbo: E.BestBidOffer = body  # type: ignore[assignment]
            self.tops[bbo.symbol] = [bbo.bid_px if bbo.bid_qty else 0, bbo.ask_px if bbo.ask_qty else 0]
            if self.cfg.deadman_market_data:
                self._seen(f"md:{bbo.symbol}", ev.recv_ns)
            return []
        if t is E.Trade:
            self._seen(f"md:{body.symbol}", ev.recv_ns)  # type: ignore[union-attr]
            return []
        if t is E.BookDelta or t is E.BookSnapshot:
            self._on_book(ev, body, t is E.BookSnapshot)  # type: ignore[arg-type]
            return []
        if t not in _ACTS_ON:
            return []
        out: list[E._Body] = []
        if t is E.Clock:
            self._on_clock(out)
        elif t is E.OrderIntent:
            self._check_pnl(out)
            out.append(self._decide(ev, body))  # type: ignore[arg-type]
        elif t is E.OrderFill:
            self._on_fill(body, out)  # type: ignore[arg-type]
        elif t is E.ChildOrder:
            if body.parent_id in self.orders:  # type: ignore[union-attr]
                self.children[body.child_id] = [body.parent_id, body.qty]  # type: ignore[union-attr]
        elif t is E.OrderCancelled or t is E.OrderExpired:
            self._release(body.child_id, body.leaves_qty, body.venue)  # type: ignore[union-attr]
        elif t is E.OrderRejected:
            self._release(body.child_id, -1, body.venue)  # type: ignore[union-attr]
        elif t is E.OrderAck:
            self._count("acks")
        elif t is E.Heartbeat:
            svc = body.service  # type: ignore[union-attr]
            if svc in self.cfg.deadman_services:
                self._seen(f"svc:{svc}", ev.recv_ns)
        elif t is E.OperatorCommand:
            self._on_command(body, out)  # type: ignore[arg-type]
        return outputs_for(NAME, ev, out) if out else []

    # ------------------------------------------------------------ market data
    def _seen(self, key: str, ns: int) -> None:
        self.last_seen[key] = ns
        if key in self.dead:
            self.dead.discard(key)
            self._count("deadman_recovered")

    def _tick(self, symbol: str) -> int:
        spec = self.symbols.get(symbol)
        return spec.tick if spec is not None else 1

    def _on_book(self, ev: E.Sequenced, b: E.BookSnapshot | E.BookDelta, snapshot: bool) -> None:
        book = self.books.get(b.symbol)
        if book is None:
            book = self.books[b.symbol] = LadderBook(self._tick(b.symbol))
        bad = book.apply_packed(b.bids, b.asks, snapshot)
        if bad:  # off the symbol's tick grid or beyond PX_MAX: the feed checks, so never expected
            self._count("book_rows_rejected", bad)
        self.tops[b.symbol] = list(book.touch())
        if self.cfg.deadman_market_data:
            self._seen(f"md:{b.symbol}", ev.recv_ns)

    def _on_clock(self, out: list[E._Body]) -> None:
        limit = self.cfg.deadman_ms * MS_NS
        for key in sorted(self.last_seen):
            if key in self.dead or self.now_ns - self.last_seen[key] <= limit:
                continue
            if key.startswith("md:") and not self.cfg.deadman_market_data:
                continue
            self.dead.add(key)
            self._count("deadman_fired")
            symbol = key[3:] if key.startswith("md:") else ""
            out.append(E.CancelAll(origin=NAME, symbol=symbol, reason=f"{R_DEADMAN}:{key}"))
        self._check_pnl(out)

    # ------------------------------------------------------------ decisions
    def _decide(self, ev: E.Sequenced, it: E.OrderIntent) -> E._Body:
        reason, detail = self._check(it)
        if reason:
            self._count(f"rejected.{reason}")
            return E.RiskRejected(it.order_id, it.symbol, reason, detail, ev.seq)
        self._count("approved")
        self.orders[it.order_id] = [it.symbol, it.side, it.qty, it.price]
        self.rate.append(self.now_ns)
        extra = {"algo": getattr(it, "algo", "")} if _APPROVED_HAS_ALGO else {}
        return E.RiskApproved(it.order_id, it.symbol, it.side, it.price, it.qty, it.tif, it.post_only, ev.seq, **extra)

    def _check(self, it: E.OrderIntent) -> tuple[str, str]:
        cfg = self.cfg
        if it.cause_recv_ns and cfg.max_intent_age_ms:
            age_ns = self.now_ns - it.cause_recv_ns
            if age_ns > cfg.max_intent_age_ms * 1_000_000:
                return R_STALE, f"sequenced {age_ns} ns after the event it answers > {cfg.max_intent_age_ms} ms"
        if self.kill:
            return R_KILL, self.kill
        if self.breaker:
            return R_BREAKER, self.breaker
        for key in sorted(self.dead):
            if key.startswith("svc:") or key == f"md:{it.symbol}":
                return R_DEADMAN, f"{key} silent > {cfg.deadman_ms} ms"
        spec = self._spec(it.symbol)
        if spec is None:
            return R_UNKNOWN_SYMBOL, it.symbol
        if it.order_id in self.orders:
            return R_DUPLICATE, it.order_id
        if cfg.check_increments:
            if it.price % spec.tick:
                return R_TICK, f"price {it.price} not a multiple of tick {spec.tick}"
            if it.qty % spec.step:
                return R_LOT, f"qty {it.qty} not a multiple of step {spec.step}"
        if it.qty > cfg.max_order_qty:
            return R_MAX_QTY, f"qty {it.qty} > {cfg.max_order_qty}"
        bid, ask = self.tops.get(it.symbol, (0, 0))
        if bid <= 0 or ask <= 0:
            return R_SPREAD, "no two-sided book"
        if ask - bid > cfg.max_spread:
            return R_SPREAD, f"spread {ask - bid} > {cfg.max_spread}"
        position = self.position(it.symbol)
        if it.side == E.BUY:
            worst = position + self._open_qty(it.symbol, E.BUY) + it.qty
            ref_px = it.price or ask
        else:
            worst = position - self._open_qty(it.symbol, E.SELL) - it.qty
            ref_px = it.price or bid
        if abs(worst) > cfg.max_position_qty:
            return R_POSITION, f"worst-case position {worst} beyond +-{cfg.max_position_qty}"
        notional = self._to_money(abs(worst) * ref_px, it.symbol)
        if notional > cfg.max_notional:
            return R_NOTIONAL, f"notional {notional} > {cfg.max_notional} (money units, 1e-{cfg.pnl_scale} quote)"
        if len(self.orders) >= cfg.max_open_orders:
            return R_OPEN_ORDERS, f"{len(self.orders)} open >= {cfg.max_open_orders}"
        cutoff = self.now_ns - SEC_NS
        while self.rate and self.rate[0] <= cutoff:
            self.rate.popleft()
        if len(self.rate) >= cfg.max_orders_per_second:
            return R_RATE, f"{len(self.rate)} approvals in the last 1 s >= {cfg.max_orders_per_second}"
        return "", ""

    # ------------------------------------------------------------ order lifecycle
    def _reduce_parent(self, parent: str, qty: int) -> None:
        o = self.orders.get(parent)
        if o is None:
            return
        o[2] -= qty
        if o[2] <= 0:
            del self.orders[parent]
            for cid in [c for c, v in self.children.items() if v[0] == parent]:
                del self.children[cid]

    def _release(self, child_id: str, leaves: int, venue: str) -> None:
        """A child (or, from the router, a parent) stops working `leaves` (-1 = all of it)."""
        ch = self.children.pop(child_id, None)
        if ch is not None:
            self._reduce_parent(ch[0], ch[1] if leaves < 0 else min(leaves, ch[1]))
        elif child_id in self.orders:
            o = self.orders[child_id]
            self._reduce_parent(child_id, o[2] if leaves < 0 else leaves)

    def _on_fill(self, f: E.OrderFill, out: list[E._Body]) -> None:
        self._count("fills")
        ch = self.children.get(f.child_id)
        if ch is not None:
            parent = ch[0]
            ch[1] = f.leaves_qty
            if f.leaves_qty == 0:
                del self.children[f.child_id]
            self._reduce_parent(parent, f.qty)
        elif f.child_id in self.orders:
            self._reduce_parent(f.child_id, f.qty)

        self.day_fills += 1
        self.day_volume += self._to_money(f.price * f.qty, f.symbol)
        effect = self.account.on_fill(f)
        for pnl in effect.closed_trips:
            self._close_trip(pnl, out)
        self._check_pnl(out)

    def _close_trip(self, pnl: int, out: list[E._Body]) -> None:
        self._count("round_trips")
        if pnl < 0:
            self.loss_streak += 1
            if self.loss_streak >= self.cfg.max_consecutive_losses:
                self._fire_breaker("losses", out)
        elif pnl > 0:
            self.loss_streak = 0

    # ------------------------------------------------------------ operator
    def _on_command(self, cmd: E.OperatorCommand, out: list[E._Body]) -> None:
        c = cmd.command
        if c == CMD_KILL:
            self._fire_kill("operator", out)
        elif c == CMD_RESET_KILL:
            self._count("kill_reset")
            self.kill = ""
            self.kill_base = self.total_pnl()
        elif c == CMD_RESET_BREAKER:
            self._count("breaker_reset")
            self.breaker = ""
            self.loss_streak = 0
            self.day_peak = self.total_pnl() - self.day_base  # measure the next drawdown from here
        else:
            return
