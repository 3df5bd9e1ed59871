"""The verifier process, and the replay tools.

    python -m services.verifier                      # live: follow the stream, check every hash
    python -m services.verifier --replay [LOG]       # replay a log, print the final state hashes
    python -m services.verifier --replay --seek SEQ  # the state of every core at SEQ
    python -m services.verifier --replay --verify    # also check every hash published in the log
    ... --json                                       # last line: one JSON object

Live, it starts from its newest good snapshot of every core (its own,
computed by its own replay, never a service's; every
`verifier.snapshot_every` seqs and on stop), or else from seq 1, catches up
from the logger and follows the stream. A divergence is
reported at once -- an error line naming the service, the seq and both
hashes, a HashDivergence event in the log, a counter -- and the verifier
keeps going.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import zmq

from common import eventlog, events, runtime
from common.config import MeshConfig
from common.core import canonical
from common.producer import Producer
from common.shell import SnapshotStore
from common.stream import FellBehind, StreamFollower
from services.verifier.core import Replayer, build_cores

log = logging.getLogger("verifier")


def build_parser() -> argparse.ArgumentParser:
    p = runtime.base_parser(
        "python -m services.verifier", "Replay the stream through every core and check the state hashes."
    )
    p.add_argument(
        "--replay",
        nargs="?",
        const="",
        metavar="LOG",
        help="replay a log directory (default: the configured log) and exit",
    )
    p.add_argument("--seek", type=int, metavar="SEQ", help="--replay: stop at SEQ and show the state there")
    p.add_argument("--verify", action="store_true", help="--replay: check every StateHash in the log")
    p.add_argument("--json", action="store_true", help="--replay: print the report as one JSON object on the last line")
    return p


def replay(cfg: MeshConfig, path: str, seek: int | None, verify: bool, as_json: bool) -> int:
    directory = Path(path) if path else cfg.under_run(cfg.logger.log_dir)
    if not directory.is_dir():
        print(f"no log at {directory}", file=sys.stderr)
        return runtime.EXIT_USAGE
    rep = Replayer(build_cores(cfg))
    t0 = time.perf_counter()
    try:
        for _seq, payload in eventlog.read_range(directory, 1, seek):
            d = rep.apply(events.decode_sequenced(payload))
            if d is not None and verify:
                print(
                    f"DIVERGENCE {d.service} at seq {d.seq}: replay {d.expected:016x} != published {d.published:016x}"
                )
    except eventlog.LogDamaged as exc:
        print(f"log damaged: {exc}", file=sys.stderr)
        return runtime.EXIT_DAMAGED_LOG
    elapsed = time.perf_counter() - t0
    eps = rep.events / elapsed if elapsed > 0 else 0.0
    hashes = rep.hashes()
    print(f"replayed {rep.events} events (seq {rep.first_seq}..{rep.last_seq}) in {elapsed:.2f} s: {eps:,.0f} events/s")
    for name, h in hashes.items():
        print(f"  {name:<10} {h}")
    if verify:
        print(
            f"  checked {rep.checked} published hashes: {len(rep.divergences)} divergences, "
            f"{rep.unverifiable} unverifiable"
        )
    if seek is not None:
        for name, (core, _every) in sorted(rep.cores.items()):
            inspect = getattr(core, "inspect", None)
            if inspect is not None:
                for sym in getattr(core, "books", {}):
                    print(f"  {name} {sym}: {inspect(sym)}")
            print(f"  {name} state: {len(canonical(core.state()))} bytes canonical")
    if as_json:
        first = rep.divergences[0].as_dict() if rep.divergences else None
        print(
            json.dumps(
                {
                    "events": rep.events,
                    "first_seq": rep.first_seq,
                    "last_seq": rep.last_seq,
                    "seconds": round(elapsed, 6),
                    "events_per_s": round(eps, 1),
                    "hashes": hashes,
                    "checked": rep.checked,
                    "divergences": {"count": len(rep.divergences), "first": first},
                }
            )
        )
    return runtime.EXIT_OK if not rep.divergences else runtime.EXIT_ERROR


def live(cfg: MeshConfig, stop: runtime.Shutdown) -> int:
    ctx = zmq.Context.instance()
    rep = Replayer(build_cores(cfg))
    name = cfg.verifier.name
    snapshots = SnapshotStore(cfg.run_dir / "snapshots" / name)
    every = cfg.verifier.snapshot_every
    snap = snapshots.load_latest()
    if snap is not None:
        try:
            rep.load_state(snap[1])  # type: ignore[arg-type]
            log.info("resumed from its snapshot at seq %d", rep.last_seq)
        except ValueError as exc:  # one core took its part, another refused: start clean
            log.error("snapshot at seq %d does not fit this build (%s); verifying from seq 1", snap[0], exc)
            rep = Replayer(build_cores(cfg))
    follower = StreamFollower(ctx, cfg, rep.last_seq + 1)
    producer = Producer(cfg, name, "ctl", ctx=ctx, own_sub=False)
    next_hb = 0.0
    log.info("verifying %s from seq %d", ", ".join(sorted(rep.cores)), rep.last_seq + 1)
    try:
        while not stop:
            for seq, raw in follower.poll(50):
                ev = events.decode_sequenced(raw)
                producer.observe(events.head_of(ev), ev.body)
                d = rep.apply(ev)
                if d is not None:
                    log.error(
                        "DIVERGENCE %s at seq %d: replay %016x != published %016x",
                        d.service,
                        d.seq,
                        d.expected,
                        d.published,
                    )
                    producer.send(
                        events.HashDivergence(d.service, d.seq, d.expected, d.published),
                        ev.event_ns,
                        f"{name}:{ev.epoch}:{ev.seq}:0",
                    )
                if seq % every == 0:
                    snapshots.save(seq, rep.state())
            producer.pump()
            if time.monotonic() >= next_hb:
                next_hb = time.monotonic() + 1.0
                counters = {
                    "checked": rep.checked,
                    "divergences": len(rep.divergences),
                    "unverifiable": rep.unverifiable,
                }
                producer.send(
                    events.Heartbeat(name, "live", rep.last_seq, counters),
                    time.time_ns(),
                    f"{name}:hb:{time.monotonic_ns()}",
                )
    except FellBehind as exc:
        log.error("fell behind, exiting for a restart: %s", exc)
        return runtime.EXIT_FELL_BEHIND
    finally:
        if rep.last_seq:
            snapshots.save(rep.last_seq, rep.state())
        producer.flush(2.0)
        producer.close()
        follower.close()
    return runtime.EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    runtime.setup_logging("verifier", args.log_level)
    cfg = runtime.load_config(args.config, log)
    if cfg is None:
        return runtime.EXIT_CONFIG
    if args.replay is not None:
        return replay(cfg, args.replay, args.seek, args.verify, args.json)
    if args.seek is not None or args.verify:
        print("--seek and --verify go with --replay", file=sys.stderr)
        return runtime.EXIT_USAGE
    return live(cfg, runtime.Shutdown().install())
