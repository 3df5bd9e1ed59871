"""The whole mesh on tcp://127.0.0.1 with CURVE: it trades as on ipc, and a process whose
client key is not authorized cannot reach the sequencer.

Real processes under the real supervisord; every check reads the event log."""

from __future__ import annotations

import shutil

import pytest
import zmq

from common import config, curve
from common import events as E
from common.producer import Producer, SequencerUnavailable
from tests.integration.harness import Mesh, wait_for
from tests.support.ports import free_tcp_base

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
        ctx.destroy(linger=0)
        mesh.cleanup()
