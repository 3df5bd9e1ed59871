"""The router process: approved orders in, child orders across venues out."""

from __future__ import annotations

import argparse

from common import config
from common.shell import serve
from common.units import load_symbols
from services.router.core import RouterCore


def build(cfg: config.MeshConfig, args: argparse.Namespace) -> tuple[RouterCore, int, int]:
    return (
        RouterCore(cfg.router, load_symbols(cfg.symbols.exchange_info)),
        cfg.router.hash_every,
        cfg.router.snapshot_every,
    )


def main(argv: list[str] | None = None) -> int:
    return serve("python -m services.router", "Smart order router: BestVenue, VWAP, TWAP, LiquiditySweep.", build, argv)
