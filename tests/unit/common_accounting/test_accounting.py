"""common.accounting: exact cost basis, realized PnL, fees, round trips, drawdown.

Prices and quantities here are plain small integers (a symbol with scale 0),
so every expected value can be checked by hand; the arithmetic is written out
next to each assertion.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.accounting import Account, Position, fee
from common.core import canonical
from common.events import BUY, SELL, TAKER, OrderFill


def _only_ints(obj: object) -> bool:
    if isinstance(obj, bool):
        return True
    if isinstance(obj, (int, str)):
        return True
    if isinstance(obj, list):
        return all(_only_ints(x) for x in obj)
    if isinstance(obj, dict):
        return all(isinstance(k, str) and _only_ints(v) for k, v in obj.items())
    return False


# ---------------------------------------------------------------- fee()
@pytest.mark.parametrize(
    "price, qty, bps, expected",
    [
        (10_000, 3, 5, 15),  # 150000/10000 = 15 exactly
        (12_345, 7, 3, 26),  # 259245/10000 = 25.9245 -> up to 26 (we pay)
        (100, 1, 5, 1),  # 0.05 -> 1: a fee is never rounded down to 0
        (12_345, 7, -3, -26),  # -25.9245 -> floor -26 (the venue pays: not rounded in its favour)
        (10_000, 3, -2, -6),  # -6 exactly
        (100, 1, -1, -1),  # -0.01 -> -1
        (12_345, 7, 0, 0),
    ],
)
def test_fee_rounds_against_the_payer(price: int, qty: int, bps: int, expected: int) -> None:
    got = fee(price, qty, bps)
    assert got == expected
    assert type(got) is int


# ---------------------------------------------------------------- cost basis, realized
def test_average_cost_is_kept_exactly_and_partial_closes_sum_to_the_exact_total() -> None:
    p = Position("XYZ")
    p.fill(BUY, 100, 3)
    p.fill(BUY, 101, 1)
    assert (p.position, p.cost) == (4, 401)
    assert p.avg_price_num_den() == (401, 4)  # 100.25, never rounded to 100

    # sell 2 @ 102: released cost = ceil(401 * 2 / 4) = ceil(200.5) = 201 -> realized 204 - 201 = 3
    eff = p.fill(SELL, 102, 2)
    assert eff.realized == 3 and eff.position == 2
    assert p.cost == 200  # 401 - 201
    # sell 2 @ 99: releases the remaining 200 -> realized 198 - 200 = -2
    eff = p.fill(SELL, 99, 2)
    assert eff.realized == -2
    assert (p.position, p.cost) == (0, 0)
    # total = proceeds 204 + 198 - cost 401 = 1, exactly
    assert p.realized == 1
    assert p.volume == 300 + 101 + 204 + 198
    assert (p.buy_qty, p.sell_qty, p.fills) == (4, 4, 4)


def test_short_partial_close_rounds_realized_down_and_stays_exact_overall() -> None:
    p = Position("XYZ")
    p.fill(SELL, 100, 1)
    p.fill(SELL, 101, 2)
    assert (p.position, p.cost) == (-3, -302)
    # buy 1 @ 99: released = floor(302 / 3) = 100 received -> realized 100 - 99 = 1 (not 1.67)
    assert p.fill(BUY, 99, 1).realized == 1
    assert (p.position, p.cost) == (-2, -202)
    # buy 2 @ 99: 202 - 198 = 4
    assert p.fill(BUY, 99, 2).realized == 4
    assert p.realized == 5 == 302 - 3 * 99


def test_flip_through_zero_closes_one_round_trip_and_opens_another() -> None:
    p = Position("XYZ")
    p.fill(BUY, 100, 2, fee_paid=1)  # trip 1 opens, -1 fee
    # sell 5 @ 110 with fee 4: closes 2 (realized 220 - 200 = 20), opens a short of 3 @ 110.
    # fee split pro rata, closing share rounded up: ceil(4 * 2 / 5) = ceil(1.6) = 2, opening share 2.
    eff = p.fill(SELL, 110, 5, fee_paid=4)
    assert eff.realized == 20
    assert eff.closed_trips == (17,)  # -1 + 20 - 2
    assert (p.position, p.cost) == (-3, -330)
    assert p.trip_pnl == -2
    # buy 3 @ 115 with fee 1: realized 330 - 345 = -15; trip 2 = -2 - 15 - 1 = -18
    eff = p.fill(BUY, 115, 3, fee_paid=1)
    assert eff.realized == -15 and eff.closed_trips == (-18,)
    assert (p.trips, p.wins, p.losses) == (2, 1, 1)
    assert p.recent_trips == [17, -18]
    assert p.realized == 5 and p.fees == 6
    assert p.trips_total == -1 == p.realized - p.fees
    assert (p.min_position, p.max_position) == (-3, 2)


def test_fees_turn_a_gross_win_into_a_loss_and_breakeven_is_neither() -> None:
    p = Position("XYZ")
    p.fill(BUY, 100, 1, fee_paid=1)
    assert p.fill(SELL, 101, 1, fee_paid=1).closed_trips == (-1,)  # 1 gross - 2 fees
    p.fill(BUY, 100, 1, fee_paid=1)
    assert p.fill(SELL, 102, 1, fee_paid=1).closed_trips == (0,)  # 2 gross - 2 fees
    p.fill(BUY, 100, 1, fee_paid=-1)  # rebates add to a trip
    assert p.fill(SELL, 100, 1, fee_paid=-1).closed_trips == (2,)
    assert (p.trips, p.wins, p.losses) == (3, 1, 1)
    assert p.net_realized() == 3 - 2 == 1


def test_fees_reduce_pnl_exactly_taker_maker_and_rebate() -> None:
    # Buy 3 @ 10000 as taker at 10 bps: fee = 10000*3*10/10000 = 30.
    # Sell 3 @ 10010 as maker with a 2 bps rebate: floor(-10010*3*2/10000) = floor(-6.006) = -7.
    p = Position("XYZ")
    p.fill(BUY, 10_000, 3, fee(10_000, 3, 10))
    p.fill(SELL, 10_010, 3, fee(10_010, 3, -2))
    assert p.realized == 30  # 30030 - 30000
    assert p.fees == 30 - 7 == 23
    assert p.net_realized() == 7
    assert p.recent_trips == [7]
    # the same with a 1 bps maker fee instead: ceil(10010*3/10000) = ceil(3.003) = 4 -> net 30 - 34 = -4
    q = Position("XYZ")
    q.fill(BUY, 10_000, 3, fee(10_000, 3, 10))
    q.fill(SELL, 10_010, 3, fee(10_010, 3, 1))
    assert q.net_realized() == -4 and q.losses == 1


# ---------------------------------------------------------------- equity, drawdown, inventory
def test_peak_and_max_drawdown_follow_marked_equity() -> None:
    p = Position("XYZ")
    p.fill(BUY, 100, 1)
    assert p.equity() == 0 and p.peak == 0
    assert p.mark(110) == 10 and p.peak == 10
    assert p.mark(95) == -5 and p.max_drawdown == 15 and p.drawdown() == 15
    assert p.mark(105) == 5 and p.drawdown() == 5 and p.max_drawdown == 15
    p.fill(SELL, 120, 1)  # realized 20, flat: equity 20, new peak
    assert (p.equity(), p.peak, p.max_drawdown) == (20, 20, 15)
    p.fill(BUY, 120, 1)
    p.mark(100)  # equity 20 + (100 - 120) = 0 -> drawdown 20
    assert (p.equity(), p.max_drawdown) == (0, 20)
    p.fill(BUY, 100, 1, fee_paid=3)  # fees count against equity: 0 - 3 at mark 100
    assert p.equity() == -3 and p.max_drawdown == 23


def test_inventory_min_and_max() -> None:
    p = Position("XYZ")
    for side, q in ((BUY, 5), (SELL, 8), (BUY, 1)):
        p.fill(side, 100, q)
    assert (p.position, p.min_position, p.max_position) == (-2, -3, 5)


def test_bad_fills_raise() -> None:
    p = Position("XYZ")
    with pytest.raises(ValueError):
        p.fill(3, 100, 1)
    with pytest.raises(ValueError):
        p.fill(BUY, 100, 0)
    assert p.fills == 0


# ---------------------------------------------------------------- account, state
def test_account_applies_order_fills_and_state_round_trips() -> None:
    acc = Account(keep_trips=2)
    acc.on_fill(OrderFill("SIM", "c1", "AAA", BUY, 100, 2, 0, 1, TAKER, "t1"))
    acc.fill("AAA", SELL, 101, 2, 1)
    acc.fill("BBB", SELL, 50, 4, 0)
    for _ in range(3):  # three more trips, only the last 2 are kept
        acc.fill("AAA", BUY, 100, 1)
        acc.fill("AAA", SELL, 100, 1)
    a = acc.get("AAA")
    assert a.trips == 4 and a.recent_trips == [0, 0]
    assert a.trips_total == 0  # first trip: 2 gross - 2 fees
    st = acc.state()
    assert _only_ints(st)
    other = Account()
    other.load_state(st)
    assert canonical(other.state()) == canonical(st)
    assert other.get("BBB").position == -4 and other.get("BBB").cost == -200


# ---------------------------------------------------------------- properties
fills = st.lists(
    st.tuples(st.sampled_from((BUY, SELL)), st.integers(1, 10_000), st.integers(1, 1_000), st.integers(-50, 50)),
    min_size=1,
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(fills)
def test_invariants_hold_for_any_fill_sequence(seq: list[tuple[int, int, int, int]]) -> None:
    p = Position("XYZ")
    cash = 0
    for side, px, q, f in seq:
        p.fill(side, px, q, f)
        cash += (px * q if side == SELL else -px * q) - f
        # cash is exactly realized - fees - open cost
        assert cash == p.realized - p.fees - p.cost
        # closed trips plus the open one account for every realized unit and every fee
        assert p.trips_total + p.trip_pnl == p.realized - p.fees
        # the open cost is within the range of prices the position could have been built at
        if p.position:
            assert min(x[1] for x in seq) * abs(p.position) <= abs(p.cost) <= max(x[1] for x in seq) * abs(p.position)
        else:
            assert p.cost == 0 and p.trip_pnl == 0
    # flatten at an arbitrary price: once flat, realized is exactly sells - buys
    if p.position:
        side = SELL if p.position > 0 else BUY
        q = abs(p.position)
        p.fill(side, 5_000, q)
        seq = seq + [(side, 5_000, q, 0)]
    sells = sum(px * q for side, px, q, _ in seq if side == SELL)
    buys = sum(px * q for side, px, q, _ in seq if side == BUY)
    assert p.position == 0 and p.cost == 0
    assert p.realized == sells - buys
    assert p.trips_total == p.realized - p.fees
    assert _only_ints(p.state())
