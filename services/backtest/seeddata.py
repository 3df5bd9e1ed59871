"""The seed's 13,334-event backtest dataset, rebuilt from its formula.

Source: shared/seed/backtest-dataset.md (the seed generator's arithmetic).
For tick i = 0 .. 9,999, with u64 arithmetic done on Python ints masked to
64 bits (exactly what the seed's wrapping u64 ops compute):

* ``seed = i * 6364136223846793005 + 1442695040888963407``
* ``raw = ((seed >> 33) ^ seed) * 0xff51afd7ed558ccd``
* ``noise = 2 * (raw / (2^64 - 1) - 0.5)`` in IEEE double, the operands
  converted to double first, as the seed's ``raw as f64 / u64::MAX as f64`` does
* ``mid = 7322350 + 500 sin(0.0785 i) + 300 sin(0.0157 i) + 20 noise
  + 0.05 (7322350 - mid_prev)`` in double (mid_prev = the previous tick's
  float mid, 7322350 at first); the book uses ``int(mid)`` (truncation)
* a 20-level BookSnapshot at ``1711200000000000000 + i * 100 ms``: bid level
  d at ``mid - 5 - 100 d``, ask level d at ``mid + 5 + 100 d``, both sides'
  qty ``1e7 + 5e6 d + (((seed + 17 d) >> 40) % 20) * 1e6`` satoshis
* when ``i % 3 == 0`` a Trade 50 ms later: ``t = seed * 0x9e3779b97f4a7c15``,
  a buy (aggressor bought, buyer_maker False) if ``t >> 63 == 0``,
  ``k = (t >> 50) % 5``, price ``int(mid) + 5 + 100 k`` (buy) or
  ``int(mid) - 5 - 100 k`` (sell), qty ``1e6 + ((t >> 32) % 20) * 5e5``.

Prices are pipettes at BTCUSDT's price_scale 2 ($0.01), quantities satoshis
at qty_scale 8. 10,000 books + 3,334 trades = 13,334 events, each book
followed by its trade, which is the seed's file order (seq 1 .. 13,334).

The only floating point is the mid, which the formula defines in float; it
leaves this module as an integer and nothing downstream sees a float.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from common.events import BookSnapshot, Trade, _Body, pack_levels

SYMBOL = "BTCUSDT"
TICKS = 10_000
LEVELS = 20
START_NS = 1_711_200_000_000_000_000
TICK_NS = 100_000_000
TRADE_DELAY_NS = 50_000_000
BASE_MID = 7_322_350
EVENTS = TICKS + (TICKS + 2) // 3  # 13,334
MIN_MID, MAX_MID = 7_321_571, 7_323_132  # $73,215.71 .. $73,231.32 (backtest-dataset.md)

_U64 = (1 << 64) - 1
_LCG_MUL = 6364136223846793005
_LCG_ADD = 1442695040888963407
_MIX = 0xFF51AFD7ED558CCD
_GOLDEN = 0x9E3779B97F4A7C15

# The seed's published report (atomic-mesh README, "Backtest Results").
PUBLISHED = {
    "engine": "C++ HotPath (Avellaneda-Stoikov)",
    "events": 13_334,
    "events_per_s": 467_000,
    "orders": 198,
    "fills": 197,
    "round_trips": 98,
    "volume": "1442504",
    "realized_pnl": "15.68",
    "max_drawdown": "0.00",
    "win_rate": "100.0%",
    "avg_trade_pnl": "0.16",
    "sharpe": "999.999 (a cap applied to floating-point noise)",
}

WHY_DIFFERENT = """\
Why this differs from the seed's published report (98 round trips, $15.68, 100% wins):
  * Risk. The mesh's risk core runs with mesh.toml's limits; its circuit
    breaker (5 losing round trips in a row) stops new orders for the rest of
    the day, and with fees the first trips lose, so trading stops there: the
    strategy's quotes are then held back (strategy.reject_backoff_ms, doubling
    up to a minute) and the few intents it still sends end as RiskRejected
    "circuit_breaker". The seed's risk never stopped its run.
  * Maker fee. The seed ran with 0 bps. We charge execution.maker_fee_bps on
    every maker fill: at 2 bps a 0.001 BTC fill at $73,220 pays $0.0147,
    more than the spread a trip of that size captures (the seed's own
    simulator default of 2 bps turns its run into a $272.82 loss, FINDINGS.md).
  * Fill model. The seed fills a resting order in full at its limit the
    moment the opposite best touches it (no queue, no volume). Our default
    `queue` model joins the back of its level (10-29 BTC at every level of
    this dataset) and fills only from printed volume beyond the queue ahead;
    `--fill-model touch` is the seed's model (and also fills on a print at or
    through the limit).
  * Gating and quoting. The seed sends new orders only while flat, so both
    legs of a trip are quoted off the same fair value and every trip earns
    exactly $0.16. The mesh's StrategyCore (unchanged here) requotes both
    sides whenever its quote moves, and the router sends each order to the
    best of two sim venues after fees, so trips close wherever the market
    went meanwhile; without flat-only gating the seed itself loses $113.03.
  * As close to the seed's setup as the same cores go:
      --fill-model touch --set execution.maker_fee_bps=0 --set risk.max_consecutive_losses=1000000
    The rest of the gap is the seed's flat-only gating, which is not ours.
  * The mid is two sines plus bounded noise, not a random walk: a market
    maker's results on it say little about live trading.
"""


def _u64(x: int) -> int:
    return x & _U64


def tick_seed(i: int) -> int:
    return _u64(i * _LCG_MUL + _LCG_ADD)


def noise_of(seed: int) -> float:
    raw = _u64(((seed >> 33) ^ seed) * _MIX)
    return 2 * (float(raw) / float(_U64) - 0.5)


def mids() -> Iterator[int]:
    """int(mid) of every tick, in order."""
    prev = float(BASE_MID)
    for i in range(TICKS):
        mid = (
            BASE_MID
            + 500 * math.sin(0.0785 * i)
            + 300 * math.sin(0.0157 * i)
            + 20 * noise_of(tick_seed(i))
            + 0.05 * (BASE_MID - prev)
        )
        prev = mid
        yield int(mid)


def level_qty(seed: int, d: int) -> int:
    return 10_000_000 + 5_000_000 * d + ((_u64(seed + 17 * d) >> 40) % 20) * 1_000_000


def items(symbol: str = SYMBOL) -> Iterator[tuple[int, _Body]]:
    """The dataset as (event_ns, body) in file order: 10,000 BookSnapshots and 3,334 Trades."""
    trade_id = 0
    for i, mid in enumerate(mids()):
        seed = tick_seed(i)
        t_ns = START_NS + i * TICK_NS
        qtys = [level_qty(seed, d) for d in range(LEVELS)]
        bids = [(mid - 5 - 100 * d, qtys[d]) for d in range(LEVELS)]
        asks = [(mid + 5 + 100 * d, qtys[d]) for d in range(LEVELS)]
        yield t_ns, BookSnapshot(symbol, i + 1, pack_levels(bids), pack_levels(asks))
        if i % 3 == 0:
            t = _u64(seed * _GOLDEN)
            buy = (t >> 63) == 0
            k = (t >> 50) % 5
            px = mid + 5 + 100 * k if buy else mid - 5 - 100 * k
            qty = 1_000_000 + ((t >> 32) % 20) * 500_000
            trade_id += 1
            yield t_ns + TRADE_DELAY_NS, Trade(symbol, trade_id, px, qty, not buy)
