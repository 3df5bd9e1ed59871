"""The in-process loop: sequencing, determinism, and no second implementation.

* the stream it builds is what a sequencer publishes: seq 1..N gap-free,
  epoch 1, a monotone clock, a Clock every 100 ms of data time;
* the same input twice gives the same report (apart from timing), the same
  equity CSV and the same core hashes;
* every core output it sequenced is exactly what the mesh's cores, driven
  independently over the same sequenced stream (as services.verifier
  does), emit -- same keys, same bodies, same final hashes;
* with no fills and no rejections the strategy intents equal those of a
  lone StrategyCore fed only the market events;
* an event log of a run replays (market data only, re-decided) to the same
  decisions.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from common import config, eventlog
from common import events as E
from common.core import state_hash
from common.units import BUILTIN
from services.backtest import report
from services.backtest.engine import EPOCH, backtest_config, set_fill_model
from services.backtest.inputs import LogInput, SyntheticInput
from services.backtest.run import run_backtest
from services.strategy.core import StrategyCore
from services.verifier.core import Replayer, build_cores

N = 4000
MARKET = (E.BookSnapshot, E.BookDelta, E.Trade, E.BestBidOffer)


def cfg0(**risk: object) -> config.MeshConfig:
    return config.from_dict({"risk": {"max_consecutive_losses": 1_000_000, **risk}})


def run(cfg: config.MeshConfig, fill_model: str = "touch", n: int = N, seed: int = 11):
    return run_backtest(cfg, SyntheticInput(n, seed, BUILTIN, cfg.feed), fill_model, keep_events=True)


@pytest.fixture(scope="module")
def touch_run():
    return run(cfg0())


def test_stream_is_sequenced_like_the_live_sequencer(touch_run) -> None:
    evs = touch_run.engine.events
    assert [e.seq for e in evs] == list(range(1, len(evs) + 1))
    assert all(e.epoch == EPOCH for e in evs)
    assert isinstance(evs[0].body, E.SequencerEpoch)
    recv = [e.recv_ns for e in evs]
    assert recv == sorted(recv), "the sequencer clock ran backwards"
    assert all(e.recv_ns >= e.event_ns for e in evs if e.source == "feed")
    clocks = [e.recv_ns for e in evs if isinstance(e.body, E.Clock)]
    assert clocks and all(b - a == 100_000_000 for a, b in zip(clocks, clocks[1:], strict=False))
    assert all(c % 100_000_000 == 0 for c in clocks)
    md = [e for e in evs if e.source == "feed"]
    assert len(md) == N and [e.source_seq for e in md] == list(range(1, N + 1))
    # outputs carry their producer's idempotency key <producer>:<epoch>:<seq of the cause>:<n>
    outs = [e for e in evs if e.source not in ("feed", "sequencer")]
    assert outs and all(e.key.startswith(f"{e.source}:{EPOCH}:") for e in outs)
    assert {e.source for e in outs} >= {"strategy", "risk", "router", "execution"}
    assert touch_run.report["fills"] > 0


def test_same_input_twice_same_report_csv_and_hashes(touch_run, tmp_path: Path) -> None:
    again = run(cfg0())
    a, b = report.deterministic_view(touch_run.report), report.deterministic_view(again.report)
    assert report.to_json(a) == report.to_json(b)
    report.write_equity_csv(touch_run.stats, tmp_path / "a.csv")
    report.write_equity_csv(again.stats, tmp_path / "b.csv")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert (tmp_path / "a.csv").read_text().count("\n") == touch_run.report["fills"] + 1
    assert [E.encode(e) for e in touch_run.engine.events] == [E.encode(e) for e in again.engine.events]


def test_a_different_seed_gives_a_different_run(touch_run) -> None:
    other = run(cfg0(), seed=12)
    assert other.report["hashes"] != touch_run.report["hashes"]


@pytest.mark.parametrize("fill_model", ["queue", "touch"])
def test_outputs_equal_the_mesh_cores_replayed_over_the_same_stream(fill_model: str) -> None:
    res = run(cfg0(), fill_model)
    evs = res.engine.events
    emitted = {e.key: (e.source, e.event_ns, E.encode(e.body)) for e in evs if e.source not in ("feed", "sequencer")}
    cores = build_cores(backtest_config(cfg0()))
    set_fill_model(cores["execution"][0], fill_model)
    replayed = {}
    for ev in evs:
        for name, (core, _every) in cores.items():
            for o in core.apply(ev):
                replayed[o.key] = (name, o.event_ns, E.encode(o.body))
    assert replayed == emitted
    # and the verifier's Replayer over the same stream ends on the same hashes
    rp = Replayer(build_cores(backtest_config(cfg0())))
    set_fill_model(rp.cores["execution"][0], fill_model)
    for ev in evs:
        rp.apply(ev)
    assert rp.hashes() == res.report["hashes"]
    assert any(isinstance(e.body, E.OrderFill) for e in evs)


def test_without_fills_or_rejections_intents_equal_a_lone_strategy_core() -> None:
    # Orders never reach a venue (1e6 s of latency) and risk lets everything through,
    # so nothing ever feeds back into the strategy: its intents depend on market data only.
    cfg = config.from_dict({
        "execution": {"order_latency_ms": 10**9},
        "risk": {"max_open_orders": 10**9, "max_orders_per_second": 10**9, "max_position_qty": 10**15,
                 "max_notional": 10**30},
    })  # fmt: skip
    res = run(cfg, "queue")
    evs = res.engine.events
    assert not any(isinstance(e.body, (E.OrderFill, E.RiskRejected, E.OrderCancelled)) for e in evs)
    ours = [(e.key, E.encode(e.body)) for e in evs if e.source == "strategy"]
    assert len(ours) > 100
    lone = StrategyCore(cfg.strategy, BUILTIN)
    theirs = []
    for ev in evs:
        if isinstance(ev.body, MARKET):
            theirs += [(o.key, E.encode(o.body)) for o in lone.apply(ev)]
    assert ours == theirs
    assert state_hash(lone.state()) == state_hash(res.engine.strategy.state())


def test_event_log_of_a_run_replays_to_the_same_decisions(touch_run, tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    w = eventlog.LogWriter(log_dir, 1 << 20)
    w.append([(e.seq, E.encode(e)) for e in touch_run.engine.events])
    w.close()
    inp = LogInput(str(log_dir))
    again = run_backtest(cfg0(), inp, "touch")
    acc = again.report["inputs"]
    assert acc["lines"] == len(touch_run.engine.events)
    assert sum(acc["accepted"].values()) == N  # market data only; every decision re-decided
    assert acc["settled"] == acc["lines"]
    assert acc["dropped"]["not_market_data.OrderFill"] == touch_run.report["fills"]
    skip = {"input", "inputs", "label", "market_run"}  # this run went per event (keep_events), that one not
    a = {k: v for k, v in report.deterministic_view(touch_run.report).items() if k not in skip}
    b = {k: v for k, v in report.deterministic_view(again.report).items() if k not in skip}
    assert a == b


def test_clock_gap_is_bounded() -> None:
    from services.backtest.engine import Engine

    items = [(0, E.Trade("BTCUSDT", 1, 100, 1000, True)), (3600 * 10**9, E.Trade("BTCUSDT", 2, 100, 1000, True))]
    eng = Engine(cfg0())
    info = eng.run(items)
    assert info.clock_gaps == 1
    assert info.clocks == 6000 + 1 + 1  # 10 min of clocks, then the one at the end of the gap
    assert dataclasses.asdict(info)["inputs"] == 2
