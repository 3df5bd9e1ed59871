"""Reconciliation in the execution core: what a venue holds that the engine does not know
is found, reported, cancelled."""

from __future__ import annotations

from common import config
from common import events as E
from common.units import BUILTIN
from services.execution.core import ExecutionCore

MS = 1_000_000


class Stream:
    def __init__(self) -> None:
        self.seq = 0
        self.t = 1_700_000_000_000_000_000

    def ev(self, body: E._Body, dt_ms: int = 10) -> E.Sequenced:
        self.seq += 1
        self.t += dt_ms * MS
        return E.Sequenced(
            E.CODEC_VERSION, self.seq, 1, self.seq, "test", self.seq, f"k{self.seq}", self.t, self.t, body
        )


def core_with_book() -> tuple[ExecutionCore, Stream]:
    cfg = config.from_dict({})
    core = ExecutionCore(cfg.execution, cfg.router, BUILTIN)
    s = Stream()
    core.apply(
        s.ev(E.BookSnapshot("BTCUSDT", 1, E.pack_levels([(6_000_000, 100_000)]), E.pack_levels([(6_000_100, 100_000)])))
    )
    return core, s


def bodies(outs, t):
    return [o.body for o in outs if isinstance(o.body, t)]


def test_a_consistent_engine_reconciles_with_no_corrections():
    core, s = core_with_book()
    outs = core.apply(s.ev(E.OperatorCommand("reconcile", "", "test")))
    assert bodies(outs, E.Correction) == []
    assert core.counters["reconciles"] == 1


def test_an_order_placed_behind_the_engines_back_is_reported_and_cancelled():
    core, s = core_with_book()
    assert core.apply(s.ev(E.OperatorCommand("sim-inject", "sim-a:BTCUSDT:BUY:5000000:1000:manual-1", "ops"))) == []
    assert [o["child_id"] for o in core.venues["sim-a"].open_orders()] == ["manual-1"]
    outs = core.apply(s.ev(E.OperatorCommand("reconcile", "", "execution")))
    corr = bodies(outs, E.Correction)
    assert len(corr) == 1 and corr[0].what == "unknown_venue_order" and corr[0].child_id == "manual-1"
    assert corr[0].venue == "sim-a" and corr[0].symbol == "BTCUSDT"
    # The venue's cancel arrives after its latency, on the next event past it.
    later = core.apply(s.ev(E.Clock(s.seq), dt_ms=100))
    cancelled = bodies(later, E.OrderCancelled)
    assert [c.child_id for c in cancelled] == ["manual-1"]
    assert core.venues["sim-a"].open_orders() == []
    # A second reconcile finds nothing left to correct.
    assert bodies(core.apply(s.ev(E.OperatorCommand("reconcile", "", "execution"))), E.Correction) == []


def test_a_bad_injection_is_refused_with_a_reason_not_a_crash():
    core, s = core_with_book()
    outs = core.apply(s.ev(E.OperatorCommand("sim-inject", "nowhere:BTCUSDT:BUY:1:1:x", "ops")))
    corr = bodies(outs, E.Correction)
    assert len(corr) == 1 and corr[0].what == "inject_refused"


def test_reconciliation_replays_identically():
    from common.core import state_hash

    runs = []
    for _ in range(2):
        core, s = core_with_book()
        core.apply(s.ev(E.OperatorCommand("sim-inject", "sim-b:BTCUSDT:SELL:7000000:1000:m2", "ops")))
        outs = core.apply(s.ev(E.OperatorCommand("reconcile", "", "execution")))
        outs += core.apply(s.ev(E.Clock(s.seq), dt_ms=100))
        runs.append(([o.body for o in outs], state_hash(core.state())))
    assert runs[0] == runs[1]


def test_a_child_order_made_before_risks_cancel_all_is_refused_after_it():
    core, s = core_with_book()
    s.ev(E.Clock(0))  # the approval the router answered (seq 2)
    core.apply(s.ev(E.CancelAll("risk", "", "kill_switch:operator")))
    child = E.ChildOrder("o1", "o1.1", "sim-a", "BTCUSDT", E.BUY, 5_000_000, 1000, E.GTC, True, "best_venue")
    s.seq += 1
    s.t += 10 * MS
    ev = E.Sequenced(E.CODEC_VERSION, s.seq, 1, s.seq, "router", 1, "router:1:2:0", s.t, s.t, child)
    outs = core.apply(ev)
    assert [(b.child_id, b.reason) for b in bodies(outs, E.OrderRejected)] == [("o1.1", "stale_after_risk_cancel_all")]
    assert core.venues["sim-a"].open_orders() == [] and core.venues["sim-a"].in_flight() == 0
