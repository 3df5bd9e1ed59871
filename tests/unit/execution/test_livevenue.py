"""The pure half of a live venue: actions out, the venue's sequenced reports in, duplicates dropped, reconcile."""

from __future__ import annotations

import pytest

from common import config
from common import events as E
from common.core import state_hash
from common.units import BUILTIN
from services.execution.binance import client_order_id
from services.execution.core import ExecutionCore
from services.verifier.core import build_cores

MS = 1_000_000
SYM = "BTCUSDT"


class Stream:
    def __init__(self) -> None:
        self.seq = 0
        self.t = 1_700_000_000_000_000_000

    def ev(self, body: E._Body, source: str = "router", dt_ms: int = 10) -> E.Sequenced:
        self.seq += 1
        self.t += dt_ms * MS
        return E.Sequenced(
            E.CODEC_VERSION, self.seq, 1, self.seq, source, self.seq, f"k{self.seq}", self.t, self.t, body
        )


def live_cfg() -> config.MeshConfig:
    return config.from_dict(
        {"execution": {"venue": "binance"}, "router": {"venues": [{"name": "binance", "fee_bps": 10}]}}
    )


def live_core() -> tuple[ExecutionCore, Stream]:
    cfg = live_cfg()
    return ExecutionCore(cfg.execution, cfg.router, BUILTIN), Stream()


def child(cid: str, qty: int = 100_000) -> E.ChildOrder:
    return E.ChildOrder("p", cid, "binance", SYM, E.BUY, 4_900_000, qty, E.GTC, True, "best_venue")


def fill(cid: str, qty: int, leaves: int, trade: str) -> E.OrderFill:
    return E.OrderFill("binance", cid, SYM, E.BUY, 4_900_000, qty, leaves, 5, E.MAKER, trade)


def test_a_live_venue_needs_a_router_venue_of_its_name():
    cfg = config.from_dict({"execution": {"venue": "binance"}})
    with pytest.raises(ValueError, match="router venue named 'binance'"):
        ExecutionCore(cfg.execution, cfg.router, BUILTIN)


def test_a_child_order_becomes_an_action_not_a_report():
    core, s = live_core()
    assert core.apply(s.ev(child("c1"))) == []
    assert core.orders.get("c1").state == "new"
    acts = core.take_actions()
    assert [a[0] for a in acts] == ["submit"] and acts[0][1].child_id == "c1"
    assert core.take_actions() == []  # drained once


def test_reports_count_only_from_the_venue_itself():
    core, s = live_core()
    core.apply(s.ev(child("c1")))
    core.apply(s.ev(E.OrderAck("binance", "c1", "9", SYM), source="someone-else"))
    assert core.orders.get("c1").state == "new"
    core.apply(s.ev(E.OrderAck("binance", "c1", "9", SYM), source="binance"))
    assert core.orders.get("c1").state == "acked"


def test_a_report_seen_twice_is_applied_once():
    core, s = live_core()
    core.apply(s.ev(child("c1")))
    for body in (
        E.OrderAck("binance", "c1", "9", SYM),
        fill("c1", 40_000, 60_000, "t1"),
        E.OrderAck("binance", "c1", "9", SYM),
        fill("c1", 40_000, 60_000, "t1"),
        fill("c1", 60_000, 0, "t2"),
    ):
        core.apply(s.ev(body, source="binance"))
    o = core.orders.get("c1")
    assert (o.state, o.filled) == ("filled", 100_000)
    assert core.account.positions[SYM].position == 100_000
    assert core.live.counters["duplicate_reports"] == 2
    assert core.orders.counters["illegal"] == 0
    assert core.live.trades == {}  # forgotten once the order is terminal


def test_risk_cancel_all_asks_the_venue_to_cancel_the_symbol():
    core, s = live_core()
    core.apply(s.ev(child("c1")))
    core.take_actions()
    core.apply(s.ev(E.CancelAll("risk", "", "deadman"), source="risk"))
    assert core.take_actions() == [("cancel_all", SYM)]


def test_reconcile_asks_for_a_snapshot_and_compares_it():
    core, s = live_core()
    core.apply(s.ev(E.OperatorCommand("reconcile", "", "execution"), source="execution"))
    assert core.take_actions() == [("snapshot",)]
    # First snapshot: the baseline, no corrections.
    outs = core.apply(
        s.ev(E.VenueSnapshot("binance", [], {"BTC": 150_000_000, "USDT": 10**13}, True, ""), source="binance")
    )
    assert outs == []
    core.apply(s.ev(child("c1")))
    core.apply(s.ev(E.OrderAck("binance", "c1", "9", SYM), source="binance"))
    core.apply(s.ev(fill("c1", 40_000, 60_000, "t1"), source="binance"))
    core.take_actions()
    # The venue holds c1 and one order nobody here placed; BTC moved as the fill says.
    foreign = client_order_id("not-ours")
    rows = [(client_order_id("c1"), SYM, E.BUY, 4_900_000, 100_000, 40_000), (foreign, SYM, E.SELL, 5_100_000, 1000, 0)]
    outs = core.apply(
        s.ev(E.VenueSnapshot("binance", rows, {"BTC": 150_040_000, "USDT": 10**13}, True, ""), source="binance")
    )
    corr = [o.body for o in outs]
    assert [(c.what, c.child_id) for c in corr] == [("unknown_venue_order", foreign)]
    assert core.take_actions() == [("cancel_foreign", foreign, SYM)]
    # Now the venue has lost c1 and its BTC balance disagrees with the log's fills.
    outs = core.apply(s.ev(E.VenueSnapshot("binance", [], {"BTC": 150_000_000}, True, ""), source="binance"))
    assert [(o.body.what, o.body.child_id) for o in outs] == [("missing_at_venue", "c1"), ("balance_mismatch", "")]
    assert core.take_actions() == [("query", "c1")]
    # An unreadable venue reconciles nothing and says so.
    outs = core.apply(s.ev(E.VenueSnapshot("binance", [], {}, False, "HTTP503"), source="binance"))
    assert [o.body.what for o in outs] == ["venue_unreadable"]


def test_a_base_asset_commission_is_expected_off_the_venue_balance():
    """Binance keeps a buy's commission out of the base asset received: 0.0004 BTC bought with
    0.0000004 BTC commission moves the balance by 39_960 (10**-8 BTC), not 40_000."""
    core, s = live_core()
    core.apply(s.ev(E.VenueSnapshot("binance", [], {"BTC": 150_000_000}, True, ""), source="binance"))
    core.apply(s.ev(child("c1")))
    core.apply(s.ev(E.OrderAck("binance", "c1", "9", SYM), source="binance"))
    paid = E.OrderFill("binance", "c1", SYM, E.BUY, 4_900_000, 40_000, 60_000, 196_000_000, E.MAKER, "t1", 40)
    core.apply(s.ev(paid, source="binance"))
    pos = core.account.positions[SYM]
    assert (pos.position, pos.fees) == (40_000, 196_000_000)  # the commission's quote value is in PnL
    rows = [(client_order_id("c1"), SYM, E.BUY, 4_900_000, 100_000, 40_000)]
    snap = lambda btc: s.ev(E.VenueSnapshot("binance", rows, {"BTC": btc}, True, ""), source="binance")  # noqa: E731
    assert core.apply(snap(150_039_960)) == []
    # The commission reported but not taken (or taken twice) is a real difference, to the unit.
    for btc in (150_040_000, 150_039_920, 150_039_961):
        outs = core.apply(snap(btc))
        assert [o.body.what for o in outs] == ["balance_mismatch"], btc
    # A restart from a snapshot keeps the sum, so the next reconcile still agrees.
    again, _ = live_core()
    again.load_state(core.state())
    assert again.live.base_fees == {SYM: 40}
    assert again.apply(snap(150_039_960)) == []


def test_the_verifier_builds_the_live_core_and_it_replays_identically():
    cfg = live_cfg()
    s = Stream()
    evs = [
        s.ev(child("c1")),
        s.ev(E.OrderAck("binance", "c1", "9", SYM), source="binance"),
        s.ev(fill("c1", 40_000, 60_000, "t1"), source="binance"),
        s.ev(E.CancelAll("risk", SYM, "x"), source="risk"),
    ]
    hashes = []
    for _ in range(2):
        core = build_cores(cfg)["execution"][0]
        for ev in evs:
            core.apply(ev)
        hashes.append(state_hash(core.state()))
    assert hashes[0] == hashes[1]
