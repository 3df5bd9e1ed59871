"""The logger process and its tools.

Run with no mode it is the archive: it follows the stream (repairing gaps
from the sequencer's journal), appends every event to the log in seq order,
and answers `range`/`head` requests for catch-up. On restart it resumes after
the last record of its own log, so nothing is lost or written twice.

`--tail` follows the log like `tail -f`; `--check` verifies a log.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import zmq

from common import eventlog, events, rpc, runtime, sockets
from common.config import MeshConfig
from common.describe import Renderer, to_jsonable
from common.stream import FellBehind, StreamFollower
from common.units import load_symbols

log = logging.getLogger("logger")
MAX_RANGE = 5000


def build_parser() -> argparse.ArgumentParser:
    p = runtime.base_parser("python -m services.logger", "Archive the sequenced stream; tail or check the event log.")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--tail", action="store_true", help="follow the log like tail -f, one line per event")
    mode.add_argument(
        "--check", nargs="?", const="", metavar="LOG", help="verify a log directory (default: the configured log)"
    )
    p.add_argument(
        "--from",
        dest="from_seq",
        type=int,
        default=None,
        metavar="SEQ",
        help="--tail: start at this seq (default: the last 10 events)",
    )
    p.add_argument(
        "--type",
        dest="types",
        action="append",
        default=[],
        metavar="TYPE",
        help="--tail: only these event types (repeatable, e.g. Trade)",
    )
    p.add_argument(
        "--json", action="store_true", help="--tail: one JSON object per line; --check: JSON report as the last line"
    )
    p.add_argument("--count", type=int, default=0, metavar="N", help="--tail: exit after N events (0 = follow forever)")
    return p


class Logger:
    def __init__(self, cfg: MeshConfig, ctx: zmq.Context) -> None:
        lc = cfg.logger
        self.dir = cfg.under_run(lc.log_dir)
        tail = eventlog.recover(self.dir)
        if tail.truncated:
            log.warning("log: truncated %s", tail.truncated)
        self.last_seq = tail.last_seq
        self.writer = eventlog.LogWriter(
            self.dir, lc.segment_bytes, lc.fsync, lc.fsync_interval_ms, last_seq=self.last_seq
        )
        self.router = sockets.router(ctx, cfg, "logger_ctl")
        # The logger's own hole-filler is the journal: it must never ask itself.
        self.follower = StreamFollower(ctx, cfg, self.last_seq + 1, repair_from=("sequencer_ctl",))
        self.poller = zmq.Poller()
        self.poller.register(self.follower.sock, zmq.POLLIN)
        self.poller.register(self.router, zmq.POLLIN)
        log.info("log %s resumes after seq %d", self.dir, self.last_seq)

    def handle(self, op: str, args: list) -> list:  # type: ignore[type-arg]
        if op == "head":
            return [self.last_seq]
        if op == "range":
            lo, hi, max_n = int(args[0]), min(int(args[1]), self.last_seq), min(int(args[2]), MAX_RANGE)
            out = []
            if lo <= hi:
                for _seq, payload in eventlog.read_range(self.dir, lo, hi, self.writer.locate(lo)):
                    out.append(payload)
                    if len(out) >= max_n:
                        break
            return [out, self.last_seq]
        raise ValueError(f"unknown op {op!r}")

    def run(self, stop: runtime.Shutdown) -> int:
        next_report = time.monotonic() + 10
        while not stop:
            ready = dict(self.poller.poll(100))
            if self.router in ready:
                for _ in range(16):
                    if not self.router.poll(0, zmq.POLLIN):
                        break
                    rpc.serve_one(self.router, self.handle)
            try:
                got = self.follower.drain()
            except FellBehind as exc:
                log.error("fell behind, exiting for a restart into catch-up: %s", exc)
                self.close()
                return runtime.EXIT_FELL_BEHIND
            if got:
                self.writer.append(got)
                self.last_seq = got[-1][0]
            if time.monotonic() >= next_report:
                log.info("at seq %d; stream %s", self.last_seq, self.follower.counters)
                next_report = time.monotonic() + 10
        log.info("stopping (%s) at seq %d", stop.reason, self.last_seq)
        self.close()
        return runtime.EXIT_OK

    def close(self) -> None:
        self.writer.sync()
        self.writer.close()
        self.follower.close()
        self.router.close(linger=0)


def run_check(cfg: MeshConfig, path: str, as_json: bool) -> int:
    directory = Path(path) if path else cfg.under_run(cfg.logger.log_dir)
    if not directory.is_dir():
        print(f"no log at {directory}", file=sys.stderr)
        return runtime.EXIT_USAGE
    report = eventlog.check(directory)
    d = report.as_dict()
    print(f"{d['path']}: {d['count']} events, seq {d['first_seq']}..{d['last_seq']}")
    for gap in report.gaps:
        print(f"  gap {gap['from']}..{gap['to']}{' (declared)' if gap['declared'] else ''}")
    if report.duplicates:
        print(f"  {report.duplicates} duplicate records")
    if report.undecodable:
        print(f"  {report.undecodable} records that do not decode")
    if report.damaged:
        print(f"  DAMAGED: {report.damaged}")
    if not (report.gaps or report.duplicates or report.damaged or report.undecodable):
        print("  ok")
    if as_json:
        print(json.dumps(d))
    return runtime.EXIT_OK if report.damaged is None and not report.undecodable else runtime.EXIT_DAMAGED_LOG


def run_tail(cfg: MeshConfig, args: argparse.Namespace, stop: runtime.Shutdown) -> int:
    directory = cfg.under_run(cfg.logger.log_dir)
    renderer = Renderer(load_symbols(cfg.symbols.exchange_info))
    unknown = [t for t in args.types if t not in events.BY_NAME]
    if unknown:
        print(f"unknown event type {unknown[0]!r}; known: {', '.join(sorted(events.BY_NAME))}", file=sys.stderr)
        return runtime.EXIT_USAGE
    types = tuple(events.BY_NAME[t] for t in args.types)
    start = args.from_seq
    if start is None:
        start = max(1, eventlog.recover_readonly_last(directory) - 9)
    shown = 0
    try:
        for _seq, payload in eventlog.follow(directory, start, stop=lambda: bool(stop)):
            ev = events.decode_sequenced(payload)
            if types and not isinstance(ev.body, types):
                continue
            line = json.dumps(to_jsonable(ev)) if args.json else renderer.line(ev)
            print(line, flush=True)
            shown += 1
            if args.count and shown >= args.count:
                break
    except BrokenPipeError:
        return runtime.EXIT_OK
    except eventlog.LogDamaged as exc:
        print(f"log damaged: {exc}", file=sys.stderr)
        return runtime.EXIT_DAMAGED_LOG
    return runtime.EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    runtime.setup_logging("logger", args.log_level)
    cfg = runtime.load_config(args.config, log)
    if cfg is None:
        return runtime.EXIT_CONFIG
    stop = runtime.Shutdown().install()
    if args.check is not None:
        return run_check(cfg, args.check, args.json)
    if args.tail:
        return run_tail(cfg, args, stop)
    try:
        logger = Logger(cfg, zmq.Context.instance())
    except eventlog.LogDamaged as exc:
        log.error("log is damaged, refusing to start: %s", exc)
        return runtime.EXIT_DAMAGED_LOG
    return logger.run(stop)
