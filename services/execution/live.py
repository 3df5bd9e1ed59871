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

Threads. Every call into the adapter (REST requests, the sent table's
fsync, draining the user-data stream, following up unknown outcomes) is made
by one venue thread, in the order the core asked, so a request that takes
its whole timeout never stalls the service's loop: it keeps following the
stream, applying events, publishing hashes and heartbeats. The loop hands the
thread tasks built from what the core knows at that moment (never the live
core itself, which only the loop touches) and sends what comes back: ZeroMQ
sockets belong to the loop's thread. Actions still reach the venue one at a
time, in order: a cancel never overtakes the submit it cancels. A submit
still waiting when its cancel comes is not sent at all, and one that waited
longer than `execution.max_submit_wait_ms` is rejected locally (`Unsent`). The
user-data stream is read by the adapter's own thread, as before.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
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


Task = Callable[[], None]


class VenueThread:
    """Runs tasks against the venue one at a time, in order, off the service's loop.

    A task talks to the adapter and hands the venue's answers to `emit`, which
    only queues them; the loop sends them (`drain`). Between tasks, and at
    least every `idle_s`, the thread runs `idle` (drain the user-data stream,
    follow up unknown outcomes). A task that raises is logged and counted; the
    thread goes on with the next one.
    """

    def __init__(self, name: str, idle: Task, idle_s: float = 0.05) -> None:
        self._tasks: queue.Queue[Task | None] = queue.Queue()
        self._out: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._idle = idle
        self._idle_s = idle_s
        self.errors = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, task: Task) -> None:
        self._tasks.put(task)

    def emit(self, bodies: list[Any]) -> None:
        for b in bodies:
            self._out.put(b)

    def drain(self) -> list[Any]:
        out: list[Any] = []
        while True:
            try:
                out.append(self._out.get_nowait())
            except queue.Empty:
                return out

    def pending(self) -> int:
        return self._tasks.qsize()

    def stop(self, timeout_s: float) -> bool:
        """Finish the queued tasks (up to `timeout_s`) and stop; True if the thread ended."""
        self._tasks.put(None)
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _run(self) -> None:
        last_idle = time.monotonic()
        while True:
            try:
                task = self._tasks.get(timeout=self._idle_s)
            except queue.Empty:
                task = self._idle
            if task is None:
                return
            try:
                task()
            except Exception:
                self.errors += 1
                log.exception("venue task failed; going on with the next")
            # Idle work (the user-data stream: fills) also runs under a backlog of tasks, at
            # least every idle_s: waiting for an empty queue held a fill back for as long as
            # the strategy's requotes kept the queue busy (37 s in the Binance mesh test).
            if task is self._idle:
                last_idle = time.monotonic()
            elif self._tasks.empty() or time.monotonic() - last_idle >= self._idle_s:
                self._safe_idle()
                last_idle = time.monotonic()

    def _safe_idle(self) -> None:
        try:
            self._idle()
        except Exception:
            self.errors += 1
            log.exception("venue idle work failed; going on")


class Unsent:
    """Submits handed to the venue thread and not yet begun, shared by the loop and that thread.

    Requests go out one at a time, so when the strategy requotes faster than the venue
    answers, submits wait behind each other. Two rules keep what waits from going out
    pointlessly or late:
    * a cancel (or a cancel-all on its symbol) that comes while the submit still waits
      elides both: nothing is sent, and the order is reported cancelled with reason
      `LOCAL:cancelled_before_sent` (as the simulated exchange reports a cancel that
      overtakes its order in flight);
    * a submit that has waited longer than `execution.max_submit_wait_ms` is not sent:
      it is reported rejected as `LOCAL:stale_in_queue:<ms>ms` (a quote computed seconds
      ago is not a quote).
    Whoever takes the lock first wins: a cancel that comes once the submit has begun is
    sent as usual, after it. An order reported here is never sent afterwards, even if
    its submit was queued twice (going live can queue the last replayed event's submit
    both as owed and as that event's own action), and a later cancel of it needs no
    request."""

    SEND, ELIDED, STALE, REPORTED = "send", "elided", "stale", "reported"
    KEEP_REPORTED = 10_000  # ids remembered: once its report is sequenced the core asks nothing more of one

    def __init__(self, max_wait_ms: int) -> None:
        self.max_wait_ms = max_wait_ms
        self._lock = threading.Lock()
        self._waiting: dict[str, tuple[str, float]] = {}  # child id -> (symbol, monotonic time queued)
        self._elided: set[str] = set()
        self._reported: dict[str, None] = {}  # ids reported here (insertion-ordered, bounded)

    def queued(self, child_id: str, symbol: str) -> bool:
        """Note a submit handed to the venue thread; False if that id already waits or was
        reported here (the caller then drops this copy)."""
        with self._lock:
            if child_id in self._waiting or child_id in self._reported:
                return False
            self._waiting[child_id] = (symbol, time.monotonic())
            return True

    def cancel(self, child_id: str) -> bool:
        """True if no request is needed: the submit still waits (it will not be sent) or
        the order was already reported here."""
        with self._lock:
            if child_id in self._waiting:
                self._elided.add(child_id)
                return True
            return child_id in self._reported

    def cancel_symbol(self, symbol: str) -> None:
        with self._lock:
            self._elided.update(cid for cid, (sym, _) in self._waiting.items() if sym == symbol)

    def begin(self, child_id: str) -> tuple[str, int]:
        """What to do with a submit the venue thread is about to perform, and the whole
        milliseconds it waited: SEND, or ELIDED / STALE (report it: it is remembered as
        reported) or REPORTED (already reported: do nothing)."""
        with self._lock:
            if child_id in self._reported:
                return self.REPORTED, 0
            _, t = self._waiting.pop(child_id, ("", time.monotonic()))
            waited_ms = int((time.monotonic() - t) * 1000)
            if child_id in self._elided:
                self._elided.discard(child_id)
                verdict = self.ELIDED
            elif self.max_wait_ms and waited_ms > self.max_wait_ms:
                verdict = self.STALE
            else:
                return self.SEND, waited_ms
            self._reported[child_id] = None
            if len(self._reported) > self.KEEP_REPORTED:
                del self._reported[next(iter(self._reported))]
            return verdict, waited_ms

    def __len__(self) -> int:
        with self._lock:
            return len(self._waiting)


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
        self.sent = SentTable(cfg.run_dir / "execution" / f"sent-{self.venue}.log")  # venue thread only
        self._n = 0
        self._owed: list[tuple[Any, ...]] = []
        self._unknown: dict[str, str] = {}  # venue thread only: child id -> symbol, outcome not known yet
        self._stream_on = False
        self._adapter_counters: dict[str, int] = {}
        self.unsent = Unsent(cfg.execution.max_submit_wait_ms)
        self._elided = 0  # venue thread only (the loop copies them into its counters)
        self._stale = 0
        self.worker = VenueThread(f"venue-{self.venue}", self._venue_idle)

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
        self._send_venue(self.worker.drain())
        # The adapter's counters share its HTTP lock, held for a request's round trip: the
        # venue thread copies them between tasks, the loop reads the copy.
        for k, v in self._adapter_counters.items():
            self.counters[f"{self.venue}:{k}"] = v
        self.counters[f"{self.venue}:queued_tasks"] = self.worker.pending()
        self.counters[f"{self.venue}:task_errors"] = self.worker.errors
        self.counters[f"{self.venue}:submits_waiting"] = len(self.unsent)
        self.counters[f"{self.venue}:submits_cancelled_before_sent"] = self._elided
        self.counters[f"{self.venue}:submits_stale_in_queue"] = self._stale

    def _venue_idle(self) -> None:
        """Venue thread, between tasks: the user-data stream, and orders whose outcome is unknown."""
        self._adapter_counters = self.adapter.counters()
        if not self._stream_on:
            return
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

    def _announce_live(self) -> None:
        self.worker.submit(self._start_stream)
        self._settle_after_restart()
        super()._announce_live()  # sequences the reconcile request -> a VenueSnapshot

    def _start_stream(self) -> None:
        self.adapter.start_user_stream()
        self._stream_on = True

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
                    self._perform([("submit", child_of(o))])
                continue
            if o.state in (ACKED, PARTIALLY_FILLED):
                restore = (o.child_id, o.symbol, o.side, o.qty, o.venue_order_id, o.filled)
                trade_ids = list(live_trades.get(o.child_id, []))
                self.worker.submit(lambda r=restore, t=trade_ids: self._restore(*r, t))
            # Sent (or acked) before the restart: look it up, report what is new, send only if never seen.
            self._perform([("resend", child_of(o))])
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
        """Loop thread: queue each action for the venue thread, with what it needs from the core now."""
        for act in actions:
            kind = act[0]
            if kind == "query":
                o = self.exec_core.orders.get(act[1])
                if o is None:
                    continue
                act = ("resend", child_of(o))
            elif kind == "snapshot":
                act = ("snapshot", self._snapshot_symbols())
            elif kind == "submit" and not self.unsent.queued(act[1].child_id, act[1].symbol):
                continue  # queued already, or already reported here (Unsent)
            elif kind == "cancel" and self.unsent.cancel(act[1]):
                continue  # its submit has not begun: it will not be sent (Unsent)
            elif kind == "cancel_all":
                self.unsent.cancel_symbol(act[1])
            self.worker.submit(lambda a=act: self._do(a))

    def _restore(
        self, child_id: str, symbol: str, side: int, qty: int, venue_order_id: str, filled: int, trade_ids: list[str]
    ) -> None:
        self.adapter.restore(
            child_id, symbol, side, qty, acked=True, venue_order_id=venue_order_id, filled=filled, trade_ids=trade_ids
        )

    def _do(self, act: tuple[Any, ...]) -> None:
        """Venue thread: perform one action, queue what the venue said."""
        kind = act[0]
        if kind == "submit":
            child = act[1]
            verdict, waited_ms = self.unsent.begin(child.child_id)
            if verdict == Unsent.ELIDED:
                self._elided += 1
                why = "LOCAL:cancelled_before_sent"
                self._publish([events.OrderCancelled(self.venue, child.child_id, child.symbol, child.qty, why)])
            elif verdict == Unsent.STALE:
                self._stale += 1
                why = f"LOCAL:stale_in_queue:{waited_ms}ms"
                self._publish([events.OrderRejected(self.venue, child.child_id, child.symbol, why)])
            elif verdict == Unsent.SEND:
                self._submit(child, resend=False)
        elif kind == "resend":
            self._submit(act[1], resend=True)
        elif kind == "cancel":
            self._publish(self.adapter.cancel(act[1], act[2]))
        elif kind == "cancel_all":
            self._publish(self.adapter.cancel_all(act[1]))
        elif kind == "snapshot":
            self._publish([self._snapshot(act[1])])
        elif kind == "cancel_foreign":
            done, reason = self.adapter.cancel_foreign(act[1], act[2])
            what = "foreign_order_cancelled" if done else "foreign_cancel_failed"
            self._publish([events.Correction(self.name, what, self.venue, act[2], act[1], reason)])
        else:
            log.error("unknown live action %r ignored", kind)

    def _submit(self, child: events.ChildOrder, resend: bool) -> None:
        if child.child_id in self.sent and not resend:
            resend = True  # this table says it went out once: never POST it blind again
        self.sent.add(child.child_id)
        self._publish(self.adapter.submit(child, key=child.child_id, resend=resend))

    def _snapshot_symbols(self) -> list[str]:
        return sorted(
            set(self.cfg.feed.symbols)
            | {o.symbol for o in self.exec_core.orders.open_orders() if o.venue == self.venue}
        )

    def _snapshot(self, syms: list[str]) -> events.VenueSnapshot:
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
        """Venue thread: translate the adapter's answers into events and queue them for the loop."""
        out = []
        for body in bodies:
            if isinstance(body, events.OrderRejected) and body.reason.startswith("STATUS_UNKNOWN"):
                self._unknown[body.child_id] = body.symbol
                body = events.Correction(
                    self.name, "status_unknown", self.venue, body.symbol, body.child_id, body.reason
                )
            elif isinstance(body, CancelFailed):
                body = events.CancelRejected(body.venue, body.child_id, body.symbol, f"{body.code}:{body.reason}")
            out.append(body)
        self.worker.emit(out)

    def _send_venue(self, bodies: list[Any]) -> None:
        """Loop thread: sequence the venue's answers under the venue's own source."""
        for body in bodies:
            self._n += 1
            key = f"{self.venue}:{os.getpid()}:{self._n}:{type(body).__name__}:{getattr(body, 'child_id', '')}"
            self.venue_producer.send(body, time.time_ns(), key)

    def close(self) -> None:
        try:
            # Requests already handed to the venue thread finish, and what they learned is sent,
            # before the producers flush (a stop never loses a fill the venue already reported).
            if not self.worker.stop(timeout_s=2 * self.adapter.cfg.timeout_s + 5):
                log.error("venue thread still busy at stop; its last answers are learned after the restart")
            self._send_venue(self.worker.drain())
            self.adapter.close()
        finally:
            self.sent.close()
            super().close()
