"""Human and JSON renderings of sequenced events (for --tail, tools, the dashboard)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec

from common import events
from common.units import SymbolTable, format_fixed

SIDE = {events.BUY: "BUY", events.SELL: "SELL"}
TIF = {events.GTC: "GTC", events.IOC: "IOC", events.FOK: "FOK"}


def fmt_time(ns: int) -> str:
    t = dt.datetime.fromtimestamp(ns // 1_000_000_000, tz=dt.UTC)
    return f"{t:%Y-%m-%d %H:%M:%S}.{(ns // 1_000_000) % 1000:03d}Z"


class Renderer:
    def __init__(self, symbols: SymbolTable) -> None:
        self.symbols = symbols

    def px(self, symbol: str, value: int) -> str:
        if symbol in self.symbols:
            return self.symbols[symbol].fmt_price(value)
        return str(value)

    def qty(self, symbol: str, value: int) -> str:
        if symbol in self.symbols:
            return self.symbols[symbol].fmt_qty(value)
        return str(value)

    def fee(self, symbol: str, value: int) -> str:
        if symbol in self.symbols:
            return format_fixed(value, self.symbols[symbol].notional_scale())
        return str(value)

    def fields(self, b: events._Body) -> str:  # noqa: C901 - one branch per event type is the point
        if isinstance(b, (events.BookSnapshot, events.BookDelta)):
            bids, asks = events.unpack_levels(b.bids), events.unpack_levels(b.asks)
            ids = f"id={b.update_id}" if isinstance(b, events.BookSnapshot) else f"ids={b.first_id}..{b.last_id}"
            top = ""
            if len(bids) and len(asks):
                top = f" top {self.px(b.symbol, int(bids[0, 0]))} / {self.px(b.symbol, int(asks[0, 0]))}"
            return f"{b.symbol} {ids} bids={len(bids)} asks={len(asks)}{top}"
        if isinstance(b, events.Trade):
            side = "SELL" if b.buyer_maker else "BUY"
            return f"{b.symbol} #{b.trade_id} {side} {self.qty(b.symbol, b.qty)} @ {self.px(b.symbol, b.price)}"
        if isinstance(b, events.BestBidOffer):
            s = b.symbol
            return (
                f"{s} {self.qty(s, b.bid_qty)} @ {self.px(s, b.bid_px)} / "
                f"{self.qty(s, b.ask_qty)} @ {self.px(s, b.ask_px)}"
            )
        if isinstance(b, (events.OrderIntent, events.RiskApproved, events.ChildOrder)):
            s = b.symbol
            oid = b.child_id if isinstance(b, events.ChildOrder) else b.order_id
            extra = f" venue={b.venue} algo={b.algo}" if isinstance(b, events.ChildOrder) else ""
            px = "MKT" if b.price == 0 else self.px(s, b.price)
            po = " post-only" if b.post_only else ""
            return (
                f"{s} {oid} {SIDE.get(b.side, b.side)} {self.qty(s, b.qty)} @ {px} {TIF.get(b.tif, b.tif)}{po}{extra}"
            )
        if isinstance(b, events.OrderFill):
            s = b.symbol
            return (
                f"{s} {b.child_id} {SIDE.get(b.side, b.side)} {self.qty(s, b.qty)} @ {self.px(s, b.price)} "
                f"leaves={self.qty(s, b.leaves_qty)} fee={self.fee(s, b.fee)} venue={b.venue}"
            )
        if isinstance(b, events.StateHash):
            return f"{b.service} covers={b.covers_seq} hash={b.hash:016x}"
        if isinstance(b, events.Heartbeat):
            return f"{b.service} {b.state} last_seq={b.last_seq} " + " ".join(
                f"{k}={v}" for k, v in sorted(b.counters.items())
            )
        return " ".join(f"{k}={v}" for k, v in msgspec.structs.asdict(b).items() if k != "kind")

    def line(self, ev: events.Sequenced) -> str:
        name = type(ev.body).__name__
        return f"{ev.seq:>10} {fmt_time(ev.event_ns)} {name:<15} {self.fields(ev.body)}  [{ev.source}#{ev.source_seq}]"


def to_jsonable(ev: events.Sequenced) -> dict[str, Any]:
    body = msgspec.structs.asdict(ev.body)
    body.pop("kind", None)
    for side in ("bids", "asks"):
        if side in body:
            body[side] = events.unpack_levels(body[side]).tolist()
    return {
        "seq": ev.seq,
        "epoch": ev.epoch,
        "lamport": ev.lamport,
        "source": ev.source,
        "source_seq": ev.source_seq,
        "key": ev.key,
        "event_ns": ev.event_ns,
        "recv_ns": ev.recv_ns,
        "type": type(ev.body).__name__,
        "body": body,
    }
