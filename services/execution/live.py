"""The execution shell for a live venue: the only place that calls Binance.

The core (core.py + livevenue.py) decides; this shell performs. Rules:

* Only live. Actions queued while the shell is recovering (replaying the log
  after a restart) are never performed as such: at the moment it goes live
  the shell looks at what the log left open and does only what is still
  owed (below). A replay through the verifier performs nothing at all.
* What the venue says is sequenced. Every report the adapter returns (REST
  answers, queries, the user-data stream) is sent through a producer of its
  own whose source is the venue name, so the core applies it as a fact and a
  replay needs no venue.
* A durable table of sent child ids (`<run>/execution/sent-<venue>.log`,
  appended and fsync'd *before* each POST). On going live, a child order the
  log shows as `new` (no venue answer sequenced) is
  - in the table: maybe at the venue. Asked with `resend=True`: the adapter
    looks it up by client order id first and reports what exists; it is
    sent only if the venue never saw it.
  - not in the table: never sent. Sent now if it is at most
    `execution.late_submit_ms` old on the sequencer's clock; otherwise
    rejected locally as stale (a quote computed seconds ago is not a quote).
  Every open order is re-tracked in the adapter with what the log already
  holds (ack, venue order id, filled qty, trade ids) and queried, so fills
  that happened while the process was down are reported once, and a cancel
  or a risk CancelAll the log asked for while the shell was down is sent.
* An ambiguous answer (the POST timed out or failed with 5xx, and the lookup
  failed too) is not a reject: the order may be working at the venue. It is
  sequenced as a Correction `status_unknown`, the order stays `new`, the
  adapter keeps looking it up, and what it finds is reported (an ack and
  fills, or -- once the request can no longer land, recvWindow past -- an
  OrderRejected `NEVER_ARRIVED`).
* Reconcile: the core asks for a venue snapshot (open orders, balances);
  the shell sequences what the venue says as a VenueSnapshot and the core
  compares it with the log (Corrections, cancelling orders the log does not
  know).

REST calls are made on the service's loop (a request blocks it for its
round trip, bounded by the adapter's timeout); the user-data stream is read
by the adapter's own thread and drained on each turn of the loop.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import zmq

from common import events
from common.config import MeshConfig
from common.core import Core
from common.producer import Producer
from common.shell import CoreService
from services.execution.binance import BinanceAdapter, BinanceConfig, CancelFailed, Credentials
from services.execution.core import ExecutionCore
from services.execution.orders import ACKED, NEW, PARTIALLY_FILLED, Order

log = logging.getLogger("execution.live")
MS = 1_000_000


class SentTable:
    """Child ids handed to the venue, one per line, fsync'd before the request goes out."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.ids: set[str] = set()
        if path.exists():
            # A torn last line (crash mid-write) was never followed by a request.
            lines = path.read_bytes().split(b"\n")
            self.ids = {ln.decode() for ln in lines[:-1] if ln}
        self._fh = open(path, "ab")  # noqa: SIM115 - held open for the life of the shell

    def add(self, child_id: str) -> None:
        if child_id in self.ids:
            return
        self._fh.write(child_id.encode() + b"\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.ids.add(child_id)

    def __contains__(self, child_id: object) -> bool:
        return child_id in self.ids

    def close(self) -> None:
        self._fh.close()


def adapter_for(cfg: MeshConfig, symbols: Any) -> BinanceAdapter:
    ec = cfg.execution
    key_file = str(cfg.resolve(ec.binance_key_file)) if ec.binance_key_file else ""
    bc = BinanceConfig(
        rest_base=ec.binance_rest_url,
        ws_base=ec.binance_ws_url,
        venue=ec.venue,
        api_key_file=key_file,
        recv_window_ms=ec.binance_recv_window_ms,
    )
    return BinanceAdapter(bc, Credentials.load(key_file), symbols)


def child_of(o: Order) -> events.ChildOrder:
    return events.ChildOrder(o.parent_id, o.child_id, o.venue, o.symbol, o.side, o.price, o.qty, o.tif, o.post_only, "")


class LiveExecution(CoreService):
    def __init__(self, cfg: MeshConfig, core: Core, ctx: zmq.Context | None = None, **kw: Any) -> None:
        assert isinstance(core, ExecutionCore) and core.live is not None
        self.live = core.live
        self.venue = core.live.name
        self.adapter = adapter_for(cfg, core.symbols)  # credentials problems surface here, before any socket
        super().__init__(cfg, core, ctx, **kw)
        self.exec_core = core
        self.venue_producer = Producer(cfg, self.venue, "ctl", ctx=self.ctx, own_sub=False)
        self.extra_producers.append(self.venue_producer)
        self.sent = SentTable(cfg.run_dir / "execution" / f"sent-{self.venue}.log")
        self._n = 0
        self._owed: list[tuple[Any, ...]] = []
        self._unknown: dict[str, str] = {}  # child id -> symbol, outcome not known yet

    # ------------------------------------------------------------ event loop
    def on_event(self, seq: int, raw: bytes) -> None:
        super().on_event(seq, raw)  # may go live inside (the last recovery event)
        actions = self.exec_core.take_actions()
        if self.state == "live" and actions:
            self._perform(actions)
        elif actions:
            # While recovering, actions are history; cancels among them may still be owed
            # (_settle_after_restart sends them again: a cancel of a gone order only reports it gone).
            self._owed += [a for a in actions if a[0] in ("cancel", "cancel_all")]

    def on_idle(self) -> None:
        self._publish(self.adapter.poll_user_stream())
        for child_id, symbol in list(self._unknown.items()):
            status = self.adapter.status(child_id)
            if status == "unknown":
                continue
            del self._unknown[child_id]
            if status == "never_arrived":
                self._publish(
                    [
                        events.OrderRejected(
                            self.venue, child_id, symbol, "NEVER_ARRIVED:not at the venue after its recvWindow"
                        )
                    ]
                )
        for k, v in self.adapter.counters().items():
            self.counters[f"{self.venue}:{k}"] = v

    def _announce_live(self) -> None:
        self.adapter.start_user_stream()
        self._settle_after_restart()
        super()._announce_live()  # sequences the reconcile request -> a VenueSnapshot

    def _settle_after_restart(self) -> None:
        now_ns = self.live.clock_ns
        live_trades = self.live.trades
        for o in self.exec_core.orders.open_orders():
            if o.venue != self.venue:
                continue
            if o.state == NEW and o.child_id not in self.sent:
                age_ms = (now_ns - o.created_ns) // MS
                if age_ms > self.cfg.execution.late_submit_ms:
                    self._publish(
                        [
                            events.OrderRejected(
                                self.venue, o.child_id, o.symbol, f"LOCAL:stale_on_recovery:{age_ms}ms_old_never_sent"
                            )
                        ]
                    )
                else:
                    self._submit(child_of(o), resend=False)
                continue
            if o.state in (ACKED, PARTIALLY_FILLED):
                self.adapter.restore(
                    o.child_id,
                    o.symbol,
                    o.side,
                    o.qty,
                    acked=True,
                    venue_order_id=o.venue_order_id,
                    filled=o.filled,
                    trade_ids=live_trades.get(o.child_id, []),
                )
            # Sent (or acked) before the restart: look it up, report what is new, send only if never seen.
            self._publish(self.adapter.submit(child_of(o), key=o.child_id, resend=True))
        owed, self._owed = self._owed, []
        all_syms = sorted({a[1] for a in owed if a[0] == "cancel_all"})
        ids = sorted(
            {
                a[1]
                for a in owed
                if a[0] == "cancel"
                and (o := self.exec_core.orders.get(a[1])) is not None
                and o.is_open
                and o.symbol not in all_syms
            }
        )
        self._perform([("cancel_all", s) for s in all_syms])
        self._perform([("cancel", cid, self.exec_core.orders.orders[cid].symbol) for cid in ids])

    # ------------------------------------------------------------ actions
    def _perform(self, actions: list[tuple[Any, ...]]) -> None:
        for act in actions:
            kind = act[0]
            if kind == "submit":
                self._submit(act[1], resend=False)
            elif kind == "cancel":
                self._publish(self.adapter.cancel(act[1], act[2]))
            elif kind == "cancel_all":
                self._publish(self.adapter.cancel_all(act[1]))
            elif kind == "query":
                o = self.exec_core.orders.get(act[1])
                if o is not None:
                    self._publish(self.adapter.submit(child_of(o), key=o.child_id, resend=True))
            elif kind == "snapshot":
                self._publish([self._snapshot()])
            elif kind == "cancel_foreign":
                done, reason = self.adapter.cancel_foreign(act[1], act[2])
                self._publish(
                    [
                        events.Correction(
                            self.name,
                            "foreign_order_cancelled" if done else "foreign_cancel_failed",
                            self.venue,
                            act[2],
                            act[1],
                            reason,
                        )
                    ]
                )
            else:
                log.error("unknown live action %r ignored", kind)

    def _submit(self, child: events.ChildOrder, resend: bool) -> None:
        if child.child_id in self.sent and not resend:
            resend = True  # this table says it went out once: never POST it blind again
        self.sent.add(child.child_id)
        self._publish(self.adapter.submit(child, key=child.child_id, resend=resend))

    def _snapshot(self) -> events.VenueSnapshot:
        syms = sorted(
            set(self.cfg.feed.symbols)
            | {o.symbol for o in self.exec_core.orders.open_orders() if o.venue == self.venue}
        )
        rows: list[tuple[str, str, int, int, int, int]] = []
        for sym in syms:
            self.adapter.last_error = ""
            got = self.adapter.open_orders(sym)
            if self.adapter.last_error:
                return events.VenueSnapshot(self.venue, [], {}, False, f"open orders {sym}: {self.adapter.last_error}")
            rows += [
                (
                    str(o["client_order_id"]),
                    str(o["symbol"]),
                    int(o["side"]),
                    int(o["price"]),
                    int(o["qty"]),
                    int(o["filled"]),
                )
                for o in got
            ]
        self.adapter.last_error = ""
        balances = self.adapter.balances(include_locked=True)
        if self.adapter.last_error:
            return events.VenueSnapshot(self.venue, [], {}, False, f"balances: {self.adapter.last_error}")
        return events.VenueSnapshot(self.venue, sorted(rows), dict(sorted(balances.items())), True, "")

    def _publish(self, bodies: list[Any]) -> None:
        for body in bodies:
            if isinstance(body, events.OrderRejected) and body.reason.startswith("STATUS_UNKNOWN"):
                self._unknown[body.child_id] = body.symbol
                body = events.Correction(
                    self.name, "status_unknown", self.venue, body.symbol, body.child_id, body.reason
                )
            elif isinstance(body, CancelFailed):
                body = events.CancelRejected(body.venue, body.child_id, body.symbol, f"{body.code}:{body.reason}")
            self._n += 1
            key = f"{self.venue}:{os.getpid()}:{self._n}:{type(body).__name__}:{getattr(body, 'child_id', '')}"
            self.venue_producer.send(body, time.time_ns(), key)

    def close(self) -> None:
        try:
            self.adapter.close()
        finally:
            self.sent.close()
            super().close()
