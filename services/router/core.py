"""The smart order router's pure core: approved parents in, ChildOrders out. No sockets, no clock.

`RouterCore.apply(ev)` consumes the sequenced stream: market data (to keep
the feed's book per symbol), `RiskApproved` (a parent to route), Clock
(releases due TWAP slices), `CancelIntent` / `CancelAll` (cancel a parent's
children and drop its unreleased slices), child reports (fills, cancels,
expiries, rejects: to know which children are live) and OperatorCommand
"venue-down" / "venue-up" (arg = venue name).

Venue books are derived from the feed's book (see config.py). Algorithms,
chosen by the order's own `algo` field when events.RiskApproved has one and
it is non-empty, else by `algo_by_symbol`, else `default_algo`:

* best_venue -- the whole order to the venue with the best opposite touch
  after fees: for a buy the lowest ask * (10_000 + fee_bps), for a sell the
  highest bid * (10_000 - fee_bps); ties go to the smaller venue name. The
  limit is not used to pick (a passive quote has no touch within its limit).
* vwap -- split proportionally to each venue's displayed opposite-side size
  within the limit (all of it for a market order), in whole lots by largest
  remainder (ties: smaller venue name).
* twap -- N slices (twap_slices, fewer if there are fewer lots), slice i due
  at approval time + i * twap_interval_ms of event time. Slice 0 goes out with
  the approval; the rest on the first Clock at or after their due time, each
  to the best venue at that moment.
* sweep -- take the venues' opposite levels within the limit, best
  fee-adjusted price first (ties: smaller venue name), one child per venue
  for what it takes there; whatever the books cannot fill goes to the first
  (best) venue's child. Every child carries the parent's limit price and tif.

Quantities: sizes are split in whole lots of the symbol's step; a parent qty
off the lot grid puts its sub-lot atoms on one child, so the children's qty
always sums to the parent's (minus what the router reports it did not send).

Child ids are `f"{parent}.{n}"`, n = 1, 2, ... per parent in emission order.

Router reports, with venue "router" and child_id = the parent id:
* `OrderRejected(reason)` -- nothing of the parent was sent: "no_venue" (every
  venue down), "no_liquidity" (no up venue has an opposite side at all),
  "unknown_algo".
* `OrderCancelled(leaves_qty=q, reason)` -- q of the parent will never be
  sent: unreleased TWAP slices on CancelIntent/CancelAll ("cancelled"), or a
  due slice with no venue/liquidity ("no_venue"/"no_liquidity").
Risk uses both to release the parent's open quantity.
"""

from __future__ import annotations

from typing import Any

from common import events as E
from common.core import Output, outputs_for
from common.ladder import LadderBook
from common.router_config import ALGOS, BEST_VENUE, BPS_MAX, SWEEP, TWAP, VWAP, RouterConfig, VenueConfig
from common.units import BUILTIN, SymbolTable

NAME = "router"
ROUTER_VENUE = "router"
MS_NS = 10**6
BEST_PEEK = 4  # feed levels read first for a venue's best level

R_NO_VENUE = "no_venue"
R_NO_LIQUIDITY = "no_liquidity"
R_STALE = "stale_approval"  # decided before risk's latest CancelAll
R_UNKNOWN_ALGO = "unknown_algo"
R_CANCELLED = "cancelled"

CMD_VENUE_DOWN = "venue-down"
CMD_VENUE_UP = "venue-up"

# The other body types apply() acts on besides market data; it ignores the rest (intents,
# risk's rejections, order acks, ...).
_ACTS_ON = frozenset((
    E.Clock, E.RiskApproved, E.OrderFill, E.OrderCancelled, E.OrderExpired, E.OrderRejected, E.CancelIntent,
    E.CancelAll, E.OperatorCommand,
))  # fmt: skip

__all__ = ["ALGOS", "NAME", "RouterCore"]


def split_lots(qty: int, step: int, weights: list[int]) -> list[int]:
    """Split qty in whole lots proportionally to weights (largest remainder, ties to the lower index).

    Sub-lot atoms (qty % step) go to the largest share (lowest index on ties).
    Returns one qty per weight; they sum to qty. Weights must not all be zero.
    """
    total = sum(weights)
    lots, atoms = divmod(qty, step)
    shares = [lots * w // total for w in weights]
    left = lots - sum(shares)
    order = sorted(range(len(weights)), key=lambda i: (-(lots * weights[i] % total), i))
    for i in order[:left]:
        shares[i] += 1
    out = [s * step for s in shares]
    if atoms:
        big = min(range(len(out)), key=lambda i: (-out[i], -weights[i], i))
        out[big] += atoms
    return out


def twap_sizes(qty: int, step: int, slices: int) -> list[int]:
    """N slices in whole lots (earlier slices take the extra lots); sub-lot atoms on the last."""
    lots, atoms = divmod(qty, step)
    n = max(1, min(slices, lots))
    base, extra = divmod(lots, n)
    out = [(base + (1 if i < extra else 0)) * step for i in range(n)]
    out[-1] += atoms
    return out


class RouterCore:
    name = NAME

    def __init__(self, config: RouterConfig | None = None, symbols: SymbolTable | None = None) -> None:
        self.cfg = config or RouterConfig()
        self.symbols = symbols if symbols is not None else BUILTIN
        self.venues: dict[str, VenueConfig] = {v.name: v for v in sorted(self.cfg.venues, key=lambda v: v.name)}
        self.algo_by_symbol = dict(self.cfg.algo_by_symbol)
        self._reset_state()

    # ------------------------------------------------------------ state
    def _reset_state(self) -> None:
        self.now_ns = 0
        self.books: dict[str, LadderBook] = {}
        self.bbo: dict[str, list[int]] = {}  # symbol -> [bid_px, bid_qty, ask_px, ask_qty]
        self.down: set[str] = set()  # venues marked down by operator command
        # parent id -> {"symbol","side","price","tif","post_only","algo","next","live":[child ids],
        #               "pending":[[due_ns, qty], ...]}
        self.parents: dict[str, dict[str, Any]] = {}
        self.children: dict[str, list[Any]] = {}  # child id -> [parent, venue, leaves]
        self.counters: dict[str, int] = {}
        # symbol ("" = all) -> seq of risk's latest CancelAll. An approval decided
        # before it (intent_seq below it) is void: risk answered the intent before the
        # kill switch, breaker or dead man's switch fired, but the approval reached
        # the stream after, and must not become an order.
        self.halts: dict[str, int] = {}

    def state(self) -> dict[str, Any]:
        return {
            "now_ns": self.now_ns,
            "books": {s: self.books[s].dump() for s in sorted(self.books)},
            "bbo": {s: list(self.bbo[s]) for s in sorted(self.bbo)},
            "down": sorted(self.down),
            "parents": {
                k: {**p, "live": list(p["live"]), "pending": [list(x) for x in p["pending"]]}
                for k, p in sorted(self.parents.items())
            },
            "children": {k: list(self.children[k]) for k in sorted(self.children)},
            "counters": dict(sorted(self.counters.items())),
            "halts": dict(sorted(self.halts.items())),
        }

    def load_state(self, state: object) -> None:
        s: dict[str, Any] = state  # type: ignore[assignment]
        self._reset_state()
        self.now_ns = int(s["now_ns"])
        self.books = {k: LadderBook.from_dump(v, self._tick_step(k)[0]) for k, v in s["books"].items()}
        self.bbo = {k: [int(x) for x in v] for k, v in s["bbo"].items()}
        self.down = set(s["down"])
        self.parents = {
            k: {**p, "live": list(p["live"]), "pending": [[int(a), int(b)] for a, b in p["pending"]]}
            for k, p in s["parents"].items()
        }
        self.children = {k: [v[0], v[1], int(v[2])] for k, v in s["children"].items()}
        self.counters = {k: int(v) for k, v in s["counters"].items()}
        self.halts = {k: int(v) for k, v in s.get("halts", {}).items()}

    def _count(self, key: str, n: int = 1) -> None:
        self.counters[key] = self.counters.get(key, 0) + n

    # ------------------------------------------------------------ venues
    def _tick_step(self, symbol: str) -> tuple[int, int]:
        if symbol in self.symbols:
            spec = self.symbols[symbol]
            return spec.tick, spec.step
        return 1, 1

    def up_venues(self) -> list[VenueConfig]:
        return [v for v in self.venues.values() if not v.down and v.name not in self.down]

    def venue_levels(self, venue: VenueConfig, symbol: str, side: int, depth: int = 0) -> list[tuple[int, int]]:
        """The venue's levels on `side` (E.BUY = bids, E.SELL = asks), best first, from the
        feed's best `depth` levels (0 or more than depth_levels: depth_levels)."""
        tick, step = self._tick_step(symbol)
        book = self.books.get(symbol)
        if book is not None:
            n = min(depth, self.cfg.depth_levels) if depth else self.cfg.depth_levels
            return book.venue_levels(side == E.BUY, n, venue.price_offset_ticks * tick, venue.size_pct, step)
        b = self.bbo.get(symbol)
        if b is None:
            return []
        raw = [(b[0], b[1])] if side == E.BUY else [(b[2], b[3])]
        out = []
        for px, qty in raw:
            vpx = px + venue.price_offset_ticks * tick
            vqty = qty * venue.size_pct // 100 // step * step
            if vpx > 0 and vqty > 0:
                out.append((vpx, vqty))
        return out

    @staticmethod
    def _cost_key(side: int, px: int, fee_bps: int) -> int:
        """Smaller is better for the taker: buy pays px*(1+fee), sell receives px*(1-fee) (negated)."""
        if side == E.BUY:
            return px * (BPS_MAX + fee_bps)
        return -px * (BPS_MAX - fee_bps)

    @staticmethod
    def _within(side: int, px: int, limit: int) -> bool:
        if limit == 0:  # market order
            return True
        return px <= limit if side == E.BUY else px >= limit

    def _best_venue(self, symbol: str, side: int) -> tuple[str, str]:
        """(venue, "") or ("", reason). `side` is the order's side."""
        venues = self.up_venues()
        if not venues:
            return "", R_NO_VENUE
        opp = E.SELL if side == E.BUY else E.BUY
        best: tuple[int, str] | None = None
        for v in venues:
            # Only the best level counts: the top few feed levels nearly always hold it (a
            # read of all depth_levels costs three times as much); if the venue's transform
            # left none of them, the full read decides.
            lv = self.venue_levels(v, symbol, opp, BEST_PEEK) or self.venue_levels(v, symbol, opp)
            if lv:
                key = (self._cost_key(side, lv[0][0], v.fee_bps), v.name)
                if best is None or key < best:
                    best = key
        if best is None:
            return "", R_NO_LIQUIDITY
        return best[1], ""

    # ------------------------------------------------------------ apply
    def apply(self, ev: E.Sequenced) -> list[Output]:
        # The sequencer's clock (recv_ns), like every time rule in the mesh.
        if ev.recv_ns > self.now_ns:
            self.now_ns = ev.recv_ns
        body = ev.body
        t = type(body)
        # Market data (most of the stream) never makes an output: no output list for it.
        if t is E.BestBidOffer:
            self.bbo[body.symbol] = [body.bid_px, body.bid_qty, body.ask_px, body.ask_qty]  # type: ignore[union-attr]
            return []
        if t is E.Trade:
            return []
        if t is E.BookSnapshot or t is E.BookDelta:
            book = self.books.get(body.symbol)  # type: ignore[union-attr]
            if book is None:
                book = self.books[body.symbol] = LadderBook(self._tick_step(body.symbol)[0])  # type: ignore[union-attr]
            bad = book.apply_packed(body.bids, body.asks, t is E.BookSnapshot)  # type: ignore[union-attr]
            if bad:  # off the symbol's tick grid or beyond PX_MAX: the feed checks, so never expected
                self._count("book_rows_rejected", bad)
            return []
        if t not in _ACTS_ON:
            return []
        out: list[E._Body] = []
        if t is E.Clock:
            self._release_due(out)
        elif t is E.RiskApproved:
            halt = max(self.halts.get("", 0), self.halts.get(body.symbol, 0))  # type: ignore[union-attr]
            if body.intent_seq < halt:  # type: ignore[union-attr]
                self._count("stale_approval")
                out.append(E.OrderRejected(ROUTER_VENUE, body.order_id, body.symbol, R_STALE))  # type: ignore[union-attr]
            else:
                self._route(body, out)  # type: ignore[arg-type]
        elif t is E.OrderFill:
            ch = self.children.get(body.child_id)  # type: ignore[union-attr]
            if ch is not None:
                ch[2] = body.leaves_qty  # type: ignore[union-attr]
                if body.leaves_qty == 0:  # type: ignore[union-attr]
                    self._child_done(body.child_id)  # type: ignore[union-attr]
        elif t is E.OrderCancelled or t is E.OrderExpired or t is E.OrderRejected:
            if body.venue != ROUTER_VENUE and body.child_id in self.children:  # type: ignore[union-attr]
                self._child_done(body.child_id)  # type: ignore[union-attr]
        elif t is E.CancelIntent:
            if body.order_id in self.parents:  # type: ignore[union-attr]
                self._cancel_parent(body.order_id, out)  # type: ignore[union-attr]
        elif t is E.CancelAll:
            if body.origin == "risk":  # type: ignore[union-attr]
                self.halts[body.symbol] = ev.seq  # type: ignore[union-attr]
            for pid in sorted(self.parents):
                if not body.symbol or self.parents[pid]["symbol"] == body.symbol:  # type: ignore[union-attr]
                    self._cancel_parent(pid, out)
        elif t is E.OperatorCommand:
            if body.command == CMD_VENUE_DOWN and body.arg in self.venues:  # type: ignore[union-attr]
                self.down.add(body.arg)  # type: ignore[union-attr]
            elif body.command == CMD_VENUE_UP:  # type: ignore[union-attr]
                self.down.discard(body.arg)  # type: ignore[union-attr]
        return outputs_for(NAME, ev, out) if out else []

    # ------------------------------------------------------------ lifecycle
    def _child_done(self, child_id: str) -> None:
        parent, _venue, _leaves = self.children.pop(child_id)
        p = self.parents.get(parent)
        if p is None:
            return
        if child_id in p["live"]:
            p["live"].remove(child_id)
        self._maybe_forget(parent)

    def _maybe_forget(self, parent: str) -> None:
        p = self.parents[parent]
        if not p["live"] and not p["pending"]:
            del self.parents[parent]

    def _cancel_parent(self, parent: str, out: list[E._Body]) -> None:
        p = self.parents[parent]
        if self.cfg.cancel_children:
            for cid in p["live"]:
                out.append(E.ChildCancel(cid, self.children[cid][1], p["symbol"]))
        if p["pending"]:
            left = sum(q for _, q in p["pending"])
            p["pending"] = []
            self._count("twap_slices_cancelled")
            out.append(E.OrderCancelled(ROUTER_VENUE, parent, p["symbol"], left, R_CANCELLED))
        self._maybe_forget(parent)

    def _child(self, parent: str, venue: str, qty: int, out: list[E._Body]) -> None:
        p = self.parents[parent]
        p["next"] += 1
        cid = f"{parent}.{p['next']}"
        p["live"].append(cid)
        self.children[cid] = [parent, venue, qty]
        self._count("children")
        out.append(
            E.ChildOrder(
                parent, cid, venue, p["symbol"], p["side"], p["price"], qty, p["tif"], bool(p["post_only"]), p["algo"]
            )
        )

    # ------------------------------------------------------------ routing
    def _algo_for(self, ap: E.RiskApproved) -> str:
        return getattr(ap, "algo", "") or self.algo_by_symbol.get(ap.symbol, "") or self.cfg.default_algo

    def _reject(self, ap: E.RiskApproved, reason: str, out: list[E._Body]) -> None:
        self._count(f"rejected.{reason}")
        out.append(E.OrderRejected(ROUTER_VENUE, ap.order_id, ap.symbol, reason))

    def _route(self, ap: E.RiskApproved, out: list[E._Body]) -> None:
        if ap.order_id in self.parents:
            self._count("duplicate_parent")
            return
        algo = self._algo_for(ap)
        if algo not in ALGOS:
            self._reject(ap, R_UNKNOWN_ALGO, out)
            return
        best, why = self._best_venue(ap.symbol, ap.side)
        if not best:
            self._reject(ap, why, out)
            return
        self._count(f"algo.{algo}")
        self.parents[ap.order_id] = {
            "symbol": ap.symbol, "side": ap.side, "price": ap.price, "tif": ap.tif,
            "post_only": int(ap.post_only), "algo": algo, "next": 0, "live": [], "pending": [],
        }
        _, step = self._tick_step(ap.symbol)
        if algo == BEST_VENUE:
            self._child(ap.order_id, best, ap.qty, out)
        elif algo == VWAP:
            self._vwap(ap, step, best, out)
        elif algo == SWEEP:
            self._sweep(ap, best, out)
        else:
            assert algo == TWAP
            sizes = twap_sizes(ap.qty, step, self.cfg.twap_slices)
            ivl = self.cfg.twap_interval_ms * MS_NS
            self.parents[ap.order_id]["pending"] = [[self.now_ns + i * ivl, q] for i, q in enumerate(sizes)]
            self._release_parent(ap.order_id, out)
        self._maybe_forget(ap.order_id)

    def _vwap(self, ap: E.RiskApproved, step: int, best: str, out: list[E._Body]) -> None:
        opp = E.SELL if ap.side == E.BUY else E.BUY
        names, weights = [], []
        for v in self.up_venues():  # sorted by name
            liq = sum(q for px, q in self.venue_levels(v, ap.symbol, opp) if self._within(ap.side, px, ap.price))
            if liq > 0:
                names.append(v.name)
                weights.append(liq)
        if not weights:  # nothing inside the limit anywhere: rest it all at the best venue
            self._child(ap.order_id, best, ap.qty, out)
            return
        for name, q in zip(names, split_lots(ap.qty, step, weights), strict=True):
            if q > 0:
                self._child(ap.order_id, name, q, out)

    def _sweep(self, ap: E.RiskApproved, best: str, out: list[E._Body]) -> None:
        opp = E.SELL if ap.side == E.BUY else E.BUY
        levels = []
        for v in self.up_venues():
            for px, q in self.venue_levels(v, ap.symbol, opp):
                if self._within(ap.side, px, ap.price):
                    levels.append((self._cost_key(ap.side, px, v.fee_bps), v.name, px, q))
        levels.sort()
        take: dict[str, int] = {}
        order: list[str] = []
        left = ap.qty
        for _key, name, _px, q in levels:
            if left == 0:
                break
            if name not in take:
                take[name] = 0
                order.append(name)
            n = min(q, left)
            take[name] += n
            left -= n
        if left:  # the books within the limit cannot fill it all: the rest rests at the best venue
            first = order[0] if order else best
            if first not in take:
                take[first] = 0
                order.insert(0, first)
            take[first] += left
        for name in order:
            if take[name] > 0:
                self._child(ap.order_id, name, take[name], out)

    # ------------------------------------------------------------ TWAP
    def _release_due(self, out: list[E._Body]) -> None:
        for pid in sorted(self.parents):
            p = self.parents[pid]
            if p["pending"] and p["pending"][0][0] <= self.now_ns:
                self._release_parent(pid, out)
                self._maybe_forget(pid)

    def _release_parent(self, pid: str, out: list[E._Body]) -> None:
        p = self.parents[pid]
        while p["pending"] and p["pending"][0][0] <= self.now_ns:
            _due, qty = p["pending"].pop(0)
            venue, why = self._best_venue(p["symbol"], p["side"])
            if venue:
                self._count("twap_slices")
                self._child(pid, venue, qty, out)
            else:
                self._count(f"twap_slice_dropped.{why}")
                out.append(E.OrderCancelled(ROUTER_VENUE, pid, p["symbol"], qty, why))
