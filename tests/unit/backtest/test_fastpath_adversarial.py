"""Adversarial inputs for the engine's market run (services/backtest/fastpath.py,
common/hotpath/market_run.py): each must leave every core exactly as the per-event path does.

The inputs are built by hand: a book on a dense grid, enough filler book events that the
kernel takes over (the first chunk of CHUNK items runs per event: the books do not exist
yet when it is encoded), then the case. A resting order is placed with the execution
core's own OperatorCommand "sim-inject" (an input event, so both paths see it), and the
strategy is kept from quoting (huge warmup) unless the case needs it.
"""

from __future__ import annotations

import pytest

from common import config
from common import events as E
from common.units import BUILTIN
from services.backtest import fastpath, report
from services.backtest.inputs import CaptureInput
from services.backtest.run import run_backtest
from tests.unit.backtest.test_fastpath import FILES, _Items

SYM = "BTCUSDT"
MID = 6_000_000  # 60,000.00 in pipettes (tick 1, step 1000)
MS = 10**6
DAY = 86_400 * 10**9
T0 = 1_704_067_200 * 10**9 + 3_600 * 10**9  # 2024-01-01T01:00Z
QUIET = {"strategy": {"warmup": 10**9}, "risk": {"max_consecutive_losses": 1_000_000}}


def snapshot(t: int) -> tuple[int, E._Body]:
    bids = [(MID - k, 5_000_000) for k in range(60)]
    asks = [(MID + 1 + k, 5_000_000) for k in range(60)]
    return t, E.BookSnapshot(SYM, 1, E.pack_levels(bids), E.pack_levels(asks))


def filler(t0: int, n: int, step_ns: int = MS) -> list[tuple[int, E._Body]]:
    """Book deltas far from the touch (no core answers them)."""
    out = []
    for i in range(n):
        px = MID - 50 - i % 5
        out.append(
            (t0 + i * step_ns, E.BookDelta(SYM, 2 + i, 2 + i, E.pack_levels([(px, 1_000_000 + 1000 * (i % 7))]), b""))
        )
    return out


def prefix(t0: int = T0, n: int = fastpath.CHUNK + 40) -> list[tuple[int, E._Body]]:
    return [snapshot(t0), *filler(t0 + MS, n)]


def inject(side: str, px: int, qty: int, cid: str, venue: str = "sim-a") -> E._Body:
    return E.OperatorCommand("sim-inject", f"{venue}:{SYM}:{side}:{px}:{qty}:{cid}", "review")


def compare(cfg_over: dict, items: list[tuple[int, E._Body]], fill_model: str, min_applied: int = 1):
    cfg = config.from_dict(cfg_over)
    slow = run_backtest(cfg, _Items(items), fill_model, market_run=False)
    fast = run_backtest(cfg, _Items(items), fill_model, market_run=True)
    a, b = report.deterministic_view(slow.report), report.deterministic_view(fast.report)
    a.pop("market_run")
    mr = b.pop("market_run")
    assert mr.get("events", 0) >= min_applied, mr  # the kernel really ran
    assert slow.engine.cores["execution"].state() == fast.engine.cores["execution"].state()
    assert slow.engine.cores["risk"].state() == fast.engine.cores["risk"].state()
    assert slow.engine.hashes() == fast.engine.hashes()
    assert a == b
    assert [vars(f) for f in slow.stats.fills] == [vars(f) for f in fast.stats.fills]
    assert slow.stats.counts == fast.stats.counts
    assert (slow.engine.seq, slow.engine.lamport, dict(slow.engine._src)) == (
        fast.engine.seq,
        fast.engine.lamport,
        dict(fast.engine._src),
    )
    return slow, fast


# ---------------------------------------------------------------- divergences a review found (fixed)


@pytest.mark.parametrize("fill_model", ["queue", "touch"])
def test_book_delta_at_a_resting_orders_level(fill_model: str) -> None:
    """A delta shrinks the level a resting bid joined. The queue model moves the bid's
    queue_ahead down to the level; the touch model never touches queue_ahead on a book
    event (SimExchange._apply_market returns after _fill_on_touch). The kernel's
    _venue_book updates it under both models. Failed (touch) on 08dfb03."""
    items = prefix()
    t = items[-1][0]
    items.append((t + MS, inject("BUY", MID - 10, 1000, "inj1")))
    items.append((t + 2 * MS, E.BookDelta(SYM, 900, 900, E.pack_levels([(MID - 10, 2_000_000)]), b"")))
    items += filler(t + 3 * MS, 50)
    slow, _ = compare(QUIET, items, fill_model, min_applied=50)
    qa = slow.engine.execution.venues["sim-a"]._resting["inj1"].queue_ahead
    assert qa == (2_000_000 if fill_model == "queue" else 5_000_000)


@pytest.mark.parametrize("fill_model", ["queue", "touch"])
def test_trade_at_price_zero_on_an_unchanged_venue(fill_model: str) -> None:
    """A print at price 0 (buyer_maker): on a venue that sees the feed unchanged
    (common.venues.venue_market returns the body as is), SimExchange._on_trade finds every
    resting bid at or above it and fills it. The kernel's _venue_stops requires px > 0 and
    qty > 0 also for an unchanged venue, so it applies the print without the fill.
    Failed on 08dfb03."""
    items = prefix()
    t = items[-1][0]
    items.append((t + MS, inject("BUY", MID - 10, 1000, "inj1")))
    items.append((t + 2 * MS, E.Trade(SYM, 7, 0, 6_000_000, True)))
    items += filler(t + 3 * MS, 50)
    slow, _ = compare(QUIET, items, fill_model, min_applied=50)
    assert len(slow.stats.fills) == 1


def test_touch_trade_of_qty_zero_on_an_unchanged_venue() -> None:
    """Touch model: a print at or through a resting order's price fills it in full
    whatever its qty (SimExchange._on_trade, TOUCH branch); a qty-0 print reaches an
    unchanged venue (venue_market returns it as is). The kernel skips the stop for
    qty <= 0. Failed on 08dfb03."""
    items = prefix()
    t = items[-1][0]
    items.append((t + MS, inject("BUY", MID - 10, 1000, "inj1")))
    items.append((t + 2 * MS, E.Trade(SYM, 7, MID - 10, 0, True)))
    items += filler(t + 3 * MS, 50)
    slow, _ = compare(QUIET, items, "touch", min_applied=50)
    assert len(slow.stats.fills) == 1


def test_first_trade_at_time_zero_is_seen_by_risk() -> None:
    """Risk records every trade's recv_ns in last_seen["md:<symbol>"] (RiskCore.apply). The
    market run writes it back only `if sv[SV_TRADE_NS]`, with 0 meaning "no trade": a
    trade sequenced at recv_ns 0 is lost. Failed on 08dfb03."""
    items = [(0, body) for _, body in prefix()]
    items.append((0, E.Trade(SYM, 7, MID, 3000, False)))
    items += [(0, body) for _, body in filler(0, 20)]
    slow, _ = compare(QUIET, items, "queue", min_applied=20)
    assert slow.engine.risk.last_seen == {f"md:{SYM}": 0}


def test_huge_trade_qty_scaled_for_a_venue() -> None:
    """venue_market scales a print's qty in Python ints; the kernel in int64, where
    qty * size_pct wraps (here to 0 for sim-b's 60%): the venue's market counter (and
    _next_no) then differ. An absurd but valid int64 qty. Failed on 08dfb03."""
    items = prefix()
    t = items[-1][0]
    items.append((t + MS, E.Trade(SYM, 7, MID, 1 << 62, False)))
    items += filler(t + 2 * MS, 20)
    compare(QUIET, items, "queue", min_applied=20)


def test_clock_pnl_check_with_a_cost_whose_double_leaves_int64() -> None:
    """_total_pnl guards pos * (bid + ask) but not 2 * cost (nor + other, nor total -
    day_base): a cost in int64 whose double is not wraps, and the kernel stamps a clock
    on which RiskCore._check_pnl fires the kill switch. Unreachable with real sizes.
    Failed on 08dfb03."""
    from common.accounting import Position
    from common.hotpath import market_run as K
    from services.backtest.engine import Engine

    eng = Engine(config.from_dict({}))
    m = eng.market
    assert m is not None
    risk = m.risk
    p = risk.account.positions[SYM] = Position(SYM)
    p.position = 1
    p.cost = 3 << 61  # in int64; 2 * cost is not, nor pos * (bid + ask) - 2 * cost
    p.mark_price = MID
    risk.tops = {SYM: [MID, MID + 1]}
    risk.breaker = "earlier"  # (else the drawdown guard happens to send this clock to Python)
    sv, vcfg = m.sv, m.vcfg
    sv[K.SV_TOPS], sv[K.SV_TOPS + 1] = risk.tops[SYM]
    sv[K.SV_DAY_END] = sv[K.SV_CLOCK_DUE] = 2**63 - 1
    vcfg[:, K.VC_DUE] = 2**63 - 1
    m._load_pnl()
    out: list = []
    risk._check_pnl(out)
    assert out  # Python fires
    assert K._clock_ok(sv, vcfg, 10**9) == 0


# ---------------------------------------------------------------- edge cases that held


@pytest.mark.parametrize("fill_model", ["queue", "touch"])
def test_events_across_utc_midnight_backwards_and_on_clock_boundaries(fill_model: str) -> None:
    """The synthetic market moved to straddle a UTC midnight: every 7th stamp floored to a
    clock time (so also going backwards), one event exactly at midnight, stamps two days
    back now and then, a 15-minute gap; the strategy quotes and fills (both models)."""
    from tests.unit.backtest.test_fastpath import synthetic

    src = synthetic(12_000, seed=11)
    midnight = (T0 // DAY + 1) * DAY
    shift = midnight - 12 * 10**9 - src[0][0]
    items = []
    for i, (t, b) in enumerate(src):
        t += shift + (15 * 60 * 10**9 if i > 9_000 else 0)
        if i % 7 == 0:
            t = t // (100 * MS) * (100 * MS)
        if i % 211 == 5:
            t -= 2 * DAY
        items.append((t, b))
    k = next(i for i, (t, _) in enumerate(items) if t > midnight)
    items.insert(k, (midnight, items[k][1]))
    slow, _ = compare({"risk": {"max_consecutive_losses": 1_000_000}}, items, fill_model, min_applied=5_000)
    assert slow.engine.risk.counters.get("daily_resets") == 1 and slow.engine.info.clock_gaps == 1
    assert len(slow.stats.fills) > 10


@pytest.mark.parametrize("fill_model", ["queue", "touch"])
def test_odd_venues_and_odd_rows(fill_model: str) -> None:
    """A venue with a negative price offset and one with size_pct 0; rows with qty < 0,
    price <= 0 and beyond PX_MAX; snapshots with zero-qty rows; prints whose venue qty
    floors to 0; several resting orders on one venue, on both sides."""
    over = {
        **QUIET,
        "router": {
            "venues": [
                {"name": "sim-a", "fee_bps": 10},
                {"name": "sim-c", "fee_bps": 5, "price_offset_ticks": -3, "size_pct": 40},
                {"name": "sim-z", "fee_bps": 5, "size_pct": 0},
            ]
        },
    }
    items = prefix()
    t = items[-1][0]
    items.append((t + MS, inject("BUY", MID - 10, 2000, "b1")))
    items.append((t + MS, inject("BUY", MID - 20, 2000, "b2")))
    items.append((t + MS, inject("SELL", MID + 25, 2000, "a1")))
    items.append((t + MS, inject("BUY", MID - 12, 2000, "c1", "sim-c")))
    t += 2 * MS
    for i in range(600):
        t += MS
        k = i % 6
        if k == 0:
            items.append((t, E.BookDelta(SYM, 1, 1, E.pack_levels([(MID - 30, -5), (0, 7000), (1 << 53, 1000)]), b"")))
        elif k == 1:
            items.append((t, E.Trade(SYM, i, MID - 40, 1, True)))  # floors to 0 on sim-c; reaches b1, b2
        elif k == 2:
            bids = [(MID - j, 0 if j % 4 == 0 else 3_000_000 + 1000 * i) for j in range(40)]
            asks = [(MID + 1 + j, 0 if j % 3 == 0 else 4_000_000) for j in range(40)]
            if i % 60 == 2:
                items.append((t, E.BookSnapshot(SYM, 1, E.pack_levels(bids), E.pack_levels(asks))))
            else:
                items.append((t, E.BookDelta(SYM, 1, 1, E.pack_levels(bids[:5]), b"")))
        elif k == 3:
            items.append((t, E.BestBidOffer(SYM, 1, MID, 100, MID + 1, 0)))
        else:
            items.append((t, E.Trade(SYM, i, MID + 30, 1000, False)))  # reaches a1
    items.append((t + MS, E.Trade(SYM, 99_999, MID - 15, 7_000_000, True)))
    items += filler(t + 2 * MS, 30)
    compare(over, items, fill_model, min_applied=300)


@pytest.mark.parametrize("fill_model", ["queue", "touch"])
def test_arrivals_due_exactly_at_an_event(fill_model: str) -> None:
    """Every stamp on a 5 ms grid (= execution.order_latency_ms): the events after a quote
    land exactly at its orders' arrival time, many share a stamp, clocks fall on events."""
    from tests.unit.backtest.test_fastpath import synthetic

    items = [(t // (5 * MS) * (5 * MS), b) for t, b in synthetic(12_000, seed=12)]
    slow, _ = compare({"risk": {"max_consecutive_losses": 1_000_000}}, items, fill_model, min_applied=5_000)
    assert len(slow.stats.fills) > 10


@pytest.mark.skipif(not all(f.exists() for f in FILES), reason="real captures absent")
def test_real_capture_prefix_touch_model() -> None:
    """The same bug as test_book_delta_at_a_resting_orders_level[touch], with the strategy's
    own quotes on the shipped capture and the shipped config: stopped after 11,775 events,
    a bid resting on sim-b keeps queue_ahead 19,421,000 per event, 0 through the kernel
    (execution's hash differs). Failed on 08dfb03."""
    cfg = config.load()
    items = list(CaptureInput([str(f) for f in FILES], BUILTIN, cfg.feed).items())[:11_775]
    slow = run_backtest(cfg, _Items(items), "touch", market_run=False)
    fast = run_backtest(cfg, _Items(items), "touch", market_run=True)
    assert slow.engine.hashes() == fast.engine.hashes()


def test_best_bid_offer_beyond_int64() -> None:
    """A best bid/offer line whose price does not fit an int64: per event, risk and the
    router just store the ints; the market run's encoding (array('q')) raises OverflowError.
    Failed (crash) on 08dfb03."""
    items = prefix()
    t = items[-1][0]
    items.append((t + MS, E.BestBidOffer(SYM, 1, 1 << 63, 5, MID + 1, 5)))
    items += filler(t + 2 * MS, 20)
    compare(QUIET, items, "queue", min_applied=20)


def refused_and_stepping(backoff_ms: int) -> tuple[dict, list[tuple[int, E._Body]]]:
    """A strategy whose every intent risk refuses (max_order_qty below order_qty), backing
    off backoff_ms flat, on a book whose touch steps one tick up and back every millisecond
    (so it requotes on each)."""
    cfg = {
        "strategy": {
            "warmup": 3, "cooldown": 0, "requote_threshold": 0,
            "reject_backoff_ms": backoff_ms, "reject_backoff_max_ms": backoff_ms,
        },
        "risk": {"max_order_qty": 1_000, "max_consecutive_losses": 1_000_000},
    }  # fmt: skip
    items = [snapshot(T0)]
    for i in range(fastpath.CHUNK + 400):
        up = i % 2
        bids = E.pack_levels([(MID - 1 + up, 5_000_000), (MID - up, 0)])
        asks = E.pack_levels([(MID + 1 + up, 5_000_000), (MID + 2 - up, 0)])
        items.append((T0 + (i + 1) * MS, E.BookDelta(SYM, 2 + i, 2 + i, bids, asks)))
    return cfg, items


def test_a_quote_at_exactly_the_end_of_its_backoff_is_sent() -> None:
    """The book moves every millisecond, so a quote falls exactly on a backoff's end (the
    refusal's recv_ns + reject_backoff_ms, on the same grid): there the side is no longer
    held back, and the kernel must hand the quote to Python, not hold it."""
    slow, _fast = compare(*refused_and_stepping(40), "queue", min_applied=200)
    assert slow.report["risk_rejected"].get("max_order_qty", 0) > 10
    assert slow.report["strategy_counters"].get("held_back", 0) > 100


def test_a_backoff_ending_beyond_int64_does_not_crash_the_market_run() -> None:
    """A backoff configured "practically forever" (10**13 ms, ~317 years): until = recv_ns +
    10**19 ns > 2**63. Per event this runs; the market run raised OverflowError in
    MarketRun._load (sv[K.SV_HELD_BID] = until) until the end was clamped (a review found it)."""
    slow, _fast = compare(*refused_and_stepping(10**13), "queue", min_applied=200)
    assert slow.report["risk_rejected"].get("max_order_qty", 0) >= 1  # (spot, flat: bids only)
    assert slow.report["strategy_counters"].get("held_back", 0) > 100
