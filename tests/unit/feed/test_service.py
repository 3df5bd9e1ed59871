"""The service shell without the mesh: CLI, dry run, signals, and the exactly-once restart skip."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest

from common import config as mesh_config
from common.events import Body, Heartbeat, Trade, encode
from services.feed import service
from services.feed.sources import SyntheticSource, limit

from .conftest import capture

pytestmark = pytest.mark.timeout(60)
REPO = Path(__file__).resolve().parents[3]
_dec = msgspec.msgpack.Decoder(Body)


class FakeProducer:
    """The common.producer.Producer API, recording what is sent."""

    def __init__(self, start_seq: int, stop_after: int | None, shutdown: service.Shutdown) -> None:
        self.start_seq = start_seq
        self.sent: list[tuple[int, bytes]] = []
        self.stop_after = stop_after
        self.shutdown = shutdown
        self.flushed = self.closed = False
        self.inflight = 0
        self.observers: list[FakeProducer] = []

    def send(self, body, event_ns, key="", more=False):
        self.sent.append((event_ns, encode(body)))
        if self.stop_after is not None and len(self.sent) >= self.stop_after:
            self.shutdown.requested = True
        return self.start_seq + len(self.sent)

    def pump(self, timeout_ms=0):
        time.sleep(timeout_ms / 1000)  # the real one polls its SUB socket this long

    def flush(self, timeout_s):
        self.flushed = True
        return True

    def close(self):
        self.closed = True


def _run(cfg, start_seq: int, stop_after: int | None):
    shutdown = service.Shutdown()
    made: list[FakeProducer] = []

    live: list[FakeProducer] = []

    def factory(cfg, source, channel, own_sub=True):
        if source == "feed-live":  # wall-clock liveness heartbeats, numbered apart
            assert channel == "ctl" and not own_sub
            # Its first heartbeat (after ~1 s of wall time) ends a run that stop_after did not end.
            live.append(FakeProducer(0, 1 if stop_after is None or stop_after > 0 else None, shutdown))
            return live[0]
        assert (source, channel) == ("feed", "md")
        made.append(FakeProducer(start_seq, stop_after, shutdown))
        return made[0]

    code = service.run_mesh(cfg, SyntheticSource(cfg.feed), shutdown, factory)
    made[0].live = live[0]
    return code, made[0]


def _cfg(**feed):
    cfg = mesh_config.from_dict({})
    return mesh_config.replace(cfg, "feed", **feed)


def test_restart_skips_exactly_what_the_sequencer_has():
    cfg = _cfg(rate=0, max_events=3000, seed=9)
    src = SyntheticSource(cfg.feed)
    det = list(service.with_heartbeats(limit(src.items(), 3000), src.counters))  # what a run sends, in order
    n = len(det)
    bodies = [_dec.decode(raw) for raw in (encode(b) for _, b in det)]
    assert sum(isinstance(b, Heartbeat) for b in bodies) >= 2, "heartbeats go through the producer too"
    assert sum(not isinstance(b, Heartbeat) for b in bodies) == 3000
    code, first = _run(cfg, 0, stop_after=n)
    assert code == service.EXIT_OK and first.flushed and first.closed
    full = first.sent[:n]
    assert full == [(ns, encode(b)) for ns, b in det]
    stopping = _dec.decode(first.live.sent[-1][1])  # the "stopping" heartbeat, on the liveness source
    assert isinstance(stopping, Heartbeat) and stopping.state == "stopping"
    for k in (1, 777, n - 5):
        _, again = _run(cfg, k, stop_after=n - k)
        assert again.sent[: n - k] == full[k:], f"restart after {k} must continue exactly"


def test_pacing_and_heartbeats_do_not_change_the_market_events():
    fast = [raw for _, raw in _run(_cfg(rate=0, max_events=500, seed=2), 0, 501)[1].sent]
    slow = [raw for _, raw in _run(_cfg(rate=20_000, max_events=500, seed=2), 0, 501)[1].sent]
    assert fast == slow
    trades = [r for r in fast if r.startswith(encode(Trade("BTCUSDT", 1, 1, 1, True))[:2])]
    assert trades


def test_help_and_usage_errors():
    helped = subprocess.run([sys.executable, "-m", "services.feed", "--help"], cwd=REPO, capture_output=True)
    assert helped.returncode == 0 and b"--dry-run" in helped.stdout
    p = subprocess.run(
        [sys.executable, "-m", "services.feed", "--source", "replay", "--dry-run"], cwd=REPO, capture_output=True
    )
    assert p.returncode == service.EXIT_USAGE
    bad = subprocess.run(
        [sys.executable, "-m", "services.feed", "--config", "/nonexistent.toml", "--dry-run"],
        cwd=REPO,
        capture_output=True,
    )
    assert bad.returncode == service.EXIT_CONFIG


def test_synthetic_dry_run_json():
    p = subprocess.run(
        [sys.executable, "-m", "services.feed", "--dry-run", "--max-events", "2000", "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["lines"] == 2000 and sum(r["accepted"].values()) == 2000
    assert r["accepted"]["BookSnapshot"] == 1 and r["accepted"]["Trade"] > 100


def test_sigterm_stops_a_paced_replay_cleanly():
    f = capture("btcusdt_20240808.gz")
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.feed", "--file", str(f), "--speed", "1", "--dry-run", "--json"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # wait until it is running, not a fixed sleep
            if "starting replay source" in line:
                break
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == service.EXIT_OK
    r = json.loads(out.strip().splitlines()[-1])
    assert r["lines"] < 41_249  # stopped early: at 1x the capture takes six minutes
