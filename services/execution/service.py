"""The execution process: child orders to the venues (simulated, or Binance with
`execution.venue = "binance"`, see live.py), venue reports back."""

from __future__ import annotations

import argparse
from typing import Any

import zmq

from common import config
from common.core import Core
from common.shell import CoreService, serve
from common.units import load_symbols
from services.execution.core import ExecutionCore
from services.execution.live import LiveExecution


def build(cfg: config.MeshConfig, args: argparse.Namespace) -> tuple[ExecutionCore, int, int]:
    ec = cfg.execution
    return ExecutionCore(ec, cfg.router, load_symbols(cfg.symbols.exchange_info)), ec.hash_every, ec.snapshot_every


def main(argv: list[str] | None = None) -> int:
    return serve(
        "python -m services.execution",
        "Execution engine: order state machine, simulated venues and the Binance spot adapter (execution.venue).",
        build, argv, make_shell=make_shell,
    )


def make_shell(cfg: config.MeshConfig, core: Core, ctx: zmq.Context, **kw: Any) -> CoreService:
    assert isinstance(core, ExecutionCore)
    return (LiveExecution if core.live is not None else CoreService)(cfg, core, ctx, **kw)
