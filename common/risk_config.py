"""Risk parameters: one frozen dataclass, every field with a documented default.

Units (all integers, never floats):

* quantities are base-asset atoms of the symbol (qty x 10**qty_scale);
* prices are pipettes (price x 10**price_scale);
* money -- notional caps, PnL limits, the drawdown base -- is in "money
  units": quote currency x 10**pnl_scale. With the default pnl_scale of 10 a
  money unit is 1e-10 USDT, which is exactly one pipette x one atom for
  BTCUSDT and ETHUSDT (price_scale 2 + qty_scale 8), so for those symbols
  price * qty needs no conversion. A symbol whose notional scale differs is
  converted by a power of ten (floor division if its scale is finer).
* times are milliseconds of event time (event_ns of sequenced events).

The seed's defaults are kept where they made sense (FINDINGS.md): max order
qty 5e7 sat, max position 2e8 sat, 20 open orders, 100 orders/s, max spread
5000 pipettes, 5 consecutive losses, 200 bps drawdown. The seed's notional
caps were sat x pipette products with wrong comments; here they are money
units as defined above.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

MONEY = 10**10  # one whole quote-currency unit at the default pnl_scale


# Operator commands risk acts on. A reset also ends every backoff the strategy keeps
# after risk's refusals (services/strategy/core.py), so quoting resumes at once.
CMD_KILL = "kill"
CMD_RESET_KILL = "reset-kill"
CMD_RESET_BREAKER = "reset-breaker"
RISK_RESETS = (CMD_RESET_KILL, CMD_RESET_BREAKER)


@dataclass(frozen=True)
class RiskConfig:
    # ---- Tier 1: per order
    max_spread: int = 5000  # pipettes; intents are rejected while ask - bid > this
    max_order_qty: int = 50_000_000  # atoms per order (0.5 BTC)
    max_position_qty: int = 200_000_000  # atoms; |worst-case position| after the order (2 BTC)
    max_notional: int = 100_000 * MONEY  # money units per symbol (100,000 USDT)
    max_open_orders: int = 20  # parent orders open at once, all symbols
    max_orders_per_second: int = 100  # approvals in any sliding 1 s of event time
    check_increments: bool = True  # reject prices off the tick grid / qty off the lot grid
    # An intent sequenced more than this after the event it answers (sequencer clock) is
    # stale: a strategy restarted after a crash sends, late, what it decided while down.
    # 0 = no limit.
    max_intent_age_ms: int = 1000

    # ---- Tier 2: circuit breaker (soft pause; cleared by daily reset or reset-breaker)
    max_consecutive_losses: int = 5  # losing round trips in a row
    max_drawdown_bps: int = 200  # of the day's peak PnL (see drawdown_base)
    # Drawdown is (peak - pnl) * 10_000 / max(peak, drawdown_base): while the
    # day's peak is small or <= 0 the drop is measured against this base
    # (think "capital at risk"), so a one-atom peak followed by a flat close
    # is not a 100% drawdown. Money units.
    drawdown_base: int = 10_000 * MONEY

    # ---- Tier 3: kill switch (hard stop; only OperatorCommand "reset-kill" clears it)
    max_loss: int = -1_000 * MONEY  # fires when total PnL < this (money units, negative)

    # ---- dead man's switch
    deadman_ms: int = 5000  # silence longer than this (event time of Clock events) = outage
    deadman_services: tuple[str, ...] = ("strategy", "feed")  # Heartbeat.service names watched
    deadman_market_data: bool = True  # also watch each symbol's market data

    # ---- money scale
    pnl_scale: int = 10  # money units are quote currency x 10**pnl_scale
    # ---- determinism: publish the state hash / write a snapshot every N seqs
    hash_every: int = 1000
    snapshot_every: int = 10_000

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.type in ("int", int) and (isinstance(v, bool) or not isinstance(v, int)):
                raise ValueError(f"risk.{f.name}: expected an integer, got {v!r}")
        if self.max_intent_age_ms < 0:
            raise ValueError(f"risk.max_intent_age_ms must be >= 0, got {self.max_intent_age_ms}")
        if self.max_loss >= 0:
            raise ValueError(f"risk.max_loss must be negative, got {self.max_loss}")
        for name in (
            "max_spread", "max_order_qty", "max_position_qty", "max_notional", "max_open_orders",
            "max_orders_per_second", "max_consecutive_losses", "max_drawdown_bps", "drawdown_base", "deadman_ms",
            "hash_every", "snapshot_every",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"risk.{name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.pnl_scale <= 18:
            raise ValueError(f"risk.pnl_scale out of range 0..18: {self.pnl_scale}")
