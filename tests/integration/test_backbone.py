"""The backbone under the real supervisord: feed -> sequencer -> logger.

Each test starts real processes on ipc:// sockets in a temp dir, waits on
conditions with deadlines, and checks the log itself: every sequenced event
exactly once, seqs contiguous, the feed's events exactly once and in order.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import zmq

from common import events, sockets
from tests.integration.harness import REPO, Mesh, wait_for

pytestmark = pytest.mark.timeout(180)

MD = (events.BookSnapshot, events.BookDelta, events.Trade, events.BestBidOffer)


def feed_settings(n: int, rate: float) -> dict:
    return {
        "feed": {"source": "synthetic", "seed": 7, "rate": rate, "max_events": n},
        "logger": {"fsync": "none"},
    }


@pytest.fixture
def mesh_factory():
    made: list[Mesh] = []

    def make(programs: list[str], settings: dict) -> Mesh:
        m = Mesh(programs, settings)
        made.append(m)
        return m.start()

    yield make
    for m in made:
        m.cleanup()


def logger_tail(mesh: Mesh, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m services.logger --tail ARGS` against this mesh."""
    cmd = [sys.executable, "-m", "services.logger", "--config", str(mesh.config_path), "--tail", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=REPO)


def market_events(mesh: Mesh) -> int:
    return sum(1 for ev in mesh.events() if isinstance(ev.body, MD))


def assert_exactly_once(mesh: Mesh, n_md: int) -> None:
    report = mesh.check()
    assert report["damaged"] is False, report
    assert report["gaps"] == [] and report["duplicates"] == 0, report
    evs = mesh.events()
    seqs = [e.seq for e in evs]
    assert seqs == list(range(1, len(seqs) + 1)), "log seqs are not 1..N contiguous"
    feed_seqs = [e.source_seq for e in evs if e.source == "feed"]
    assert feed_seqs == list(range(1, len(feed_seqs) + 1)), "feed events missing, doubled or reordered"
    assert sum(1 for e in evs if isinstance(e.body, MD)) == n_md
    # Every producer's (source, source_seq) appears once.
    keys = [(e.source, e.source_seq) for e in evs]
    assert len(keys) == len(set(keys))


def test_synthetic_feed_reaches_the_log_in_order(mesh_factory):
    n = 3000
    mesh = mesh_factory(["sequencer", "logger", "feed"], feed_settings(n, 0.0))
    wait_for(lambda: market_events(mesh) >= n, 60, f"{n} market events in the log")
    assert_exactly_once(mesh, n)
    evs = mesh.events()
    assert isinstance(evs[0].body, events.SequencerEpoch)
    assert any(isinstance(e.body, events.Clock) for e in evs)
    lamports = [e.lamport for e in evs]
    assert lamports == sorted(lamports) and len(set(lamports)) == len(lamports)


def test_restarts_lose_and_double_nothing(mesh_factory):
    n = 6000
    mesh = mesh_factory(["sequencer", "logger", "feed"], feed_settings(n, 1500.0))
    feed_pid, seq_pid = mesh.pid("feed"), mesh.pid("sequencer")

    wait_for(lambda: market_events(mesh) >= 800, 60, "first events logged")
    res = mesh.ctl("restart", "logger")
    assert res.returncode == 0, res.stdout + res.stderr
    wait_for(lambda: market_events(mesh) >= 2000, 60, "events after logger restart")
    assert mesh.pid("sequencer") == seq_pid and mesh.pid("feed") == feed_pid

    mesh.kill9("logger")
    wait_for(lambda: market_events(mesh) >= 3200, 60, "events after kill -9 logger")
    assert mesh.pid("sequencer") == seq_pid and mesh.pid("feed") == feed_pid

    mesh.kill9("sequencer")
    wait_for(lambda: market_events(mesh) >= n, 90, "every event after kill -9 sequencer")
    assert mesh.pid("feed") == feed_pid, "the feed must not have restarted"

    assert_exactly_once(mesh, n)
    epochs = [e.body.epoch for e in mesh.events() if isinstance(e.body, events.SequencerEpoch)]
    assert epochs == [1, 2], f"one new epoch per sequencer start, got {epochs}"


def test_feed_restart_is_exactly_once(mesh_factory):
    n = 4000
    mesh = mesh_factory(["sequencer", "logger", "feed"], feed_settings(n, 1500.0))
    wait_for(lambda: market_events(mesh) >= 1000, 60, "first events logged")
    mesh.kill9("feed")
    wait_for(lambda: market_events(mesh) >= n, 90, "every event after kill -9 feed")
    assert_exactly_once(mesh, n)


def test_malformed_frames_are_rejected_and_counted(mesh_factory):
    mesh = mesh_factory(["sequencer", "logger"], {"logger": {"fsync": "none"}})
    seq_pid = mesh.pid("sequencer")
    ctx = zmq.Context()
    garbage = [b"", b"\x00", b"not msgpack at all", b"\x93\x01\x02\x03", events.encode(events.Clock(5)), b"\xc1" * 100]
    try:
        for name in ("ingest_md", "ingest_ctl"):
            s = sockets.push(ctx, mesh.cfg, name)
            for g in garbage:
                s.send(g)
            s.close(linger=2000)
    finally:
        ctx.term()

    def malformed_count() -> int:
        hbs = [e.body for e in mesh.events() if isinstance(e.body, events.Heartbeat) and e.body.service == "sequencer"]
        return hbs[-1].counters.get("malformed", 0) if hbs else -1

    wait_for(lambda: malformed_count() == 2 * len(garbage), 30, "malformed frames counted in the sequencer heartbeat")
    assert mesh.pid("sequencer") == seq_pid
    assert "rejected malformed ingest frame" in mesh.service_log("sequencer")
    report = mesh.check()
    assert report["gaps"] == [] and report["damaged"] is False


def test_tail_shows_live_events(mesh_factory):
    mesh = mesh_factory(["sequencer", "logger", "feed"], feed_settings(0, 300.0))
    wait_for(lambda: market_events(mesh) >= 50, 60, "events logged")
    out = logger_tail(mesh, "--count", "40", "--type", "Trade", "--type", "BookDelta")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 40
    assert all(("Trade" in ln or "BookDelta" in ln) for ln in lines)
    assert any("BTCUSDT" in ln and " @ " in ln for ln in lines if "Trade" in ln)
    # The tail follows live events: the last line's seq is newer than the log's end when we started.
    start = time.monotonic()
    out = logger_tail(mesh, "--json", "--count", "5", "--from", str(mesh.check()["last_seq"] + 1))
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.strip().splitlines()) == 5
    assert time.monotonic() - start < 30


def test_a_producer_that_never_sees_its_echo_is_confirmed_by_asking(mesh_factory):
    """A SUB socket joins asynchronously, so a quiet producer (an operator command) can miss the
    echo of its only event; the sequencer drops the resend as a duplicate and never republishes it.
    The producer must then learn from the sequencer itself that the event landed, and not resend forever."""
    from common.producer import Producer

    mesh = mesh_factory(["sequencer", "logger"], {"logger": {"fsync": "none"}, "ingest": {"resend_ms": 100}})
    ctx = zmq.Context()
    p = Producer(mesh.cfg, "deaf", "ctl", ctx=ctx, own_sub=False, hello_deadline_s=20)
    try:
        for i in range(3):
            p.send(events.Clock(i), time.time_ns(), f"deaf:{i}")
        assert p.flush(15), "confirmation never arrived"
        assert p.counters["confirmed_by_ask"] == 3
        wait_for(lambda: mesh.count_source("deaf") == 3, 30, "the three events logged")
        # Asking again changes nothing and sends nothing twice.
        for _ in range(5):
            p.pump(timeout_ms=50)
        assert mesh.count_source("deaf") == 3
    finally:
        p.close()
        ctx.term()
