"""The dashboard's pure core: panels computed from sequenced events alone."""

from __future__ import annotations

import json

import pytest
from prometheus_client.parser import text_string_to_metric_families

from common import events as E
from common.metrics import bucket_of
from tests.unit.dashboard.helpers import MS, T0, Stream, heartbeat, heartbeat_with_latency, levels, new_state


def test_book_rebuilds_from_snapshot_and_deltas_to_depth_20():
    st, s = new_state(), Stream()
    st.apply(s.ev(E.BookSnapshot("BTCUSDT", 1, levels(6_000_000, 30, -1), levels(6_000_001, 30, 1)), T0))
    st.apply(s.ev(E.BookDelta("BTCUSDT", 2, 2, E.pack_levels([(6_000_000, 0), (6_000_005, 7)]), b""), T0 + MS))
    view = st.trading("BTCUSDT")["book"]
    assert len(view["bids"]) == 20 and len(view["asks"]) == 20
    assert view["bids"][0][0] == "60000.05" and view["bids"][1][0] == "59999.99"  # best removed, new best added
    assert view["asks"][0][0] == "60000.01"
    assert view["levels"] == [30, 30]
    bv = sum(1000 * (i + 1) for i in range(1, 20)) + 7
    av = sum(1000 * (i + 1) for i in range(20))
    assert view["imbalance_bps"] == (bv - av) * 10_000 // (bv + av)


def test_tick_to_order_uses_the_cause_seq_in_the_intent_key():
    st, s = new_state(), Stream()
    st.apply(s.ev(E.Trade("BTCUSDT", 1, 6_000_000, 1000, False), T0))  # seq 1: the cause
    st.apply(s.ev(E.Trade("BTCUSDT", 2, 6_000_000, 1000, False), T0 + 5 * MS))  # seq 2: not the cause
    intent = E.OrderIntent("strategy", "BTCUSDT", "strategy.BTCUSDT.1.b", E.BUY, 5_999_999, 1000)
    st.apply(s.ev(intent, T0 + 7 * MS, source="strategy", key="strategy:1:1:0", event_ns=T0))
    w = st.latency[("tick_to_order", "stream")]
    assert w.total.n == 1 and w.total.max == 7 * MS


def test_sequencing_delay_only_for_wallclock_event_times():
    st, s = new_state(), Stream()
    st.apply(s.ev(heartbeat("risk", "live", 0), T0 + 3 * MS, source="risk", event_ns=T0))
    st.apply(
        s.ev(E.Trade("BTCUSDT", 1, 1, 1, False), T0 + 4 * MS, event_ns=1_704_067_200_000_000_000)
    )  # synthetic time
    w = st.latency[("sequencing", "stream")]
    assert w.total.n == 1 and w.total.max == 3 * MS
    assert st.skipped_not_wallclock == 1


def test_order_lifecycle_and_latencies():
    st, s = new_state(), Stream()
    st.apply(s.ev(E.OrderIntent("strategy", "BTCUSDT", "o1", E.BUY, 6_000_000, 100_000), T0, key="strategy:1:99:0"))
    st.apply(s.ev(E.RiskApproved("o1", "BTCUSDT", E.BUY, 6_000_000, 100_000, 0, True, 1), T0 + 2 * MS))
    st.apply(
        s.ev(E.ChildOrder("o1", "o1.0", "sim", "BTCUSDT", E.BUY, 6_000_000, 100_000, 0, True, "direct"), T0 + 3 * MS)
    )
    st.apply(s.ev(E.OrderAck("sim", "o1.0", "v1", "BTCUSDT"), T0 + 60 * MS))
    st.apply(
        s.ev(E.OrderFill("sim", "o1.0", "BTCUSDT", E.BUY, 6_000_000, 40_000, 60_000, 5, E.MAKER, "t1"), T0 + 300 * MS)
    )
    row = st.orders_view()[0]
    assert (
        row["status"] == "partial" and row["decision_ms"] == 2.0 and row["ack_ms"] == 60.0 and row["fill_ms"] == 300.0
    )
    st.apply(s.ev(E.OrderFill("sim", "o1.0", "BTCUSDT", E.BUY, 6_000_000, 60_000, 0, 5, E.MAKER, "t2"), T0 + 400 * MS))
    assert st.orders_view()[0]["status"] == "filled"
    pnl = st.trading("BTCUSDT")["pnl"]
    assert pnl["position"] == "0.00100000" and pnl["fills"] == 2 and pnl["fees"] == "0.0000000010"
    assert st.latency[("order_to_fill", "stream")].total.n == 1
    st.apply(s.ev(E.OrderIntent("strategy", "BTCUSDT", "o2", E.SELL, 6_000_100, 100_000), T0 + 500 * MS))
    st.apply(s.ev(E.RiskRejected("o2", "BTCUSDT", "max_order_qty", "too big", 7), T0 + 501 * MS))
    assert st.orders_view()[0]["status"] == "rejected" and st.orders_view()[0]["reason"] == "max_order_qty"


def test_cluster_up_down_restarts_and_lag():
    st, s = new_state(), Stream()
    st.apply(s.ev(heartbeat("sequencer", "live", 100, accepted=100), T0, source="sequencer"))
    st.apply(s.ev(heartbeat("risk", "live", 90, events=90), T0, source="risk"))
    st.apply(s.ev(heartbeat("risk", "live", 95, events=95), T0 + 1000 * MS, source="risk"))
    st.apply(s.ev(heartbeat("risk", "live", 10, events=3), T0 + 2000 * MS, source="risk"))  # counters went back
    st.apply(s.ev(heartbeat("risk", "recovering", 11, events=4), T0 + 2500 * MS, source="risk"))
    st.apply(s.ev(heartbeat("risk", "live", 12, events=5), T0 + 2600 * MS, source="risk"))
    st.apply(s.ev(heartbeat("sequencer", "live", 120, accepted=120), T0 + 2600 * MS, source="sequencer"))
    rows = {r["service"]: r for r in st.cluster()}
    assert rows["risk"]["restarts"] == 2 and rows["risk"]["up"] and rows["risk"]["lag"] == 108
    assert rows["risk"]["uptime_s"] == pytest.approx(0.1)  # since the restart it reported at +2.5 s
    # 3 s of sequencer clock with no risk heartbeat: down (the clock comes from any event's recv_ns)
    st.apply(s.ev(E.Clock(130), T0 + 5700 * MS, source="sequencer"))
    rows = {r["service"]: r for r in st.cluster()}
    assert not rows["risk"]["up"] and not rows["sequencer"]["up"]
    st.apply(s.ev(E.Clock(131), T0 + 5500 * MS, source="sequencer"))
    assert {r["service"]: r for r in st.cluster()}["risk"]["last_hb_ms"] == 3100


def test_heartbeat_latency_windows_merge_services_and_expire():
    st, s = new_state(latency_window_s=10), Stream()
    st.apply(s.ev(heartbeat_with_latency("risk", "risk_check", [1000] * 99 + [50_000]), T0, source="risk"))
    st.apply(s.ev(heartbeat_with_latency("risk", "risk_check", [2000] * 100), T0 + 1000 * MS, source="risk"))
    rows = {(r["stage"], r["source"]): r for r in st.latency_rows()}
    r = rows[("risk_check", "risk")]
    assert r["n"] == 200 and r["window"] and r["max"] == 50_000
    assert bucket_of(r["p50"]) == bucket_of(2000) and bucket_of(r["p999"]) == bucket_of(50_000)
    st.apply(s.ev(E.Clock(3), T0 + 10_500 * MS, source="sequencer"))  # the first interval left the window
    r = {(r["stage"], r["source"]): r for r in st.latency_rows()}[("risk_check", "risk")]
    assert r["n"] == 100 and r["max"] == 2000 and r["total"] == 200


def test_state_hash_statuses():
    st, s = new_state(), Stream()
    st.apply(s.ev(E.StateHash("risk", 1000, 0xABC), T0))
    st.apply(s.ev(E.StateHash("router", 1000, 0xDEF), T0))
    assert {h["service"]: h["status"] for h in st.hashes_view()} == {
        "risk": "unverified (no verifier)",
        "router": "unverified (no verifier)",
    }
    st.apply(s.ev(heartbeat("verifier", "live", 1005, checked=2, divergences=0), T0 + MS, source="verifier"))
    st.apply(s.ev(E.HashDivergence("router", 1000, 0x111, 0xDEF), T0 + 2 * MS, source="verifier"))
    got = {h["service"]: h["status"] for h in st.hashes_view()}
    assert got == {"risk": "match", "router": "DIVERGED at 1000"}
    assert st.hashes_view()[0]["hash"] == "0000000000000abc"


def test_view_is_json_and_events_render():
    st, s = new_state(events_kept=10), Stream()
    for i in range(25):
        st.apply(s.ev(E.Trade("BTCUSDT", i + 1, 6_000_000 + i, 1000, bool(i % 2)), T0 + i * MS))
    st.apply(s.ev(E.OperatorCommand("kill", "", "ops"), T0 + 30 * MS))
    v = json.loads(json.dumps(st.view()))
    assert len(v["events"]) == 10 and v["events"][-1]["type"] == "OperatorCommand"
    assert v["events"][0]["text"].startswith("BTCUSDT #17 ")
    assert len(v["by_type"]["Trade"]) == 20 and v["events_total"] == 26


def test_metrics_text_parses_and_escapes_labels():
    st, s = new_state(), Stream()
    odd = 'we"ird\\name\nx'
    st.apply(s.ev(heartbeat(odd, "live", 5, events=5), T0, source="x"))
    st.apply(s.ev(heartbeat_with_latency("risk", "risk_check", [1500] * 10), T0 + MS, source="risk"))
    st.apply(s.ev(E.OrderFill("sim", "c.0", "BTCUSDT", E.BUY, 6_000_000, 1000, 0, 0, E.MAKER, "t"), T0 + 2 * MS))
    text = st.prometheus()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    assert fams["atomic_mesh_dashboard_events"].type == "counter"
    assert fams["atomic_mesh_service_up"].type == "gauge"
    ups = {smp.labels["service"]: smp.value for smp in fams["atomic_mesh_service_up"].samples}
    assert ups[odd] == 1.0  # the label survived escaping exactly
    lat = fams["atomic_mesh_latency_seconds"]
    assert lat.type == "summary"
    by = {
        (smp.name, smp.labels.get("stage"), smp.labels.get("source"), smp.labels.get("quantile")): smp.value
        for smp in lat.samples
    }
    assert by[("atomic_mesh_latency_seconds", "risk_check", "risk", "0.99")] == pytest.approx(1500e-9, rel=0.04)
    assert by[("atomic_mesh_latency_seconds_count", "risk_check", "risk", None)] == 10
    assert by[("atomic_mesh_latency_seconds_sum", "risk_check", "risk", None)] == pytest.approx(15000e-9)
    assert fams["atomic_mesh_position"].samples[0].value == pytest.approx(0.00001)
