"""A deterministic simulated exchange: one instance per venue, time only from events.

API
---
``SimExchange(venue, symbols, maker_fee_bps, taker_fee_bps, order_latency_ns, feed_latency_ns,
cancel_latency_ns=None, fill_model="queue")``; every input method takes the sequenced event's
``event_ns`` as "now" and returns the reports that became due, as a list of
``(body, event_ns)`` pairs in the order they happened (bodies are
OrderAck / OrderFill / OrderCancelled / OrderRejected / OrderExpired):

* ``on_market(body, event_ns)`` -- a BookSnapshot / BookDelta / Trade enters the
  feed queue and is applied at ``event_ns + feed_latency_ns`` (other bodies and
  unknown symbols are ignored and counted);
* ``on_order(ChildOrder, event_ns)`` -- the order arrives at the venue at
  ``event_ns + order_latency_ns``; until then it is in flight;
* ``on_cancel(ChildCancel, event_ns)`` -- the cancel arrives at
  ``event_ns + cancel_latency_ns`` (default: the order latency, so with equal
  latencies a cancel never overtakes its order);
* ``advance(now_ns)`` -- process everything due at or before ``now_ns`` (call it on
  every sequenced event, e.g. the sequencer's Clock);
* ``open_orders()`` (what the venue holds, plain dicts), ``balances()`` (per symbol:
  base atoms, quote at notional scale net of fees, fees), ``inject_order(...)``
  (an order the venue holds that the engine never sent: for reconciliation),
  ``state()`` / ``load_state()`` (plain data; the config is checked, not loaded).

Time. Nothing reads a clock. Due items are processed in due-time order; the feed
queue is FIFO (the book changes in feed order); at equal times market data goes
before order/cancel arrivals (conservative: a trade at the instant an order
arrives does not fill it) and arrivals keep their submission order. A report's
event_ns is the venue time at which it happens: the order's arrival time for
acks, rejects and taker fills, the market event's apply time for maker fills,
the cancel's arrival time for cancels.

Caveat on feed latency: the venue applies a market event feed_latency_ns
*after* the engine saw it, so a strategy that reacts at once gets its order to
the venue order_latency_ns later, i.e. before the venue saw the event when
order_latency_ns < feed_latency_ns. For conservative backtests keep
feed_latency_ns = 0 (the stream's event_ns is then the venue's time) and put the
whole round trip into order_latency_ns / cancel_latency_ns.

Arrival. Checks, in order: venue, symbol, duplicate child id, side, tif, qty > 0
on the step grid, price on the tick grid, not post-only market. Then:
post-only that would cross -> OrderRejected("post_only_would_cross");
FOK whose limit-eligible liquidity is short -> OrderRejected("fok_would_not_fill")
(no ack, nothing traded); otherwise OrderAck, then taker fills walking the book
best level first up to the limit (price 0 = market: any price), consuming the
sim's copy of those levels (the next feed update of a level overwrites it, as the
real venue's own book would), then the rest: market / IOC -> OrderExpired(leaves),
GTC limit -> rests. A cancel that arrives while its order is still in flight
removes it: OrderCancelled(reason "cancelled_before_arrival"), no ack ever.
A cancel for an order the venue does not hold produces no report (the catalogue
has no cancel-reject event) and is counted as ``cancel_unknown``.

Queue model (conservative). A resting order's ``queue_ahead`` starts as the
book's qty at its price on its side when it rests (0 for a new level). Our sim
orders are never in the feed's book, so that level qty is exactly "others".
* Trades: only prints whose aggressor is on the other side count (for our bid:
  buyer_maker=True, i.e. a seller hit bids). A print at our price or through it
  (strictly better for the aggressor) first reduces queue_ahead; only the volume
  beyond it fills us, at our own limit price, as maker. Our several orders share
  one print in price-time priority: volume given to one of our orders is not
  available to the next.
* Book updates at our level: queue_ahead = min(queue_ahead, level qty). The
  level can never hold fewer others ahead of us than it holds in total, so a drop
  below our queue forces us forward; any other decrease is assumed to be
  cancellations *behind* us (we do not move up), and increases join behind us.
  This is the most pessimistic rule consistent with the book: we never advance
  faster than the data forces. Known limit: if a depth update that already
  reflects a trade is applied before that trade's print, the volume is counted
  twice; on Binance the trade stream leads the 100 ms depth stream, so it is rare.
* A book that crosses a resting order without any trade does not fill it
  (the seed filled on touch; here only printed volume fills).
Our own resting orders are not in the book an incoming order walks, so the sim
never self-trades.

Fill on touch (``fill_model="touch"``, optimistic, the seed's model; for
backtests that want an upper bound). A resting order fills in full, at its own
limit, as maker, the moment the opposite best touches it: after any book
update, a bid fills when the best ask <= its price, an ask when the best bid >=
its price. A print at or through its price (aggressor on the other side) fills
it in full too. No queue, no volume check: several of our orders all fill on
one touch. Everything else (arrival checks, taker fills, latencies, fees) is
the same as the queue model, which stays the default.
"""

from __future__ import annotations

import heapq
import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import msgspec

from common import events
from common.accounting import Account, fee
from common.events import BUY, FOK, GTC, IOC, MAKER, SELL, TAKER
from common.hotpath.kernels import packed_has_price
from common.ladder import LadderBook
from common.units import SymbolTable

log = logging.getLogger(__name__)

Report = tuple[events._Body, int]

_body_dec = msgspec.msgpack.Decoder(events.Body)

# The market bodies a venue applies. Tested by type identity (body types are final, see
# tests/unit/execution/test_simexchange.py): isinstance() costs ~70 ns per msgspec struct
# type it does not match.
MARKET_TYPES = frozenset((events.BookSnapshot, events.BookDelta, events.Trade))

# kinds of in-flight items
_ORDER, _CANCEL = "order", "cancel"

# fill models of resting orders
QUEUE, TOUCH = "queue", "touch"
FILL_MODELS = (QUEUE, TOUCH)


@dataclass(slots=True)
class Resting:
    child_id: str
    venue_order_id: str
    symbol: str
    side: int
    price: int
    qty: int
    filled: int
    queue_ahead: int
    arrival_ns: int
    priority: int  # arrival number: time priority among our orders
    injected: bool = False

    @property
    def leaves(self) -> int:
        return self.qty - self.filled

    _FIELDS = (
        "child_id", "venue_order_id", "symbol", "side", "price", "qty", "filled", "queue_ahead",
        "arrival_ns", "priority", "injected",
    )  # fmt: skip

    def state_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self._FIELDS}


def advance_all(sims: Iterable[SimExchange], now_ns: int) -> list[Report]:
    """`sim.advance(now_ns)` of each venue in turn, reports concatenated in that order.

    A venue with nothing queued only moves its clock, without the call: that is
    most events for most venues, and the execution core does it on every event."""
    out: list[Report] = []
    for sim in sims:
        if sim._feed or sim._inflight:
            out += sim.advance(now_ns)
        elif now_ns > sim.now_ns:
            sim.now_ns = now_ns
    return out


class SimExchange:
    def __init__(
        self,
        venue: str,
        symbols: SymbolTable,
        maker_fee_bps: int,
        taker_fee_bps: int,
        order_latency_ns: int,
        feed_latency_ns: int,
        cancel_latency_ns: int | None = None,
        fill_model: str = QUEUE,
    ) -> None:
        if fill_model not in FILL_MODELS:
            raise ValueError(f"fill_model must be one of {', '.join(FILL_MODELS)}, got {fill_model!r}")
        for name, v in (("order_latency_ns", order_latency_ns), ("feed_latency_ns", feed_latency_ns)):
            if not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be an int >= 0, got {v!r}")
        if cancel_latency_ns is None:
            cancel_latency_ns = order_latency_ns
        if not isinstance(cancel_latency_ns, int) or cancel_latency_ns < 0:
            raise ValueError(f"cancel_latency_ns must be an int >= 0, got {cancel_latency_ns!r}")
        for name, v in (("maker_fee_bps", maker_fee_bps), ("taker_fee_bps", taker_fee_bps)):
            if not isinstance(v, int):
                raise ValueError(f"{name} must be an int (bps), got {v!r}")
        self.venue = venue
        self.symbols = symbols
        self.maker_fee_bps = maker_fee_bps
        self.taker_fee_bps = taker_fee_bps
        self.order_latency_ns = order_latency_ns
        self.feed_latency_ns = feed_latency_ns
        self.cancel_latency_ns = cancel_latency_ns
        self.fill_model = fill_model
        self._reset()

    def _reset(self) -> None:
        self.now_ns = 0
        self._next_no = 0  # insertion number of queued items and arrival priority
        self._order_no = 0  # venue order ids
        self._fill_no = 0  # venue trade ids
        self._books: dict[str, LadderBook] = {}
        self._feed: deque[tuple[int, int, events._Body]] = deque()
        self._inflight: list[tuple[int, int, str, events._Body]] = []  # heap by (due, no)
        self._resting: dict[str, Resting] = {}
        self._seen: set[str] = set()  # child ids that reached the venue (or were cancelled in flight)
        self._known_symbols: set[str] = set()
        self.account = Account()
        self.counters: dict[str, int] = {
            "market": 0,
            "market_ignored": 0,
            "orders": 0,
            "cancels": 0,
            "cancel_unknown": 0,
            "acks": 0,
            "rejects": 0,
            "fills": 0,
            "expired": 0,
            "cancelled": 0,
        }

    # ------------------------------------------------------------ inputs
    def on_market(self, body: events._Body, event_ns: int) -> list[Report]:
        if type(body) in MARKET_TYPES and self._known(body.symbol):  # type: ignore[attr-defined]
            due = event_ns + self.feed_latency_ns
            inflight = self._inflight
            if due == event_ns and not self._feed and not (inflight and inflight[0][0] < due):
                # Nothing queued goes before it: apply it now, exactly as advance() would
                # (same number, same time), then whatever arrives at this instant.
                if event_ns > self.now_ns:
                    self.now_ns = event_ns
                self._next_no += 1
                out: list[Report] = []
                self._apply_market(body, due, out)
                if inflight and inflight[0][0] <= event_ns:
                    out += self.advance(event_ns)
                return out
            self._feed.append((due, self._no(), body))
        else:
            self.counters["market_ignored"] += 1
        return self.advance(event_ns)

    def _known(self, symbol: str) -> bool:
        """`symbol in self.symbols`, remembered (a table only ever gains symbols)."""
        if symbol in self._known_symbols:
            return True
        if symbol in self.symbols:
            self._known_symbols.add(symbol)
            return True
        return False

    def on_order(self, child: events.ChildOrder, event_ns: int) -> list[Report]:
        heapq.heappush(self._inflight, (event_ns + self.order_latency_ns, self._no(), _ORDER, child))
        return self.advance(event_ns)

    def on_cancel(self, cancel: events.ChildCancel, event_ns: int) -> list[Report]:
        heapq.heappush(self._inflight, (event_ns + self.cancel_latency_ns, self._no(), _CANCEL, cancel))
        return self.advance(event_ns)

    def advance(self, now_ns: int) -> list[Report]:
        """Process every queued market event and arrival due at or before now_ns."""
        if now_ns > self.now_ns:
            self.now_ns = now_ns
        feed, inflight = self._feed, self._inflight
        if (not feed or feed[0][0] > now_ns) and (not inflight or inflight[0][0] > now_ns):
            return []  # nothing due (the common case): no loop
        out: list[Report] = []
        while True:
            f_due = feed[0][0] if feed and feed[0][0] <= now_ns else None
            p_due = inflight[0][0] if inflight and inflight[0][0] <= now_ns else None
            if f_due is None and p_due is None:
                return out
            if f_due is not None and (p_due is None or f_due <= p_due):
                due, _, body = feed.popleft()
                self._apply_market(body, due, out)
            else:
                due, _, kind, item = heapq.heappop(inflight)
                if kind == _ORDER:
                    self._arrive(item, due, out)  # type: ignore[arg-type]
                else:
                    self._cancel(item, due, out)  # type: ignore[arg-type]

    def inject_order(self, child_id: str, symbol: str, side: int, price: int, qty: int, now_ns: int) -> str:
        """Rest an order the engine never sent (no report); returns its venue order id.

        For reconciliation tests. It gets the same queue position a real arrival would.
        Raises ValueError for a bad or crossing order (a test bug, not a venue event).
        """
        if symbol not in self.symbols or side not in (BUY, SELL) or price <= 0 or qty <= 0:
            raise ValueError(f"bad injected order {child_id!r} {symbol} side={side} price={price} qty={qty}")
        if child_id in self._seen:
            raise ValueError(f"child id {child_id!r} already known to venue {self.venue}")
        book = self._book(symbol)
        if self._crossing_levels(book, side, price):
            raise ValueError(f"injected order {child_id!r} would cross the book")
        self._seen.add(child_id)
        return self._rest(child_id, symbol, side, price, qty, 0, now_ns, injected=True).venue_order_id

    # ------------------------------------------------------------ queries
    def open_orders(self) -> list[dict[str, object]]:
        """Orders resting at the venue (not in-flight ones), by child id."""
        return [dict(r.state_dict(), leaves=r.leaves) for _, r in sorted(self._resting.items())]

    def in_flight(self) -> int:
        return len(self._inflight)

    def book(self, symbol: str) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """The venue's current view: (bids best first, asks best first)."""
        b = self._book(symbol)
        return b.within(True, 0), b.within(False, 0)

    def balances(self) -> dict[str, dict[str, int]]:
        """Per symbol: base (atoms), quote (notional scale, net of fees), fees. Changes from zero."""
        out = {}
        for sym, p in sorted(self.account.positions.items()):
            out[sym] = {"base": p.position, "quote": p.realized - p.fees - p.cost, "fees": p.fees}
        return out

    # ------------------------------------------------------------ state
    def _config(self) -> dict[str, object]:
        cfg: dict[str, object] = {
            "venue": self.venue,
            "maker_fee_bps": self.maker_fee_bps,
            "taker_fee_bps": self.taker_fee_bps,
            "order_latency_ns": self.order_latency_ns,
            "feed_latency_ns": self.feed_latency_ns,
            "cancel_latency_ns": self.cancel_latency_ns,
        }
        if self.fill_model != QUEUE:  # the default leaves the state (and its hash) as it always was
            cfg["fill_model"] = self.fill_model
        return cfg

    def state(self) -> dict[str, object]:
        return {
            "config": self._config(),
            "now_ns": self.now_ns,
            "next_no": self._next_no,
            "order_no": self._order_no,
            "fill_no": self._fill_no,
            "books": {sym: b.dump() for sym, b in sorted(self._books.items())},
            "feed": [[due, no, events.encode(body)] for due, no, body in self._feed],
            "inflight": [
                [due, no, kind, events.encode(item)]
                for due, no, kind, item in sorted(self._inflight, key=lambda x: (x[0], x[1]))
            ],
            "resting": {cid: r.state_dict() for cid, r in sorted(self._resting.items())},
            "seen": sorted(self._seen),
            "account": self.account.state(),
            "counters": dict(sorted(self.counters.items())),
        }

    def load_state(self, st: dict[str, object]) -> None:
        if st["config"] != self._config():
            raise ValueError(f"state of a differently configured venue: {st['config']!r} != {self._config()!r}")
        self._reset()
        self.now_ns = int(st["now_ns"])  # type: ignore[call-overload]
        self._next_no = int(st["next_no"])  # type: ignore[call-overload]
        self._order_no = int(st["order_no"])  # type: ignore[call-overload]
        self._fill_no = int(st["fill_no"])  # type: ignore[call-overload]
        for sym, b in st["books"].items():  # type: ignore[attr-defined]
            self._books[sym] = LadderBook.from_dump(b, self._tick(sym))
        feed: list = st["feed"]  # type: ignore[assignment]
        inflight: list = st["inflight"]  # type: ignore[assignment]
        self._feed = deque((int(d), int(n), _body_dec.decode(raw)) for d, n, raw in feed)
        self._inflight = [(int(d), int(n), str(k), _body_dec.decode(raw)) for d, n, k, raw in inflight]
        heapq.heapify(self._inflight)
        self._resting = {str(cid): Resting(**r) for cid, r in st["resting"].items()}  # type: ignore[attr-defined]
        self._seen = set(st["seen"])  # type: ignore[call-overload]
        self.account.load_state(st["account"])  # type: ignore[arg-type]
        self.counters = {str(k): int(v) for k, v in st["counters"].items()}  # type: ignore[attr-defined]

    # ------------------------------------------------------------ market data
    def _apply_market(self, body: events._Body, t: int, out: list[Report]) -> None:
        self.counters["market"] += 1
        if type(body) is events.Trade:
            if self._resting:  # a print only ever fills resting orders
                self._on_trade(body, t, out)
            return
        book = self._book(body.symbol)  # type: ignore[attr-defined]
        resting = self._resting
        snapshot = type(body) is events.BookSnapshot
        bad = book.apply_packed(body.bids, body.asks, snapshot)
        if bad:  # off the symbol's tick grid or beyond PX_MAX: the feed checks, so never expected
            self.counters["book_rows_rejected"] = self.counters.get("book_rows_rejected", 0) + bad
        if self.fill_model == TOUCH:
            self._fill_on_touch(book, body.symbol, t, out)  # type: ignore[attr-defined]
            return
        if not resting:
            return
        symbol = body.symbol  # type: ignore[attr-defined]
        for r in resting.values():
            if r.symbol != symbol:
                continue
            buy = r.side == BUY
            # A delta moves only the levels it names (a snapshot may move any).
            if not snapshot and not packed_has_price(body.bids if buy else body.asks, r.price):  # type: ignore[attr-defined]
                continue
            level = book.qty(buy, r.price)
            if level < r.queue_ahead:
                r.queue_ahead = level

    def _on_trade(self, tr: events.Trade, t: int, out: list[Report]) -> None:
        symbol, px = tr.symbol, tr.price
        # buyer_maker: the aggressor sold, so resting bids at or above the print trade.
        if tr.buyer_maker:
            eligible = [r for r in self._resting.values() if r.side == BUY and r.price >= px and r.symbol == symbol]
            if len(eligible) > 1:
                eligible.sort(key=lambda r: (-r.price, r.priority))
        else:
            eligible = [r for r in self._resting.values() if r.side == SELL and r.price <= px and r.symbol == symbol]
            if len(eligible) > 1:
                eligible.sort(key=lambda r: (r.price, r.priority))
        if not eligible:
            return
        if self.fill_model == TOUCH:
            for r in eligible:  # optimistic: a print at or through the limit fills it all
                self._fill(r.child_id, r.symbol, r.side, r.price, r.leaves, 0, MAKER, t, out)
                r.filled = r.qty
                del self._resting[r.child_id]
            return
        avail = tr.qty
        for r in eligible:
            if avail <= 0:
                break
            cut = min(r.queue_ahead, avail)
            r.queue_ahead -= cut
            rest = avail - cut
            q = min(rest, r.leaves)
            if q > 0:
                avail -= q
                self._fill(r.child_id, r.symbol, r.side, r.price, q, r.leaves - q, MAKER, t, out)
                r.filled += q
                if r.leaves == 0:
                    del self._resting[r.child_id]

    def _fill_on_touch(self, book: LadderBook, symbol: str, t: int, out: list[Report]) -> None:
        """Touch model: every resting order the opposite best reaches fills in full at its limit."""
        best_bid, best_ask = book.touch()
        touched = [
            r
            for r in self._resting.values()
            if r.symbol == symbol
            and (
                (r.side == BUY and best_ask and best_ask <= r.price)
                or (r.side == SELL and best_bid and best_bid >= r.price)
            )
        ]
        touched.sort(key=lambda r: r.priority)
        for r in touched:
            self._fill(r.child_id, r.symbol, r.side, r.price, r.leaves, 0, MAKER, t, out)
            r.filled = r.qty
            del self._resting[r.child_id]

    # ------------------------------------------------------------ orders
    def _reject_reason(self, c: events.ChildOrder) -> str:
        if c.venue != self.venue:
            return "wrong_venue"
        if c.symbol not in self.symbols:
            return "unknown_symbol"
        if c.child_id in self._seen:
            return "duplicate_child_id"
        if c.side not in (BUY, SELL):
            return "bad_side"
        if c.tif not in (GTC, IOC, FOK):
            return "bad_tif"
        spec = self.symbols[c.symbol]
        if c.qty <= 0 or c.qty % spec.step:
            return "qty_not_on_step"
        if c.price < 0 or c.price % spec.tick:
            return "price_not_on_tick"
        if c.post_only and c.price == 0:
            return "post_only_market"
        return ""

    def _crossing_levels(self, book: LadderBook, side: int, limit: int) -> list[tuple[int, int]]:
        """Opposite (price, qty) levels this order can take, best first (limit 0 = market)."""
        return book.within(side != BUY, limit)

    def _arrive(self, c: events.ChildOrder, t: int, out: list[Report]) -> None:
        self.counters["orders"] += 1
        reason = self._reject_reason(c)
        if reason:
            self._reject(c, reason, t, out)
            return
        self._seen.add(c.child_id)
        book = self._book(c.symbol)
        if c.post_only:
            # Rejected if any opposite level is within its limit (a post-only limit is never 0):
            # the best opposite price decides, no need to list the crossing levels.
            best = book.best_ask_px() if c.side == BUY else book.best_bid_px()
            if best and (best <= c.price if c.side == BUY else best >= c.price):
                self._reject(c, "post_only_would_cross", t, out)
                return
            levels: list[tuple[int, int]] = []
        else:
            levels = self._crossing_levels(book, c.side, c.price)
        if c.tif == FOK and sum(q for _, q in levels) < c.qty:
            self._reject(c, "fok_would_not_fill", t, out)
            return
        self._order_no += 1
        out.append((events.OrderAck(self.venue, c.child_id, f"{self.venue}-{self._order_no}", c.symbol), t))
        self.counters["acks"] += 1
        remaining = c.qty
        for p, level in levels:
            if remaining == 0:
                break
            q = min(level, remaining)
            book.set_qty(c.side != BUY, p, level - q)  # the sim's copy of the level, until the feed's next
            remaining -= q
            self._fill(c.child_id, c.symbol, c.side, p, q, remaining, TAKER, t, out)
        if remaining == 0:
            return
        if c.price == 0 or c.tif in (IOC, FOK):
            out.append((events.OrderExpired(self.venue, c.child_id, c.symbol, remaining), t))
            self.counters["expired"] += 1
            return
        self._rest(c.child_id, c.symbol, c.side, c.price, c.qty, c.qty - remaining, t, order_no=self._order_no)

    def _rest(
        self, cid: str, symbol: str, side: int, price: int, qty: int, filled: int, t: int,
        order_no: int = 0, injected: bool = False,
    ) -> Resting:  # fmt: skip
        if not order_no:
            self._order_no += 1
            order_no = self._order_no
        r = Resting(
            child_id=cid,
            venue_order_id=f"{self.venue}-{order_no}",
            symbol=symbol,
            side=side,
            price=price,
            qty=qty,
            filled=filled,
            queue_ahead=self._book(symbol).qty(side == BUY, price),
            arrival_ns=t,
            priority=self._no(),
            injected=injected,
        )
        self._resting[cid] = r
        return r

    def _cancel(self, c: events.ChildCancel, t: int, out: list[Report]) -> None:
        self.counters["cancels"] += 1
        if c.venue != self.venue:
            self.counters["cancel_unknown"] += 1
            return
        r = self._resting.pop(c.child_id, None)
        if r is not None:
            out.append((events.OrderCancelled(self.venue, r.child_id, r.symbol, r.leaves, "cancelled"), t))
            self.counters["cancelled"] += 1
            return
        for i, (_, _, kind, item) in enumerate(self._inflight):
            if kind == _ORDER and isinstance(item, events.ChildOrder) and item.child_id == c.child_id:
                self._inflight.pop(i)
                heapq.heapify(self._inflight)
                self._seen.add(item.child_id)
                reason = "cancelled_before_arrival"
                out.append((events.OrderCancelled(self.venue, item.child_id, item.symbol, item.qty, reason), t))
                self.counters["cancelled"] += 1
                return
        self.counters["cancel_unknown"] += 1
        log.debug("venue %s: cancel for %r, which it does not hold", self.venue, c.child_id)

    # ------------------------------------------------------------ helpers
    def _fill(
        self, cid: str, symbol: str, side: int, price: int, qty: int, leaves: int, liq: int, t: int, out: list[Report]
    ) -> None:
        bps = self.maker_fee_bps if liq == MAKER else self.taker_fee_bps
        amount = fee(price, qty, bps)
        self._fill_no += 1
        tid = f"{self.venue}-t{self._fill_no}"
        out.append((events.OrderFill(self.venue, cid, symbol, side, price, qty, leaves, amount, liq, tid), t))
        self.account.fill(symbol, side, price, qty, amount)
        self.counters["fills"] += 1

    def _reject(self, c: events.ChildOrder, reason: str, t: int, out: list[Report]) -> None:
        out.append((events.OrderRejected(self.venue, c.child_id, c.symbol, reason), t))
        self.counters["rejects"] += 1

    def _book(self, symbol: str) -> LadderBook:
        b = self._books.get(symbol)
        if b is None:
            b = self._books[symbol] = LadderBook(self._tick(symbol))
        return b

    def _tick(self, symbol: str) -> int:
        spec = self.symbols.get(symbol)
        return spec.tick if spec is not None else 1

    def _no(self) -> int:
        self._next_no += 1
        return self._next_no
