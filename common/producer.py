"""The producer side of exactly-once ingest.

Each producer numbers its events (source, source_seq) and keeps every one the
stream has not yet confirmed. Seeing its own event come back sequenced
confirms it and everything before it (the sequencer accepts a source's
events only in order). Whatever stays unconfirmed past `ingest.resend_ms`, or
when a new sequencer epoch appears, is sent again; the sequencer drops what
it already has. Before a timeout resend the producer asks the sequencer
directly (`hello`) what it has accepted: a SUB socket can miss the
confirmation (it joins the PUB asynchronously, and a dropped duplicate is
never republished), and a quiet producer would otherwise wait forever for an
echo that already went by. A restarted PULL side loses what was in flight, so this loop,
not the socket, is what makes ingest lossless.

On start the producer asks the sequencer for the last source seq it accepted
from this source and continues after it, so numbering survives a restart of
the producer too.
"""

from __future__ import annotations

import collections
import logging
import time

import zmq

from common import events, sockets
from common.config import MeshConfig
from common.rpc import RpcClient

log = logging.getLogger(__name__)
BATCH = 64  # ingest frames per zmq message when the caller says more are coming


class SequencerUnavailable(RuntimeError):
    pass


class Producer:
    def __init__(
        self,
        cfg: MeshConfig,
        source: str,
        channel: str = "ctl",
        ctx: zmq.Context | None = None,
        own_sub: bool = True,
        hello_deadline_s: float = 30.0,
    ) -> None:
        if channel not in ("md", "ctl"):
            raise ValueError(f"channel must be 'md' or 'ctl', not {channel!r}")
        self.cfg = cfg
        self.source = source
        self.ctx = ctx or zmq.Context.instance()
        self.max_inflight = cfg.ingest.max_inflight
        self.resend_ns = cfg.ingest.resend_ms * 1_000_000
        # Subscribe before asking where we are, so no confirmation is missed.
        self.sub = sockets.sub(self.ctx, cfg, "stream") if own_sub else None
        self.push = sockets.push(self.ctx, cfg, "ingest_md" if channel == "md" else "ingest_ctl")
        try:
            self.start_seq, self.head_seq, self.epoch = self._hello(hello_deadline_s)
        except SequencerUnavailable:
            self.push.close(linger=0)
            if self.sub is not None:
                self.sub.close(linger=0)
            raise
        self.seq = self.start_seq
        self.confirmed = self.start_seq
        self.lamport = 0
        self._unconfirmed: collections.deque[tuple[int, bytes]] = collections.deque()
        self._held: list[bytes] = []
        # Producers in this process without a subscription of their own, fed
        # from this one's (one SUB socket per process is enough).
        self.observers: list[Producer] = []
        self._progress_ns = time.monotonic_ns()  # last time confirmations advanced
        self.counters = {"sent": 0, "resent": 0, "confirmed": 0, "confirmed_by_ask": 0}
        self._rpc: RpcClient | None = None

    def _hello(self, deadline_s: float) -> tuple[int, int, int]:
        rpc = RpcClient(self.ctx, self.cfg, "sequencer_ctl")
        end = time.monotonic() + deadline_s
        try:
            while time.monotonic() < end:
                reply = rpc.call("hello", self.source, timeout_ms=self.cfg.ingest.hello_timeout_ms)
                if reply is not None:
                    return int(reply[0]), int(reply[1]), int(reply[2])
                log.info("%s: waiting for the sequencer", self.source)
        finally:
            rpc.close()
        raise SequencerUnavailable(f"sequencer did not answer within {deadline_s:.0f}s")

    @property
    def inflight(self) -> int:
        return len(self._unconfirmed)

    def send(self, body: events._Body, event_ns: int, key: str = "", more: bool = False) -> int:
        """Send one event; returns its source seq. Blocks (pumping) while the window is full.

        `more=True` says another event follows at once: the frame is held and
        goes out with the next ones as one batch (up to BATCH), which is what
        lets a burst through at several times the one-frame-per-event rate.
        Any call without it, and pump()/flush(), send what is held.
        """
        while len(self._unconfirmed) >= self.max_inflight:
            self.pump(timeout_ms=10)
        self.seq += 1
        self.lamport += 1
        frame = events.ingest(self.source, self.seq, self.lamport, key, event_ns, body)
        if not self._unconfirmed:
            self._progress_ns = time.monotonic_ns()
        self._unconfirmed.append((self.seq, frame))
        self._held.append(frame)
        if not more or len(self._held) >= BATCH:
            self._send_held()
        self.counters["sent"] += 1
        return self.seq

    def _send_held(self) -> None:
        held = self._held
        if not held:
            return
        self._held = []
        self._send(held[0] if len(held) == 1 else events.encode_batch(held))

    def _send(self, frame: bytes) -> None:
        while True:
            try:
                self.push.send(frame, zmq.NOBLOCK)
                return
            except zmq.Again:
                # The sequencer is gone or slow: keep confirmations flowing
                # (they may free the window) rather than block in zmq.
                self._pump_sub(10)

    def observe(self, head: events.SequencedHead, body: events._Body | None = None) -> None:
        """Feed one sequenced event seen on the stream (for services that follow it themselves)."""
        if head.lamport > self.lamport:
            self.lamport = head.lamport
        if head.source == self.source:
            self._confirm(head.source_seq)
        elif head.source == "sequencer" and isinstance(body, events.SequencerEpoch):
            self._confirm(body.sources.get(self.source, 0))
            self.resend_all("new sequencer epoch")

    def _confirm(self, upto: int) -> None:
        if upto <= self.confirmed:
            return
        self.counters["confirmed"] += upto - self.confirmed
        self._progress_ns = time.monotonic_ns()
        self.confirmed = upto
        q = self._unconfirmed
        while q and q[0][0] <= upto:
            q.popleft()

    def resend_all(self, why: str) -> None:
        if not self._unconfirmed:
            return
        log.info("%s: re-sending %d unconfirmed events (%s)", self.source, len(self._unconfirmed), why)
        self._held = []  # everything held is unconfirmed too, and goes out below in order
        frames = [frame for _seq, frame in self._unconfirmed]
        for i in range(0, len(frames), BATCH):
            chunk = frames[i : i + BATCH]
            self._send(chunk[0] if len(chunk) == 1 else events.encode_batch(chunk))
        self.counters["resent"] += len(self._unconfirmed)
        self._progress_ns = time.monotonic_ns()

    def _pump_sub(self, timeout_ms: int) -> None:
        if self.sub is None:
            return
        if timeout_ms and not self.sub.poll(timeout_ms, zmq.POLLIN):
            return
        for _ in range(1000):
            try:
                frame = self.sub.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                raws = events.split_batch(frame)
                for raw in raws:
                    head = events.decode_head(raw)
                    body = events.decode_sequenced(raw).body if head.source == "sequencer" else None
                    self.observe(head, body)
                    for other in self.observers:
                        other.observe(head, body)
            except events.FrameError as exc:
                log.error("%s: malformed stream frame ignored: %s", self.source, exc.reason)

    def pump(self, timeout_ms: int = 0) -> None:
        """Send what is held; process confirmations; re-send if the oldest unconfirmed event waited too long."""
        self._send_held()
        self._pump_sub(timeout_ms)
        if not self._unconfirmed:
            self._progress_ns = time.monotonic_ns()
        elif time.monotonic_ns() - self._progress_ns > self.resend_ns:
            self._confirm_from_sequencer()
            if self._unconfirmed:
                self.resend_all("confirmation timeout")
            else:
                self._progress_ns = time.monotonic_ns()

    def _confirm_from_sequencer(self) -> None:
        if self._rpc is None:
            self._rpc = RpcClient(self.ctx, self.cfg, "sequencer_ctl")
        reply = self._rpc.call("hello", self.source, timeout_ms=self.cfg.ingest.hello_timeout_ms)
        if reply is not None:
            self.counters["confirmed_by_ask"] += max(0, min(int(reply[0]), self.seq) - self.confirmed)
            self._confirm(min(int(reply[0]), self.seq))

    def flush(self, timeout_s: float) -> bool:
        end = time.monotonic() + timeout_s
        while self._unconfirmed and time.monotonic() < end:
            self.pump(timeout_ms=20)
        return not self._unconfirmed

    def close(self) -> None:
        self._send_held()
        if self._rpc is not None:
            self._rpc.close()
        self.push.close()
        if self.sub is not None:
            self.sub.close(linger=0)
