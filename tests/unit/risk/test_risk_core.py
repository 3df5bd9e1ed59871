"""RiskCore: every check trips and passes, the breaker, the kill switch, the dead man's switch, determinism."""

from __future__ import annotations

import dataclasses

import msgspec
import pytest

from common import events as E
from common.core import canonical, state_hash
from common.risk_config import MONEY
from services.risk import RiskConfig, RiskCore

BTC = "BTCUSDT"
DAY = 86_400 * 10**9
SEC = 10**9
MS = 10**6
T0 = 19_675 * DAY + 3_600 * SEC  # 01:00 UTC on some day
BID, ASK = 6_000_000, 6_000_010  # 60000.00 / 60000.10 USDT


def cfg(**kw: object) -> RiskConfig:
    return dataclasses.replace(RiskConfig(), **kw)


class Run:
    """Feeds a core with Sequenced events built from bodies; seq counts up, time is explicit."""

    def __init__(self, core: RiskCore | None = None, t: int = T0) -> None:
        self.core = core or RiskCore()
        self.seq = 0
        self.t = t
        self.n = 0

    def send(self, body: E._Body, t: int | None = None, source: str = "test") -> list[E._Body]:
        if t is not None:
            self.t = t
        self.seq += 1
        ev = E.Sequenced(E.CODEC_VERSION, self.seq, 1, self.seq, source, self.seq, f"k{self.seq}", self.t, self.t, body)
        return [o.body for o in self.core.apply(ev)]

    def book(self, bid: int = BID, ask: int = ASK, qty: int = 10**8, symbol: str = BTC, t: int | None = None) -> None:
        self.send(E.BookSnapshot(symbol, 1, E.pack_levels([(bid, qty)]), E.pack_levels([(ask, qty)])), t)

    def intent(self, qty: int = 100_000, side: int = E.BUY, price: int = BID, oid: str = "", symbol: str = BTC,
               t: int | None = None) -> E._Body:
        self.n += 1
        out = self.send(E.OrderIntent("strategy", symbol, oid or f"o{self.n}", side, price, qty), t)
        assert len(out) == 1
        return out[0]

    def fill(self, side: int, price: int, qty: int, child: str = "", fee: int = 0, leaves: int = 0,
             t: int | None = None) -> list[E._Body]:
        return self.send(E.OrderFill("sim-a", child or "x", BTC, side, price, qty, leaves, fee, E.TAKER, "t"), t)

    def trip(self, buy_px: int, sell_px: int, qty: int = 100_000) -> list[E._Body]:
        """Buy then sell qty: one round trip; returns what the closing fill produced."""
        assert self.fill(E.BUY, buy_px, qty) == []
        return self.fill(E.SELL, sell_px, qty)

    def cmd(self, command: str, arg: str = "") -> list[E._Body]:
        return self.send(E.OperatorCommand(command, arg, "ops"))

    def clock(self, t: int) -> list[E._Body]:
        return self.send(E.Clock(self.seq), t)


def approved(d: E._Body) -> bool:
    return isinstance(d, E.RiskApproved)


def reason(d: E._Body) -> str:
    assert isinstance(d, E.RiskRejected), d
    return d.reason


def ready(**kw: object) -> Run:
    r = Run(RiskCore(cfg(**kw)))
    r.book()
    return r


# ---------------------------------------------------------------- tier 1
def test_approval_carries_the_intent() -> None:
    r = ready()
    d = r.intent(qty=123_000, side=E.SELL, price=6_000_123, oid="abc")
    assert d == E.RiskApproved("abc", BTC, E.SELL, 6_000_123, 123_000, E.GTC, False, r.seq)


def test_spread_gate_trips_and_passes() -> None:
    r = Run(RiskCore(cfg(max_spread=50)))
    assert reason(r.intent()) == "spread"  # no book at all
    r.book(BID, BID + 51)
    assert reason(r.intent()) == "spread"
    r.book(BID, BID + 50)
    assert approved(r.intent())
    # the BBO stream moves the touch too
    r.send(E.BestBidOffer(BTC, 2, BID, 5, BID + 60, 5))
    assert reason(r.intent()) == "spread"


def test_spread_follows_deltas() -> None:
    r = Run(RiskCore(cfg(max_spread=50)))
    r.book(BID, BID + 10)
    assert approved(r.intent())
    # the best ask is deleted: the next one is 100 away
    r.send(E.BookDelta(BTC, 2, 2, E.pack_levels([]), E.pack_levels([(BID + 10, 0), (BID + 100, 5)])))
    assert reason(r.intent()) == "spread"


def test_max_order_qty() -> None:
    r = ready(max_order_qty=1_000_000)
    assert approved(r.intent(qty=1_000_000))
    assert reason(r.intent(qty=1_001_000)) == "max_order_qty"


def test_position_limit_counts_position_and_open_orders() -> None:
    r = ready(max_position_qty=1_000_000)
    assert approved(r.intent(qty=600_000))  # open buy 600k
    assert reason(r.intent(qty=500_000)) == "position_limit"  # 600k + 500k > 1M
    assert approved(r.intent(qty=400_000))  # exactly 1M worst case
    # sells are measured on the other side: position 0 - 0 open sells - 1M
    assert approved(r.intent(qty=1_000_000, side=E.SELL, price=ASK))
    assert reason(r.intent(qty=1_000, side=E.SELL, price=ASK)) == "position_limit"


def test_position_limit_counts_fills() -> None:
    r = ready(max_position_qty=1_000_000)
    r.fill(E.BUY, BID, 800_000)
    assert reason(r.intent(qty=300_000)) == "position_limit"
    assert approved(r.intent(qty=200_000))
    assert approved(r.intent(qty=1_000_000, side=E.SELL, price=ASK))  # 800k - 1M = -200k


def test_notional_cap_in_money_units() -> None:
    # 100_000 atoms (0.001 BTC) at 6_000_000 pipettes (60000.00) = 60 USDT = 60 * 10**10 money units
    r = ready(max_notional=100 * MONEY)
    assert approved(r.intent(qty=100_000))
    assert reason(r.intent(qty=100_000)) == "notional"  # open 100k + 100k = 120 USDT
    # a market sell is valued at the bid: 150_000 atoms x 60000 = 90 USDT
    assert approved(r.intent(qty=150_000, side=E.SELL, price=0))
    assert reason(r.intent(qty=20_000, side=E.SELL, price=0)) == "notional"  # 170_000 -> 102 USDT


def test_max_open_orders_and_release_by_reports() -> None:
    r = ready(max_open_orders=2)
    assert approved(r.intent(qty=200_000, oid="p1"))
    assert approved(r.intent(oid="p2"))
    assert reason(r.intent()) == "max_open_orders"
    # p1 is split into two children; one fills in full, the other is cancelled
    r.send(E.ChildOrder("p1", "p1.1", "sim-a", BTC, E.BUY, BID, 100_000, E.GTC, False, "vwap"))
    r.send(E.ChildOrder("p1", "p1.2", "sim-b", BTC, E.BUY, BID, 100_000, E.GTC, False, "vwap"))
    r.send(E.OrderAck("sim-a", "p1.1", "v1", BTC))
    r.fill(E.BUY, BID, 100_000, child="p1.1")
    assert reason(r.intent()) == "max_open_orders"  # p1 still has 100k working
    r.send(E.OrderCancelled("sim-b", "p1.2", BTC, 100_000, "user"))
    assert approved(r.intent(oid="p3"))
    assert sorted(r.core.state()["orders"]) == ["p2", "p3"]
    # the router refusing a parent releases it whole
    r.send(E.OrderRejected("router", "p2", BTC, "no_liquidity"))
    assert sorted(r.core.state()["orders"]) == ["p3"]
    # the router dropping unreleased TWAP qty releases that much
    r.send(E.OrderCancelled("router", "p3", BTC, 40_000, "cancelled"))
    assert r.core.state()["orders"]["p3"][2] == 60_000


def test_partial_fills_and_child_reject() -> None:
    r = ready()
    assert approved(r.intent(qty=300_000, oid="p"))
    r.send(E.ChildOrder("p", "p.1", "sim-a", BTC, E.BUY, BID, 300_000, E.GTC, False, "best_venue"))
    r.fill(E.BUY, BID, 100_000, child="p.1", leaves=200_000)
    assert r.core.state()["orders"]["p"][2] == 200_000
    r.send(E.OrderRejected("sim-a", "p.1", BTC, "venue says no"))
    assert r.core.state()["orders"] == {}
    assert r.core.position(BTC) == 100_000


def test_rate_limit_on_event_time() -> None:
    r = ready(max_orders_per_second=3)
    for i in range(3):
        assert approved(r.intent(t=T0 + i * 100 * MS))
    assert reason(r.intent(t=T0 + 999 * MS)) == "rate_limit"  # 3 approvals in (T0-1ms, T0+999ms]
    assert approved(r.intent(t=T0 + SEC))  # the approval at T0 is now 1 s old: out of the window
    assert reason(r.intent(t=T0 + SEC + 1)) == "rate_limit"
    assert approved(r.intent(t=T0 + SEC + 100 * MS))  # T0+100ms left too
    # a Clock far ahead empties the window: time is the events', not the wall's
    r.clock(T0 + 10 * SEC)
    r.book(t=T0 + 10 * SEC)
    for _ in range(3):
        assert approved(r.intent())
    assert reason(r.intent()) == "rate_limit"


def test_rejections_do_not_consume_rate() -> None:
    r = ready(max_orders_per_second=1, max_order_qty=100_000)
    assert reason(r.intent(qty=200_000)) == "max_order_qty"
    assert approved(r.intent())
    assert reason(r.intent()) == "rate_limit"


def test_symbol_grid_and_duplicate_checks() -> None:
    r = ready()
    assert reason(r.intent(symbol="DOGEUSDT")) == "unknown_symbol"
    assert reason(r.intent(qty=1_500)) == "lot_size"  # BTCUSDT step is 1000 atoms
    assert approved(r.intent(qty=2_000, oid="d"))
    assert reason(r.intent(oid="d")) == "duplicate_order_id"
    assert approved(ready(check_increments=False).intent(qty=1_500))


# ---------------------------------------------------------------- tier 2
def _cancel_alls(out: list[E._Body]) -> list[E.CancelAll]:
    return [b for b in out if isinstance(b, E.CancelAll)]


def test_breaker_on_consecutive_losses_and_reset_breaker() -> None:
    r = ready(max_consecutive_losses=2)
    assert r.trip(BID, BID - 1000) == []  # loss 1
    out = r.trip(BID, BID - 1000)  # loss 2 -> fires
    assert _cancel_alls(out) == [E.CancelAll("risk", "", "circuit_breaker:losses")]
    assert reason(r.intent()) == "circuit_breaker"
    assert r.cmd("reset-breaker") == []
    assert approved(r.intent())
    assert r.core.state()["loss_streak"] == 0


def test_win_resets_loss_streak() -> None:
    r = ready(max_consecutive_losses=2)
    r.trip(BID, BID - 1000)
    r.trip(BID, BID + 1000)  # win
    assert r.trip(BID, BID - 1000) == []  # streak is 1 again
    assert approved(r.intent())
    # fees turn a flat trip into a loss
    assert _cancel_alls(r.fill(E.BUY, BID, 100_000, fee=1) + r.fill(E.SELL, BID, 100_000, fee=1))


def test_flip_through_zero_closes_a_trip() -> None:
    r = ready(max_consecutive_losses=1)
    r.fill(E.BUY, BID, 100_000)
    out = r.fill(E.SELL, BID - 10, 300_000)  # closes the long at a loss, opens a 200k short
    assert _cancel_alls(out)
    p = r.core.state()["account"]["positions"][BTC]
    assert p["position"] == -200_000 and p["cost"] == -200_000 * (BID - 10) and p["realized"] == -10 * 100_000


def test_breaker_on_drawdown_cleared_by_daily_reset() -> None:
    r = ready(drawdown_base=MONEY, max_drawdown_bps=200, max_consecutive_losses=100)
    r.trip(BID, BID + 10_000, qty=1_000_000)  # +1e10 = +1 USDT: peak 1 USDT
    assert approved(r.intent())
    assert r.trip(BID, BID - 100, qty=1_000_000) == []  # -0.01 USDT: 100 bps, under 200
    out = r.trip(BID, BID - 200, qty=1_000_000)  # -0.03 USDT total: 300 bps > 200
    assert _cancel_alls(out) == [E.CancelAll("risk", "", "circuit_breaker:drawdown")]
    assert reason(r.intent()) == "circuit_breaker"
    r.clock(T0 + 3_600 * SEC)  # later the same day: still paused
    assert reason(r.intent()) == "circuit_breaker"
    r.clock(T0 - 3_600 * SEC + DAY)  # 00:00 UTC of the next day
    r.book()  # (fresh market data, so the dead man's switch stays out of it)
    assert approved(r.intent())
    st = r.core.state()
    assert st["breaker"] == "" and st["day_volume"] == 0 and st["day_peak"] == 0


def test_drawdown_with_non_positive_peak_uses_base() -> None:
    r = ready(drawdown_base=100 * MONEY, max_drawdown_bps=200, max_consecutive_losses=100)
    # -1 USDT from a peak of 0: 1/100 = 100 bps of the base, not an infinite ratio
    assert r.trip(BID, BID - 10_000, qty=1_000_000) == []
    assert approved(r.intent())
    out = r.trip(BID, BID - 20_000, qty=1_000_000)  # -3 USDT: 300 bps of the base
    assert _cancel_alls(out) == [E.CancelAll("risk", "", "circuit_breaker:drawdown")]


def test_breaker_cleared_by_daily_reset_on_any_event() -> None:
    r = ready(max_consecutive_losses=1)
    r.trip(BID, BID - 1)
    assert reason(r.intent()) == "circuit_breaker"
    r.book(t=T0 + DAY)  # a book update in the next day triggers the reset
    assert approved(r.intent())


def test_drawdown_counts_unrealized_pnl() -> None:
    r = ready(drawdown_base=MONEY, max_drawdown_bps=100, max_consecutive_losses=100)
    r.fill(E.BUY, BID, 1_000_000)
    r.book(BID + 20_000, BID + 20_000)  # +2 USDT marked at mid
    r.clock(T0 + SEC)
    out = []
    r.book(BID + 19_000, BID + 19_000)  # -0.1 USDT from a 2 USDT peak = 500 bps
    out = r.clock(T0 + 2 * SEC)
    assert _cancel_alls(out) == [E.CancelAll("risk", "", "circuit_breaker:drawdown")]


# ---------------------------------------------------------------- tier 3
def _kill_cfg() -> dict[str, object]:
    return {"max_loss": -MONEY, "max_consecutive_losses": 100, "drawdown_base": 10**6 * MONEY}


def test_kill_switch_on_max_loss_survives_restart_and_daily_reset() -> None:
    r = ready(**_kill_cfg())
    assert r.trip(BID, BID - 5_000, qty=1_000_000) == []  # -0.5 USDT, above -1
    assert approved(r.intent())
    out = r.trip(BID, BID - 6_000, qty=1_000_000)  # -1.1 USDT total < -1 USDT
    assert _cancel_alls(out) == [E.CancelAll("risk", "", "kill_switch:max_loss")]
    assert reason(r.intent()) == "kill_switch"
    assert r.clock(T0 + SEC) == []  # no second CancelAll while it stays fired

    # restart: a fresh core from the snapshot is still killed
    state = msgspec.msgpack.decode(canonical(r.core.state()))
    fresh = RiskCore(cfg(**_kill_cfg()))
    fresh.load_state(state)
    assert fresh.state() == r.core.state()
    r.core = fresh
    assert reason(r.intent()) == "kill_switch"

    r.clock(T0 + DAY)  # the daily reset does not clear it
    assert reason(r.intent()) == "kill_switch"
    assert r.cmd("reset-breaker") == []
    assert reason(r.intent()) == "kill_switch"

    assert r.cmd("reset-kill") == []
    r.book()
    assert approved(r.intent())  # and the loss so far does not re-fire it at once
    r.book(t=T0 + DAY + SEC)
    assert r.clock(T0 + DAY + SEC) == []


def test_kill_switch_by_command() -> None:
    r = ready()
    assert approved(r.intent())
    out = r.cmd("kill")
    assert out == [E.CancelAll("risk", "", "kill_switch:operator")]
    assert reason(r.intent()) == "kill_switch"
    assert r.cmd("kill") == []  # already fired
    r.cmd("reset-kill")
    assert approved(r.intent())


def test_unknown_command_is_ignored() -> None:
    r = ready()
    assert r.cmd("launch-rockets") == []
    assert approved(r.intent())


# ---------------------------------------------------------------- dead man's switch
def test_deadman_strategy_heartbeat() -> None:
    r = ready(deadman_ms=1000)
    hb = E.Heartbeat("strategy", "live", 0, {})
    fhb = E.Heartbeat("feed", "live", 0, {})
    t = T0
    for _ in range(5):  # heartbeats and clocks flowing
        r.send(hb, t)
        r.send(fhb, t)
        r.book(t=t)
        assert r.clock(t + 50 * MS) == []
        t += 100 * MS
    last_hb = t - 100 * MS
    assert approved(r.intent())
    # the strategy goes quiet; the feed and the market keep going
    outs: list[tuple[int, list[E._Body]]] = []
    for k in range(1, 16):
        ct = last_hb + k * 100 * MS
        r.send(fhb, ct)
        r.book(t=ct)
        outs.append((ct, r.clock(ct)))
    fired = [(ct, o) for ct, o in outs if o]
    assert len(fired) == 1  # once per outage
    ct, o = fired[0]
    assert ct == last_hb + 1100 * MS  # first Clock with silence > 1000 ms
    assert o == [E.CancelAll("risk", "", "deadman:svc:strategy")]
    d = r.intent()
    assert reason(d) == "deadman"
    # it comes back
    r.send(hb, last_hb + 1600 * MS)
    assert approved(r.intent())
    assert r.clock(last_hb + 1700 * MS) == []


def test_deadman_market_data_per_symbol() -> None:
    r = ready(deadman_ms=500)
    r.book(t=T0)
    r.book(symbol="ETHUSDT", t=T0)
    r.clock(T0 + 100 * MS)
    r.book(symbol="ETHUSDT", t=T0 + 400 * MS)
    out = r.clock(T0 + 600 * MS)  # BTC silent 600 ms, ETH 200 ms
    assert out == [E.CancelAll("risk", BTC, "deadman:md:BTCUSDT")]
    assert reason(r.intent()) == "deadman"
    assert approved(r.intent(symbol="ETHUSDT", qty=10_000))
    r.book(t=T0 + 700 * MS)
    assert approved(r.intent())


def test_deadman_unwatched_service_and_unseen_sources() -> None:
    r = ready(deadman_ms=100, deadman_market_data=False)
    r.send(E.Heartbeat("dashboard", "live", 0, {}), T0)
    assert r.clock(T0 + 10 * SEC) == []  # nothing watched has been seen yet
    assert approved(r.intent())


# ---------------------------------------------------------------- determinism
def _script(r: Run) -> list[E._Body]:
    outs: list[E._Body] = []
    r.book()
    outs.append(r.intent(qty=300_000, oid="a"))
    outs += r.send(E.ChildOrder("a", "a.1", "sim-a", BTC, E.BUY, BID, 300_000, E.GTC, False, "best_venue"))
    outs += r.fill(E.BUY, BID, 100_000, child="a.1", leaves=200_000, fee=7)
    outs += r.send(E.Heartbeat("strategy", "live", 0, {}), T0 + 10 * MS)
    outs += r.clock(T0 + 100 * MS)
    outs += r.fill(E.SELL, BID - 3, 100_000, fee=7)
    outs.append(r.intent(qty=1_500))
    outs += r.clock(T0 + 20 * SEC)
    outs.append(r.intent(side=E.SELL, price=ASK))
    outs += r.cmd("kill")
    outs.append(r.intent())
    outs += r.clock(T0 + DAY)
    outs += r.cmd("reset-kill")
    outs.append(r.intent())
    return outs


def test_same_events_same_outputs_and_state() -> None:
    a, b = Run(RiskCore()), Run(RiskCore())
    out_a, out_b = _script(a), _script(b)
    assert out_a == out_b
    assert canonical(a.core.state()) == canonical(b.core.state())
    assert state_hash(a.core.state()) == state_hash(b.core.state())
    assert any(isinstance(o, E.RiskRejected) for o in out_a) and any(approved(o) for o in out_a)


def test_state_is_plain_data_and_round_trips() -> None:
    r = Run(RiskCore())
    _script(r)
    st = r.core.state()

    def plain(x: object) -> bool:
        if isinstance(x, dict):
            return all(isinstance(k, str) and plain(v) for k, v in x.items())
        if isinstance(x, list):
            return all(plain(v) for v in x)
        return type(x) in (int, str)

    assert plain(st)
    again = RiskCore()
    again.load_state(msgspec.msgpack.decode(canonical(st)))
    assert canonical(again.state()) == canonical(st)


def test_restore_midway_continues_identically() -> None:
    whole = Run(RiskCore())
    whole.book()
    whole.intent(oid="x")
    whole.fill(E.BUY, BID, 100_000)
    snap = whole.core.state()
    rest_a = [whole.intent(oid="y"), *whole.clock(T0 + SEC), *whole.fill(E.SELL, BID - 5, 100_000)]

    resumed = Run(RiskCore())
    resumed.core.load_state(msgspec.msgpack.decode(canonical(snap)))
    resumed.seq, resumed.t, resumed.n = 3, T0, 1
    rest_b = [resumed.intent(oid="y"), *resumed.clock(T0 + SEC), *resumed.fill(E.SELL, BID - 5, 100_000)]
    assert rest_a == rest_b
    assert canonical(whole.core.state()) == canonical(resumed.core.state())


def test_config_refuses_bad_values() -> None:
    with pytest.raises(ValueError, match="max_loss"):
        RiskConfig(max_loss=5)
    with pytest.raises(ValueError, match="max_open_orders"):
        RiskConfig(max_open_orders=0)


def test_stale_intent_trips_and_a_fresh_one_passes():
    r = ready(max_intent_age_ms=1000)
    t = r.t + 10 * SEC
    fresh = E.OrderIntent("strategy", BTC, "fresh", E.BUY, BID, 100_000, E.GTC, True, "", t - 1000 * MS)
    assert approved(r.send(fresh, t)[0])
    # What a restarted strategy sends late: decided a nanosecond more than 1 s before it is sequenced.
    late = E.OrderIntent("strategy", BTC, "late", E.BUY, BID, 100_000, E.GTC, True, "", t - 1000 * MS - 1)
    assert reason(r.send(late, t)[0]) == "stale_intent"
    # 0 switches the check off; an intent that names no cause (cause_recv_ns 0) is not judged.
    off = ready(max_intent_age_ms=0)
    assert approved(off.send(E.OrderIntent("strategy", BTC, "x", E.BUY, BID, 100_000, E.GTC, True, "", 1), T0)[0])
    assert approved(r.intent())
