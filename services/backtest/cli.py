"""``python -m services.backtest``: the command line.

    python -m services.backtest --synthetic seed [--fill-model touch] [--json]
    python -m services.backtest --data btcusdt_20240808.gz btcusdt_20240809.gz --equity-csv eq.csv
    python -m services.backtest --log run/log
    python -m services.backtest --synthetic 100000 --seed 7 --sweep gamma_ppm=50000,100000 --sweep toxic_bps=6000,8000

Exit codes are named below. The report goes to stdout (with --json, as one
JSON object on the last line); the progress bar and errors go to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from common import config as config_mod
from common.config import MeshConfig
from common.units import load_symbols
from services.backtest import prefetch, report, seeddata, sweep
from services.backtest.inputs import CaptureInput, Input, LogInput, SeedInput, SyntheticInput
from services.backtest.run import run_backtest
from services.execution.simexchange import FILL_MODELS

EXIT_OK = 0
EXIT_USAGE = 2  # argparse's own
EXIT_CONFIG = 3
EXIT_INPUT = 4
EXIT_PLOT = 5


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m services.backtest",
        description="Backtest: the mesh's own cores (strategy, risk, router, execution/sim exchange) in one "
        "process through an in-process sequencer, no sockets.",
    )
    p.add_argument("--config", help="mesh config TOML (default: $ATOMIC_MESH_CONFIG, else the repo's mesh.toml)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", nargs="+", metavar="FILE", help="raw capture files, read in order as one session")
    src.add_argument("--log", metavar="DIR", help="an event log written by the mesh: replay its market data only")
    src.add_argument(
        "--synthetic", metavar="N|seed", help="N events of the feed's synthetic market, or 'seed': the seed's dataset"
    )
    p.add_argument("--seed", type=int, help="synthetic market seed (default: feed.seed of the config)")
    p.add_argument("--fill-model", choices=FILL_MODELS, default="queue",
                   help="queue (default: join the back of the level, fill after the volume ahead trades) or touch "
                   "(optimistic: fill in full at the limit when the opposite best touches it)")  # fmt: skip
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config key (TOML literal), e.g. execution.maker_fee_bps=0; repeatable")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the report as one JSON object on the last line")
    p.add_argument("--equity-csv", metavar="FILE", help="write seq, event time, realized PnL, position per fill")
    p.add_argument("--plot", metavar="FILE.png", help="plot equity and position per fill (needs matplotlib)")
    p.add_argument("--sweep", action="append", default=[], metavar="KEY=V1,V2",
                   help="grid over strategy keys (or section.key); repeatable; runs in a process pool")  # fmt: skip
    p.add_argument("--jobs", type=int, default=0, help="sweep processes (default: CPU count)")
    p.add_argument("--label", default="", help="a name printed in the report title")
    p.add_argument("--per-event", action="store_true",
                   help="apply every event through each core's apply(), not quiet market events in one kernel call "
                        "(slower; the same report, but for its market_run field, and hashes)")  # fmt: skip
    ahead = p.add_mutually_exclusive_group()
    ahead.add_argument("--prefetch", dest="prefetch", action="store_const", const=True,
                       help="read the input in a child process, overlapping the engine (default with 2+ CPUs; "
                       "the same events, the same report; not with --sweep)")  # fmt: skip
    ahead.add_argument("--no-prefetch", dest="prefetch", action="store_const", const=False,
                       help="read the input in the engine's own process")  # fmt: skip
    bar = p.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_const", const=True, help="always show progress")
    bar.add_argument("--no-progress", dest="progress", action="store_const", const=False, help="never show it")
    return p


def input_spec(args: argparse.Namespace, cfg: MeshConfig) -> sweep.InputSpec:
    if args.data:
        return ("data", list(args.data))
    if args.log:
        return ("log", args.log)
    if args.synthetic == "seed":
        return ("seed", None)
    try:
        n = int(args.synthetic)
    except ValueError:
        raise ValueError(f"--synthetic takes a number of events or 'seed', not {args.synthetic!r}") from None
    return ("synthetic", (n, cfg.feed.seed if args.seed is None else args.seed))


def make_input(spec: sweep.InputSpec, cfg: MeshConfig) -> Input:
    kind, arg = spec
    table = load_symbols(cfg.symbols.exchange_info)
    if kind == "data":
        return CaptureInput(arg, table, cfg.feed)
    if kind == "log":
        return LogInput(arg)
    if kind == "seed":
        return SeedInput()
    n, seed = arg
    return SyntheticInput(n, seed, table, cfg.feed)


def _check_plot_available() -> str:
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        return f"--plot needs matplotlib, which is not installed ({exc}); pip install matplotlib, or drop --plot"
    return ""


def seed_comparison(rep: dict[str, Any]) -> str:
    pub = seeddata.PUBLISHED
    ours = {
        "events": f"{rep['events']:,}",
        "events_per_s": f"{rep['events_per_s']:,}" if rep["events_per_s"] else "n/a",
        "orders": str(rep["orders"]),
        "fills": str(rep["fills"]),
        "round_trips": str(rep["round_trips"]),
        "volume": f"$ {rep['volume']}",
        "realized_pnl": f"$ {rep['realized_pnl']}",
        "max_drawdown": f"$ {rep['max_drawdown']}",
        "win_rate": rep["win_rate_text"],
        "avg_trade_pnl": f"$ {rep['avg_trade_pnl']}" if rep["avg_trade_pnl"] is not None else "n/a",
        "sharpe": f"{rep['sharpe']:.3f}" if rep["sharpe"] is not None else "n/a",
    }
    theirs = {k: (f"$ {v}" if k in ("volume", "realized_pnl", "max_drawdown", "avg_trade_pnl") else str(v))
              for k, v in pub.items()}  # fmt: skip
    theirs["events"] = f"{pub['events']:,}"
    theirs["events_per_s"] = f"{pub['events_per_s']:,}"
    lines = [
        "",
        f"Beside the seed's published report (same 13,334 events; ours: {rep['fill_model']} model, "
        f"maker fee {rep['maker_fee_bps']} bps):",
        f"  {'':<15} {'seed (published)':>26}   {'this run':>22}",
    ]
    for k in ours:
        lines.append(f"  {k:<15} {theirs[k]:>26}   {ours[k]:>22}")
    lines.append("")
    lines.append(seeddata.WHY_DIFFERENT.rstrip())
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.sweep and args.per_event:
        parser.error("--per-event does not apply to --sweep (a sweep runs the market run kernel)")
    if args.sweep and args.prefetch:
        parser.error("--prefetch does not apply to --sweep (its process pool already uses every CPU)")
    try:
        cfg = config_mod.load(args.config)
        if args.set:
            sets = [(s, k, v) for spec in args.set for s, k, [v] in sweep.parse_sweeps([spec])]
            cfg = sweep.apply_overrides(cfg, sets)
    except (config_mod.ConfigError, sweep.SweepError) as exc:
        print(f"backtest: config: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.plot:
        why = _check_plot_available()
        if why:
            print(f"backtest: {why}", file=sys.stderr)
            return EXIT_PLOT
    try:
        spec = input_spec(args, cfg)
        if args.sweep:
            return _sweep(args, cfg, spec)
        inp = make_input(spec, cfg)
    except (ValueError, OSError) as exc:
        print(f"backtest: input: {exc}", file=sys.stderr)
        return EXIT_INPUT
    if prefetch.by_default() if args.prefetch is None else args.prefetch:
        if not prefetch.available():
            print("backtest: --prefetch needs the 'fork' start method, which this platform lacks", file=sys.stderr)
            return EXIT_USAGE
        inp = prefetch.Prefetched(inp)
    res = run_backtest(
        cfg, inp, args.fill_model, label=args.label, progress=args.progress, market_run=not args.per_event
    )
    rep = res.report
    if args.equity_csv:
        n = report.write_equity_csv(res.stats, args.equity_csv)
        print(f"equity curve: {n} fills -> {args.equity_csv}", file=sys.stderr)
    if args.plot:
        try:
            report.plot(res.stats, args.plot, title=rep["input"])
        except report.PlotUnavailable as exc:
            print(f"backtest: {exc}", file=sys.stderr)
            return EXIT_PLOT
        print(f"plot -> {args.plot}", file=sys.stderr)
    if spec[0] == "seed":
        rep["seed_published"] = seeddata.PUBLISHED
    print(report.text(rep))
    if spec[0] == "seed":
        print(seed_comparison(rep))
    if args.json:
        print(report.to_json(rep))
    return EXIT_OK


def _sweep(args: argparse.Namespace, cfg: MeshConfig, spec: sweep.InputSpec) -> int:
    try:
        sweeps = sweep.parse_sweeps(args.sweep)
        results = sweep.run_sweep(cfg, spec, args.fill_model, sweeps, args.jobs)
    except sweep.SweepError as exc:
        print(f"backtest: sweep: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"sweep: {len(results)} runs, {args.fill_model} fill model, sorted by realized PnL (net of fees)")
    print(sweep.table(results))
    if args.json:
        print(json.dumps({"sweep": [sweep.summary(r) for r in results]}, sort_keys=True, separators=(",", ":")))
    return EXIT_OK
