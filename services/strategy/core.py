"""The strategy's pure core: sequenced events in, order intents out.

One kernel call per market event per symbol (common/hotpath/kernels.py does
the book, fair value, toxicity, skew and quote arithmetic on int64 arrays);
this module turns the kernel's quote into orders: a new quote replaces the
live order on a side only when its price or size changed (cancel + new), a
toxic-flow action becomes CancelAll. Fills of our orders go back into the
kernel (inventory, cooldown); terminal reports (cancelled, rejected,
expired, risk-rejected) retire the order so the side can be quoted again.

Order ids are `<name>.<symbol>.<seq>.<b|a>`: derived from the seq of the
event that caused them, so a replay makes exactly the same ids.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from common import events
from common.config import StrategyConfig
from common.core import Output, outputs_for, parent_of
from common.hotpath import book_load, book_state, default_params, dtypes, kernels, new_book, new_levels, new_state
from common.risk_config import RISK_RESETS
from common.units import ASSET_SCALE, SymbolTable, rescale_ceil

D = dtypes
# Every body type apply() acts on; anything else is returned from at once.
_HANDLED = frozenset({
    events.BookDelta, events.BookSnapshot, events.Trade, events.OrderFill,
    events.OrderCancelled, events.OrderExpired, events.OrderRejected, events.RiskRejected, events.RiskApproved,
    events.OperatorCommand,
})  # fmt: skip
MS = 1_000_000
SIDE_TO_KERNEL = {events.BUY: D.SIDE_BID, events.SELL: D.SIDE_ASK}


def params_for(cfg: StrategyConfig, tick: int, lot: int) -> np.ndarray:
    return default_params(
        tick=tick,
        lot=lot,
        order_qty=cfg.order_qty,
        max_inv=cfg.max_inventory,
        half_spread=cfg.half_spread,
        gamma_ppm=cfg.gamma_ppm,
        warmup=cfg.warmup,
        cooldown=cfg.cooldown,
        requote_px=cfg.requote_threshold,
        vpin_window=cfg.vpin_window,
        toxic_bps=cfg.toxic_bps,
        min_trades=cfg.min_trades,
        mp_levels=cfg.microprice_levels,
        spot=int(cfg.spot),
        model=D.MODEL_AS if cfg.model == "as" else D.MODEL_MM,
        as_gamma_ppm=cfg.as_gamma_ppm,
        as_horizon_ns=cfg.as_horizon_ms * 1_000_000,
        as_kappa_ppm=cfg.as_kappa_ppm,
    )


def level_rows(bids: bytes, asks: bytes) -> tuple[np.ndarray, int]:
    """Packed (price, qty) pairs of both sides -> kernel level rows (side, px, qty)."""
    b = events.unpack_levels(bids)
    a = events.unpack_levels(asks)
    nb, na = len(b), len(a)
    lv = np.empty((nb + na, D.LV_COLS), dtype=np.int64)
    lv[:nb, D.LV_SIDE] = D.SIDE_BID
    lv[:nb, D.LV_PX :] = b
    lv[nb:, D.LV_SIDE] = D.SIDE_ASK
    lv[nb:, D.LV_PX :] = a
    return lv, nb + na


@dataclass
class Order:
    symbol: str
    side: int
    price: int
    remaining: int


class SymbolBook:
    """Kernel arrays of one symbol."""

    def __init__(self, params: np.ndarray, slots: int, tick: int, qty_scale: int) -> None:
        self.params = params
        self.qty_scale = qty_scale  # to count a base-asset commission (10**-8 units) in atoms
        self.state = new_state()
        self.book = new_book(slots, tick)
        self.lv = new_levels(64)  # level-row scratch of book events (grows with the largest event)


def _unquote(sb: SymbolBook, side: int) -> None:
    """The kernel's quote on `side` is no longer live (and with neither side live, no quote
    is), so it quotes that side again at its next chance. (market_run._held_quote does
    the same in the market run.)"""
    sb.state[D.S_LIVE_BID if side == events.BUY else D.S_LIVE_ASK] = 0
    if sb.state[D.S_LIVE_BID] == 0 and sb.state[D.S_LIVE_ASK] == 0:
        sb.state[D.S_HAVE_QUOTE] = 0


class StrategyCore:
    def __init__(self, cfg: StrategyConfig, symbols: SymbolTable) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.books: dict[str, SymbolBook] = {}
        for sym in cfg.symbols:
            spec = symbols[sym]
            self.books[spec.symbol] = SymbolBook(
                params_for(cfg, spec.tick, spec.step), cfg.book_slots, spec.tick, spec.qty_scale
            )
        self.orders: dict[str, Order] = {}  # every order not yet terminal
        self.live: dict[str, dict[int, str]] = {s: {} for s in self.books}  # symbol -> side -> order id
        self.counters = {"intents": 0, "cancels": 0, "cancel_alls": 0, "fills": 0}
        # symbol -> side -> [until recv_ns, refusals in a row]: risk refused this side lately
        # (see StrategyConfig.reject_backoff_ms). In the state only while not empty, so a
        # run that never meets a refusal hashes as before the backoff existed.
        self.backoff: dict[str, dict[int, list[int]]] = {}

    # ------------------------------------------------------------ events
    def apply(self, ev: events.Sequenced) -> list[Output]:
        b = ev.body
        t = type(b)
        if t not in _HANDLED:  # most of the stream (BestBidOffer, Clock, risk and router traffic)
            return []
        if t is events.BookDelta or t is events.BookSnapshot:
            sb = self.books.get(b.symbol)  # type: ignore[union-attr]
            if sb is None:
                return []
            bids, asks = b.bids, b.asks  # type: ignore[union-attr]
            if len(bids) % 16 or len(asks) % 16:
                level_rows(bids, asks)  # raises the FrameError of a torn (price, qty) pair
            rows = (len(bids) + len(asks)) >> 4
            if rows > len(sb.lv):
                sb.lv = new_levels(max(rows, 2 * len(sb.lv)))
            # One kernel call: the rows are built from the packed levels inside it, then
            # on_book_snapshot / on_book_delta's own body runs.
            act = kernels.on_book_packed(
                sb.state, sb.book, sb.params, sb.lv, bids, asks, ev.event_ns, t is events.BookSnapshot
            )
            return self._act(ev, b.symbol, sb, act)  # type: ignore[union-attr]
        # t is one of _HANDLED (body types are final): identity tests, as isinstance() costs
        # ~70 ns for every msgspec struct type it does not match.
        if t is events.Trade:
            tr: events.Trade = b  # type: ignore[assignment]
            sb = self.books.get(tr.symbol)
            if sb is None:
                return []
            act = kernels.on_trade(sb.state, sb.book, sb.params, tr.price, tr.qty, int(tr.buyer_maker), ev.event_ns)
            return self._act(ev, tr.symbol, sb, act)
        if t is events.OrderFill:
            return self._on_fill(ev, b)  # type: ignore[arg-type]
        if t is events.OperatorCommand:
            if b.command in RISK_RESETS:  # type: ignore[union-attr]
                self.backoff.clear()  # risk was reset by hand: quote again at once
            return []
        if t is events.RiskApproved:
            if self.backoff:  # (most approvals: no backoff to end)
                order = self.orders.get(b.order_id)  # type: ignore[union-attr]
                if order is not None:
                    self._approved(order)
        elif t is events.RiskRejected:
            order = self.orders.get(b.order_id)  # type: ignore[union-attr]
            if order is not None:
                self._refused(order, ev.recv_ns)
            self._retire(b.order_id, None)  # type: ignore[union-attr]
        else:  # the rest of _HANDLED: OrderCancelled, OrderExpired, OrderRejected
            self._retire(_parent(b.child_id), getattr(b, "leaves_qty", None))  # type: ignore[union-attr]
        return []

    def _on_fill(self, ev: events.Sequenced, f: events.OrderFill) -> list[Output]:
        oid = _parent(f.child_id)
        order = self.orders.get(oid)
        if order is None:
            return []
        sb = self.books[order.symbol]
        self.counters["fills"] += 1
        order.remaining -= f.qty
        if order.remaining <= 0:
            self._forget(oid)
        # A commission the venue took in the base asset leaves holdings that much short of the
        # fill: counted (rounded up) so the strategy never offers more than the venue holds.
        kept = rescale_ceil(f.fee_base, ASSET_SCALE, sb.qty_scale) if f.fee_base else 0
        side = SIDE_TO_KERNEL[order.side]
        act = kernels.on_fill_kept(sb.state, sb.book, sb.params, side, f.price, f.qty, kept, ev.event_ns)
        return self._act(ev, order.symbol, sb, act)

    def _refused(self, order: Order, now: int) -> None:
        base = self.cfg.reject_backoff_ms * MS
        if base <= 0:
            return
        sides = self.backoff.setdefault(order.symbol, {})
        n = sides[order.side][1] + 1 if order.side in sides else 1
        wait = min(base << min(n - 1, 40), self.cfg.reject_backoff_max_ms * MS)
        sides[order.side] = [now + wait, n]

    def _approved(self, order: Order) -> None:
        sides = self.backoff.get(order.symbol)
        if sides and order.side in sides:
            del sides[order.side]
            if not sides:
                del self.backoff[order.symbol]

    def _held_back(self, symbol: str, side: int, now: int) -> bool:
        """True while risk's last refusals on this symbol and side ask for a pause."""
        until = self.backoff.get(symbol, {}).get(side)
        return until is not None and now < until[0]

    def _retire(self, oid: str, leaves: int | None) -> None:
        order = self.orders.get(oid)
        if order is None:
            return
        if leaves is not None and 0 < leaves < order.remaining:
            # leaves_qty is what this report releases (one child of several, or
            # the part the router never sent); the rest of the parent works on.
            order.remaining -= leaves
            return
        self._forget(oid)

    def _forget(self, oid: str) -> None:
        order = self.orders.pop(oid)
        live = self.live[order.symbol]
        if live.get(order.side) == oid:
            del live[order.side]
            _unquote(self.books[order.symbol], order.side)

    def count_held_back(self, n: int) -> None:
        """Quote sides not sent because risk's refusals asked for a pause (also the market run's)."""
        self.counters["held_back"] = self.counters.get("held_back", 0) + n

    # ------------------------------------------------------------ actions -> orders
    def _act(self, ev: events.Sequenced, symbol: str, sb: SymbolBook, act: int) -> list[Output]:
        if act == D.ACT_NONE:
            return []
        bodies: list[events._Body] = []
        if act == D.ACT_CANCEL_ALL:
            self.live[symbol] = {}
            self.counters["cancel_alls"] += 1
            bodies.append(events.CancelAll(self.name, symbol, "toxic_flow" if sb.state[D.S_TOXIC] else "no_quote"))
            return outputs_for(self.name, ev, bodies)
        st = sb.state
        want = {
            events.BUY: (int(st[D.S_Q_BID_PX]), int(st[D.S_Q_BID_QTY])),
            events.SELL: (int(st[D.S_Q_ASK_PX]), int(st[D.S_Q_ASK_QTY])),
        }
        live = self.live[symbol]
        for side, (px, qty) in want.items():
            oid = live.get(side)
            cur = self.orders.get(oid) if oid else None
            if cur is not None and cur.price == px and cur.remaining == qty:
                continue  # unchanged: keep the order (and its queue position)
            if oid is not None:
                del live[side]
                bodies.append(events.CancelIntent(self.name, symbol, oid))
                self.counters["cancels"] += 1
            if qty > 0 and self.backoff and self._held_back(symbol, side, ev.recv_ns):
                # Not sent: the kernel's quote on this side is not live, so it quotes again
                # at its next chance (as after any retired order), and this waits again.
                _unquote(sb, side)
                self.count_held_back(1)
                continue
            if qty > 0:
                new_id = f"{self.name}.{symbol}.{ev.seq}.{'b' if side == events.BUY else 'a'}"
                self.orders[new_id] = Order(symbol, side, px, qty)
                live[side] = new_id
                bodies.append(
                    events.OrderIntent(self.name, symbol, new_id, side, px, qty, events.GTC, True, "", ev.recv_ns)
                )
                self.counters["intents"] += 1
        return outputs_for(self.name, ev, bodies)

    # ------------------------------------------------------------ state
    def state(self) -> object:
        return {
            "books": {s: [sb.state.tobytes(), *book_state(sb.book)] for s, sb in sorted(self.books.items())},
            "orders": {k: [o.symbol, o.side, o.price, o.remaining] for k, o in sorted(self.orders.items())},
            "live": {s: {str(side): oid for side, oid in sorted(v.items())} for s, v in sorted(self.live.items())},
            "counters": dict(sorted(self.counters.items())),
        } | ({"backoff": self._backoff_state()} if self.backoff else {})

    def _backoff_state(self) -> dict[str, dict[str, list[int]]]:
        return {s: {str(side): list(v) for side, v in sorted(b.items())} for s, b in sorted(self.backoff.items())}

    def load_state(self, state: object) -> None:
        """Raises ValueError, before changing anything, when the snapshot's kernel arrays
        do not fit this build's (another state layout, book geometry or strategy.book_slots)."""
        assert isinstance(state, dict)
        loaded = {}
        for s, (st, *bk) in state["books"].items():
            sb = self.books.get(s)
            if sb is None:
                continue
            if len(st) != sb.state.nbytes:
                raise ValueError(
                    f"{s}: snapshot has a {len(st)}-byte strategy state, this build needs {sb.state.nbytes}"
                )
            book = sb.book.copy()
            try:
                book_load(book, bk)
            except ValueError as e:
                raise ValueError(f"{s}: snapshot's kernel book does not fit (strategy.book_slots changed?): {e}") from e
            loaded[s] = (np.frombuffer(st, dtype=np.int64), book)
        for s, (st_arr, book) in loaded.items():
            self.books[s].state[:] = st_arr
            self.books[s].book[:] = book
        self.orders = {k: Order(v[0], v[1], v[2], v[3]) for k, v in state["orders"].items()}
        self.live = {s: {} for s in self.books}
        for s, v in state["live"].items():
            self.live[s] = {int(side): oid for side, oid in v.items()}
        self.counters.update(state["counters"])
        self.backoff = {
            s: {int(side): [int(v[0]), int(v[1])] for side, v in b.items()}
            for s, b in state.get("backoff", {}).items()  # type: ignore[union-attr]
        }

    def inspect(self, symbol: str) -> dict[str, int]:
        """The numbers a person watching the strategy wants (dashboard, tests)."""
        sb = self.books[symbol]
        st = sb.state
        return {
            "fair": int(st[D.S_FAIR]),
            "imbalance_bps": int(st[D.S_IMB_BPS]),
            "vpin_bps": int(st[D.S_VPIN_BPS]),
            "vol_milli": int(st[D.S_VOL]),
            # the multiplier a quote made now would use (the state keeps the last quote's)
            "spread_mult_bps": int(kernels.spread_mult_bps(st[D.S_VPIN_BPS], st[D.S_VOL], sb.params)),
            "position": int(st[D.S_POSITION]),
            "toxic": int(st[D.S_TOXIC]),
            "quotes": int(st[D.S_N_QUOTES]),
            "fills": int(st[D.S_N_FILLS]),
        }


_parent = parent_of
