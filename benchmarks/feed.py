"""The feed's normalizer on real captures: its fast paths against its checked way, in one run.

    python -m benchmarks.feed [--json FILE] [--file CAPTURE ...] [--runs N]

The capture's lines are read into memory first (no gzip in the clock). Each
run normalizes all of them with a fresh Normalizer, once with the fast paths
on (the default) and once with `fast_paths = False` (every message the
checked way), alternated; per mode the lowest CPU time of the runs is kept.
Per-kind figures come from a second pass over the whole capture in order,
timing each line's call (perf_counter_ns, whose own ~0.1 us a line is in
them) and summing by kind, so a diff is timed as it really comes: applied to
a synced book. Both modes must give the same items; the benchmark stops if
they do not.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from common import events
from common.units import BUILTIN
from services.feed.binance import Normalizer
from services.feed.replay import read_lines

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "binance-spot"
DEFAULT = [DATA / "btcusdt_20240808.gz", DATA / "btcusdt_20240809.gz"]
KINDS = {"bookTicker": (b"@bookTicker",), "depth diff": (b"@depth@", b'@depth"'), "trade": (b"@trade",)}
MODES = {"fast": True, "checked": False}


def _normalizer(fast: bool) -> Normalizer:
    n = Normalizer(BUILTIN, max_line_bytes=1 << 22, default_symbol="BTCUSDT")
    n.fast_paths = fast
    return n


def _cpu(n: Normalizer, lines: list[bytes]) -> float:
    """CPU seconds to normalize the lines, dropping the items as the feed does once sent
    (keeping 100k of them alive would time the garbage collector walking them too)."""
    feed = n.feed_line
    t = time.process_time()
    for ln in lines:
        feed(ln)
    return time.process_time() - t


def _per_kind(n: Normalizer, lines: list[bytes], kinds: list[str]) -> dict[str, float]:
    """Seconds per kind of line over one pass in order (each call timed on its own)."""
    total = dict.fromkeys(KINDS, 0)
    total["other"] = 0
    feed, clock = n.feed_line, time.perf_counter_ns
    for ln, kind in zip(lines, kinds, strict=True):
        t = clock()
        feed(ln)
        total[kind] += clock() - t
    return {k: v / 1e9 for k, v in total.items()}


def run(paths: list[Path], runs: int) -> dict[str, object]:
    lines = [ln for p in paths for ln in read_lines(p, 1 << 22) if isinstance(ln, bytes)]
    kinds = [next((k for k, marks in KINDS.items() if any(m in ln[:80] for m in marks)), "other") for ln in lines]
    items = {}
    for mode, fast in MODES.items():
        n = _normalizer(fast)
        items[mode] = [(t, events.encode(b)) for ln in lines for t, b in n.feed_line(ln)]
    if items["fast"] != items["checked"]:
        raise SystemExit("the fast and checked ways gave different items: not timing them")
    n_items = len(items["fast"])
    del items
    best: dict[str, dict[str, float]] = {m: {} for m in MODES}
    for _ in range(runs):
        for mode, fast in MODES.items():
            s = _cpu(_normalizer(fast), lines)
            best[mode]["all"] = min(best[mode].get("all", s), s)
            for kind, s in _per_kind(_normalizer(fast), lines, kinds).items():
                best[mode][kind] = min(best[mode].get(kind, s), s)
    rows = {}
    for key in ["all", *KINDS]:
        count = len(lines) if key == "all" else kinds.count(key)
        rows[key] = {
            "lines": count,
            **{f"{m}_s": round(best[m][key], 4) for m in MODES},
            **{f"{m}_us_per_line": round(best[m][key] / count * 1e6, 2) if count else None for m in MODES},
            "speedup": round(best["checked"][key] / best["fast"][key], 2) if best["fast"][key] else None,
        }
    return {"files": [p.name for p in paths], "items": n_items, "runs": runs, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.feed", description=__doc__.splitlines()[0])
    ap.add_argument("--file", action="append", type=Path, help="a capture file (repeat; default the 2024 BTCUSDT pair)")
    ap.add_argument("--runs", type=int, default=5, help="alternated runs per mode; the lowest CPU time is kept")
    ap.add_argument("--json", metavar="FILE", help="write the results as JSON")
    args = ap.parse_args(argv)
    paths = args.file or DEFAULT
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        print(f"capture not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    res = run(paths, args.runs)
    print(f"{' + '.join(res['files'])}: {res['items']:,} items, lowest CPU of {res['runs']} alternated runs")  # type: ignore[arg-type]
    print(f"{'lines':<12}{'count':>9}{'fast us/line':>14}{'checked us/line':>17}{'speedup':>9}")
    for key, r in res["rows"].items():  # type: ignore[attr-defined]
        print(f"{key:<12}{r['lines']:>9,}{r['fast_us_per_line']:>14}{r['checked_us_per_line']:>17}{r['speedup']:>8}x")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
        print(f"-> {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
