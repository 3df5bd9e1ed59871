"""Backtest throughput: ours on synthetic and real data, beside hftbacktest on the same capture.

    python -m benchmarks.backtest --json bench-backtest.json [--events 1000000] [--budget-s 300]
                                  [--hbt-python /path/to/python-with-hftbacktest]

1. Ours, synthetic: N events of the feed's synthetic market (default 1,000,000)
   through `services.backtest` (every core of the mesh + the in-process
   sequencer, queue fill model, mesh.toml), once with the generator running
   inside the clock (what `--synthetic N` costs a user: as the CLI does by
   default on 2+ CPUs, it runs in a child process that reads ahead, and its
   CPU time is counted in events_per_cpu_s) and once generated beforehand
   (the engine alone). A 20,000-event pilot estimates
   the rate first; if N would take longer than --budget-s, N is cut to what
   fits, and the count used is printed and recorded. Under mesh.toml the
   risk's loss-streak breaker stops the strategy quoting early in the run
   (a few dozen orders in 1M events), so most of it is market data no core
   answers; a third run, with the breaker off (risk.max_consecutive_losses
   1,000,000), has the strategy trading to the end: what the order path
   costs.
2. Ours, real: both BTCUSDT captures (2024-08-08 then -09) as one session:
   once with the raw JSON parsed by the feed's Normalizer inside the clock
   (read ahead in a child process, as the CLI does by default on 2+ CPUs),
   once normalized beforehand (the engine alone, as hftbacktest's timing
   excludes its own data conversion), and once normalized beforehand with
   the bookTicker lines left out: exactly the events hftbacktest is given,
   the like-for-like comparison.
3. The peer, hftbacktest (pip package `hftbacktest`, benchmark-only): the same
   capture, normalized by our feed's Normalizer (so both see exactly the same
   book and trades), converted to hftbacktest's event rows (depth levels and
   trades; it has no use for the bookTicker lines, which are left out), run
   with a simple market maker that requotes one bid and one ask at the touch
   every 100 ms of market time (HashMapMarketDepthBacktest, risk-averse
   queue model, 5 ms order latency, 2/7 bps fees). hftbacktest 2.4.4 requires
   numpy < 2.3 (and pulls polars, matplotlib, holoviews), which conflicts with
   this project's numpy 2.4, so it runs in its own interpreter (--hbt-python, e.g. a venv made with
   `python -m venv /tmp/hbt-venv && /tmp/hbt-venv/bin/pip install hftbacktest`;
   by default this interpreter). If it cannot be imported or run, the reason
   is printed and recorded and only our numbers are reported -- its number is
   never invented.

What "events/s" means: market events in (input events) per second of wall
time, the loop only (numba kernels are loaded/compiled, and the previous
measurement's garbage collected, before the clock starts, for both engines); the same per CPU-second of the process is
recorded too (`events_per_cpu_s`), since a shared 2-core machine's wall
time depends on what else runs, and the load average is recorded before
and after. Ours also sequences the cores' outputs and the
100 ms clocks (`sequenced_per_s`); hftbacktest's natural unit is rows (one per
depth level), reported beside its per-event figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(
    os.environ.get("ATOMIC_MESH_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data" / "binance-spot"))
)
CAPTURE = [DATA / "btcusdt_20240808.gz", DATA / "btcusdt_20240809.gz"]
PILOT = 20_000


# ---------------------------------------------------------------- ours
def ours(kind: str, arg: object) -> dict[str, object]:
    from common import config
    from common.units import BUILTIN
    from services.backtest.inputs import CaptureInput, SyntheticInput
    from services.backtest.run import run_backtest

    cfg = config.load(ROOT / "mesh.toml")
    if kind == "synthetic_trading":
        cfg = dataclasses.replace(cfg, risk=dataclasses.replace(cfg.risk, max_consecutive_losses=1_000_000))
    if kind in ("synthetic", "synthetic_preloaded", "synthetic_trading"):
        inp = SyntheticInput(int(arg), cfg.feed.seed, BUILTIN, cfg.feed)  # type: ignore[call-overload]
        if kind == "synthetic_preloaded":  # generated first, outside the clock: the engine alone
            inp = _PreloadedRows(inp) if inp.row_batches() is not None else _Preloaded(inp)
    else:
        inp = CaptureInput([str(p) for p in arg], BUILTIN, cfg.feed)  # type: ignore[attr-defined]
        if kind == "capture_preloaded":  # parse the JSON first, outside the clock (as hftbacktest's data is)
            inp = _Preloaded(inp)
        elif kind == "capture_same_events":  # ... and only the events hftbacktest is given (no bookTicker)
            inp = _Preloaded(inp, drop_bbo=True)
    from services.backtest import prefetch
    from services.backtest.engine import warm_up

    read_ahead = kind in ("synthetic", "synthetic_trading", "capture") and prefetch.by_default()
    if read_ahead:  # as the CLI does by default: the input is read in a child process
        inp = prefetch.Prefetched(inp)
    warm_up()
    # The previous measurement's garbage is not this one's: left to the cyclic collector, a
    # 1M-event run's leftovers cost the next run's clock about 0.3 s.
    gc.collect()
    c0 = time.process_time()
    k0 = _children_cpu()
    res = run_backtest(cfg, inp, "queue", progress=None)
    cpu = time.process_time() - c0 + _children_cpu() - k0  # the reading child's CPU counts too
    r = res.report
    keep = ("events", "sequenced", "wall_s", "events_per_s", "sequenced_per_s", "intents", "orders", "fills",
            "round_trips", "realized_pnl", "input")  # fmt: skip
    out: dict[str, object] = {"cpu_s": round(cpu, 3), "events_per_cpu_s": round(r["events"] / cpu) if cpu else None,
                              "input_read_ahead": read_ahead}  # fmt: skip
    return out | {k: r[k] for k in keep}


def _children_cpu() -> float:
    """CPU seconds of this process's reaped children (the input reader of a read-ahead run)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


class _Preloaded:
    """An input whose items were normalized before the run (the engine alone is timed)."""

    def __init__(self, inp: Any, drop_bbo: bool = False) -> None:
        from common.events import BestBidOffer

        self.inp = inp
        every = list(inp.items())
        self.inp_total = len(every)
        self.items_ = [it for it in every if not (drop_bbo and isinstance(it[1], BestBidOffer))]
        self.total = len(self.items_)
        self.drop_bbo = drop_bbo

    def items(self) -> Any:
        return iter(self.items_)

    def accounting(self) -> Any:
        acc = self.inp.accounting()
        left_out = self.inp_total - self.total
        if left_out:  # the bookTicker lines were accepted by the normalizer, then left out here
            acc["accepted"] = dict(acc["accepted"], BestBidOffer=acc["accepted"].get("BestBidOffer", 0) - left_out)
            acc["dropped"] = dict(acc["dropped"], left_out_for_the_comparison=left_out)
        return acc

    def describe(self) -> str:
        left_out = ", bookTicker lines left out" if self.drop_bbo else ""
        return self.inp.describe() + f" (normalized before the clock starts{left_out})"


class _PreloadedRows:
    """The synthetic market's row batches, made before the run (the engine alone is timed, on
    the batches the generator gives the run)."""

    def __init__(self, inp: Any) -> None:
        self.inp = inp
        self.total = inp.total
        self.batches = list(inp.row_batches())

    def row_batches(self) -> Any:
        return iter(self.batches)

    def items(self) -> Any:  # (the market run takes the batches; items are made from them as needed)
        return (it for b in self.batches for it in b.items())

    def accounting(self) -> Any:
        return self.inp.accounting()

    def describe(self) -> str:
        return self.inp.describe() + " (made before the clock starts)"


# ---------------------------------------------------------------- hftbacktest
def capture_rows(paths: list[Path], out: Path) -> dict[str, int]:
    """Our normalized capture events -> hftbacktest event rows (npz). Returns counts."""
    import numpy as np

    from common import events as E
    from common.units import BUILTIN
    from services.feed.binance import Normalizer
    from services.feed.replay import replay_items

    depth, trade, exch, local, buy, sell = 1, 2, 1 << 31, 1 << 30, 1 << 29, 1 << 28
    dtype = np.dtype([("ev", "u8"), ("exch_ts", "i8"), ("local_ts", "i8"), ("px", "f8"), ("qty", "f8"),
                      ("order_id", "u8"), ("ival", "i8"), ("fval", "f8")], align=True)  # fmt: skip
    rows: list[tuple] = []
    clock = 0
    counts = {"events_given": 0, "bbo_left_out": 0}
    for t, body in replay_items([str(p) for p in paths], Normalizer(BUILTIN, default_symbol="BTCUSDT")):
        clock = max(clock, t)  # the same monotone clock our sequencer stamps
        if isinstance(body, (E.BookSnapshot, E.BookDelta)):
            counts["events_given"] += 1
            for flag, buf in ((buy, body.bids), (sell, body.asks)):
                for px, qty in E.unpack_levels(buf).tolist():
                    rows.append((depth | exch | local | flag, clock, clock, px / 100, qty / 1e8, 0, 0, 0.0))
        elif isinstance(body, E.Trade):
            counts["events_given"] += 1
            side = sell if body.buyer_maker else buy  # the initiator's side
            rows.append((trade | exch | local | side, clock, clock, body.price / 100, body.qty / 1e8, 0, 0, 0.0))
        elif isinstance(body, E.BestBidOffer):
            counts["bbo_left_out"] += 1
    np.savez_compressed(out, data=np.array(rows, dtype=dtype))
    counts["rows"] = len(rows)
    return counts


HBT_WORKER = r'''
import json, sys, time
import numpy as np
from numba import njit
from hftbacktest import BacktestAsset, HashMapMarketDepthBacktest
from hftbacktest.order import GTX, LIMIT

@njit
def market_maker(hbt):
    """Every 100 ms of market time: cancel what rests, quote 0.001 BTC at the touch both sides."""
    oid = 0
    steps = 0
    while hbt.elapse(100_000_000) == 0:
        steps += 1
        hbt.clear_inactive_orders(0)
        orders = hbt.orders(0)
        vals = orders.values()
        while vals.has_next():
            o = vals.get()
            if o.cancellable:
                hbt.cancel(0, o.order_id, False)
        depth = hbt.depth(0)
        bb, ba = depth.best_bid, depth.best_ask
        if not (bb > 0 and ba > bb):
            continue
        pos = hbt.position(0)
        if pos < 0.02:
            oid += 1
            hbt.submit_buy_order(0, oid, bb, 0.001, GTX, LIMIT, False)
        if pos > -0.02:
            oid += 1
            hbt.submit_sell_order(0, oid, ba, 0.001, GTX, LIMIT, False)
    return steps

def build(data):
    asset = (
        BacktestAsset()
        .data([data])
        .linear_asset(1.0)
        .constant_latency(5_000_000, 0)
        .risk_adverse_queue_model()
        .no_partial_fill_exchange()
        .trading_value_fee_model(0.0002, 0.0007)
        .tick_size(0.01)
        .lot_size(0.00001)
        .last_trades_capacity(0)
    )
    return HashMapMarketDepthBacktest([asset])

data = np.load(sys.argv[1])["data"]
warm = build(data[:5000])            # compile the strategy outside the clock
market_maker(warm)
warm.close()
hbt = build(data)
t0 = time.perf_counter()
c0 = time.process_time()
steps = market_maker(hbt)
wall = time.perf_counter() - t0
cpu = time.process_time() - c0
sv = hbt.state_values(0)
out = {"rows": int(len(data)), "wall_s": wall, "cpu_s": cpu, "steps": int(steps), "num_trades": int(sv.num_trades),
       "position": float(sv.position), "balance": float(sv.balance), "fee": float(sv.fee)}
hbt.close()
import hftbacktest
out["version"] = getattr(hftbacktest, "__version__", "?")
print(json.dumps(out))
'''


def peer(python: str, paths: list[Path]) -> dict[str, object]:
    code = "import hftbacktest, numba, numpy; print(numba.__version__, numpy.__version__)"
    probe = subprocess.run([python, "-c", code], capture_output=True, text=True, cwd=tempfile.gettempdir())
    if probe.returncode != 0:
        why = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        return {"ran": False, "why": f"hftbacktest is not importable by {python}: {why}"}
    with tempfile.TemporaryDirectory() as d:
        npz = Path(d) / "btcusdt.npz"
        t0 = time.perf_counter()
        counts = capture_rows(paths, npz)
        convert_s = time.perf_counter() - t0
        worker = Path(d) / "hbt_worker.py"
        worker.write_text(HBT_WORKER)
        r = subprocess.run([python, str(worker), str(npz)], capture_output=True, text=True, cwd=d, timeout=1800)
        if r.returncode != 0:
            tail = "\n".join(r.stderr.strip().splitlines()[-5:])
            return {"ran": False, "why": f"hftbacktest run failed (exit {r.returncode}): {tail}", **counts}
        res = json.loads(r.stdout.strip().splitlines()[-1])
    wall = res["wall_s"]
    return {
        "ran": True,
        "python": python,
        "numba_numpy": probe.stdout.strip(),
        **counts,
        **res,
        "convert_s": round(convert_s, 3),
        "events_per_s": round(counts["events_given"] / wall) if wall else None,
        "events_per_cpu_s": round(counts["events_given"] / res["cpu_s"]) if res["cpu_s"] else None,
        "rows_per_s": round(res["rows"] / wall) if wall else None,
    }


# ---------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.backtest", description=__doc__.split("\n\n")[0])
    p.add_argument("--json", metavar="FILE", help="write the results here as JSON")
    p.add_argument("--events", type=int, default=1_000_000, help="synthetic events (default 1,000,000)")
    p.add_argument("--budget-s", type=float, default=300.0, help="cut the synthetic run to fit this (default 300 s)")
    p.add_argument("--hbt-python", default=sys.executable, help="an interpreter with hftbacktest installed")
    p.add_argument("--skip-peer", action="store_true")
    args = p.parse_args(argv)

    results: dict[str, object] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "loadavg_start": os.getloadavg()}
    }
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs", flush=True)
    pilot = ours("synthetic", PILOT)
    rate = max(pilot["events_per_s"] or 1, pilot["events_per_cpu_s"] or 1)  # type: ignore[type-var]
    n = args.events
    if n / rate > args.budget_s:  # type: ignore[operator]
        n = max(PILOT, int(rate * args.budget_s) // 10_000 * 10_000)  # type: ignore[operator]
        print(f"synthetic: {args.events:,} events would take ~{args.events / rate:.0f} s at the pilot's "  # type: ignore[operator]
              f"{rate:,} events/s; using {n:,} to fit {args.budget_s:.0f} s", flush=True)
    print(f"synthetic: {n:,} events ...", flush=True)
    syn = ours("synthetic", n)
    syn["requested"] = args.events
    results["ours_synthetic"] = syn
    print(f"  ours: {syn['events']:,} events in {syn['wall_s']} s = {syn['events_per_s']:,} events/s "
          f"({syn['sequenced_per_s']:,} sequenced/s; {syn['events_per_cpu_s']:,} events per CPU-s; "
          f"the generator runs inside the clock{', read ahead in a child process' if syn['input_read_ahead'] else ''})",
          flush=True)  # fmt: skip
    pre_syn = ours("synthetic_preloaded", n)
    results["ours_synthetic_preloaded"] = pre_syn
    print(f"  ours, generated beforehand: {pre_syn['events']:,} events in {pre_syn['wall_s']} s = "
          f"{pre_syn['events_per_s']:,} events/s ({pre_syn['events_per_cpu_s']:,} events per CPU-s)", flush=True)
    trading = ours("synthetic_trading", n)
    results["ours_synthetic_trading"] = trading
    print(f"  ours, the loss-streak breaker off (the strategy trades to the end): {trading['events']:,} events in "
          f"{trading['wall_s']} s = {trading['events_per_s']:,} events/s, {trading['orders']:,} orders, "
          f"{trading['fills']:,} fills (mesh.toml: {syn['orders']:,} orders, {syn['fills']:,} fills)", flush=True)

    if all(c.exists() for c in CAPTURE):
        cap = ours("capture", CAPTURE)
        results["ours_capture"] = cap
        print(f"capture ({cap['input']}):\n  ours: {cap['events']:,} events in {cap['wall_s']} s = "
              f"{cap['events_per_s']:,} events/s ({cap['sequenced_per_s']:,} sequenced/s; "
              f"{cap['events_per_cpu_s']:,} events per CPU-s), "
              f"{cap['orders']} orders, {cap['fills']} fills (raw JSON parsed inside the clock"
              f"{', read ahead in a child process' if cap['input_read_ahead'] else ''})",
              flush=True)  # fmt: skip
        pre = ours("capture_preloaded", CAPTURE)
        results["ours_capture_preloaded"] = pre
        print(f"  ours, normalized beforehand: {pre['events']:,} events in {pre['wall_s']} s = "
              f"{pre['events_per_s']:,} events/s ({pre['events_per_cpu_s']:,} events per CPU-s)", flush=True)
        same = ours("capture_same_events", CAPTURE)
        results["ours_capture_same_events"] = same
        print(f"  ours, the events hftbacktest is given (bookTicker lines left out): {same['events']:,} events "
              f"in {same['wall_s']} s = {same['events_per_s']:,} events/s ({same['events_per_cpu_s']:,} events "
              f"per CPU-s)", flush=True)  # fmt: skip
        if args.skip_peer:
            results["hftbacktest"] = {"ran": False, "why": "--skip-peer"}
        else:
            hb = peer(args.hbt_python, CAPTURE)
            results["hftbacktest"] = hb
            if hb["ran"]:
                print(f"  hftbacktest {hb['version']}: {hb['events_given']:,} events ({hb['rows']:,} rows; "
                      f"{hb['bbo_left_out']:,} bookTicker lines left out) in {hb['wall_s']:.3f} s = "
                      f"{hb['events_per_s']:,} events/s ({hb['events_per_cpu_s']:,} per CPU-s), "
                      f"{hb['rows_per_s']:,} rows/s; "
                      f"{hb['num_trades']} fills",
                      flush=True)  # fmt: skip
            else:
                print(f"  hftbacktest: not run: {hb['why']}", flush=True)
    else:
        results["ours_capture"] = {"skipped": f"captures absent: {[str(c) for c in CAPTURE]}"}
        results["hftbacktest"] = {"ran": False, "why": "captures absent"}
        print("capture: skipped (files absent)")
    results["machine"]["loadavg_end"] = os.getloadavg()  # type: ignore[index]
    print(f"load average at end: {os.getloadavg()[0]:.2f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
        print(f"-> {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
