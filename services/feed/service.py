"""The feed process: a source of normalized events, and the transport shell around it.

`main(argv)` parses the command line, loads the config, builds the source
(`open_source`) and either

* `--dry-run`: drains the source without the mesh and prints the input
  accounting (`--json`: ONE JSON object on the last line), or
* runs the mesh loop (`run_mesh`): every event goes through
  `common.producer.Producer` (source "feed", channel "md"), heartbeats go the
  same way, and shutdown is ordered: stop input, flush, close.

Exactly-once restarts: synthetic and replay are deterministic, and so is where
their heartbeats fall (`with_heartbeats`: one whenever event time crosses a
whole second), so the sequence of items sent is a pure function of the
config. A restarted feed skips the first `producer.start_seq` of them.
Live is not deterministic; it heartbeats on the wall clock and never skips.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from common import config as mesh_config
from common.config import ConfigError, MeshConfig
from common.events import Heartbeat
from common.metrics import METRICS
from common.units import BUILTIN, SymbolTable
from services.feed.binance import Counters, Item
from services.feed.sources import ReplaySource, Source, SyntheticSource, limit, paced, summary

log = logging.getLogger("services.feed")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_NO_SEQUENCER = 4
EXIT_FLUSH_TIMEOUT = 5
EXIT_ABORTED = 130

SERVICE = "feed"
HEARTBEAT_NS = 1_000_000_000
FLUSH_TIMEOUT_S = 5.0


class Shutdown:
    """SIGTERM/SIGINT set a flag; a second one escalates (KeyboardInterrupt out of any wait)."""

    def __init__(self) -> None:
        self.requested = False
        self.signals = 0

    def __call__(self) -> bool:
        return self.requested

    def handle(self, signum: int, _frame: FrameType | None) -> None:
        self.signals += 1
        self.requested = True
        if self.signals > 1:
            raise KeyboardInterrupt(f"second signal {signum}")

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self.handle)
        signal.signal(signal.SIGINT, self.handle)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m services.feed",
        description="Market data in: synthetic (default), replay of raw captures, or live Binance spot.",
    )
    p.add_argument("--config", metavar="PATH", help="mesh TOML (default: $ATOMIC_MESH_CONFIG or the repo's mesh.toml)")
    p.add_argument("--source", choices=("synthetic", "replay", "binance"), help="overrides feed.source")
    p.add_argument(
        "--file", action="append", default=[], metavar="F", help="capture file to replay (repeatable, in order)"
    )
    p.add_argument("--symbol", action="append", default=[], metavar="SYM", help="overrides feed.symbols (repeatable)")
    p.add_argument("--seed", type=int, help="overrides feed.seed")
    p.add_argument("--rate", type=float, help="synthetic events/s of wall time, 0 = full speed (feed.rate)")
    p.add_argument("--speed", type=float, help="replay speed: 1 = capture time, N = N x, 0 = full (feed.replay_speed)")
    p.add_argument("--max-events", type=int, help="stop after N events (feed.max_events; 0 = unlimited)")
    p.add_argument("--levels", type=int, help="synthetic book depth a side (feed.levels)")
    p.add_argument("--record", metavar="FILE", help="live: write every raw message to FILE (capture format)")
    p.add_argument("--dry-run", action="store_true", help="normalize without the mesh and report the accounting")
    p.add_argument("--json", action="store_true", help="with --dry-run: print one JSON object on the last line")
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return p


def load_config(path: str | None) -> MeshConfig:
    if path is None and not os.environ.get(mesh_config.ENV_CONFIG) and not mesh_config.DEFAULT_CONFIG.exists():
        log.warning("no %s yet: using built-in defaults", mesh_config.DEFAULT_CONFIG)
        return mesh_config.from_dict({}, base_dir=str(mesh_config.REPO_ROOT))
    return mesh_config.load(path)


def apply_args(cfg: MeshConfig, args: argparse.Namespace) -> MeshConfig:
    changes: dict[str, Any] = {}
    if args.source:
        changes["source"] = args.source
    if args.file:
        changes["replay_files"] = list(args.file)
        changes.setdefault("source", "replay")
    if args.symbol:
        changes["symbols"] = [s.upper() for s in args.symbol]
    for key in ("seed", "rate", "max_events", "levels", "record"):
        value = getattr(args, key)
        if value is not None:
            changes[key] = value
    if args.speed is not None:
        changes["replay_speed"] = args.speed
    elif args.dry_run:
        changes["replay_speed"] = 0.0  # a dry run measures: full speed unless asked
    return mesh_config.replace(cfg, "feed", **changes) if changes else cfg


def symbol_table(cfg: MeshConfig) -> SymbolTable:
    if cfg.symbols.exchange_info:
        return SymbolTable.from_exchange_info(cfg.resolve(cfg.symbols.exchange_info).read_text())
    return BUILTIN


def open_source(cfg: MeshConfig, stop: Callable[[], bool] = lambda: False) -> Source:
    """The configured source. Replay file paths are relative to the config file's directory."""
    feed = cfg.feed
    table = symbol_table(cfg)
    for sym in feed.symbols:
        table[sym]  # unknown symbols fail here, by name
    if feed.source == "synthetic":
        return SyntheticSource(feed, table)
    if feed.source == "replay":
        files = [str(cfg.resolve(f)) for f in feed.replay_files]
        return ReplaySource(files, feed, table, stop=stop)
    from services.feed.live import LiveSource  # websocket-client only when live

    return LiveSource(feed, table, stop=stop)


def with_heartbeats(
    items: Iterator[Item | None], counters: Callable[[], Counters], state: str = "live"
) -> Iterator[Item]:
    """Insert a Heartbeat whenever event time passes a whole second (deterministic positions)."""
    next_ns = -1
    for item in items:
        if item is None:
            continue
        ev_ns = item[0]
        if next_ns < 0:
            next_ns = ev_ns - ev_ns % HEARTBEAT_NS + HEARTBEAT_NS
        elif ev_ns >= next_ns:
            yield ev_ns, heartbeat(counters(), state)
            next_ns = ev_ns - ev_ns % HEARTBEAT_NS + HEARTBEAT_NS
        yield item


def heartbeat(c: Counters, state: str, metrics: bool = False) -> Heartbeat:
    """Deterministic heartbeats (in the source's numbering) carry counters only;
    the wall-clock liveness ones also carry the latency histograms."""
    flat = c.flat()
    flat["gaps"] = c.events.get("GapDeclared", 0)
    if metrics:
        flat.update(METRICS.snapshot())
    return Heartbeat(SERVICE, state, 0, flat)


def run_dry(source: Source, cfg: MeshConfig, as_json: bool, stop: Callable[[], bool], out: Any = None) -> int:
    out = out or sys.stdout
    t0 = time.perf_counter()
    events = 0
    stream = limit(source.items(), cfg.feed.max_events)
    try:
        for item in stream:
            if item is not None:
                events += 1
            if stop():
                break
    finally:
        source.close()
    elapsed = time.perf_counter() - t0
    extra: dict[str, Any] = {"source": source.name, "events_out": events, "seconds": round(elapsed, 3)}
    if hasattr(source, "extra"):
        extra.update(source.extra())
    result = summary(source.counters(), extra)
    result["lines_per_s"] = round(result["lines"] / elapsed) if elapsed > 0 else 0
    if as_json:
        print(json.dumps(result, sort_keys=True), file=out, flush=True)
    else:
        print(
            f"{source.name}: {result['lines']} lines in {elapsed:.2f}s; accepted {result['accepted']}; "
            f"dropped {result['dropped']}; rejected {result['rejected']}",
            file=out,
            flush=True,
        )
    return EXIT_OK


def run_mesh(
    cfg: MeshConfig, source: Source, shutdown: Shutdown, producer_factory: Callable[..., Any] | None = None
) -> int:
    """Send the source's events through the producer until it ends or a signal; then flush and close."""
    if producer_factory is None:
        from common.producer import Producer, SequencerUnavailable

        producer_factory = Producer
        unavailable: type[Exception] = SequencerUnavailable
    else:
        unavailable = RuntimeError
    try:
        producer = producer_factory(cfg, source=SERVICE, channel="md")
    except unavailable as exc:
        log.error("feed: %s", exc)
        return EXIT_NO_SEQUENCER
    # Liveness heartbeats run on the wall clock, so they cannot share the
    # deterministic source's numbering (a restart skips exactly start_seq
    # items): they go out under their own source id, confirmed through the
    # main producer's subscription. Risk's dead man's switch watches them.
    liveness = producer
    if source.deterministic:
        try:
            liveness = producer_factory(cfg, source=SERVICE + "-live", channel="ctl", own_sub=False)
            producer.observers.append(liveness)
        except unavailable as exc:
            log.error("feed: %s", exc)
            return EXIT_NO_SEQUENCER
    feed = cfg.feed
    stream: Iterator[Item | None] = limit(source.items(), feed.max_events)
    if source.deterministic:
        stream = with_heartbeats(stream, source.counters)
        if producer.start_seq:
            log.info("feed: sequencer already has %d items from us; regenerating past them", producer.start_seq)
            stream = itertools.islice(stream, producer.start_seq, None)
    if source.name == "synthetic":
        stream = paced(stream, feed.rate, shutdown)
    # At full speed the producer batches frames (more=True); paced, each goes at once.
    full_speed = (source.name == "synthetic" and feed.rate <= 0) or (source.name == "replay" and feed.replay_speed <= 0)
    sent = 0
    last_pump = last_hb = time.monotonic_ns()
    code = EXIT_OK
    try:
        for item in stream:
            now = time.monotonic_ns()
            if item is not None:
                producer.send(item[1], item[0], more=full_speed)
                sent += 1
            if now - last_hb >= HEARTBEAT_NS:
                liveness.send(heartbeat(source.counters(), "live", metrics=True), time.time_ns())
                last_hb = now
            if now - last_pump >= 5_000_000:
                producer.pump(0)
                if liveness is not producer:
                    liveness.pump(0)
                last_pump = now
            if shutdown.requested:
                break
        log.info("feed: input ended after %d events%s", sent, "" if shutdown.requested else "; idling")
        while not shutdown.requested:  # source exhausted: stay up, heartbeat, wait for the signal
            producer.pump(timeout_ms=100)
            if liveness is not producer:
                liveness.pump(0)
            now = time.monotonic_ns()
            if now - last_hb >= HEARTBEAT_NS:
                liveness.send(heartbeat(source.counters(), "live", metrics=True), time.time_ns())
                last_hb = now
        source.close()  # stop taking input
        liveness.send(heartbeat(source.counters(), "stopping"), time.time_ns())
        if not producer.flush(FLUSH_TIMEOUT_S):
            log.error("feed: %d events still unconfirmed after %.0fs", producer.inflight, FLUSH_TIMEOUT_S)
            code = EXIT_FLUSH_TIMEOUT
    finally:
        source.close()
        if liveness is not producer:
            liveness.flush(1.0)
            liveness.close()
        producer.close()
    return code


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        cfg = apply_args(load_config(args.config), args)
        if cfg.feed.source == "replay" and not cfg.feed.replay_files:
            parser.error("replay needs --file (or feed.replay_files)")
        for f in cfg.feed.replay_files if cfg.feed.source == "replay" else ():
            if not cfg.resolve(f).exists():
                parser.error(f"no such capture file: {f}")
        if args.dry_run and cfg.feed.source == "synthetic" and cfg.feed.max_events == 0:
            parser.error("a synthetic dry run needs --max-events N (the market never ends)")
    except ConfigError as exc:
        log.error("feed: bad config: %s", exc)
        return EXIT_CONFIG
    except KeyError as exc:
        log.error("feed: %s", exc)
        return EXIT_CONFIG
    shutdown = Shutdown()
    shutdown.install()
    try:
        source = open_source(cfg, shutdown)
        log.info("feed: starting %s source%s", source.name, " (dry run)" if args.dry_run else "")
        if args.dry_run:
            return run_dry(source, cfg, args.json, shutdown)
        return run_mesh(cfg, source, shutdown)
    except KeyboardInterrupt:
        log.error("feed: second signal: aborting without flush")
        return EXIT_ABORTED
    except (OSError, ValueError) as exc:
        log.error("feed: %s", exc)
        return EXIT_FAILURE
