"""Mesh throughput and latency, beside a bare pyzmq pipeline measured in the same run.

    python -m benchmarks.mesh --json bench-mesh.json [--events 200000] [--rates 2000,20000]

1. Sustained throughput with zero loss: a producer (the same `common.producer`
   the feed uses, exactly-once bookkeeping included) sends N trade events as
   fast as the mesh confirms them; the clock stops when the logger's durable
   log holds all N. The log is then checked: every event once, no gap.
2. End-to-end latency at paced rates: events carry their send time; a
   subscriber on the sequenced stream records receive - send (same host,
   same clock).
3. The bare limit: PUSH -> relay (decode, stamp, encode, PUB) -> SUB with the
   same frames, one event per frame and 64 per frame, no journal, no log,
   no exactly-once bookkeeping. The mesh is measured against this.

Real processes throughout (sequencer, logger, producers, relay are separate
interpreters), ipc:// sockets in a temp dir; `--transport tcp` / `tcp-curve`
runs the mesh (not the bare reference) on tcp://127.0.0.1, plain or with
CURVE, to show what encryption costs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import zmq

from benchmarks._stats import percentiles_us
from common import config, eventlog, events
from common.rpc import RpcClient
from common.sockets import free_tcp_base

TRADE = events.Trade("BTCUSDT", 1, 6183763, 2000000, False)


# ---------------------------------------------------------------- roles (child processes)
def role_blast(cfg_path: str, n: int, rate: float, source: str) -> int:
    cfg = config.load(cfg_path)
    from common.producer import Producer

    p = Producer(cfg, source, "md")
    interval = 1.0 / rate if rate else 0.0
    start = time.perf_counter()
    for i in range(n):
        if interval:
            target = start + i * interval
            while time.perf_counter() < target:
                pass
        # At full speed the producer batches (more=True), as the feed does at rate 0.
        p.send(events.Trade("BTCUSDT", i + 1, 6183763, 2000000, False), time.time_ns(), more=not interval)
        if i % 64 == 0:
            p.pump()
    ok = p.flush(60)
    p.close()
    return 0 if ok else 1


def role_bare_push(ep: str, n: int, batch: int) -> int:
    ctx = zmq.Context()
    s = ctx.socket(zmq.PUSH)
    s.setsockopt(zmq.SNDHWM, 100000)
    s.connect(ep)
    frame = events.ingest("bare", 1, 1, "", 0, TRADE)
    if batch == 1:
        for _ in range(n):
            s.send(frame)
    else:
        multi = events.encode_batch([frame] * batch)
        for _ in range(n // batch):
            s.send(multi)
    s.close(linger=-1)
    ctx.term()
    return 0


def role_bare_relay(ep_in: str, ep_out: str, n: int, batch: int) -> int:
    """The sequencer's essential work with nothing else: decode, stamp, encode, publish."""
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.RCVHWM, 100000)
    pull.bind(ep_in)
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, 100000)
    pub.bind(ep_out)
    seq = 0
    got = 0
    while got < n:
        frame = pull.recv()
        frames = [frame] if batch == 1 else events.split_batch(frame)
        out = []
        for f in frames:
            ing = events.decode_ingest(f)
            seq += 1
            out.append(
                events.encode(
                    events.Sequenced(1, seq, 1, seq, ing.source, ing.source_seq, ing.key, ing.event_ns, 0, ing.body)
                )
            )
        got += len(frames)
        pub.send(events.encode_batch(out))
    pub.close(linger=2000)
    pull.close()
    ctx.term()
    return 0


def _spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "benchmarks.mesh", *args], cwd=Path(__file__).resolve().parents[1])


def bare_pipeline(tmp: Path, n: int, batch: int) -> dict[str, float]:
    n = n // batch * batch
    ep_in, ep_out = f"ipc://{tmp}/bare-in.sock", f"ipc://{tmp}/bare-out.sock"
    relay = _spawn("--role", "bare-relay", "--ep-in", ep_in, "--ep-out", ep_out, "--n", str(n), "--batch", str(batch))
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 100000)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(ep_out)
    time.sleep(0.5)  # PUB/SUB join: the bare pipeline has no repair, so let the subscription settle
    push = _spawn("--role", "bare-push", "--ep-in", ep_in, "--n", str(n), "--batch", str(batch))
    got = 0
    t0 = None
    deadline = time.monotonic() + 120
    while got < n and time.monotonic() < deadline:
        if not sub.poll(2000):
            break
        frame = sub.recv()
        if t0 is None:
            t0 = time.perf_counter()
        got += len(events.split_batch(frame))
    elapsed = time.perf_counter() - (t0 or time.perf_counter())
    push.wait(30)
    relay.wait(30)
    sub.close(linger=0)
    ctx.term()
    return {"events": got, "lost": n - got, "events_per_s": got / elapsed if elapsed else 0.0}


# ---------------------------------------------------------------- the mesh
def _endpoints(tmp: Path, transport: str) -> str:
    """The [endpoints] section for ipc, tcp on 127.0.0.1, or tcp with CURVE (keys made here)."""
    if transport == "ipc":
        return ""
    text = f'[endpoints]\ntransport = "tcp"\ntcp_base_port = {free_tcp_base()}\n'
    if transport == "tcp-curve":
        from common import curve

        curve.keygen(tmp / "keys")
        text += f'curve_dir = "{tmp / "keys"}"\n'
    return text


class MeshProcs:
    def __init__(self, tmp: Path, fsync: str, transport: str = "ipc") -> None:
        self.cfg_path = tmp / "mesh.toml"
        self.cfg_path.write_text(
            f'[run]\ndir = "{tmp}/run"\n[logger]\nfsync = "{fsync}"\n[sequencer]\nfsync = "none"\n'
            "[ingest]\nmax_inflight = 20000\n" + _endpoints(tmp, transport)
        )
        self.cfg = config.load(self.cfg_path)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        root = Path(__file__).resolve().parents[1]
        self.logs = open(tmp / "services.log", "wb")
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-m", f"services.{name}", "--config", str(self.cfg_path)],
                cwd=root,
                env=env,
                stdout=self.logs,
                stderr=subprocess.STDOUT,
            )
            for name in ("sequencer", "logger")
        ]
        self.ctx = zmq.Context()
        self.logger = RpcClient(self.ctx, self.cfg, "logger_ctl")
        end = time.monotonic() + 30
        while self.logger.call("head", timeout_ms=500) is None:
            if time.monotonic() > end:
                raise RuntimeError("logger did not come up")

    def logged(self) -> int:
        reply = self.logger.call("head", timeout_ms=1000)
        return int(reply[0]) if reply else 0

    def close(self) -> None:
        self.logger.close()
        self.ctx.term()
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.wait(20)
        self.logs.close()


def mesh_throughput(tmp: Path, n: int, fsync: str, transport: str) -> dict[str, float]:
    mesh = MeshProcs(tmp, fsync, transport)
    try:
        base = mesh.logged()
        t0 = time.perf_counter()
        blaster = _spawn("--role", "blast", "--config", str(mesh.cfg_path), "--n", str(n), "--source", "blast")
        blaster.wait(300)
        # Stop the clock when the log holds every event: the logger's head
        # counts the sequencer's own clock events too, so check the log itself.
        target = base + n
        while mesh.logged() < target:
            time.sleep(0.001)
        log_dir = mesh.cfg.under_run(mesh.cfg.logger.log_dir)
        while True:
            count = sum(1 for _s, p in eventlog.read_range(log_dir, 1) if events.decode_head(p).source == "blast")
            if count >= n:
                break
            time.sleep(0.01)
        elapsed = time.perf_counter() - t0
        report = eventlog.check(log_dir)
        return {
            "events": count,
            "lost": n - count,
            "seconds": elapsed,
            "events_per_s": n / elapsed,
            "log_gaps": len(report.gaps),
            "log_duplicates": report.duplicates,
            "fsync": fsync,
        }
    finally:
        mesh.close()


def mesh_latency(tmp: Path, rate: int, seconds: float, transport: str) -> dict[str, float]:
    mesh = MeshProcs(tmp, "none", transport)
    try:
        sub = mesh.ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.setsockopt(zmq.RCVHWM, 100000)
        from common.sockets import connect

        connect(sub, mesh.cfg, "stream")  # with the client keys when the mesh runs CURVE
        time.sleep(0.3)
        n = int(rate * seconds)
        blaster = _spawn(
            "--role", "blast", "--config", str(mesh.cfg_path), "--n", str(n), "--rate", str(rate), "--source", "probe"
        )
        lat: list[int] = []
        end = time.monotonic() + seconds * 3 + 30
        while len(lat) < n and time.monotonic() < end:
            if not sub.poll(1000):
                continue
            frame = sub.recv()
            now = time.time_ns()
            for raw in events.split_batch(frame):
                ev = events.decode_sequenced(raw)
                if ev.source == "probe":
                    lat.append(now - ev.event_ns)
        blaster.wait(60)
        sub.close(linger=0)
        # Drop the first 5% (connection set-up, JIT-free but cache-cold).
        steady = lat[len(lat) // 20 :]
        return {"rate": rate, "events": len(lat), **percentiles_us(steady)}
    finally:
        mesh.close()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.mesh", description=__doc__.split("\n\n")[0])
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--events", type=int, default=200_000, help="events for the throughput runs (default 200000)")
    p.add_argument("--rates", default="2000,20000", help="paced rates for latency, events/s (default 2000,20000)")
    p.add_argument("--seconds", type=float, default=5.0, help="duration of each paced run (default 5)")
    p.add_argument(
        "--transport",
        choices=("ipc", "tcp", "tcp-curve"),
        default="ipc",
        help="the mesh's endpoints: ipc (default), tcp on 127.0.0.1, or tcp with CURVE (the bare reference stays ipc)",
    )
    p.add_argument("--role", help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    p.add_argument("--rate", type=float, default=0.0, help=argparse.SUPPRESS)
    p.add_argument("--source", default="blast", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--ep-in", help=argparse.SUPPRESS)
    p.add_argument("--ep-out", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.role == "blast":
        return role_blast(args.config, args.n, args.rate, args.source)
    if args.role == "bare-push":
        return role_bare_push(args.ep_in, args.n, args.batch)
    if args.role == "bare-relay":
        return role_bare_relay(args.ep_in, args.ep_out, args.n, args.batch)

    results: dict[str, object] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "transport": args.transport,
    }
    tmp = Path(tempfile.mkdtemp(prefix="am-bench-", dir="/tmp"))
    try:
        for batch in (1, 64):
            d = tmp / f"bare{batch}"
            d.mkdir()
            r = bare_pipeline(d, args.events, batch)
            results[f"bare_batch{batch}"] = r
            print(f"bare PUSH->relay->SUB, {batch:>2}/frame: {r['events_per_s']:>10,.0f} events/s  lost {r['lost']}")
        for fsync in ("none", "interval"):
            d = tmp / f"mesh-{fsync}"
            d.mkdir()
            r = mesh_throughput(d, args.events, fsync, args.transport)
            results[f"mesh_fsync_{fsync}"] = r
            print(
                f"mesh producer->sequencer->logger log (fsync {fsync}): "
                f"{r['events_per_s']:>10,.0f} events/s  lost {r['lost']}"
            )
        lat = {}
        for rate in (int(x) for x in args.rates.split(",")):
            d = tmp / f"lat{rate}"
            d.mkdir()
            r = mesh_latency(d, rate, args.seconds, args.transport)
            lat[str(rate)] = r
            print(
                f"mesh end-to-end latency at {rate}/s: p50 {r['p50_us']:.0f} us  "
                f"p99 {r['p99_us']:.0f} us  ({r['events']} events)"
            )
        mesh_eps = results["mesh_fsync_none"]["events_per_s"]  # type: ignore[index]
        bare_eps = results["bare_batch64"]["events_per_s"]  # type: ignore[index]
        results.update(
            mesh_events_per_s=mesh_eps,
            bare_events_per_s=bare_eps,
            bare_one_per_frame_events_per_s=results["bare_batch1"]["events_per_s"],  # type: ignore[index]
            ratio_bare_over_mesh=bare_eps / mesh_eps if mesh_eps else None,
            lost=results["mesh_fsync_none"]["lost"] + results["mesh_fsync_interval"]["lost"],  # type: ignore[index]
            latency=lat,
        )
        print(f"bare/mesh ratio: {results['ratio_bare_over_mesh']:.2f}x (goal: <= 2x)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
