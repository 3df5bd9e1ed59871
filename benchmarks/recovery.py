"""Recovery and replay benchmark: ``python -m benchmarks.recovery --json FILE``.

1. Real sequencer + logger + synthetic feed at full speed write N events
   (default 1,000,000) to the log; the feed is then stopped.
2. Recovery without a snapshot: a service (default strategy) is started with
   an empty snapshot directory and timed from process start to the moment it
   logs that it caught up (it replays all N events from the logger).
3. Recovery with a snapshot: that process was configured to snapshot every
   N/10 seqs; it is `kill -9`ed, restarted, and timed again (it loads the
   newest snapshot and replays only what follows it).
4. Replay throughput: `python -m services.verifier --replay --seek K --json`
   through every core (strategy, risk, router, execution) over the first K
   events of the same log.

Numbers go to stdout and, with --json, to FILE. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import zmq

from common import config
from common.rpc import RpcClient

ROOT = Path(__file__).resolve().parents[1]
CAUGHT_UP = re.compile(rb"caught up at seq (\d+)")


def spawn(name: str, cfg_path: Path, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", f"services.{name}", "--config", str(cfg_path)],
        cwd=ROOT,
        env=env,
        stdout=open(log, "ab"),
        stderr=subprocess.STDOUT,  # noqa: SIM115
    )


def wait_caught_up(log: Path, offset: int, proc: subprocess.Popen[bytes], timeout: float) -> int:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        m = CAUGHT_UP.search(log.read_bytes()[offset:]) if log.exists() else None
        if m:
            return int(m.group(1))
        if proc.poll() is not None:
            raise RuntimeError(f"{log.name}: the service exited with {proc.returncode}")
        time.sleep(0.01)
    raise TimeoutError(f"{log.name}: not caught up within {timeout:.0f}s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.recovery", description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000, help="events in the log (default 1,000,000)")
    ap.add_argument("--service", default="strategy", choices=["strategy", "risk", "router", "execution"])
    ap.add_argument("--replay-events", type=int, default=100_000, help="events replayed through every core")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = ap.parse_args(argv)
    n = args.events
    tmp = Path(tempfile.mkdtemp(prefix="am-rec-", dir="/tmp"))
    cfg_path = tmp / "mesh.toml"
    cfg_path.write_text(
        f'[run]\ndir = "{tmp}/run"\n[logger]\nfsync = "none"\n[sequencer]\nfsync = "none"\n'
        f"[feed]\nrate = 0.0\nmax_events = {n}\n[ingest]\nmax_inflight = 20000\n"
        f"[{args.service}]\nsnapshot_every = {max(1, n // 10)}\nhash_every = 100000\n"
    )
    cfg = config.load(cfg_path)
    procs: list[subprocess.Popen[bytes]] = []
    ctx = zmq.Context()
    logger = None
    try:
        procs += [spawn(s, cfg_path, tmp / f"{s}.log") for s in ("sequencer", "logger")]
        logger = RpcClient(ctx, cfg, "logger_ctl")
        t0 = time.monotonic()
        feed = spawn("feed", cfg_path, tmp / "feed.log")
        procs.append(feed)
        head = 0
        while head < n:
            reply = logger.call("head", timeout_ms=1000)
            head = int(reply[0]) if reply else head
            if feed.poll() is not None and feed.returncode != 0:
                raise RuntimeError("the feed failed")
            if time.monotonic() - t0 > 1800:
                raise TimeoutError("the log did not fill")
            time.sleep(0.2)
        feed.terminate()
        feed.wait(30)
        head = int(logger.call("head", timeout_ms=2000)[0])  # type: ignore[index]
        fill_s = time.monotonic() - t0
        print(f"log filled: {head:,} events in {fill_s:.1f} s")

        svc_log = tmp / f"{args.service}.log"
        t = time.monotonic()
        svc = spawn(args.service, cfg_path, svc_log)
        procs.append(svc)
        seq = wait_caught_up(svc_log, 0, svc, 3600)
        no_snap_s = time.monotonic() - t
        print(f"{args.service}: start -> live with no snapshot, replaying {seq:,} events: {no_snap_s:.2f} s")

        snaps = sorted((cfg.run_dir / "snapshots" / args.service).glob("snap-*.bin"))
        snap_seq = int(snaps[-1].stem.split("-")[1]) if snaps else 0
        offset = svc_log.stat().st_size
        os.kill(svc.pid, signal.SIGKILL)
        svc.wait(30)
        t = time.monotonic()
        svc = spawn(args.service, cfg_path, svc_log)
        procs.append(svc)
        seq2 = wait_caught_up(svc_log, offset, svc, 3600)
        snap_s = time.monotonic() - t
        print(
            f"{args.service}: kill -9 -> live from the snapshot at seq {snap_seq:,} "
            f"(replaying {seq2 - snap_seq:,} events): {snap_s:.2f} s"
        )
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        k = min(args.replay_events, head)
        out = subprocess.run(
            [sys.executable, "-m", "services.verifier", "--config", str(cfg_path)]
            + ["--replay", "--seek", str(k), "--json"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=3600,
        )
        rep = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"replay through every core: {rep['events']:,} events at {rep['events_per_s']:,.0f} events/s")
        result = {
            "events_in_log": head,
            "service": args.service,
            "recovery_no_snapshot_s": round(no_snap_s, 3),
            "recovery_with_snapshot_s": round(snap_s, 3),
            "snapshot_seq": snap_seq,
            "replayed_after_snapshot": seq2 - snap_seq,
            "replay_all_cores_events": rep["events"],
            "replay_all_cores_events_per_s": rep["events_per_s"],
        }
        print(json.dumps(result))
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        return 0
    finally:
        if logger is not None:
            logger.close()
        for p in procs:
            if p.poll() is None:
                p.kill()
        ctx.term()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
