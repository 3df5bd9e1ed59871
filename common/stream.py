"""Following the sequenced stream without ever missing or doubling an event.

PUB/SUB drops silently at the high-water mark, so a follower never trusts it:
it tracks `expected = last + 1`; a lower seq is a duplicate and is dropped, a
higher one is a gap, which it fills from a repair endpoint (the logger, or the
sequencer's journal) before handing the live event on. When the stream goes
quiet it asks the sequencer for its head, so a lost tail is noticed too.

A follower started at seq N subscribes first and then repairs everything
from N up to the first live event: that is the Clone pattern's catch-up,
with no special case.
"""

from __future__ import annotations

import logging
import time

import zmq

from common import sockets
from common.config import MeshConfig
from common.events import FrameError, SequencedHead, decode_head, split_batch
from common.rpc import RpcClient

log = logging.getLogger(__name__)

REPAIR_CHUNK = 2000


class FellBehind(RuntimeError):
    """The follower cannot keep up; the process should exit and be restarted into catch-up."""


class StreamFollower:
    def __init__(
        self,
        ctx: zmq.Context,
        cfg: MeshConfig,
        next_seq: int,
        repair_from: tuple[str, ...] = ("logger_ctl", "sequencer_ctl"),
        max_pending: int = 200_000,
    ) -> None:
        self.cfg = cfg
        self.expected = next_seq
        self.sock = sockets.sub(ctx, cfg, "stream")
        self._repair = {name: RpcClient(ctx, cfg, name) for name in repair_from}
        self._head_rpc = self._repair.get("sequencer_ctl") or RpcClient(ctx, cfg, "sequencer_ctl")
        self._pending: dict[int, bytes] = {}
        self.max_pending = max_pending
        self.last_event_mono = time.monotonic()
        self.idle_probe_s = cfg.logger.idle_probe_ms / 1000
        self.timeout_ms = cfg.logger.repair_timeout_ms
        self.counters = {"duplicates": 0, "gaps": 0, "repaired": 0, "malformed": 0}

    # -- receiving
    def drain(self, max_frames: int = 256) -> list[tuple[int, bytes]]:
        """Everything available now, in order, contiguous from `expected`."""
        out: list[tuple[int, bytes]] = []
        for _ in range(max_frames):
            try:
                frame = self.sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            self._accept_frame(frame, out)
        if out:
            self.last_event_mono = time.monotonic()
        elif time.monotonic() - self.last_event_mono > self.idle_probe_s:
            self._probe_head(out)
            self.last_event_mono = time.monotonic()
        return out

    def poll(self, timeout_ms: int) -> list[tuple[int, bytes]]:
        if self.sock.poll(timeout_ms, zmq.POLLIN):
            return self.drain()
        return self.drain(0)

    def _accept_frame(self, frame: bytes, out: list[tuple[int, bytes]]) -> None:
        try:
            raws = split_batch(frame)
        except FrameError as exc:
            self.counters["malformed"] += 1
            log.error("dropped malformed stream frame: %s", exc.reason)
            return
        for raw in raws:
            try:
                head = decode_head(raw)
            except FrameError as exc:
                self.counters["malformed"] += 1
                log.error("dropped malformed stream event: %s", exc.reason)
                continue
            self._accept(head, raw, out)

    def _accept(self, head: SequencedHead, raw: bytes, out: list[tuple[int, bytes]]) -> None:
        seq = head.seq
        if seq < self.expected:
            self.counters["duplicates"] += 1
            return
        if seq > self.expected:
            self._pending[seq] = raw
            if not self._fill_gap(seq - 1, out):
                if len(self._pending) > self.max_pending:
                    raise FellBehind(f"{len(self._pending)} events pending behind a gap at {self.expected}")
                return
        else:
            out.append((seq, raw))
            self.expected = seq + 1
        self._release_pending(out)

    def _release_pending(self, out: list[tuple[int, bytes]]) -> None:
        while self.expected in self._pending:
            out.append((self.expected, self._pending.pop(self.expected)))
            self.expected += 1

    # -- repair
    def _fill_gap(self, upto: int, out: list[tuple[int, bytes]]) -> bool:
        """Fetch expected..upto from the repair endpoints; True when the hole is closed."""
        self.counters["gaps"] += 1
        while self.expected <= upto:
            got = self._fetch(self.expected, upto)
            if not got:
                log.warning("gap %d..%d not yet repairable; will retry", self.expected, upto)
                return False
            before = self.expected
            for seq, raw in got:
                if seq == self.expected:
                    out.append((seq, raw))
                    self.expected += 1
                    self.counters["repaired"] += 1
            if self.expected == before:
                log.error("repair of %d..%d returned no usable record", self.expected, upto)
                return False
        self._pending = {s: r for s, r in self._pending.items() if s >= self.expected}
        return True

    def _fetch(self, lo: int, hi: int) -> list[tuple[int, bytes]]:
        for name, rpc in self._repair.items():
            reply = rpc.call("range", lo, hi, REPAIR_CHUNK, timeout_ms=self.timeout_ms)
            if reply and reply[0]:
                return [(decode_head(r).seq, bytes(r)) for r in reply[0]]
            if reply is None:
                log.debug("repair source %s did not answer", name)
        return []

    def _probe_head(self, out: list[tuple[int, bytes]]) -> None:
        reply = self._head_rpc.call("hello", "", timeout_ms=self.timeout_ms)
        if reply is None:
            return
        head = int(reply[1])
        if head >= self.expected:
            if self._fill_gap(head, out):
                self._release_pending(out)

    def close(self) -> None:
        self.sock.close(linger=0)
        for rpc in self._repair.values():
            rpc.close()
        if self._head_rpc not in self._repair.values():
            self._head_rpc.close()
