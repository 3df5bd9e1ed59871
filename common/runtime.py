"""What every service process shares: CLI frame, logging, signals, exit codes."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from types import FrameType

from common import config

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_DAMAGED_LOG = 4
EXIT_FELL_BEHIND = 5
EXIT_UNAVAILABLE = 6


def base_parser(prog: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument(
        "--config",
        metavar="PATH",
        default=None,
        help=f"mesh config file (default: ${config.ENV_CONFIG} or {config.DEFAULT_CONFIG.name} in the repo root)",
    )
    p.add_argument(
        "--log-level", default=os.environ.get("ATOMIC_MESH_LOG_LEVEL", "INFO"), help="logging level (default INFO)"
    )
    return p


def setup_logging(name: str, level: str = "INFO") -> logging.Logger:
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, level.upper(), logging.INFO),
        format=f"%(asctime)s {name}[{os.getpid()}] %(levelname)s %(message)s",
    )
    return logging.getLogger(name)


def load_config(path: str | None, log: logging.Logger) -> config.MeshConfig | None:
    try:
        return config.load(path)
    except config.ConfigError as exc:
        log.error("config error: %s", exc)
        return None


class Shutdown:
    """A signal only sets a flag; a second signal escalates to an immediate exit."""

    def __init__(self) -> None:
        self.requested = False
        self.reason = ""

    def install(self) -> Shutdown:
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.requested:
            os._exit(128 + signum)
        self.requested = True
        self.reason = signal.Signals(signum).name

    def __bool__(self) -> bool:
        return self.requested
