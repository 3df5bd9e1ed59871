"""The whole mesh on tcp://127.0.0.1 with CURVE: it trades as on ipc, and a process whose
client key is not authorized cannot reach the sequencer.

Real processes under the real supervisord; every check reads the event log."""

from __future__ import annotations

import shutil

import pytest
import zmq

from common import config, curve, eventlog
from common import events as E
from common.producer import Producer, SequencerUnavailable
from common.sockets import free_tcp_base
from tests.integration.harness import Mesh, wait_for

pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.skipif(not zmq.has("curve"), reason="libzmq without CURVE"),
]

ALL = ["sequencer", "logger", "feed", "strategy", "risk", "router", "execution"]


def test_the_mesh_trades_over_encrypted_tcp_and_refuses_an_unknown_key(tmp_path):
    keys = tmp_path / "keys"
    curve.keygen(keys)
    mesh = Mesh(
        ALL,
        {
            "endpoints": {"transport": "tcp", "tcp_base_port": free_tcp_base(), "curve_dir": str(keys)},
            "feed": {"rate": 800.0, "seed": 3},
            "logger": {"fsync": "none"},
            "risk": {"max_intent_age_ms": 0, "max_consecutive_losses": 1_000_000},
        },
    )
    ctx = zmq.Context()
    try:
        mesh.start()
        fills = lambda: [e for e in mesh.events() if isinstance(e.body, E.OrderFill)]  # noqa: E731
        wait_for(lambda: len(fills()) >= 2, 120, "fills in the log, every hop over CURVE")
        sources = {e.source for e in mesh.events()}
        assert {"feed", "strategy", "risk", "router", "execution"} <= sources

        # A key pair the server never authorized (the server's public key is public): the
        # handshake is refused, so the hello never gets an answer and nothing is sequenced.
        rogue = tmp_path / "rogue"
        curve.keygen(rogue, "intruder")
        shutil.copyfile(keys / "server.key", rogue / "server.key")
        cfg = config.replace(mesh.cfg, "endpoints", curve_dir=str(rogue), curve_client="intruder")
        with pytest.raises(SequencerUnavailable):
            Producer(cfg, "intruder", "ctl", ctx=ctx, hello_deadline_s=3)
        # The authorized key, on the same endpoints, gets its answer.
        ok = Producer(mesh.cfg, "operator-test", "ctl", ctx=ctx, hello_deadline_s=30)
        ok.send(E.OperatorCommand("reconcile", "", "operator-test"), 0, "operator-test:1")
        assert ok.flush(30)
        ok.close()
        wait_for(lambda: [e for e in mesh.events() if e.source == "operator-test"], 30, "the member's command")
        assert not [e for e in mesh.events() if e.source == "intruder"]
    finally:
        curve.release(ctx)
        ctx.destroy(linger=0)
        mesh.cleanup()


def test_a_follower_node_keeps_a_replica_log_and_verifies_the_leader(tmp_path):
    """Two nodes over CURVE (on one machine: the follower has its own run directory, its
    own client key and its own logger endpoint): the leader runs the mesh; the follower
    runs only a logger and a verifier, which follow the leader's stream. The follower's log
    is byte-identical to the leader's, and its verifier replays every core and finds the
    leader's published state hashes right."""
    keys = tmp_path / "keys"
    curve.keygen(keys)
    curve.keygen(keys, "follower")
    base = free_tcp_base()
    endpoints = {"transport": "tcp", "tcp_base_port": base, "curve_dir": str(keys)}
    shared = {  # the follower replays the cores, so it needs the leader's settings for them
        "feed": {"rate": 400.0, "seed": 5},
        "logger": {"fsync": "none"},
        "risk": {"max_intent_age_ms": 0},
        "strategy": {"hash_every": 200},
    }
    leader = Mesh(ALL, {**shared, "endpoints": endpoints})
    follower = Mesh(
        ["logger", "verifier"],
        {
            **shared,
            "endpoints": {**endpoints, "curve_client": "follower", "logger_port": free_tcp_base(1, base + 1000)},
            "verifier": {"name": "verifier-b"},
        },
    )
    try:
        leader.start()
        wait_for(lambda: len(leader.events()) > 2_000, 120, "the leader's log past 2,000 events")
        follower.start()  # joins late: its logger repairs the start from the sequencer's journal

        def caught_up():
            head = leader.events()[-1].seq
            mine = list(eventlog.read_range(follower.log_dir, max(1, head - 5)))
            return mine and mine[-1][0] >= head and head

        head = wait_for(caught_up, 120, "the follower's log at the leader's head")
        ours = dict(eventlog.read_range(leader.log_dir, 1, head))
        theirs = dict(eventlog.read_range(follower.log_dir, 1, head))
        assert len(ours) == head and ours == theirs, "the replica differs from the leader's log"

        def verified():
            beats = [
                e.body
                for e in leader.events(max(1, head - 1000))
                if isinstance(e.body, E.Heartbeat) and e.body.service == "verifier-b"
            ]
            return beats and beats[-1].counters["checked"] >= 5 and beats[-1]

        beat = wait_for(verified, 120, "the follower's verifier checking the leader's hashes")
        assert beat.counters["divergences"] == 0, beat.counters
        assert not [e for e in leader.events() if isinstance(e.body, E.HashDivergence)]
    finally:
        follower.cleanup()
        leader.cleanup()
