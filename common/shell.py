"""The transport shell that runs a pure core as a mesh service.

Lifecycle: starting -> recovering -> live -> stopping.

* starting: load the newest good snapshot (state + last applied seq), if any;
  subscribe to the stream (before anything else, Clone pattern).
* recovering: replay every event after the snapshot from the logger (the
  follower's gap repair does this), with outputs held back. The core's own
  earlier outputs are seen in the log as it replays; once caught up to the
  head the sequencer reported at start, only held outputs whose idempotency
  key is not already in the log are sent. So a restart never emits a
  duplicate and never loses an output that was lost in flight.
* live: every event in, outputs out through the sequencer.

Every `hash_every` seqs (seq % hash_every == 0, so the points are the same in
every replay) the shell emits the core's StateHash; every `snapshot_every`
seqs and on stop it writes a checksummed snapshot.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import xxhash
import zmq

from common import events, runtime
from common.config import ConfigError, MeshConfig
from common.core import Core, Output, pack, state_hash, unpack
from common.metrics import METRICS
from common.producer import Producer
from common.rpc import RpcClient
from common.stream import FellBehind, StreamFollower

log = logging.getLogger(__name__)
KEEP_SNAPSHOTS = 3
COMPUTE_STAGES: dict[str, tuple[str, tuple[type, ...]]] = {
    "strategy": ("strategy_compute", events.MARKET_DATA),
    "risk": ("risk_check", (events.OrderIntent,)),
    "execution": ("order_submit", (events.ChildOrder,)),
}


class SnapshotStore:
    """Checksummed msgpack snapshots: `snap-<seq>.bin` = xxh3_64 (8 bytes) + msgpack."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)

    def save(self, seq: int, state: object) -> Path:
        body = pack({"seq": seq, "state": state})
        path = self.dir / f"snap-{seq:020d}.bin"
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            fh.write(xxhash.xxh3_64_digest(body) + body)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        for old in sorted(self.dir.glob("snap-*.bin"))[:-KEEP_SNAPSHOTS]:
            old.unlink(missing_ok=True)
        return path

    def load_latest(self) -> tuple[int, object] | None:
        """Newest snapshot whose checksum holds; a corrupt one is reported and skipped."""
        for path in sorted(self.dir.glob("snap-*.bin"), reverse=True):
            data = path.read_bytes()
            digest, body = data[:8], data[8:]
            if len(data) < 9 or xxhash.xxh3_64_digest(body) != digest:
                log.error("snapshot %s is corrupt (checksum mismatch); trying an older one", path.name)
                continue
            try:
                snap = unpack(body)
                return int(snap["seq"]), snap["state"]
            except (msgspec.DecodeError, KeyError, TypeError, ValueError) as exc:
                log.error("snapshot %s does not decode (%s); trying an older one", path.name, exc)
        return None


def restore(core: Core, store: SnapshotStore, name: str) -> int:
    """Load the newest good snapshot into `core`; the seq it covers, or 0.

    A snapshot is an optimisation, never the truth: one this build cannot
    take (a core's load_state raises ValueError before it changes anything,
    e.g. a book layout or book_slots that differs from the snapshot's) is
    reported, and the service replays from the start of the log instead of
    crash-looping under supervisord."""
    snap = store.load_latest()
    if snap is None:
        return 0
    seq, st = snap
    try:
        core.load_state(st)
    except ValueError as exc:
        log.error("%s: snapshot at seq %d does not fit this build (%s); replaying the log from seq 1", name, seq, exc)
        return 0
    log.info("%s: loaded snapshot at seq %d", name, seq)
    return seq


class CoreService:
    def __init__(
        self,
        cfg: MeshConfig,
        core: Core,
        ctx: zmq.Context | None = None,
        hash_every: int = 1000,
        snapshot_every: int = 10000,
        heartbeat_ms: int = 500,
        emit: bool = True,
    ) -> None:
        self.cfg = cfg
        self.core = core
        self.name = core.name
        self.ctx = ctx or zmq.Context.instance()
        self.hash_every = hash_every
        self.snapshot_every = snapshot_every
        self.heartbeat_ns = heartbeat_ms * 1_000_000
        # Which stage of the pipeline this core's own compute is (dashboard latency table).
        self.compute_stage, self.compute_types = COMPUTE_STAGES.get(self.name, (None, ()))
        self.state = "starting"
        self.snapshots = SnapshotStore(cfg.run_dir / "snapshots" / self.name)
        self.last_applied = 0
        self.last_applied = restore(core, self.snapshots, self.name)
        self.follower = StreamFollower(self.ctx, cfg, self.last_applied + 1)
        self.producer = Producer(cfg, self.name, "ctl", ctx=self.ctx, own_sub=False) if emit else None
        # Further producers of this process (execution's live venue), fed confirmations from this stream.
        self.extra_producers: list[Producer] = []
        self.recover_until = self._head()
        self.state = "recovering" if self.recover_until > self.last_applied else "live"
        self._held: list[Output] = []
        self._seen_keys: set[str] = set()
        self._next_hb = 0
        self.counters = {"events": 0, "outputs": 0, "suppressed": 0, "hashes": 0}

    def _head(self) -> int:
        rpc = RpcClient(self.ctx, self.cfg, "sequencer_ctl")
        try:
            for _ in range(60):
                reply = rpc.call("hello", "", timeout_ms=500)
                if reply is not None:
                    return int(reply[1])
        finally:
            rpc.close()
        raise RuntimeError("sequencer did not answer")

    # -- event handling
    def on_event(self, seq: int, raw: bytes) -> None:
        t0 = time.perf_counter_ns()
        ev = events.decode_sequenced(raw)
        if self.producer is not None:
            head = events.head_of(ev)
            self.producer.observe(head, ev.body)
            for p in self.extra_producers:
                p.observe(head, ev.body)
        if ev.source == self.name and self.state == "recovering":
            self._seen_keys.add(ev.key)
        t1 = time.perf_counter_ns()
        outs = self.core.apply(ev)
        if self.compute_stage is not None and isinstance(ev.body, self.compute_types):
            METRICS.record(self.compute_stage, time.perf_counter_ns() - t1)
        if seq % self.hash_every == 0:
            with METRICS.timer("state_hash"):
                h = state_hash(self.core.state())
            outs = [*outs, Output(events.StateHash(self.name, seq, h), f"{self.name}:hash:{seq}", ev.event_ns)]
            self.counters["hashes"] += 1
        self.last_applied = seq
        self.counters["events"] += 1
        if outs:
            if self.state == "live":
                self._send(outs)
            else:
                self._held.extend(outs)
        if seq % self.snapshot_every == 0:
            self.snapshots.save(seq, self.core.state())
        if self.state == "recovering" and seq >= self.recover_until:
            self._go_live()
        METRICS.record("event_processing", time.perf_counter_ns() - t0)

    def _go_live(self) -> None:
        fresh = [o for o in self._held if o.key not in self._seen_keys]
        self.counters["suppressed"] += len(self._held) - len(fresh)
        log.info(
            "%s: caught up at seq %d; %d outputs already in the log, %d sent now",
            self.name, self.last_applied, len(self._held) - len(fresh), len(fresh),
        )
        self._held, self._seen_keys = [], set()
        self.state = "live"
        self._send(fresh)
        self._announce_live()

    def _announce_live(self) -> None:
        """A core may want something sequenced each time it goes live (execution: reconcile)."""
        on_live = getattr(self.core, "on_live", None)
        if on_live is None or self.producer is None:
            return
        tag = f"{self.name}:live:{os.getpid()}:{time.monotonic_ns()}"
        for i, body in enumerate(on_live()):
            self.producer.send(body, time.time_ns(), f"{tag}:{i}")

    def _send(self, outs: list[Output]) -> None:
        if self.producer is None:
            return
        for o in outs:
            self.producer.send(o.body, o.event_ns, o.key)
        self.counters["outputs"] += len(outs)

    def heartbeat(self) -> None:
        now = time.monotonic_ns()
        if self.producer is None or now < self._next_hb:
            return
        self._next_hb = now + self.heartbeat_ns
        body = events.Heartbeat(self.name, self.state, self.last_applied, {**self.counters, **METRICS.snapshot()})
        self.producer.send(body, time.time_ns(), f"{self.name}:hb:{os.getpid()}:{now}")

    def run(self, stop: runtime.Shutdown) -> int:
        log.info("%s: %s from seq %d (head %d)", self.name, self.state, self.last_applied + 1, self.recover_until)
        if self.state == "live":
            self._announce_live()
        try:
            while not stop:
                for seq, raw in self.follower.poll(50):
                    self.on_event(seq, raw)
                if self.producer is not None:
                    self.producer.pump()
                for p in self.extra_producers:
                    p.pump()
                if self.state == "live":
                    self.on_idle()
                    self.heartbeat()
        except FellBehind as exc:
            log.error("%s fell behind, exiting for a restart into catch-up: %s", self.name, exc)
            return runtime.EXIT_FELL_BEHIND
        finally:
            self.close()
        return runtime.EXIT_OK

    def on_idle(self) -> None:
        """Called on every turn of the live loop (about every 50 ms when idle); shells with I/O override it."""

    def close(self) -> None:
        self.state = "stopping"
        if self.last_applied:
            self.snapshots.save(self.last_applied, self.core.state())
        for p in [*self.extra_producers, *([self.producer] if self.producer is not None else [])]:
            p.flush(2.0)
            p.close()
        self.follower.close()


def serve(
    prog: str,
    description: str,
    build: Callable[[MeshConfig, argparse.Namespace], tuple[Core, int, int]],
    argv: list[str] | None = None,
    add_args: Callable[[argparse.ArgumentParser], None] | None = None,
    make_shell: Callable[..., CoreService] | None = None,
) -> int:
    """The whole `main()` of a core-driven service.

    `build(cfg, args)` returns (core, hash_every, snapshot_every); a config
    problem it (or the shell's constructor) raises (ConfigError, KeyError,
    ValueError) becomes a clear error line and EXIT_CONFIG.
    """
    parser = runtime.base_parser(prog, description)
    if add_args is not None:
        add_args(parser)
    args = parser.parse_args(argv)
    name = prog.rsplit(".", 1)[-1]
    runtime.setup_logging(name, args.log_level)
    cfg = runtime.load_config(args.config, log)
    if cfg is None:
        return runtime.EXIT_CONFIG
    try:
        core, hash_every, snapshot_every = build(cfg, args)
        shell = (make_shell or CoreService)(
            cfg, core, zmq.Context.instance(), hash_every=hash_every, snapshot_every=snapshot_every
        )
    except (ConfigError, KeyError, ValueError) as exc:
        log.error("config error: %s", exc)
        return runtime.EXIT_CONFIG
    stop = runtime.Shutdown().install()
    return shell.run(stop)
