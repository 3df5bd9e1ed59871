"""The sequencer process: two PULL inputs, one journal, one PUB stream.

Loop: drain the control input first (orders never wait behind market data),
then market data, up to `batch_max` events; stamp them; append the batch to
the journal in one write; publish it as one frame. Every `clock_interval_ms`
a Clock event is sequenced (the engine's only time source and heartbeat).
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

import msgspec
import zmq

from common import eventlog, events, rpc, runtime, sockets
from common.config import MeshConfig
from common.metrics import METRICS
from services.sequencer.core import SequencerCore

log = logging.getLogger("sequencer")
CHECKPOINT = "sources.ckpt"
CHECKPOINT_EVERY_S = 5.0
MAX_RANGE = 5000


_FIXARRAY = range(0x90, 0xA0)
_ARRAY_HEADER = {0xDC: 3, 0xDD: 5}  # array16 / array32: marker + big-endian length


def is_batch(frame: bytes) -> bool:
    """A producer batch is a msgpack array of ingest arrays; a single ingest
    frame is an array whose first element is the codec version (an int)."""
    if len(frame) < 2:
        return False
    first = frame[0]
    header = 1 if first in _FIXARRAY else _ARRAY_HEADER.get(first, 0)
    if not header or len(frame) <= header:
        return False
    nxt = frame[header]
    return nxt in _FIXARRAY or nxt in _ARRAY_HEADER


def build_parser() -> argparse.ArgumentParser:
    return runtime.base_parser(
        "python -m services.sequencer",
        "Stamp every event of the mesh with epoch, global seq and Lamport time; journal, then publish.",
    )


def write_checkpoint(path: Path, seq: int, sources: dict[str, int]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(msgspec.msgpack.encode({"seq": seq, "sources": sources}))
    os.replace(tmp, path)


def recover_sources(journal: Path, ckpt: Path, last_seq: int) -> dict[str, int]:
    """Last accepted source seq per source: checkpoint, then the journal after it."""
    start, sources = 1, {}
    try:
        data = msgspec.msgpack.decode(ckpt.read_bytes())
        start, sources = int(data["seq"]) + 1, {str(k): int(v) for k, v in data["sources"].items()}
        if start - 1 > last_seq:  # the journal lost a torn tail the checkpoint had seen
            log.warning("checkpoint at %d is past the journal end %d; scanning the journal", start - 1, last_seq)
            start, sources = 1, {}
    except FileNotFoundError:
        pass
    except (msgspec.DecodeError, KeyError, TypeError, ValueError) as exc:
        log.warning("checkpoint %s unreadable (%s); scanning the whole journal", ckpt, exc)
        start, sources = 1, {}
    for _seq, payload in eventlog.read_range(journal, start):
        head = events.decode_head(payload)
        if head.source_seq > sources.get(head.source, 0):
            sources[head.source] = head.source_seq
    return sources


class Sequencer:
    def __init__(self, cfg: MeshConfig, ctx: zmq.Context) -> None:
        self.cfg = cfg
        sc = cfg.sequencer
        self.journal_dir = cfg.under_run(sc.journal_dir)
        self.ckpt = self.journal_dir / CHECKPOINT
        tail = eventlog.recover(self.journal_dir)
        if tail.truncated:
            log.warning("journal: truncated %s", tail.truncated)
        self.core = SequencerCore()
        if tail.last_payload is not None:
            head = events.decode_head(tail.last_payload)
            sources = recover_sources(self.journal_dir, self.ckpt, head.seq)
            self.core.restore(head.seq, head.epoch, head.lamport, sources)
        self.journal = eventlog.LogWriter(
            self.journal_dir, sc.segment_bytes, sc.fsync, sc.fsync_interval_ms, last_seq=self.core.last_seq
        )
        self.md = sockets.pull(ctx, cfg, "ingest_md")
        self.ctl = sockets.pull(ctx, cfg, "ingest_ctl")
        self.pub = sockets.pub(ctx, cfg, "stream")
        self.router = sockets.router(ctx, cfg, "sequencer_ctl")
        self.poller = zmq.Poller()
        for s in (self.ctl, self.md, self.router):
            self.poller.register(s, zmq.POLLIN)
        self.batch_max = sc.batch_max
        self.clock_ns = sc.clock_interval_ms * 1_000_000
        self.heartbeat_ns = sc.heartbeat_interval_ms * 1_000_000
        self._malformed_logged = 0
        log.info(
            "recovered: last seq %d, epoch %d, %d sources; journal %s",
            self.core.last_seq, self.core.epoch, len(self.core.sources), self.journal_dir,
        )

    # -- control requests
    def handle(self, op: str, args: list) -> list:  # type: ignore[type-arg]
        if op == "hello":
            return [self.core.sources.get(str(args[0]), 0), self.core.last_seq, self.core.epoch]
        if op == "range":
            lo, hi, max_n = int(args[0]), int(args[1]), min(int(args[2]), MAX_RANGE)
            out = []
            start = self.journal.locate(lo)
            for _seq, payload in eventlog.read_range(self.journal_dir, lo, min(hi, self.core.last_seq), start):
                out.append(payload)
                if len(out) >= max_n:
                    break
            return [out, self.core.last_seq]
        raise ValueError(f"unknown op {op!r}")

    # -- the loop
    def _take(self, sock: zmq.Socket, batch: list[bytes], now_ns: int) -> None:
        while len(batch) < self.batch_max:
            try:
                frame = sock.recv(zmq.NOBLOCK, copy=True)
            except zmq.Again:
                return
            if is_batch(frame):
                try:
                    frames = events.split_batch(frame)
                except events.FrameError as exc:
                    self.core.counters["malformed"] += 1
                    self._log_malformed(exc)
                    continue
            else:
                frames = [frame]
            for f in frames:
                try:
                    out = self.core.offer(f, now_ns)
                except events.FrameError as exc:
                    self._log_malformed(exc)
                    continue
                if out is not None:
                    batch.append(out)

    def _log_malformed(self, exc: events.FrameError) -> None:
        self._malformed_logged += 1
        n = self._malformed_logged
        if n <= 20 or n % 1000 == 0:
            log.warning("rejected malformed ingest frame #%d: %s", n, exc)

    def commit(self, batch: list[bytes]) -> None:
        if not batch:
            return
        first = self.core.last_seq - len(batch) + 1
        self.journal.append([(first + i, raw) for i, raw in enumerate(batch)])
        self.pub.send(events.encode_batch(batch))

    def heartbeat(self, now_ns: int) -> bytes:
        counters = dict(self.core.counters)
        counters["durable_seq"] = self.journal.durable_seq
        counters.update(METRICS.snapshot())
        return self.core.own(events.Heartbeat("sequencer", "live", self.core.last_seq, counters), now_ns)

    def run(self, stop: runtime.Shutdown) -> int:
        self.commit([self.core.epoch_event(time.time_ns())])
        next_clock = time.monotonic_ns() + self.clock_ns
        next_hb = time.monotonic_ns() + self.heartbeat_ns
        next_ckpt = time.monotonic() + CHECKPOINT_EVERY_S
        while not stop:
            wait_ms = max(0, (next_clock - time.monotonic_ns()) // 1_000_000)
            ready = dict(self.poller.poll(min(wait_ms, 100)))
            if self.router in ready:
                for _ in range(16):
                    if not self.router.poll(0, zmq.POLLIN):
                        break
                    rpc.serve_one(self.router, self.handle)
            now_ns = time.time_ns()
            t0 = time.perf_counter_ns()
            batch: list[bytes] = []
            self._take(self.ctl, batch, now_ns)
            self._take(self.md, batch, now_ns)
            mono = time.monotonic_ns()
            if mono >= next_clock:
                batch.append(self.core.own(events.Clock(self.core.last_seq), now_ns))
                next_clock = mono + self.clock_ns
            if mono >= next_hb:
                batch.append(self.heartbeat(now_ns))
                next_hb = mono + self.heartbeat_ns
            self.commit(batch)
            if batch:
                # Drain-to-publish time of the batch (decode, dedup, stamp, journal, publish).
                METRICS.record("sequencing", time.perf_counter_ns() - t0)
            if time.monotonic() >= next_ckpt:
                write_checkpoint(self.ckpt, self.core.last_seq, self.core.sources)
                next_ckpt = time.monotonic() + CHECKPOINT_EVERY_S
        log.info("stopping (%s): last seq %d", stop.reason, self.core.last_seq)
        self.close()
        return runtime.EXIT_OK

    def close(self) -> None:
        self.journal.sync()
        self.journal.close()
        write_checkpoint(self.ckpt, self.core.last_seq, self.core.sources)
        for s in (self.md, self.ctl, self.router):
            s.close(linger=0)
        self.pub.close()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    runtime.setup_logging("sequencer", args.log_level)
    cfg = runtime.load_config(args.config, log)
    if cfg is None:
        return runtime.EXIT_CONFIG
    stop = runtime.Shutdown().install()
    try:
        seq = Sequencer(cfg, zmq.Context.instance())
    except eventlog.LogDamaged as exc:
        log.error("journal is damaged, refusing to start: %s", exc)
        return runtime.EXIT_DAMAGED_LOG
    return seq.run(stop)
