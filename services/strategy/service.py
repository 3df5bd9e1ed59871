"""The strategy process: the core inside the common shell (recovery, hashes, snapshots)."""

from __future__ import annotations

import argparse

from common import config
from common.shell import serve
from common.units import load_symbols
from services.strategy.core import StrategyCore


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--name",
        help="instance name (producer id); default strategy.name; a name in strategy.instances takes its symbols there",
    )
    p.add_argument("--symbols", help="comma-separated symbols for this instance; default strategy.symbols")


def build(cfg: config.MeshConfig, args: argparse.Namespace) -> tuple[StrategyCore, int, int]:
    declared = dict(cfg.strategy.instances)
    symbols = config.instance_symbols(args.symbols) if args.symbols else None
    if args.name in declared:
        sc = cfg.strategy.instance(args.name)
        if symbols is not None and symbols != sc.symbols:
            # The verifier replays the declared instance: a different book would diverge at once.
            raise config.ConfigError(
                f"--symbols {','.join(symbols)} differs from strategy.instances' {args.name}: {','.join(sc.symbols)}"
            )
    else:
        changes: dict[str, object] = {"instances": []}
        if args.name:
            changes["name"] = args.name
        if symbols is not None:
            changes["symbols"] = list(symbols)
        sc = config.replace(cfg, "strategy", **changes).strategy
    return StrategyCore(sc, load_symbols(cfg.symbols.exchange_info)), sc.hash_every, sc.snapshot_every


def main(argv: list[str] | None = None) -> int:
    return serve(
        "python -m services.strategy",
        "Market maker: book, trades and fills in; order intents out.",
        build,
        argv,
        add_args,
    )
