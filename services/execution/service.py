"""The execution process: child orders to the (simulated) venues, venue reports back."""

from __future__ import annotations

import argparse

from common import config
from common.shell import serve
from common.units import load_symbols
from services.execution.core import ExecutionCore


def build(cfg: config.MeshConfig, args: argparse.Namespace) -> tuple[ExecutionCore, int, int]:
    if cfg.execution.venue != "sim":
        # The Binance adapter (binance.py) is built and tested against a local
        # server, but is not yet driven by this service: refuse rather than
        # pretend to trade.
        raise ValueError("execution.venue = 'binance' is not wired into the service yet; use 'sim'")
    ec = cfg.execution
    return ExecutionCore(ec, cfg.router, load_symbols(cfg.symbols.exchange_info)), ec.hash_every, ec.snapshot_every


def main(argv: list[str] | None = None) -> int:
    return serve("python -m services.execution", "Execution engine: order state machine and simulated venues.", build, argv)
