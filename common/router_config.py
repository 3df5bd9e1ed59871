"""Router parameters: frozen dataclasses with documented defaults (integers only).

Each simulated venue's book is derived from the feed's book of the same
symbol: every level's price is shifted by `price_offset_ticks` ticks (both
sides, so a positive offset makes the venue's asks dearer and its bids
richer) and its size becomes `qty * size_pct // 100`, floored to the
symbol's lot grid (levels that scale to zero are dropped). The two default
venues therefore differ deterministically: sim-a mirrors the feed with a
10 bps fee; sim-b is one tick higher, shows 60% of the size and charges 7 bps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

BEST_VENUE = "best_venue"
VWAP = "vwap"
TWAP = "twap"
SWEEP = "sweep"
ALGOS = (BEST_VENUE, VWAP, TWAP, SWEEP)


@dataclass(frozen=True)
class VenueConfig:
    name: str
    fee_bps: int = 0  # fee on notional in basis points; negative = rebate
    price_offset_ticks: int = 0  # venue price = feed price + this * tick
    size_pct: int = 100  # venue size = feed size * size_pct // 100, floored to the lot grid
    down: bool = False  # a down venue gets no orders

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("router venue needs a name")
        if not -BPS_MAX < self.fee_bps < BPS_MAX:
            raise ValueError(f"router venue {self.name}: fee_bps {self.fee_bps} out of range")
        if self.size_pct < 0:
            raise ValueError(f"router venue {self.name}: size_pct must be >= 0, got {self.size_pct}")


BPS_MAX = 10_000


def _default_venues() -> tuple[VenueConfig, ...]:
    return (
        VenueConfig("sim-a", fee_bps=10, price_offset_ticks=0, size_pct=100),
        VenueConfig("sim-b", fee_bps=7, price_offset_ticks=1, size_pct=60),
    )


@dataclass(frozen=True)
class RouterConfig:
    venues: tuple[VenueConfig, ...] = field(default_factory=_default_venues)
    default_algo: str = BEST_VENUE  # used when the order names none
    # Per-symbol default, e.g. (("ETHUSDT", "vwap"),); beats default_algo, loses to the order's own.
    algo_by_symbol: tuple[tuple[str, str], ...] = ()
    twap_slices: int = 5  # N slices (fewer if the order has fewer lots)
    twap_interval_ms: int = 1000  # slice i is due at approval time + i * interval (event time)
    depth_levels: int = 50  # feed levels per side a venue book is derived from
    # On CancelAll / CancelIntent, emit ChildCancel for live children (besides dropping
    # unreleased TWAP slices). Turn off if execution cancels on CancelAll by itself.
    cancel_children: bool = True
    hash_every: int = 1000  # publish the state hash every N seqs
    snapshot_every: int = 10_000

    def __post_init__(self) -> None:
        names = [v.name for v in self.venues]
        if not names:
            raise ValueError("router needs at least one venue")
        if len(set(names)) != len(names):
            raise ValueError(f"router venue names repeat: {names}")
        if "router" in names:
            raise ValueError("'router' is reserved (the router's own reports use it as venue)")
        for algo in (self.default_algo, *(a for _, a in self.algo_by_symbol)):
            if algo not in ALGOS:
                raise ValueError(f"router algo {algo!r} is not one of {', '.join(ALGOS)}")
        if self.hash_every < 1 or self.snapshot_every < 1:
            raise ValueError("router hash_every and snapshot_every must be >= 1")
        if self.twap_slices < 1 or self.twap_interval_ms < 1 or self.depth_levels < 1:
            raise ValueError("router twap_slices, twap_interval_ms and depth_levels must be >= 1")
