"""The dashboard's pure core: sequenced events in, aggregates and views out.

No sockets and no wall clock: every time is the sequencer's (`recv_ns`, the
stamp it put on each event), so "down for 3 s" means 3 s of sequencer time
and a replayed stream gives the same panels. The server (server.py) feeds
`apply()` from a StreamFollower and reads `view()` / `prometheus()` / `health()`.

What is measured here, from the stream itself (source "stream"):

* sequencing: recv_ns - event_ns, for events whose event time is wall clock
  (heartbeats and the like; synthetic and replayed market data carry their
  own historical time and are skipped, counted in `skipped_not_wallclock`);
* tick_to_order: an OrderIntent's recv_ns minus that of the market event that
  caused it (the cause's seq is the 3rd field of the intent's key);
* intent_to_decision, order_to_ack, order_to_fill: the intent's recv_ns to
  its risk decision, first venue ack and first fill.

Services' own stage histograms arrive in their heartbeats (common.metrics
wire form) and are merged per (stage, service) over a sliding window.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from common import events as E
from common.accounting import Account
from common.book import PriceBook
from common.core import cause_seq, parent_of, state_hash
from common.dashboard_config import DashboardConfig
from common.describe import Renderer, fmt_time
from common.hotpath import book_levels
from common.hotpath import dtypes as D
from common.metrics import Histogram, bucket_of, decode
from common.units import SymbolTable

NS = 1_000_000_000
MARKET = (E.BookSnapshot, E.BookDelta, E.Trade, E.BestBidOffer)
RESTART_STATES = ("starting", "recovering")
WALLCLOCK_MAX_NS = 60 * NS  # a recv - event gap larger than this is not a sequencing delay
RECV_RING = 1 << 16  # recv_ns of the last 65536 seqs, for tick-to-order


class Window:
    """A latency series over sequencer time: the last `seconds` (`hist`) and all of it (`total`).

    Samples go into one slot per second; a slot leaving the window is
    subtracted from `hist` (bucket counts add and subtract exactly)."""

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds
        self.hist = Histogram()
        self.total = Histogram()
        self._slots: deque[list[Any]] = deque()  # [sec, {bucket: count}, sum, max]

    def _slot(self, t_ns: int) -> list[Any]:
        sec = t_ns // NS
        if not self._slots or sec > self._slots[-1][0]:
            self._slots.append([sec, {}, 0, 0])
        return self._slots[-1]

    def record(self, t_ns: int, v: int) -> None:
        v = max(0, v)
        slot = self._slot(t_ns)
        b = bucket_of(v)
        slot[1][b] = slot[1].get(b, 0) + 1
        slot[2] += v
        slot[3] = max(slot[3], v)
        self.hist.record(v)
        self.total.record(v)

    def add(self, t_ns: int, h: Histogram) -> None:
        slot = self._slot(t_ns)
        for b, c in enumerate(h.counts):
            if c:
                slot[1][b] = slot[1].get(b, 0) + c
        slot[2] += h.total
        slot[3] = max(slot[3], h.max)
        self.hist.merge(h)
        self.total.merge(h)

    def expire(self, now_ns: int) -> None:
        oldest = now_ns // NS - self.seconds
        changed = False
        while self._slots and self._slots[0][0] <= oldest:
            _sec, counts, total, _mx = self._slots.popleft()
            for b, c in counts.items():
                self.hist.counts[b] -= c
            self.hist.total -= total
            changed = True
        if changed:
            self.hist.max = max((s[3] for s in self._slots), default=0)


@dataclass
class Service:
    name: str
    state: str = ""
    first_ns: int = 0  # first heartbeat since the last (observed) restart
    last_ns: int = 0  # recv_ns of the last heartbeat
    last_seq: int = 0
    heartbeats: int = 0
    restarts: int = 0
    counters: dict[str, int] = field(default_factory=dict)


@dataclass
class OrderRow:
    order_id: str
    symbol: str
    side: int
    price: int
    qty: int
    seq: int
    recv_ns: int
    status: str = "intent"
    reason: str = ""
    decision_ns: int = 0
    child_ns: int = 0
    ack_ns: int = 0
    fill_ns: int = 0
    filled: int = 0
    children: int = 0


class Book(PriceBook):
    """One symbol's L2 book, rebuilt from snapshots and deltas (qty 0 removes a level)."""

    def __init__(self) -> None:
        super().__init__()
        self.snapshots = 0
        self.deltas = 0
        self.seeded = ""  # where a book that did not start from a snapshot came from

    def snapshot(self, bids: bytes, asks: bytes) -> None:
        self.load(E.unpack_levels(bids).tolist(), E.unpack_levels(asks).tolist())
        self.snapshots += 1
        self.seeded = ""

    def delta(self, bids: bytes, asks: bytes) -> None:
        self.apply(E.unpack_levels(bids).tolist(), E.unpack_levels(asks).tolist())
        self.deltas += 1


_cause_seq = cause_seq


_parent = parent_of


class DashboardState:
    def __init__(
        self,
        settings: DashboardConfig,
        symbols: SymbolTable,
        inspector: Any = None,  # a StrategyCore fed the same events (None: no inspector)
        inspector_exact: bool = False,
        inspector_hash_every: int = 0,
    ) -> None:
        self.settings = settings
        self.symbols = symbols
        self.renderer = Renderer(symbols)
        self.inspector = inspector
        self.inspector_exact = inspector_exact
        self.inspector_hash_every = inspector_hash_every
        self.inspector_since = 0
        self.start_seq = 0
        self.last_seq = 0
        self.head_seq = 0
        self.clock_ns = 0
        self.epoch = 0
        self.epochs_seen = 0
        self.events_total = 0
        self.malformed = 0
        self.by_type: dict[str, int] = {}
        self.recent: deque[E.Sequenced] = deque(maxlen=settings.events_kept)
        self.recent_by_type: dict[str, deque[E.Sequenced]] = {}
        self._rendered: dict[int, dict[str, Any]] = {}  # seq -> row, rendered once, when first shown
        self.services: dict[str, Service] = {}
        self.latency: dict[tuple[str, str], Window] = {}  # (stage, source) -> window
        self.skipped_not_wallclock = 0
        self._recv = [0] * RECV_RING
        self._recv_seq = [0] * RECV_RING
        self.books: dict[str, Book] = {}
        self.last_trade: dict[str, int] = {}
        self.account = Account(keep_trips=64)
        self.equity: dict[str, deque[tuple[int, int]]] = {}
        self._last_mark_ns: dict[str, int] = {}
        self.orders: dict[str, OrderRow] = {}
        self._child_parent: dict[str, str] = {}
        self.intents = 0
        self.fills = 0
        self.cancels = 0
        self.rejects = 0
        self.hashes: dict[str, dict[str, int]] = {}
        self.divergences: deque[dict[str, Any]] = deque(maxlen=50)
        self.own_hashes: dict[int, int] = {}  # seq -> the inspector replica's strategy hash
        self.own_checks = {"match": 0, "mismatch": 0}
        self.last_own_check: dict[str, Any] = {}
        self._rate: deque[tuple[int, int]] = deque(maxlen=64)  # (clock_ns, events_total)

    # ------------------------------------------------------------ input
    def apply(self, ev: E.Sequenced) -> None:
        b = ev.body
        t = ev.recv_ns
        name = type(b).__name__
        if self.start_seq == 0:
            self.start_seq = ev.seq
        self.last_seq = ev.seq
        self.head_seq = max(self.head_seq, ev.seq)
        if t > self.clock_ns:
            if self.clock_ns // NS != t // NS:
                self._rate.append((t, self.events_total))
            self.clock_ns = t
        self.events_total += 1
        self.by_type[name] = self.by_type.get(name, 0) + 1
        slot = ev.seq % RECV_RING
        self._recv[slot] = t
        self._recv_seq[slot] = ev.seq
        self.recent.append(ev)
        q = self.recent_by_type.get(name)
        if q is None:
            q = self.recent_by_type[name] = deque(maxlen=20)
        q.append(ev)
        d = t - ev.event_ns
        if ev.source == "sequencer":
            pass  # its own events are stamped with their own receive time: no delay to measure
        elif 0 <= d <= WALLCLOCK_MAX_NS:
            self._lat("sequencing", "stream").record(t, d)
        else:
            self.skipped_not_wallclock += 1

        if isinstance(b, (E.BookSnapshot, E.BookDelta)):
            book = self.books.get(b.symbol)
            if book is None:
                book = self.books[b.symbol] = Book()
            if isinstance(b, E.BookSnapshot):
                book.snapshot(b.bids, b.asks)
            else:
                book.delta(b.bids, b.asks)
            self._mark(b.symbol, book, t)
        elif isinstance(b, E.Trade):
            self.last_trade[b.symbol] = b.price
        elif isinstance(b, E.Heartbeat):
            self._heartbeat(b, t)
        elif isinstance(b, E.Clock):
            self.head_seq = max(self.head_seq, b.last_seq)
        elif isinstance(b, E.SequencerEpoch):
            self.epochs_seen += 1
            if self.epoch and b.epoch != self.epoch and "sequencer" in self.services:
                self.services["sequencer"].restarts += 1
                self.services["sequencer"].first_ns = t
            self.epoch = b.epoch
        elif isinstance(b, E.StateHash):
            self._state_hash(b, t)
        elif isinstance(b, E.HashDivergence):
            self.divergences.appendleft(
                {
                    "service": b.service,
                    "covers_seq": b.covers_seq,
                    "expected": f"{b.expected:016x}",
                    "published": f"{b.published:016x}",
                    "seq": ev.seq,
                    "time": fmt_time(t),
                }
            )
        else:
            self._order_flow(ev, b, t)

        if self.inspector is not None:
            self.inspector.apply(ev)
            every = self.inspector_hash_every
            if self.inspector_exact and every and ev.seq % every == 0:
                self.own_hashes[ev.seq] = state_hash(self.inspector.state())
                while len(self.own_hashes) > 64:
                    del self.own_hashes[next(iter(self.own_hashes))]

    def _row(self, ev: E.Sequenced) -> dict[str, Any]:
        row = self._rendered.get(ev.seq)
        if row is None:
            try:
                text = self.renderer.fields(ev.body)
            except Exception as exc:  # a body the renderer cannot show must not stop the dashboard
                text = f"<unrenderable: {type(exc).__name__}>"
            row = {
                "seq": ev.seq,
                "time": _tod(ev.recv_ns),
                "type": type(ev.body).__name__,
                "source": ev.source,
                "text": text[:300],
            }
            self._rendered[ev.seq] = row
        return row

    def _rows(self) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
        events = [self._row(ev) for ev in self.recent]
        by_type = {k: [self._row(ev) for ev in q] for k, q in self.recent_by_type.items()}
        live = {r["seq"] for r in events} | {r["seq"] for rows in by_type.values() for r in rows}
        if len(self._rendered) > 2 * len(live) + 100:
            self._rendered = {k: v for k, v in self._rendered.items() if k in live}
        return events, by_type

    def _lat(self, stage: str, source: str) -> Window:
        w = self.latency.get((stage, source))
        if w is None:
            w = self.latency[(stage, source)] = Window(self.settings.latency_window_s)
        return w

    def _heartbeat(self, b: E.Heartbeat, t: int) -> None:
        s = self.services.get(b.service)
        if s is None:
            s = self.services[b.service] = Service(b.service, first_ns=t)
        plain = {k: v for k, v in b.counters.items() if not k.startswith("lat.")}
        restarted = False
        if s.heartbeats:
            if b.state in RESTART_STATES and s.state not in RESTART_STATES:
                restarted = True
            elif sum(plain.values()) < sum(v for k, v in s.counters.items() if k in plain):
                restarted = True  # its counters went back: a new process
        if restarted:
            s.restarts += 1
            s.first_ns = t
        s.state, s.last_ns, s.last_seq = b.state, t, b.last_seq
        s.heartbeats += 1
        s.counters = plain
        if b.service == "sequencer":
            self.head_seq = max(self.head_seq, b.last_seq)
        for stage, h in decode(b.counters).items():
            self._lat(stage, b.service).add(t, h)

    def _state_hash(self, b: E.StateHash, t: int) -> None:
        rec = self.hashes.setdefault(b.service, {"count": 0})
        rec.update(covers_seq=b.covers_seq, hash=b.hash, recv_ns=t)
        rec["count"] += 1
        if self.inspector is not None and self.inspector_exact and b.service == getattr(self.inspector, "name", ""):
            mine = self.own_hashes.get(b.covers_seq)
            if mine is not None:
                ok = mine == b.hash
                self.own_checks["match" if ok else "mismatch"] += 1
                self.last_own_check = {"covers_seq": b.covers_seq, "ok": ok, "replica": f"{mine:016x}"}

    def _mark(self, symbol: str, book: Book, t: int) -> None:
        if symbol not in self.account.positions or not book.bids or not book.asks:
            return
        if t - self._last_mark_ns.get(symbol, 0) < 250_000_000:
            return
        self._last_mark_ns[symbol] = t
        mid = (max(book.bids) + min(book.asks)) // 2
        self._equity_point(symbol, t, self.account.mark(symbol, mid))

    def _equity_point(self, symbol: str, t: int, eq: int) -> None:
        curve = self.equity.get(symbol)
        if curve is None:
            curve = self.equity[symbol] = deque(maxlen=2000)
        curve.append((t, eq))

    def _order_flow(self, ev: E.Sequenced, b: E._Body, t: int) -> None:
        if isinstance(b, E.OrderIntent):
            self.intents += 1
            row = OrderRow(b.order_id, b.symbol, b.side, b.price, b.qty, ev.seq, t)
            self.orders[b.order_id] = row
            while len(self.orders) > 5000:
                del self.orders[next(iter(self.orders))]
            cause = _cause_seq(ev.key)
            if cause and self._recv_seq[cause % RECV_RING] == cause:
                self._lat("tick_to_order", "stream").record(t, t - self._recv[cause % RECV_RING])
        elif isinstance(b, (E.RiskApproved, E.RiskRejected)):
            row = self.orders.get(b.order_id)
            if row is not None and not row.decision_ns:
                row.decision_ns = t
                self._lat("intent_to_decision", "stream").record(t, t - row.recv_ns)
                if isinstance(b, E.RiskRejected):
                    row.status, row.reason = "rejected", b.reason
                    self.rejects += 1
                else:
                    row.status = "approved"
        elif isinstance(b, E.ChildOrder):
            self._child_parent[b.child_id] = b.parent_id
            while len(self._child_parent) > 20000:
                del self._child_parent[next(iter(self._child_parent))]
            row = self.orders.get(b.parent_id)
            if row is not None:
                row.children += 1
                row.child_ns = row.child_ns or t
                if row.status in ("intent", "approved"):
                    row.status = "routed"
        elif isinstance(b, E.CancelIntent):
            self.cancels += 1
            row = self.orders.get(b.order_id)
            if row is not None and row.status not in ("filled", "cancelled", "rejected", "expired"):
                row.status = "cancelling"
        elif isinstance(b, (E.OrderAck, E.OrderFill, E.OrderCancelled, E.OrderRejected, E.OrderExpired)):
            row = self.orders.get(self._child_parent.get(b.child_id) or _parent(b.child_id))
            if isinstance(b, E.OrderFill):
                self.fills += 1
                self.account.on_fill(b)
                pos = self.account.get(b.symbol)
                self._equity_point(b.symbol, t, pos.equity())
            if row is None:
                return
            if isinstance(b, E.OrderAck):
                if not row.ack_ns:
                    row.ack_ns = t
                    self._lat("order_to_ack", "stream").record(t, t - row.recv_ns)
                if row.status in ("intent", "approved", "routed"):
                    row.status = "acked"
            elif isinstance(b, E.OrderFill):
                if not row.fill_ns:
                    row.fill_ns = t
                    self._lat("order_to_fill", "stream").record(t, t - row.recv_ns)
                row.filled += b.qty
                row.status = "filled" if row.filled >= row.qty else "partial"
            elif isinstance(b, E.OrderCancelled):
                row.status = "cancelled" if row.status != "filled" else row.status
            elif isinstance(b, E.OrderRejected):
                row.status, row.reason = "venue-rejected", b.reason
            else:
                row.status = "expired"

    # ------------------------------------------------------------ seeding
    def seed_books_from_inspector(self) -> None:
        """Start the display book of each inspector symbol from the inspector's kernel book
        (exact when the inspector was loaded from the strategy's snapshot)."""
        if self.inspector is None:
            return
        for sym, sb in self.inspector.books.items():
            if sym in self.books:
                continue
            book = self.books[sym] = Book()
            book.set_levels(
                {p: q for p, q in book_levels(sb.book, D.SIDE_BID) if q > 0},
                {p: q for p, q in book_levels(sb.book, D.SIDE_ASK) if q > 0},
            )
            book.seeded = "strategy snapshot"

    # ------------------------------------------------------------ reading
    def lag(self) -> int:
        return max(0, self.head_seq - self.last_seq)

    def rate(self) -> float:
        """Events per second of sequencer time over the last ~5 s."""
        if not self._rate or self.clock_ns <= 0:
            return 0.0
        for t0, n0 in self._rate:
            if self.clock_ns - t0 <= 6 * NS:
                dt = (self.clock_ns - t0) / NS
                return round((self.events_total - n0) / dt, 1) if dt > 0.5 else 0.0
        return 0.0

    def service_up(self, s: Service) -> bool:
        return self.clock_ns - s.last_ns <= self.settings.down_after_ms * 1_000_000

    def cluster(self) -> list[dict[str, Any]]:
        out = []
        for name in sorted(self.services):
            s = self.services[name]
            follows = s.last_seq > 0
            out.append(
                {
                    "service": name,
                    "up": self.service_up(s),
                    "state": s.state,
                    "uptime_s": round((self.clock_ns - s.first_ns) / NS, 1),
                    "restarts": s.restarts,
                    "last_hb_ms": (self.clock_ns - s.last_ns) // 1_000_000,
                    "last_hb": fmt_time(s.last_ns)[11:],
                    "last_seq": s.last_seq if follows else None,
                    "lag": max(0, self.head_seq - s.last_seq) if follows else None,
                    "heartbeats": s.heartbeats,
                    "counters": dict(sorted(s.counters.items())[:40]),
                }
            )
        return out

    def latency_rows(self) -> list[dict[str, Any]]:
        rows = []
        for (stage, source), w in sorted(self.latency.items()):
            w.expire(self.clock_ns)
            h = w.hist if w.hist.n else w.total
            p = h.percentiles()
            rows.append(
                {
                    "stage": stage,
                    "source": source,
                    "window": bool(w.hist.n),
                    "n": h.n,
                    "total": w.total.n,
                    "p50": p["p50"],
                    "p90": p["p90"],
                    "p99": p["p99"],
                    "p999": p["p999"],
                    "max": h.max,
                    "mean": h.mean(),
                }
            )
        return rows

    def _fmt_money(self, symbol: str, v: int) -> str:
        return self.renderer.fee(symbol, v)

    def _scale(self, symbol: str) -> tuple[int, int]:
        if symbol in self.symbols:
            spec = self.symbols[symbol]
            return spec.price_scale, spec.qty_scale
        return 0, 0

    def trading(self, symbol: str) -> dict[str, Any]:
        ps, qs = self._scale(symbol)
        out: dict[str, Any] = {"symbol": symbol}
        book = self.books.get(symbol)
        if book is not None:
            depth = self.settings.book_depth
            bids, asks = book.top(depth)
            bv, av = sum(q for _, q in bids), sum(q for _, q in asks)
            out["book"] = {
                "bids": [[self.renderer.px(symbol, p), self.renderer.qty(symbol, q), q / 10**qs] for p, q in bids],
                "asks": [[self.renderer.px(symbol, p), self.renderer.qty(symbol, q), q / 10**qs] for p, q in asks],
                "imbalance_bps": (bv - av) * 10_000 // (bv + av) if bv + av else 0,
                "mid": self.renderer.px(symbol, (bids[0][0] + asks[0][0]) // 2) if bids and asks else "",
                "spread": self.renderer.px(symbol, asks[0][0] - bids[0][0]) if bids and asks else "",
                "levels": [len(book.bids), len(book.asks)],
                "snapshots": book.snapshots,
                "deltas": book.deltas,
                "seeded": book.seeded,
            }
        if symbol in self.last_trade:
            out["last_trade"] = self.renderer.px(symbol, self.last_trade[symbol])
        pos = self.account.positions.get(symbol)
        ns = ps + qs
        if pos is not None:
            out["pnl"] = {
                "position": self.renderer.qty(symbol, pos.position),
                "realized": self._fmt_money(symbol, pos.realized),
                "fees": self._fmt_money(symbol, pos.fees),
                "net_realized": self._fmt_money(symbol, pos.net_realized()),
                "unrealized": self._fmt_money(symbol, pos.unrealized()),
                "equity": self._fmt_money(symbol, pos.equity()),
                "max_drawdown": self._fmt_money(symbol, pos.max_drawdown),
                "fills": pos.fills,
                "trips": pos.trips,
                "wins": pos.wins,
                "losses": pos.losses,
                "volume": self._fmt_money(symbol, pos.volume),
            }
        curve = self.equity.get(symbol, ())
        step = max(1, len(curve) // 500)
        pts = list(curve)[::step]
        if curve and pts[-1] is not curve[-1]:
            pts.append(curve[-1])
        out["equity"] = [[t // 1_000_000, v / 10**ns] for t, v in pts]
        return out

    def orders_view(self) -> list[dict[str, Any]]:
        rows = list(self.orders.values())[-self.settings.orders_kept :]
        out = []
        for r in reversed(rows):

            def ms(t: int, r: OrderRow = r) -> float | None:
                return round((t - r.recv_ns) / 1e6, 3) if t else None

            out.append(
                {
                    "order_id": r.order_id,
                    "symbol": r.symbol,
                    "side": "BUY" if r.side == E.BUY else "SELL",
                    "price": "MKT" if r.price == 0 else self.renderer.px(r.symbol, r.price),
                    "qty": self.renderer.qty(r.symbol, r.qty),
                    "filled": self.renderer.qty(r.symbol, r.filled),
                    "seq": r.seq,
                    "status": r.status,
                    "reason": r.reason,
                    "children": r.children,
                    "decision_ms": ms(r.decision_ns),
                    "child_ms": ms(r.child_ns),
                    "ack_ms": ms(r.ack_ns),
                    "fill_ms": ms(r.fill_ns),
                }
            )
        return out

    def strategy_view(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "intents": self.intents,
            "fills": self.fills,
            "cancels": self.cancels,
            "rejects": self.rejects,
            "order_fill_ratio": round(self.intents / self.fills, 2) if self.fills else None,
        }
        core = self.inspector
        if core is None:
            return out
        out.update(name=core.name, exact=self.inspector_exact, since_seq=self.inspector_since, symbols={})
        for sym, sb in core.books.items():
            st = sb.state
            ps, qs = self._scale(sym)
            v = core.inspect(sym)
            fair = v["fair"]
            center2, width2 = int(st[D.S_CENTER2]), int(st[D.S_WIDTH2])
            pos = self.account.positions.get(sym)
            out["symbols"][sym] = {
                "fair": self.renderer.px(sym, fair) if fair >= 0 else "",
                "imbalance_bps": v["imbalance_bps"],
                "vpin_bps": v["vpin_bps"],
                "volatility": round(v["vol_milli"] / 1000 / 10**ps, 6),
                "spread_mult": round(v["spread_mult_bps"] / 10_000, 4),
                "toxic": bool(v["toxic"]),
                "position": self.renderer.qty(sym, v["position"]),
                "skew": round((fair - center2 / 2) / 10**ps, ps + 1) if fair >= 0 and center2 else 0,
                "half_spread": round(width2 / 2 / 10**ps, ps + 1),
                "bid": self.renderer.px(sym, int(st[D.S_Q_BID_PX])) if st[D.S_Q_BID_QTY] else "",
                "ask": self.renderer.px(sym, int(st[D.S_Q_ASK_PX])) if st[D.S_Q_ASK_QTY] else "",
                "quotes": v["quotes"],
                "fills": v["fills"],
                "bought": self.renderer.qty(sym, int(st[D.S_BOUGHT])),
                "sold": self.renderer.qty(sym, int(st[D.S_SOLD])),
                "book_updates": int(st[D.S_N_BOOK]),
                "trades": int(st[D.S_N_TRADES]),
                "realized": self._fmt_money(sym, pos.net_realized()) if pos else "0",
                "qty_scale": qs,
            }
        return out

    def hashes_view(self) -> list[dict[str, Any]]:
        ver = self.services.get("verifier")
        checked_to = ver.last_seq if ver is not None else 0
        diverged = {d["service"]: d for d in reversed(self.divergences)}
        out = []
        for name in sorted(self.hashes):
            rec = self.hashes[name]
            if name in diverged:
                status = f"DIVERGED at {diverged[name]['covers_seq']}"
            elif ver is None:
                status = "unverified (no verifier)"
            elif checked_to >= rec["covers_seq"]:
                status = "match"
            else:
                status = "pending"
            row: dict[str, Any] = {
                "service": name,
                "covers_seq": rec["covers_seq"],
                "hash": f"{rec['hash']:016x}",
                "count": rec["count"],
                "status": status,
                "time": fmt_time(rec["recv_ns"])[11:],
            }
            if self.inspector is not None and name == self.inspector.name and self.last_own_check:
                row["replica"] = dict(self.last_own_check, **self.own_checks)
            out.append(row)
        return out

    def view(self) -> dict[str, Any]:
        symbols = sorted(set(self.books) | set(self.account.positions))
        events, by_type = self._rows()
        return {
            "clock_ns": self.clock_ns,
            "time": fmt_time(self.clock_ns) if self.clock_ns else "",
            "seq": self.last_seq,
            "head": self.head_seq,
            "lag": self.lag(),
            "start_seq": self.start_seq,
            "events_total": self.events_total,
            "rate": self.rate(),
            "types": dict(sorted(self.by_type.items())),
            "cluster": self.cluster(),
            "events": events,
            "by_type": by_type,
            "latency": self.latency_rows(),
            "skipped_not_wallclock": self.skipped_not_wallclock,
            "trading": [self.trading(s) for s in symbols],
            "orders": self.orders_view(),
            "strategy": self.strategy_view(),
            "hashes": self.hashes_view(),
            "divergences": list(self.divergences),
        }

    def health(self) -> dict[str, Any]:
        return {
            "last_seq": self.last_seq,
            "head_seq": self.head_seq,
            "lag": self.lag(),
            "events": self.events_total,
            "clock_ns": self.clock_ns,
        }

    # ------------------------------------------------------------ Prometheus
    def prometheus(self) -> str:
        fams: list[tuple[str, str, str, list[tuple[dict[str, str], float | int]]]] = []

        def fam(name: str, kind: str, help_: str, samples: list[tuple[dict[str, str], float | int]]) -> None:
            fams.append((name, kind, help_, samples))

        fam(
            "atomic_mesh_dashboard_events",
            "counter",
            "Sequenced events the dashboard applied, by event type.",
            [({"type": k}, v) for k, v in sorted(self.by_type.items())],
        )
        fam(
            "atomic_mesh_dashboard_last_seq",
            "gauge",
            "Last sequence number the dashboard applied.",
            [({}, self.last_seq)],
        )
        fam(
            "atomic_mesh_sequencer_head_seq",
            "gauge",
            "Last sequence number the sequencer reported.",
            [({}, self.head_seq)],
        )
        fam(
            "atomic_mesh_dashboard_lag_events",
            "gauge",
            "Events the dashboard is behind the sequencer.",
            [({}, self.lag())],
        )
        services = [self.services[n] for n in sorted(self.services)]
        fam(
            "atomic_mesh_service_up",
            "gauge",
            "1 if the service heartbeated within the down threshold (sequencer time).",
            [({"service": s.name}, int(self.service_up(s))) for s in services],
        )
        fam(
            "atomic_mesh_service_restarts",
            "counter",
            "Restarts of the service observed by the dashboard.",
            [({"service": s.name}, s.restarts) for s in services],
        )
        fam(
            "atomic_mesh_service_last_seq",
            "gauge",
            "Last sequence number the service reported applying.",
            [({"service": s.name}, s.last_seq) for s in services],
        )
        fam(
            "atomic_mesh_service_counter",
            "gauge",
            "A counter from the service's last heartbeat, as reported.",
            [({"service": s.name, "name": k}, v) for s in services for k, v in sorted(s.counters.items())],
        )
        quant: list[tuple[dict[str, str], float | int]] = []
        for (stage, source), w in sorted(self.latency.items()):
            w.expire(self.clock_ns)
            h = w.hist if w.hist.n else w.total
            p = h.percentiles()
            for qname, q in (("p50", "0.5"), ("p90", "0.9"), ("p99", "0.99"), ("p999", "0.999")):
                quant.append(({"stage": stage, "source": source, "quantile": q}, p[qname] / NS))
            quant.append(({"stage": stage, "source": source, "__suffix": "_sum"}, w.total.total / NS))
            quant.append(({"stage": stage, "source": source, "__suffix": "_count"}, w.total.n))
        fam(
            "atomic_mesh_latency_seconds",
            "summary",
            f"Pipeline stage latency; quantiles over the last {self.settings.latency_window_s} s of sequencer time.",
            quant,
        )
        pnl: list[tuple[dict[str, str], float | int]] = []
        pos_s: list[tuple[dict[str, str], float | int]] = []
        for sym, pos in sorted(self.account.positions.items()):
            ps, qs = self._scale(sym)
            pnl.append(({"symbol": sym}, pos.net_realized() / 10 ** (ps + qs)))
            pos_s.append(({"symbol": sym}, pos.position / 10**qs))
        fam(
            "atomic_mesh_realized_pnl",
            "gauge",
            "Realized PnL net of fees, quote currency (fills seen by the dashboard).",
            pnl,
        )
        fam("atomic_mesh_position", "gauge", "Position in base-asset units (fills seen by the dashboard).", pos_s)
        fam(
            "atomic_mesh_state_hash_divergences",
            "counter",
            "HashDivergence events seen.",
            [({}, sum(1 for _ in self.divergences))],
        )
        lines = []
        for name, kind, help_, samples in fams:
            if kind == "counter":
                name += "_total"  # the classic text format: TYPE and samples share the _total name
            lines.append(f"# HELP {name} {_esc_help(help_)}")
            lines.append(f"# TYPE {name} {kind}")
            for labels, value in samples:
                labels = dict(labels)
                suffix = labels.pop("__suffix", "")
                lab = ",".join(f'{k}="{_esc_label(v)}"' for k, v in labels.items())
                lines.append(f"{name}{suffix}{{{lab}}} {_num(value)}" if lab else f"{name}{suffix} {_num(value)}")
        return "\n".join(lines) + "\n"


def _tod(ns: int) -> str:
    """HH:MM:SS.mmm (UTC) of a ns timestamp, without datetime (it is called for every shown row)."""
    ms = ns // 1_000_000
    s, ms = divmod(ms, 1000)
    m, s = divmod(s, 60)
    h, m = divmod(m, 60)
    return f"{h % 24:02d}:{m:02d}:{s:02d}.{ms:03d}"


def _esc_label(v: str) -> str:
    return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _esc_help(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n")


def _num(v: float | int) -> str:
    if isinstance(v, int):
        return str(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))
