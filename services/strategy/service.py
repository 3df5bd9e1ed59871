"""The strategy process: the core inside the common shell (recovery, hashes, snapshots)."""

from __future__ import annotations

import argparse

from common import config
from common.shell import serve
from common.units import load_symbols
from services.strategy.core import StrategyCore


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", help="instance name (producer id); default strategy.name from the config")
    p.add_argument("--symbols", help="comma-separated symbols for this instance; default strategy.symbols")


def build(cfg: config.MeshConfig, args: argparse.Namespace) -> tuple[StrategyCore, int, int]:
    changes: dict[str, object] = {}
    if args.name:
        changes["name"] = args.name
    if args.symbols:
        changes["symbols"] = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
    if changes:
        cfg = config.replace(cfg, "strategy", **changes)
    sc = cfg.strategy
    return StrategyCore(sc, load_symbols(cfg.symbols.exchange_info)), sc.hash_every, sc.snapshot_every


def main(argv: list[str] | None = None) -> int:
    return serve(
        "python -m services.strategy",
        "Market maker: book, trades and fills in; order intents out.",
        build,
        argv,
        add_args,
    )
