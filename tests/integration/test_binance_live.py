"""Execution on the Binance adapter, under supervisord, against a local server speaking Binance's protocol.

The real execution service (execution.venue = "binance") is started by the
real supervisord; the venue is tests/support/binance_server.py on loopback
(REST + user-data websocket, signatures checked). Child orders are sent into
the mesh by a test producer, as the router would. What is checked:

* a child order becomes exactly one venue order; the ack and a partial fill
  pushed on the user-data stream are sequenced with the venue as source;
* kill -9 while the POST is in flight (the venue accepted it, the answer
  never came): the restarted service finds it by client order id and
  reports it; it is never sent twice;
* stopped while the venue fills an order and while a new child order is
  sequenced: on restart the missed fill is reported once, the new child is
  sent late;
* reconcile: an order placed at the venue by hand is reported and cancelled;
  balances agree; risk's CancelAll cancels everything at the venue;
* a replay of the log (no venue at all) rebuilds the same orders and
  position, and the verifier finds every published hash matching;
* the API secret appears in no log.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import zmq

from common import events as E
from common.producer import Producer
from common.units import load_symbols
from services.execution.binance import BinanceAdapter, BinanceConfig, Credentials, Secret, client_order_id
from services.execution.core import ExecutionCore
from tests.integration.harness import REPO, Mesh, wait_for
from tests.support.binance_server import BinanceTestServer

pytestmark = pytest.mark.timeout(240)
API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
API_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
SYM = "BTCUSDT"


def child(cid: str, price: int = 4_900_000, qty: int = 100_000) -> E.ChildOrder:
    return E.ChildOrder("p-" + cid, cid, "binance", SYM, E.BUY, price, qty, E.GTC, True, "")


def from_venue(mesh: Mesh, cls: type, child_id: str) -> list[E.Sequenced]:
    return [
        e for e in mesh.events() if e.source == "binance" and isinstance(e.body, cls) and e.body.child_id == child_id
    ]


def replay(mesh: Mesh) -> ExecutionCore:
    core = ExecutionCore(mesh.cfg.execution, mesh.cfg.router, load_symbols(mesh.cfg.symbols.exchange_info))
    for ev in mesh.events():
        core.apply(ev)
    core.take_actions()
    return core


def on_binance(server: BinanceTestServer, tmp_path, **execution: object) -> dict:
    """The [router] and [execution] sections that trade on `server`, with a key file of mode 0600."""
    keyfile = tmp_path / "binance.keys"
    keyfile.write_text(f"BINANCE_API_KEY={API_KEY}\nBINANCE_API_SECRET={API_SECRET}\n")
    keyfile.chmod(0o600)
    return {
        "router": {"venues": [{"name": "binance", "fee_bps": 10}]},
        "execution": {
            "venue": "binance",
            "binance_rest_url": server.rest_url,
            "binance_ws_url": server.ws_url,
            "binance_key_file": str(keyfile),
            **execution,
        },
    }


def test_the_execution_service_trades_on_binance_exactly_once(tmp_path):
    # Commission in the asset received, as Binance charges without BNB: on these buys, BTC. The
    # reconcile below must expect the BTC balance lower by exactly that (no balance_mismatch).
    server = BinanceTestServer(API_KEY, API_SECRET).start()
    server.set_market(SYM, "50000.00", "50000.10")
    mesh = Mesh(
        ["sequencer", "logger", "execution"],
        {
            "logger": {"fsync": "none"},
            **on_binance(server, tmp_path, hash_every=3, late_submit_ms=600_000, binance_recv_window_ms=1000),
        },
    )
    ctx = zmq.Context()
    router = None
    try:
        mesh.start()
        router = Producer(mesh.cfg, "router-test", "ctl", ctx=ctx, hello_deadline_s=30)
        cid1, cid2, cid3 = (client_order_id(c) for c in ("c1", "c2", "c3"))

        # The first reconcile (on going live) sets the balance baseline.
        wait_for(lambda: [e for e in mesh.events() if isinstance(e.body, E.VenueSnapshot)], 60, "first venue snapshot")
        router.send(child("c1"), time.time_ns(), "router-test:c1")
        wait_for(lambda: from_venue(mesh, E.OrderAck, "c1"), 60, "c1 acked by the venue")
        assert server.orders[cid1].open and server.order_count() == 1
        wait_for(lambda: server.ws_connections() >= 1, 30, "the user-data stream connected")
        server.fill(cid1, "0.0004")
        fills = wait_for(lambda: from_venue(mesh, E.OrderFill, "c1"), 60, "the streamed partial fill")
        assert (fills[0].body.qty, fills[0].body.leaves_qty, fills[0].body.price) == (40_000, 60_000, 4_900_000)

        # kill -9 with the POST in flight: the venue has the order, the log does not.
        server.hold_response(15.0)
        router.send(child("c2"), time.time_ns(), "router-test:c2")
        wait_for(lambda: cid2 in server.orders, 60, "c2 reached the venue")
        # The POST's answer is held back (the adapter times out after 5 s), and the service's loop
        # does not wait for it: requests are made by the venue thread, so heartbeats keep coming.
        beats = lambda: sum(  # noqa: E731
            1 for e in mesh.events() if isinstance(e.body, E.Heartbeat) and e.body.service == "execution"
        )
        n0 = beats()
        wait_for(lambda: beats() >= n0 + 2, 3.5, "two heartbeats from execution while its POST hangs")
        mesh.kill9("execution")
        wait_for(lambda: from_venue(mesh, E.OrderAck, "c2"), 60, "c2 found by client order id after the restart")
        assert sum(1 for o in server.all_orders if o.cid == cid2) == 1, "c2 was sent twice"

        # Down while the venue fills c1 and while c3 is sequenced.
        assert mesh.ctl("stop", "execution").returncode == 0
        server.fill(cid1, "0.0006")
        router.send(child("c3", price=4_800_000), time.time_ns(), "router-test:c3")
        assert router.flush(30)
        assert mesh.ctl("start", "execution").returncode == 0
        wait_for(
            lambda: len({e.body.trade_id for e in from_venue(mesh, E.OrderFill, "c1")}) == 2,
            60,
            "the fill made while execution was down",
        )
        wait_for(lambda: from_venue(mesh, E.OrderAck, "c3"), 60, "c3 sent late")
        assert server.order_count() == 3 and server.count("POST", "/api/v3/order") == 3

        # An ambiguous answer is not a reject: the POST is processed but answered 503, the lookup fails
        # too; the order stays pending, is looked up again, and its ack is reported.
        server.inject(503, path="/api/v3/order", count=2, process=True)
        router.send(child("c4", price=4_600_000), time.time_ns(), "router-test:c4")
        wait_for(lambda: from_venue(mesh, E.OrderAck, "c4"), 60, "c4 found after an ambiguous answer")
        unknown = [e.body for e in mesh.events() if isinstance(e.body, E.Correction) and e.body.child_id == "c4"]
        assert [c.what for c in unknown] == ["status_unknown"] and not from_venue(mesh, E.OrderRejected, "c4")
        # Never processed, lookup failed: once the request can no longer land it is rejected as such.
        server.inject(503, path="/api/v3/order", count=2, process=False)
        router.send(child("c5", price=4_600_000), time.time_ns(), "router-test:c5")
        rej = wait_for(lambda: from_venue(mesh, E.OrderRejected, "c5"), 60, "c5 rejected as never arrived")
        assert rej[0].body.reason.startswith("NEVER_ARRIVED") and client_order_id("c5") not in server.orders

        # An order placed at the venue by hand: reported and cancelled by the next reconcile.
        creds = Credentials(Secret(API_KEY), Secret(API_SECRET))
        with BinanceAdapter(BinanceConfig(rest_base=server.rest_url), creds) as by_hand:
            by_hand.submit(child("by-hand", price=4_700_000))
        hand_cid = client_order_id("by-hand")
        assert server.orders[hand_cid].open
        out = subprocess.run(
            [sys.executable, "-m", "services.risk", "--config", str(mesh.config_path), "reconcile"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
        )
        assert out.returncode == 0, out.stderr
        wait_for(lambda: not server.orders[hand_cid].open, 60, "the hand-placed order cancelled")
        corrections = lambda: [e.body for e in mesh.events() if isinstance(e.body, E.Correction)]  # noqa: E731
        wait_for(lambda: len([c for c in corrections() if c.child_id == hand_cid]) >= 2, 60, "both corrections logged")
        corr = corrections()
        assert [c.what for c in corr if c.child_id == hand_cid] == ["unknown_venue_order", "foreign_order_cancelled"]
        assert not [c for c in corr if c.what in ("balance_mismatch", "missing_at_venue", "venue_unreadable")], corr

        # Risk's CancelAll pulls everything at the venue.
        risk = Producer(mesh.cfg, "risk", "ctl", ctx=ctx, hello_deadline_s=30)
        risk.send(E.CancelAll("risk", SYM, "test"), time.time_ns(), "risk:test-cancel-all")
        assert risk.flush(30)
        risk.close()
        wait_for(
            lambda: all(from_venue(mesh, E.OrderCancelled, c) for c in ("c2", "c3", "c4")),
            60,
            "c2, c3 and c4 cancelled",
        )
        assert not [o for o in server.all_orders if o.open]

        # A replay with no venue rebuilds the same book of orders and position.
        core = replay(mesh)
        o1, o2, o3, o4, o5 = (core.orders.get(c) for c in ("c1", "c2", "c3", "c4", "c5"))
        assert (o1.state, o1.filled) == ("filled", 100_000)
        assert o2.state == o3.state == o4.state == "cancelled" and o5.state == "rejected"
        assert core.account.positions[SYM].position == 100_000
        assert core.orders.counters["illegal"] == 0, core.orders.counters
        # The adapter, re-seeded from the log after each restart, reports every fact once: strategy and
        # risk, which read fills from the stream, see no duplicate either.
        assert core.live.counters["duplicate_reports"] == 0, core.live.counters
        mesh.stop()
        summary = mesh.replay_verify()
        assert summary["divergences"]["count"] == 0 and summary["checked"] > 5, summary
        for f in [*mesh.run.rglob("*.log"), *mesh.log_dir.rglob("*")]:
            if f.is_file():
                assert API_SECRET.encode() not in f.read_bytes(), f"the API secret leaked into {f}"
    finally:
        if router is not None:
            router.close()
        ctx.term()
        mesh.cleanup()
        server.stop()


def test_the_whole_mesh_quotes_on_binance_and_a_venue_fill_reaches_the_strategy(tmp_path):
    """synthetic feed -> strategy -> risk -> router -> execution -> the (local) Binance; a fill made at
    the venue comes back on the user-data stream and moves the strategy's and risk's inventory."""
    from services.verifier.core import build_cores

    server = BinanceTestServer(API_KEY, API_SECRET, commission_asset="USDT").start()
    server.set_market(SYM, "0.01", "9999999.00")  # every post-only quote rests
    mesh = Mesh(
        ["sequencer", "logger", "feed", "strategy", "risk", "router", "execution"],
        {
            "feed": {"rate": 400.0, "seed": 3},
            "logger": {"fsync": "none"},
            "risk": {"max_open_orders": 200, "max_orders_per_second": 1000},
            **on_binance(server, tmp_path),
        },
    )
    try:
        mesh.start()
        wait_for(lambda: server.ws_connections() >= 1, 60, "the user-data stream connected")

        def resting_bid():
            return next((o for o in list(server.all_orders) if o.open and o.side == "BUY"), None)

        order = wait_for(resting_bid, 90, "a strategy bid resting at the venue")
        trade = server.fill(order.cid, str(order.orig_qty - order.executed))
        fill = wait_for(
            lambda: [e for e in mesh.events() if e.source == "binance" and isinstance(e.body, E.OrderFill)],
            60,
            "the venue's fill sequenced",
        )[0]
        assert fill.body.trade_id == str(trade["id"])
        # Everything the strategy, risk and router make of it is in the log: replay and look.
        mesh.stop()
        cores = {name: core for name, (core, _every) in build_cores(mesh.cfg).items()}
        for ev in mesh.events():
            for core in cores.values():
                core.apply(ev)
        qty = fill.body.qty
        assert cores["execution"].account.positions[SYM].position == qty
        assert cores["risk"].account.positions[SYM].position == qty
        assert cores["strategy"].counters["fills"] == 1
    finally:
        mesh.cleanup()
        server.stop()


def test_a_submit_still_queued_is_not_sent_when_cancelled_and_not_sent_late(tmp_path):
    """Requests go out one at a time; while one hangs, what queues behind it must not go out
    pointlessly or late: a submit whose cancel (or risk's CancelAll) comes before it begins is
    never POSTed (reported cancelled, LOCAL:cancelled_before_sent), and one that waited longer
    than max_submit_wait_ms is rejected locally, never POSTed either."""
    server = BinanceTestServer(API_KEY, API_SECRET).start()
    server.set_market(SYM, "50000.00", "50000.10")
    mesh = Mesh(
        ["sequencer", "logger", "execution"],
        {"logger": {"fsync": "none"}, **on_binance(server, tmp_path, max_submit_wait_ms=1000)},
    )
    ctx = zmq.Context()
    router = risk = None
    try:
        mesh.start()
        router = Producer(mesh.cfg, "router-test", "ctl", ctx=ctx, hello_deadline_s=30)
        risk = Producer(mesh.cfg, "risk", "ctl", ctx=ctx, hello_deadline_s=30)  # ready before any hold starts
        wait_for(lambda: [e for e in mesh.events() if isinstance(e.body, E.VenueSnapshot)], 60, "first venue snapshot")

        # q1's answer is held 3 s (under the adapter's 5 s timeout): q2 and q3 queue behind it.
        server.hold_response(3.0)
        router.send(child("q1"), time.time_ns(), "router-test:q1")
        wait_for(lambda: client_order_id("q1") in server.orders, 30, "q1 reached the venue")
        router.send(child("q2", price=4_890_000), time.time_ns(), "router-test:q2")
        router.send(E.ChildCancel("q2", "binance", SYM), time.time_ns(), "router-test:cancel-q2")
        router.send(child("q3", price=4_880_000), time.time_ns(), "router-test:q3")
        assert router.flush(30)
        cancelled = wait_for(lambda: from_venue(mesh, E.OrderCancelled, "q2"), 30, "q2 cancelled before it was sent")
        assert cancelled[0].body.reason == "LOCAL:cancelled_before_sent" and cancelled[0].body.leaves_qty == 100_000
        rejected = wait_for(lambda: from_venue(mesh, E.OrderRejected, "q3"), 30, "q3 rejected as stale")
        assert rejected[0].body.reason.startswith("LOCAL:stale_in_queue:")
        assert int(rejected[0].body.reason.split(":")[2].removesuffix("ms")) > 1000
        wait_for(lambda: from_venue(mesh, E.OrderAck, "q1"), 30, "q1 acked once its answer came")

        # Risk's CancelAll elides a submit queued before it on the symbol, and pulls q1 at the venue.
        server.hold_response(3.0)
        router.send(child("q4", price=4_870_000), time.time_ns(), "router-test:q4")
        wait_for(lambda: client_order_id("q4") in server.orders, 30, "q4 reached the venue")
        router.send(child("q5", price=4_860_000), time.time_ns(), "router-test:q5")
        assert router.flush(30)
        risk.send(E.CancelAll("risk", SYM, "test"), time.time_ns(), "risk:test-cancel-all")
        assert risk.flush(30)
        wait_for(
            lambda: all(from_venue(mesh, E.OrderCancelled, c) for c in ("q1", "q4", "q5")), 30, "q1, q4, q5 cancelled"
        )
        assert from_venue(mesh, E.OrderCancelled, "q5")[0].body.reason == "LOCAL:cancelled_before_sent"

        # With nothing queued ahead, an order goes out at once, as always. (Its key names a cause
        # sequenced after the CancelAll, which refuses children of older approvals.)
        router.send(child("q6", price=4_850_000), time.time_ns(), f"router-test:1:{10**9}:0")
        wait_for(lambda: from_venue(mesh, E.OrderAck, "q6"), 30, "q6 acked")
        for never in ("q2", "q3", "q5"):
            assert client_order_id(never) not in server.orders, f"{never} was POSTed"
        assert server.count("POST", "/api/v3/order") == 3  # q1, q4, q6
        assert server.count("DELETE", "/api/v3/order") == 0  # an elided order needs no cancel request
        core = replay(mesh)
        assert [core.orders.get(c).state for c in ("q1", "q2", "q3", "q4", "q5", "q6")] == [
            "cancelled", "cancelled", "rejected", "cancelled", "cancelled", "acked",
        ]  # fmt: skip
        assert core.orders.counters["illegal"] == 0, core.orders.counters
        mesh.stop()
        summary = mesh.replay_verify()
        assert summary["divergences"]["count"] == 0, summary
    finally:
        for p in (router, risk):
            if p is not None:
                p.close()
        ctx.term()
        mesh.cleanup()
        server.stop()
