"""The risk process, and the operator's commands to it.

    python -m services.risk                  # run the pre-trade gate
    python -m services.risk kill             # fire the kill switch
    python -m services.risk reset-kill       # clear it (the only way)
    python -m services.risk reset-breaker    # clear the circuit breaker
    python -m services.risk reconcile        # execution compares venues with its books
    python -m services.risk sim-inject VENUE:SYMBOL:BUY|SELL:PRICE:QTY:ID
                                             # an order placed at a sim venue by hand

An operator command is a sequenced event like any other, so it is in the log,
survives a restart of the risk service and replays identically.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
import time

import zmq

from common import config, events, runtime
from common.producer import Producer, SequencerUnavailable
from common.shell import serve
from common.units import load_symbols
from services.risk.core import RiskCore

log = logging.getLogger("risk")
COMMANDS = ("kill", "reset-kill", "reset-breaker", "venue-down", "venue-up", "reconcile", "sim-inject")


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("command", nargs="?", choices=COMMANDS, help="send an operator command instead of running the gate")
    p.add_argument("arg", nargs="?", default="", help="command argument (a venue name for venue-down/up)")


def build(cfg: config.MeshConfig, args: argparse.Namespace) -> tuple[RiskCore, int, int]:
    return RiskCore(cfg.risk, load_symbols(cfg.symbols.exchange_info)), cfg.risk.hash_every, cfg.risk.snapshot_every


def send_command(cfg: config.MeshConfig, command: str, arg: str) -> int:
    try:
        p = Producer(cfg, "operator", "ctl", ctx=zmq.Context.instance(), hello_deadline_s=10)
    except SequencerUnavailable as exc:
        print(f"cannot send {command}: {exc}", file=sys.stderr)
        return runtime.EXIT_UNAVAILABLE
    try:
        p.send(
            events.OperatorCommand(command, arg, getpass.getuser()),
            time.time_ns(),
            f"operator:{command}:{time.time_ns()}",
        )
        if not p.flush(10):
            print(f"{command} was not confirmed by the sequencer within 10 s", file=sys.stderr)
            return runtime.EXIT_UNAVAILABLE
    finally:
        p.close()
    print(f"{command} sequenced")
    return runtime.EXIT_OK


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    probe = argparse.ArgumentParser(add_help=False)
    probe.add_argument("--config")
    probe.add_argument("command", nargs="?")
    probe.add_argument("arg", nargs="?", default="")
    known, _ = probe.parse_known_args(argv)
    if known.command in COMMANDS:
        runtime.setup_logging("risk-cli", "WARNING")
        cfg = runtime.load_config(known.config, log)
        if cfg is None:
            return runtime.EXIT_CONFIG
        return send_command(cfg, known.command, known.arg)
    return serve(
        "python -m services.risk",
        "Pre-trade risk gate: per-order checks, circuit breaker, kill switch.",
        build,
        argv,
        add_args,
    )
