"""The engine's market run (services/backtest/fastpath.py, common/hotpath/market_run.py) is
exact: the same input gives the same report, fills, equity curve and every core's state
hash whether quiet market events go through the kernel or through each core's apply().

Each case also checks that the kernel really took most of the run, so a market run that
quietly fell back to the per-event path could not pass.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from common import config
from common import events as E
from common.units import BUILTIN
from services.backtest import report
from services.backtest.engine import Engine
from services.backtest.inputs import CaptureInput, SyntheticInput
from services.backtest.run import run_backtest
from tests.shared_data import BINANCE_SPOT

DATA = Path(os.environ.get("ATOMIC_MESH_DATA", str(BINANCE_SPOT)))
FILES = [DATA / "btcusdt_20240808.gz", DATA / "btcusdt_20240809.gz"]
S = 10**9


class _Items:
    """An input of ready-made items (the report reads describe/accounting/total)."""

    def __init__(self, items: list[tuple[int, E._Body]]) -> None:
        self.items_ = items
        self.total = len(items)

    def items(self):
        return iter(self.items_)

    def accounting(self) -> dict:
        return {"lines": self.total, "settled": self.total, "accepted": {}, "dropped": {}, "rejected": {}}

    def describe(self) -> str:
        return f"{self.total} test events"


def both_ways(cfg: config.MeshConfig, items: list[tuple[int, E._Body]], fill_model: str):
    """(per-event result, market-run result) of the same items."""
    out = []
    for market_run in (False, True):
        res = run_backtest(cfg, _Items(items), fill_model, market_run=market_run)
        out.append(res)
    return out


def assert_same(slow, fast, min_share: float = 0.8) -> None:
    a, b = report.deterministic_view(slow.report), report.deterministic_view(fast.report)
    assert a.pop("market_run") == {"off": "switched off (--per-event)"}
    mr = b.pop("market_run")
    assert a == b
    assert slow.engine.hashes() == fast.engine.hashes()
    assert [vars(f) for f in slow.stats.fills] == [vars(f) for f in fast.stats.fills]
    assert slow.stats.counts == fast.stats.counts
    assert mr["events"] >= min_share * slow.report["events"], mr
    assert slow.engine.seq == fast.engine.seq and slow.engine.lamport == fast.engine.lamport
    assert dict(slow.engine._src) == dict(fast.engine._src)


def synthetic(n: int, seed: int = 3) -> list[tuple[int, E._Body]]:
    cfg = config.from_dict({})
    return list(SyntheticInput(n, seed, BUILTIN, cfg.feed).items())


def mixed(n: int) -> list[tuple[int, E._Body]]:
    """The synthetic market with what it lacks: snapshots now and then (a delta's levels sent
    as a snapshot, so the book shrinks at once), best bid/offer lines, events of a symbol the
    strategy does not trade, rows dropped and rejected, and an 11-minute silence."""
    out: list[tuple[int, E._Body]] = []
    shift = 0
    for i, (t, b) in enumerate(synthetic(n, seed=5)):
        t += shift
        if i == n // 2:
            shift = 11 * 60 * S  # longer than the engine's 10-minute clock gap
        if type(b) is E.BookDelta and i % 97 == 0:
            b = E.BookSnapshot(b.symbol, b.last_id, b.bids, b.asks)
        out.append((t, b))
        if type(b) is E.BookDelta and i % 7 == 0:
            lv = E.unpack_levels(b.bids) if b.bids else None
            if lv is not None and len(lv):
                px, qty = int(lv[0][0]), int(lv[0][1])
                out.append((t, E.BestBidOffer(b.symbol, b.last_id, px, qty, px + 3, qty)))
        if i % 53 == 0:
            out.append((t, E.Trade("ETHUSDT", i, 300_000, 1_000_000, True)))
        if i % 401 == 0 and type(b) is E.BookDelta and b.asks:
            # An ask far beyond every ladder's window (dropped, counted) and a negative qty
            # (a rejected row, counted): the feed sends neither, the cores count both.
            px = int(E.unpack_levels(b.asks)[0][0])
            odd = E.pack_levels([(3 * px, 5), (px + 1, -1)])
            out.append((t, E.BookDelta(b.symbol, b.last_id, b.last_id, b"", odd)))
    return out


@pytest.mark.parametrize("fill_model", ["queue", "touch"])
@pytest.mark.parametrize("model", ["mm", "as"])
def test_synthetic_both_models_both_fill_models(fill_model: str, model: str) -> None:
    cfg = config.from_dict({"strategy": {"model": model}, "risk": {"max_consecutive_losses": 1_000_000}})
    slow, fast = both_ways(cfg, synthetic(20_000), fill_model)
    assert slow.report["fills"] > 0 or slow.report["intents"] > 100
    assert_same(slow, fast)


@pytest.mark.parametrize("fill_model", ["queue", "touch"])
def test_quotes_held_back_after_risk_refuses(fill_model: str) -> None:
    """mesh.toml's risk: the loss-streak breaker trips, risk refuses, and the strategy holds
    its quotes back (reject_backoff_ms): most of those quotes the kernel holds back itself."""
    cfg = config.load()
    slow, fast = both_ways(cfg, synthetic(30_000, seed=4), fill_model)
    assert slow.report["risk_rejected"].get("circuit_breaker", 0) > 0
    held = slow.report["strategy_counters"]["held_back"]
    assert held > 1000 and fast.report["strategy_counters"]["held_back"] == held
    assert_same(slow, fast, min_share=0.9)


@pytest.mark.parametrize("fill_model", ["queue", "touch"])
def test_snapshots_bbo_other_symbols_and_a_long_gap(fill_model: str) -> None:
    cfg = config.from_dict({"risk": {"max_consecutive_losses": 1_000_000}})
    items = mixed(15_000)
    slow, fast = both_ways(cfg, items, fill_model)
    counts = slow.stats.counts
    assert counts["BookSnapshot"] > 50 and counts["BestBidOffer"] > 500
    assert slow.engine.info.clock_gaps == 1
    assert slow.engine.risk.counters.get("book_rows_rejected", 0) > 0
    assert_same(slow, fast, min_share=0.7)


def test_twap_slices_and_a_risk_kill_on_the_clock() -> None:
    """TWAP slices are released on clocks (Python's), and a loss limit small enough to fire
    at a clock's mark to market: the kernel must leave both to the cores."""
    cfg = config.from_dict({
        "router": {"default_algo": "twap", "twap_interval_ms": 300},
        "risk": {"max_consecutive_losses": 1_000_000, "max_loss": -2 * 10**8, "max_drawdown_bps": 50},
        "strategy": {"max_inventory": 50_000_000},
    })  # fmt: skip
    slow, fast = both_ways(cfg, synthetic(20_000, seed=8), "touch")
    risk = slow.engine.risk
    assert slow.engine.cores["router"].counters.get("twap_slices", 0) > 0
    assert risk.counters.get("kill_fired", 0) + risk.counters.get("breaker_fired", 0) > 0
    assert_same(slow, fast, min_share=0.5)


@pytest.mark.skipif(not all(f.exists() for f in FILES), reason=f"real captures {[str(f) for f in FILES]} absent")
@pytest.mark.parametrize("fill_model", ["queue", "touch"])
def test_real_captures(fill_model: str) -> None:
    cfg = config.load()
    items = list(CaptureInput([str(f) for f in FILES], BUILTIN, cfg.feed).items())
    slow, fast = both_ways(cfg, items, fill_model)
    assert slow.report["fills"] > 100
    assert_same(slow, fast, min_share=0.9)
    assert fast.report["market_run"]["clocks"] > 0.8 * slow.report["clocks"]


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        ({"strategy": {"symbols": ["BTCUSDT", "ETHUSDT"]}}, "one strategy instance on one symbol"),
        ({"execution": {"feed_latency_ms": 3}}, "feed_latency_ms = 0"),
        ({"strategy": {"instances": [["strategy-eth", "ETHUSDT"]]}}, "one strategy instance"),
    ],
)
def test_what_it_does_not_cover_runs_per_event_and_says_why(overrides: dict, why: str) -> None:
    cfg = config.from_dict(overrides)
    eng = Engine(cfg)
    assert eng.market is None and why in eng.why_per_event
    res = run_backtest(cfg, _Items(synthetic(2_000)), "queue")
    assert why in res.report["market_run"]["off"]
    assert why in report.text(res.report)


def test_keep_events_runs_per_event() -> None:
    eng = Engine(config.from_dict({}), keep_events=True)
    assert eng.market is None and "keep_events" in eng.why_per_event


def test_clock_pnl_check_is_risk_cores_own_on_random_states() -> None:
    """The one rule the kernel applies at a clock, risk's PnL check (kill switch, breaker,
    day peak), against RiskCore._check_pnl on random accounts, tops and thresholds, each
    case placed at (or one unit from) the kill and breaker thresholds."""
    import random

    from common.accounting import Position
    from common.hotpath import market_run as K

    rng = random.Random(20261127)
    fired = kept = raised = 0
    for risk_cfg in ({}, {"max_loss": -7 * 10**9, "max_drawdown_bps": 35, "drawdown_base": 3 * 10**9}):
        eng = Engine(config.from_dict({"risk": risk_cfg}))
        m = eng.market
        assert m is not None
        risk = m.risk
        for _ in range(2000):
            risk.account.positions.clear()
            risk.tops = {}
            for sym, mid in (("BTCUSDT", 6_000_000), ("ETHUSDT", 300_000)):
                if rng.random() < 0.3:
                    continue
                p = risk.account.positions[sym] = Position(sym)
                p.position = rng.choice([0, rng.randint(-(10**9), 10**9)])
                p.cost = p.position * (mid + rng.randint(-5000, 5000))
                p.realized = rng.randint(-(10**12), 10**12)
                p.fees = rng.randint(0, 10**10)
                p.mark_price = mid + rng.randint(-5000, 5000)
                if rng.random() < 0.8:
                    bid = mid + rng.randint(-5000, 5000)
                    risk.tops[sym] = [bid, bid + rng.randint(1, 50)] if rng.random() < 0.9 else [0, bid]
            total = risk.total_pnl()
            risk.kill = rng.choice(["", "", "earlier"])
            risk.breaker = rng.choice(["", "", "earlier"])
            risk.kill_base = total - risk.cfg.max_loss + rng.choice([-1, 0, 1, 10**9, -(10**9)])
            risk.day_base = total - rng.randint(-(10**10), 10**10)
            day = total - risk.day_base
            base = max(day, risk.cfg.drawdown_base)
            edge = risk.cfg.max_drawdown_bps * base // 10_000
            if rng.random() < 0.3:  # the day's PnL is at a new peak
                risk.day_peak = max(0, day - rng.randint(0, 10**6))
            else:
                risk.day_peak = max(0, day + edge + rng.choice([-1, 0, 1, 2, -(10**6), 10**6]))
            sv, vcfg = m.sv, m.vcfg
            sv[K.SV_TOPS], sv[K.SV_TOPS + 1] = risk.tops.get("BTCUSDT", (0, 0))
            sv[K.SV_DAY_END] = sv[K.SV_CLOCK_DUE] = 2**63 - 1
            vcfg[:, K.VC_DUE] = 2**63 - 1
            m._load_pnl()
            peak0 = risk.day_peak
            ok = K._clock_ok(sv, vcfg, 10**9)
            out: list = []
            risk._check_pnl(out)
            assert ok == (0 if out else 1), (ok, out)
            if ok:
                kept += 1
                raised += peak0 != risk.day_peak
                assert int(sv[K.SV_R_PEAK]) == risk.day_peak
            else:
                fired += 1
    assert fired > 500 and kept > 500 and raised > 100


def test_pure_python_twin_of_the_run_kernel_gives_the_same_backtest(monkeypatch) -> None:
    """market_run as plain Python (numba's njit the identity, kernels included) drives the same
    backtest as the compiled kernel: what a replay without numba would compute."""
    from common.hotpath import market_run as K
    from tests.unit.hotpath._twin import pure_market_run

    cfg = config.from_dict({"risk": {"max_consecutive_losses": 1_000_000}})
    items = mixed(3_000)
    compiled = run_backtest(cfg, _Items(items), "queue")
    monkeypatch.setattr(K, "market_run", pure_market_run().market_run)
    twin = run_backtest(cfg, _Items(items), "queue")
    assert twin.report["market_run"]["events"] > 2_000
    assert report.deterministic_view(twin.report) == report.deterministic_view(compiled.report)
