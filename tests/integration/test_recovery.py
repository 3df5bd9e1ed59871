"""Crash recovery of every service, in one run of the full mesh with the verifier.

Each service in turn is `kill -9`ed mid-run; supervisord restarts it; it
recovers (snapshot + catch-up from the log) and goes live. Afterwards: the
log holds every event exactly once, no idempotency key appears twice (so no
order was sent twice), the restarted service published new state hashes, and
the verifier -- live, and by a fresh replay -- found no divergence.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest

from common import events as E
from tests.integration.harness import REPO, Mesh, wait_for

pytestmark = pytest.mark.timeout(420)

ALL = ["sequencer", "logger", "feed", "strategy", "risk", "router", "execution", "verifier"]
STATEFUL = ("strategy", "risk", "router", "execution")


def hashes_after(mesh: Mesh, service: str, seq: int) -> list[E.Sequenced]:
    return [
        e
        for e in mesh.events(seq + 1)  # a hash covering seq > `seq` is sequenced after it
        if isinstance(e.body, E.StateHash) and e.body.service == service and e.body.covers_seq > seq
    ]


def test_kill9_each_service_in_turn_loses_and_doubles_nothing():
    mesh = Mesh(
        ALL,
        {
            "feed": {"rate": 400.0, "seed": 11},
            "logger": {"fsync": "none"},
            "risk": {
                "max_open_orders": 200,
                "max_orders_per_second": 1000,
                "deadman_ms": 60000,
                "hash_every": 200,
                "snapshot_every": 1000,
            },
            "router": {"hash_every": 200, "snapshot_every": 1000},
            "strategy": {"hash_every": 200, "snapshot_every": 1000},
            "execution": {"hash_every": 200, "snapshot_every": 1000},
            "verifier": {"snapshot_every": 1000},
        },
    )
    try:
        mesh.start()
        wait_for(lambda: len(hashes_after(mesh, "execution", 0)) >= 2, 120, "first state hashes")
        for svc in ("sequencer", "logger", *STATEFUL):
            before = mesh.check()["last_seq"]
            others = {p: mesh.pid(p) for p in ALL if p != svc}
            mesh.kill9(svc)
            try:
                if svc in STATEFUL:
                    wait_for(
                        lambda svc=svc, before=before: hashes_after(mesh, svc, before + 400),
                        120,
                        f"{svc} publishing hashes after its restart",
                    )
                else:
                    wait_for(
                        lambda before=before: mesh.check()["last_seq"] > before + 1000,
                        120,
                        f"the stream moving after {svc} restarted",
                    )
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n--- {svc} log tail:\n{mesh.service_log(svc)[-3000:]}") from None
            assert {p: mesh.pid(p) for p in others} == others, f"killing {svc} restarted something else"

        # The verifier resumes from its own snapshot (not seq 1) and goes on checking.
        def verifier_checked(since: int) -> int:
            """The verifier's running count of checked hashes, from its last heartbeat after `since`."""
            hbs = [
                e.body for e in mesh.events(since) if isinstance(e.body, E.Heartbeat) and e.body.service == "verifier"
            ]
            return int(hbs[-1].counters.get("checked", 0)) if hbs else 0

        since = mesh.check()["last_seq"]
        wait_for(lambda: verifier_checked(since) > 0, 60, "the verifier checking hashes")
        mesh.kill9("verifier")
        wait_for(lambda: "resumed from its snapshot at seq" in mesh.service_log("verifier"), 60, "verifier resumed")
        since = mesh.check()["last_seq"]
        checked = verifier_checked(1)
        wait_for(lambda: verifier_checked(since) > checked + 4, 120, "the restarted verifier checking more hashes")

        evs = mesh.events()
        report = mesh.check()
        assert report["gaps"] == [] and report["duplicates"] == 0 and report["damaged"] is False
        assert [e.seq for e in evs] == list(range(1, len(evs) + 1))
        keys = Counter(e.key for e in evs if e.key and not isinstance(e.body, E.Heartbeat))
        assert not [k for k, n in keys.items() if n > 1], "an output was emitted twice"
        children = Counter(e.body.child_id for e in evs if isinstance(e.body, E.ChildOrder))
        assert not [c for c, n in children.items() if n > 1], "a child order was sent twice"
        assert not [e for e in evs if isinstance(e.body, E.HashDivergence)], "the live verifier saw a divergence"
        epochs = [e.body.epoch for e in evs if isinstance(e.body, E.SequencerEpoch)]
        assert epochs == [1, 2]

        mesh.stop()  # the log stays; replaying it needs no running mesh competing for the 2 cores
        rep = mesh.replay_verify()
        assert rep["divergences"]["count"] == 0, rep
        assert rep["checked"] >= 20, rep
    finally:
        mesh.cleanup()


def test_an_order_placed_at_the_venue_while_execution_was_down_is_found_and_cancelled():
    mesh = Mesh(
        ["sequencer", "logger", "feed", "execution"], {"feed": {"rate": 300.0, "seed": 5}, "logger": {"fsync": "none"}}
    )
    try:
        mesh.start()
        wait_for(lambda: mesh.check()["last_seq"] > 300, 60, "market data flowing")
        res = mesh.ctl("stop", "execution")
        assert res.returncode == 0, res.stdout + res.stderr
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "services.risk",
                "--config",
                str(mesh.config_path),
                "sim-inject",
                "sim-a:BTCUSDT:BUY:1000000:1000:by-hand-1",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        assert mesh.ctl("start", "execution").returncode == 0

        def found():
            evs = mesh.events()
            corr = [e for e in evs if isinstance(e.body, E.Correction) and e.body.child_id == "by-hand-1"]
            gone = [e for e in evs if isinstance(e.body, E.OrderCancelled) and e.body.child_id == "by-hand-1"]
            return (corr, gone) if corr and gone else None

        corr, gone = wait_for(found, 60, "the hand-placed order reported and cancelled")
        assert corr[0].body.what == "unknown_venue_order" and corr[0].body.venue == "sim-a"
        assert corr[0].seq < gone[0].seq
        # The reconcile request itself is in the log, so a replay reconciles the same way.
        assert any(
            isinstance(e.body, E.OperatorCommand) and e.body.command == "reconcile" and e.source == "execution"
            for e in mesh.events()
        )
    finally:
        mesh.cleanup()


def test_real_capture_through_the_feed_survives_kills():
    """The real BTCUSDT capture replayed through the feed: kill -9 the sequencer and the strategy mid-run;
    every market event the feed accepts is in the log exactly once and the replay verifies every hash."""
    from tests.shared_data import BINANCE_SPOT

    capture = BINANCE_SPOT / "btcusdt_20240808.gz"
    if not capture.exists():
        pytest.skip(f"real capture {capture} absent")
    dry = subprocess.run(
        [sys.executable, "-m", "services.feed", "--source", "replay", "--file", str(capture), "--dry-run", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    expected = sum(json.loads(dry.stdout.strip().splitlines()[-1])["accepted"].values())
    mesh = Mesh(
        ["sequencer", "logger", "feed", "strategy"],
        {
            "feed": {"source": "replay", "replay_files": [str(capture)], "replay_speed": 25.0},
            "logger": {"fsync": "none"},
            "strategy": {"hash_every": 500, "snapshot_every": 2000},
        },
    )
    md = (E.BookSnapshot, E.BookDelta, E.Trade, E.BestBidOffer, E.GapDeclared)
    try:
        mesh.start()
        count = lambda: sum(1 for e in mesh.events() if e.source == "feed" and isinstance(e.body, md))  # noqa: E731
        wait_for(lambda: count() > expected // 4, 120, "a quarter of the capture logged")
        mesh.kill9("sequencer")
        wait_for(lambda: count() > expected // 2, 120, "half of the capture logged")
        mesh.kill9("strategy")
        wait_for(lambda: count() >= expected, 180, "the whole capture logged")
        evs = mesh.events()
        feed_seqs = [e.source_seq for e in evs if e.source == "feed"]
        assert feed_seqs == list(range(1, len(feed_seqs) + 1)), "feed events lost, doubled or reordered"
        assert count() == expected
        intents = [e for e in evs if isinstance(e.body, E.OrderIntent)]
        assert intents and len({e.key for e in intents}) == len(intents)
        wait_for(
            lambda: [
                e
                for e in mesh.events()
                if isinstance(e.body, E.StateHash)
                and e.body.covers_seq > evs[-1].seq - 2000
                and e.body.service == "strategy"
            ],
            60,
            "strategy hashes after its restart",
        )
        mesh.stop()
        rep = mesh.replay_verify()
        assert rep["divergences"]["count"] == 0 and rep["checked"] >= 10, rep
    finally:
        mesh.cleanup()
