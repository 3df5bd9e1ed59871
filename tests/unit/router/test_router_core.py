"""RouterCore: each algorithm on known books, empty books, venues down, ties, TWAP timing, conservation."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common import events as E
from common.core import canonical
from services.router import RouterConfig, RouterCore, VenueConfig
from services.router.core import BEST_PEEK, split_lots, twap_sizes

BTC = "BTCUSDT"  # tick 1 pipette, step 1000 atoms
SEC = 10**9
MS = 10**6
T0 = 1_700_000_000 * SEC

# The feed's book. sim-b (offset +1 tick, 60% size) derives:
#   bids (6_000_001, 600_000), (5_999_991, 1_200_000)
#   asks (6_000_011, 600_000), (6_000_021, 1_200_000)
BIDS = [(6_000_000, 1_000_000), (5_999_990, 2_000_000)]
ASKS = [(6_000_010, 1_000_000), (6_000_020, 2_000_000)]

VENUES = (
    VenueConfig("sim-a", fee_bps=10, price_offset_ticks=0, size_pct=100),
    VenueConfig("sim-b", fee_bps=7, price_offset_ticks=1, size_pct=60),
)


def conf(**kw: object) -> RouterConfig:
    kw.setdefault("venues", VENUES)
    return RouterConfig(**kw)  # type: ignore[arg-type]


class Run:
    def __init__(self, core: RouterCore | None = None, t: int = T0) -> None:
        self.core = core or RouterCore(conf())
        self.seq = 0
        self.t = t

    def send(self, body: E._Body, t: int | None = None) -> list[E._Body]:
        if t is not None:
            self.t = t
        self.seq += 1
        ev = E.Sequenced(E.CODEC_VERSION, self.seq, 1, self.seq, "test", self.seq, f"k{self.seq}", self.t, self.t, body)
        return [o.body for o in self.core.apply(ev)]

    def book(self, bids: list[tuple[int, int]] = BIDS, asks: list[tuple[int, int]] = ASKS) -> None:
        self.send(E.BookSnapshot(BTC, 1, E.pack_levels(bids), E.pack_levels(asks)))

    def order(self, qty: int, side: int = E.BUY, price: int = 0, oid: str = "P", t: int | None = None,
              tif: int = E.GTC) -> list[E._Body]:
        return self.send(E.RiskApproved(oid, BTC, side, price, qty, tif, False, 1), t)

    def clock(self, t: int) -> list[E._Body]:
        return self.send(E.Clock(self.seq), t)


def split(out: list[E._Body]) -> list[tuple[str, str, int]]:
    """(child id, venue, qty) of the ChildOrders in out."""
    return [(c.child_id, c.venue, c.qty) for c in out if isinstance(c, E.ChildOrder)]


def ready(**kw: object) -> Run:
    r = Run(RouterCore(conf(**kw)))
    r.book()
    return r


# ---------------------------------------------------------------- helpers
def test_split_lots_largest_remainder() -> None:
    assert split_lots(1_001_000, 1000, [3_000_000, 1_800_000]) == [626_000, 375_000]
    assert split_lots(3000, 1000, [1, 1, 1]) == [1000, 1000, 1000]
    assert split_lots(2000, 1000, [1, 1, 1]) == [1000, 1000, 0]  # tie: lower index first
    assert split_lots(2500, 1000, [1, 3]) == [1000, 1500]  # sub-lot atoms to the biggest share
    assert split_lots(500, 1000, [1, 3]) == [0, 500]


def test_twap_sizes() -> None:
    assert twap_sizes(1_000_000, 1000, 4) == [250_000] * 4
    assert twap_sizes(10_000, 1000, 4) == [3000, 3000, 2000, 2000]
    assert twap_sizes(2_500, 1000, 5) == [1000, 1500]
    assert twap_sizes(500, 1000, 5) == [500]


# ---------------------------------------------------------------- best venue
def test_best_venue_after_fees() -> None:
    r = ready()
    # buy: sim-a 6_000_010 * 10_010 > sim-b 6_000_011 * 10_007 -> sim-b
    out = r.order(300_000, E.BUY, 6_000_000)
    assert out == [E.ChildOrder("P", "P.1", "sim-b", BTC, E.BUY, 6_000_000, 300_000, E.GTC, False, "best_venue")]
    # with equal fees sim-b's dearer ask loses
    r2 = Run(RouterCore(conf(venues=(VenueConfig("sim-a", 7), VenueConfig("sim-b", 7, 1, 60)))))
    r2.book()
    assert split(r2.order(300_000, E.BUY)) == [("P.1", "sim-a", 300_000)]
    # ...but its richer bid wins a sell
    assert split(r2.order(300_000, E.SELL, oid="S")) == [("S.1", "sim-b", 300_000)]


def test_best_venue_reads_past_levels_the_venue_drops() -> None:
    # sim-b (60% size, step 1000) drops the first BEST_PEEK + 1 asks (1000 atoms -> 600 -> 0):
    # its best is the feed's level after them, and after fees it beats sim-a's.
    peek = BEST_PEEK + 1
    asks = [(6_000_010 + 10 * i, 1000) for i in range(peek)] + [(6_000_010 + 10 * peek, 2_000_000)]
    r = ready()
    r.book(asks=asks)
    assert r.core.venue_levels(VENUES[1], BTC, E.SELL)[0] == (6_000_011 + 10 * peek, 1_200_000)
    assert split(r.order(300_000, E.BUY)) == [("P.1", "sim-b", 300_000)]
    # ...unless depth_levels leaves that level out: then sim-b has no ask at all
    r = ready(depth_levels=peek)
    r.book(asks=asks)
    assert r.core.venue_levels(VENUES[1], BTC, E.SELL) == []
    assert split(r.order(300_000, E.BUY)) == [("P.1", "sim-a", 300_000)]
    r = ready(depth_levels=BEST_PEEK - 1)  # a first read never goes deeper than depth_levels
    r.book(asks=asks[2:])  # three dropped, the fourth level would do
    assert r.core.venue_levels(VENUES[1], BTC, E.SELL) == []
    assert split(r.order(300_000, E.BUY)) == [("P.1", "sim-a", 300_000)]


@pytest.mark.parametrize("declared", [("sim-a", "sim-b"), ("sim-b", "sim-a")])
def test_best_venue_tie_goes_to_the_smaller_name(declared: tuple[str, str]) -> None:
    r = Run(RouterCore(conf(venues=tuple(VenueConfig(n, 5) for n in declared))))
    r.book()
    for i in range(5):
        assert split(r.order(1000, E.BUY, oid=f"P{i}")) == [(f"P{i}.1", "sim-a", 1000)]
        assert split(r.order(1000, E.SELL, oid=f"S{i}")) == [(f"S{i}.1", "sim-a", 1000)]


def test_venue_down_by_command_and_config() -> None:
    r = ready()
    r.send(E.OperatorCommand("venue-down", "sim-b", "ops"))
    assert split(r.order(300_000, oid="A")) == [("A.1", "sim-a", 300_000)]
    assert split(r.order(300_000, price=6_000_030, oid="V")) == [("V.1", "sim-a", 300_000)]
    r.send(E.OperatorCommand("venue-down", "sim-a", "ops"))
    assert r.order(300_000, oid="B") == [E.OrderRejected("router", "B", BTC, "no_venue")]
    r.send(E.OperatorCommand("venue-up", "sim-b", "ops"))
    assert split(r.order(300_000, oid="C")) == [("C.1", "sim-b", 300_000)]

    down = Run(RouterCore(conf(venues=(VENUES[0], VenueConfig("sim-b", 7, 1, 60, down=True)))))
    down.book()
    assert split(down.order(300_000)) == [("P.1", "sim-a", 300_000)]


def test_empty_book_rejects() -> None:
    r = Run()
    assert r.order(1000) == [E.OrderRejected("router", "P", BTC, "no_liquidity")]
    r.book(bids=BIDS, asks=[])  # bids only: a buy has nothing to take, a sell has
    assert r.order(1000, oid="Q") == [E.OrderRejected("router", "Q", BTC, "no_liquidity")]
    assert split(r.order(1000, E.SELL, oid="R")) == [("R.1", "sim-b", 1000)]
    assert r.core.state()["counters"]["rejected.no_liquidity"] == 2


def test_bbo_alone_is_a_one_level_book() -> None:
    r = Run()
    r.send(E.BestBidOffer(BTC, 1, 6_000_000, 1_000_000, 6_000_010, 1_000_000))
    assert split(r.order(1000)) == [("P.1", "sim-b", 1000)]


# ---------------------------------------------------------------- VWAP
def test_vwap_split_proportional_within_limit() -> None:
    r = ready(default_algo="vwap")
    # limit 6_000_021: sim-a shows 3_000_000 within, sim-b 1_800_000
    out = r.order(1_001_000, E.BUY, 6_000_021)
    assert split(out) == [("P.1", "sim-a", 626_000), ("P.2", "sim-b", 375_000)]
    assert all(c.price == 6_000_021 and c.algo == "vwap" for c in out)  # type: ignore[attr-defined]
    # limit 6_000_010: only sim-a has anything inside it
    assert split(r.order(1_600_000, E.BUY, 6_000_010, oid="Q")) == [("Q.1", "sim-a", 1_600_000)]
    # sell limit 5_999_991: sim-a 1_000_000 (6_000_000), sim-b 1_800_000 (6_000_001 + 5_999_991)
    out = r.order(2_800_000, E.SELL, 5_999_991, oid="S")
    assert split(out) == [("S.1", "sim-a", 1_000_000), ("S.2", "sim-b", 1_800_000)]


def test_vwap_nothing_inside_the_limit_rests_at_best_venue() -> None:
    r = ready(default_algo="vwap")
    assert split(r.order(5000, E.BUY, 5_000_000)) == [("P.1", "sim-b", 5000)]


def test_algo_by_symbol_beats_default() -> None:
    r = ready(default_algo="best_venue", algo_by_symbol=((BTC, "sweep"),))
    out = r.order(2_000_000, E.BUY, 6_000_020)
    assert {c.algo for c in out} == {"sweep"}  # type: ignore[attr-defined]


@pytest.mark.skipif("algo" not in E.RiskApproved.__struct_fields__, reason="events.RiskApproved has no algo field yet")
def test_algo_per_order() -> None:  # pragma: no cover - enabled once the field exists
    r = ready(default_algo="best_venue")
    ap = E.RiskApproved("P", BTC, E.BUY, 6_000_021, 1_001_000, E.GTC, False, 1, algo="vwap")  # type: ignore[call-arg]
    out = r.send(ap)
    assert split(out) == [("P.1", "sim-a", 626_000), ("P.2", "sim-b", 375_000)]


# ---------------------------------------------------------------- sweep
def test_sweep_best_price_first() -> None:
    r = ready(default_algo="sweep")
    # within 6_000_020 by fee-adjusted price: sim-b 6_000_011 (600k), sim-a 6_000_010 (1M), sim-a 6_000_020 (2M)
    out = r.order(2_000_000, E.BUY, 6_000_020, tif=E.IOC)
    assert split(out) == [("P.1", "sim-b", 600_000), ("P.2", "sim-a", 1_400_000)]
    assert all(c.price == 6_000_020 and c.tif == E.IOC for c in out)  # type: ignore[attr-defined]


def test_sweep_beyond_the_books_rests_the_rest_at_the_best_venue() -> None:
    r = ready(default_algo="sweep")
    out = r.order(5_000_000, E.BUY, 6_000_011)
    assert split(out) == [("P.1", "sim-b", 4_000_000), ("P.2", "sim-a", 1_000_000)]
    # a market sweep takes every level
    out = r.order(4_800_000, E.BUY, 0, oid="M")
    assert split(out) == [("M.1", "sim-b", 1_800_000), ("M.2", "sim-a", 3_000_000)]


# ---------------------------------------------------------------- TWAP
def test_twap_releases_slices_on_clock_times() -> None:
    r = ready(default_algo="twap", twap_slices=4, twap_interval_ms=1000)
    assert split(r.order(1_000_000, E.BUY, 6_000_020, t=T0)) == [("P.1", "sim-b", 250_000)]
    assert r.clock(T0 + 100 * MS) == []
    assert r.clock(T0 + 999 * MS) == []
    assert split(r.clock(T0 + SEC)) == [("P.2", "sim-b", 250_000)]
    assert r.clock(T0 + 1100 * MS) == []
    # a market-data event past the due time releases nothing: only Clock does
    r.send(E.Trade(BTC, 1, 6_000_010, 1000, False), T0 + 2100 * MS)
    r.send(E.OperatorCommand("venue-down", "sim-b", "ops"))
    assert split(r.clock(T0 + 2500 * MS)) == [("P.3", "sim-a", 250_000)]  # to the best venue *now*
    assert split(r.clock(T0 + 3 * SEC)) == [("P.4", "sim-a", 250_000)]
    assert r.clock(T0 + 10 * SEC) == []
    assert r.core.state()["parents"]["P"]["pending"] == []


def test_twap_clock_gap_releases_every_due_slice() -> None:
    r = ready(default_algo="twap", twap_slices=3, twap_interval_ms=500)
    r.order(3000, t=T0)
    assert split(r.clock(T0 + 5 * SEC)) == [("P.2", "sim-b", 1000), ("P.3", "sim-b", 1000)]


def test_twap_cancel_drops_unreleased_slices() -> None:
    r = ready(default_algo="twap", twap_slices=4, twap_interval_ms=1000)
    r.order(1_000_000, t=T0)
    out = r.send(E.CancelIntent("strategy", BTC, "P"))
    assert out == [E.ChildCancel("P.1", "sim-b", BTC), E.OrderCancelled("router", "P", BTC, 750_000, "cancelled")]
    assert r.clock(T0 + 5 * SEC) == []


def test_twap_slice_without_liquidity_is_reported() -> None:
    r = ready(default_algo="twap", twap_slices=2, twap_interval_ms=1000)
    r.order(2000, t=T0)
    r.book(bids=BIDS, asks=[])
    assert r.clock(T0 + SEC) == [E.OrderCancelled("router", "P", BTC, 1000, "no_liquidity")]


def test_cancel_all_cancels_live_children_by_symbol() -> None:
    r = ready(default_algo="vwap")
    r.order(1_001_000, E.BUY, 6_000_021, oid="A")
    assert r.send(E.CancelAll("risk", "ETHUSDT", "x")) == []
    out = r.send(E.CancelAll("risk", "", "kill_switch:operator"))
    assert out == [E.ChildCancel("A.1", "sim-a", BTC), E.ChildCancel("A.2", "sim-b", BTC)]


def test_children_finish_and_parent_is_forgotten() -> None:
    r = ready(default_algo="vwap")
    r.order(1_001_000, E.BUY, 6_000_021, oid="A")
    r.send(E.OrderFill("sim-a", "A.1", BTC, E.BUY, 6_000_010, 626_000, 0, 0, E.TAKER, "t1"))
    assert list(r.core.state()["children"]) == ["A.2"]
    r.send(E.OrderCancelled("sim-b", "A.2", BTC, 375_000, "ioc"))
    st = r.core.state()
    assert st["children"] == {} and st["parents"] == {}


# ---------------------------------------------------------------- conservation and determinism
@settings(max_examples=150, deadline=None)
@given(
    qty=st.integers(1, 20_000_000),
    side=st.sampled_from([E.BUY, E.SELL]),
    price=st.sampled_from([0, 5_999_990, 6_000_000, 6_000_011, 6_000_021]),
    algo=st.sampled_from(["best_venue", "vwap", "twap", "sweep"]),
    slices=st.integers(1, 7),
)
def test_children_conserve_qty(qty: int, side: int, price: int, algo: str, slices: int) -> None:
    r = ready(default_algo=algo, twap_slices=slices, twap_interval_ms=100)
    out = r.order(qty, side, price, t=T0)
    out += r.clock(T0 + 60 * SEC)
    kids = [c for c in out if isinstance(c, E.ChildOrder)]
    assert sum(c.qty for c in kids) == qty
    assert all(c.qty > 0 for c in kids)
    # every child but possibly one (carrying the sub-lot atoms) is on the lot grid
    assert sum(1 for c in kids if c.qty % 1000) <= (1 if qty % 1000 else 0)
    assert [c.child_id for c in kids] == [f"P.{i}" for i in range(1, len(kids) + 1)]


def _script(r: Run) -> list[E._Body]:
    out: list[E._Body] = []
    r.book()
    out += r.order(1_001_000, E.BUY, 6_000_021, oid="A")
    out += r.send(E.RiskApproved("T", BTC, E.SELL, 0, 7_000, E.GTC, False, 2))
    out += r.clock(T0 + SEC)
    out += r.send(E.BookDelta(BTC, 2, 2, E.pack_levels([(6_000_000, 0)]), E.pack_levels([(6_000_015, 5000)])))
    out += r.send(E.OperatorCommand("venue-down", "sim-b", "ops"))
    out += r.order(20_000, E.SELL, 0, oid="B")
    out += r.clock(T0 + 3 * SEC)
    out += r.send(E.CancelAll("risk", "", "x"))
    return out


def test_same_events_same_outputs_and_state() -> None:
    mk = lambda: Run(RouterCore(conf(default_algo="twap", algo_by_symbol=(), twap_slices=3)))  # noqa: E731
    a, b = mk(), mk()
    out_a, out_b = _script(a), _script(b)
    assert out_a == out_b and out_a
    assert canonical(a.core.state()) == canonical(b.core.state())
    # and a core restored from the state carries on identically
    c = mk()
    c.core.load_state(msgspec.msgpack.decode(canonical(a.core.state())))
    c.seq, c.t = a.seq, a.t
    assert a.clock(T0 + 10 * SEC) == c.clock(T0 + 10 * SEC)
    assert canonical(a.core.state()) == canonical(c.core.state())


def test_config_refuses_bad_values() -> None:
    with pytest.raises(ValueError, match="repeat"):
        RouterConfig(venues=(VenueConfig("x"), VenueConfig("x")))
    with pytest.raises(ValueError, match="algo"):
        RouterConfig(default_algo="fastest")
    with pytest.raises(ValueError, match="reserved"):
        RouterConfig(venues=(VenueConfig("router"),))


def test_an_approval_decided_before_risks_cancel_all_is_void() -> None:
    """Risk approved an intent, then fired (kill switch) before the approval reached the stream."""
    r = ready()
    intent_seq = r.seq + 1
    r.send(E.OrderIntent("strategy", BTC, "o1", E.BUY, ASKS[0][0], 1000))
    r.send(E.CancelAll("risk", "", "kill_switch:operator"))
    out = r.send(E.RiskApproved("o1", BTC, E.BUY, ASKS[0][0], 1000, E.GTC, False, intent_seq))
    assert split(out) == []
    assert [(b.child_id, b.reason) for b in out if isinstance(b, E.OrderRejected)] == [("o1", "stale_approval")]
    # The approval of an intent that came after the CancelAll routes as usual.
    later = r.seq + 1
    r.send(E.OrderIntent("strategy", BTC, "o2", E.BUY, ASKS[0][0], 1000))
    assert split(r.send(E.RiskApproved("o2", BTC, E.BUY, ASKS[0][0], 1000, E.GTC, False, later)))
