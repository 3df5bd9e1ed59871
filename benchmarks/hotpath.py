"""Hot-path benchmark: ``python -m benchmarks.hotpath --json FILE``.

Rows: book_update_d5/d10/d20/d40 (book delta + weighted microprice + vol +
requote rule + quote generation), book_partial_d5/../d40 (the same with the
book given as a depth-N partial book per tick, as the seed's benchmark and
Binance's depth20 stream give it), trade (VPIN ring + distance histogram +
multiplier), full_tick (book delta at depth 20 + trade + fill).

Three timings per row, each the median over repeated batches after a
1,000-tick warm-up, in ns per call (per tick for full_tick):
  in_kernel_ns        : an @njit driver loop calling the entry point once
                        per tick, timed around the whole driver call. The
                        ticks cycle through a pool of --pool events (a
                        closed random walk of the mid, so the book stays
                        consistent from one cycle to the next) small enough
                        to stay in cache, as a live strategy's rows are:
                        they were decoded into its buffer just before.
  in_kernel_stream_ns : the same over a pool too large for any cache, so
                        every row comes from memory.
  python_call_ns      : a Python for-loop calling the kernel once per tick,
                        including the Python -> numba call (what a Python
                        service pays per event).
``median_ns`` = in_kernel_ns: the kernel called from compiled code, as the
seed's Criterion loop calls its C++ (FFI copy included). The book changes
on every event (random-walk mid, new quantities everywhere), so the
microprice, the requote decision and quote generation really run; the
number of calls that requoted is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial

import numpy as np
from numba import njit

from common.config import StrategyConfig
from common.hotpath import default_params, new_book, new_state
from common.hotpath import dtypes as D
from common.hotpath import kernels as K

SEED_CPP_NS = {
    "book_update_d5": 69,
    "book_update_d10": 96,
    "book_update_d20": 151,
    "book_update_d40": 276,
    "trade": 45,
    "full_tick": 197,
}
WARMUP_TICKS = 1_000
EXIT_OK = 0


# --------------------------------------------------------------------------
# event generation
# --------------------------------------------------------------------------


def closed_walk(n, rng, step=4):
    """n mid-price steps in [-step, step] that sum to zero, so a pool of
    events built on them can be replayed cyclically: after the last event
    the ladder is back where the first event expects it."""
    steps = rng.integers(-step, step + 1, n).astype(np.int64)
    k = 0
    while abs(int(steps.sum())) > 0:  # nudge steps toward zero until they cancel
        over = int(steps.sum())
        j = k % n
        steps[j] = max(-step, min(step, int(steps[j]) - over))
        k += 1
    return steps


def gen_book_events(depth, n, seed):
    """A pool of n events (a closed random walk of the mid, so the pool can
    be replayed in a cycle). Per event: a delta rewriting a depth-level
    ladder per side around the mid (new qty everywhere) and removing the
    levels that left it, so the book holds `depth` levels a side
    throughout. Rows are laid out as a Binance diff lists them and the feed
    passes them on (its packed bids, then its packed asks): all bids, best
    first, then all asks, best first, removals in their price place. (Until
    2026-11-27 the bid and ask rows alternated, which no diff does; the
    README's older figures were taken that way.)"""
    rng = np.random.default_rng(seed)
    mid = 7_322_350
    rows = []
    starts = np.zeros(n, dtype=np.int64)
    counts = np.zeros(n, dtype=np.int64)
    prev_bids, prev_asks = set(), set()
    snap = []
    for i in range(depth):
        snap.append((D.SIDE_BID, mid - 1 - i, int(rng.integers(1_000_000, 50_000_000))))
        snap.append((D.SIDE_ASK, mid + 1 + i, int(rng.integers(1_000_000, 50_000_000))))
        prev_bids.add(mid - 1 - i)
        prev_asks.add(mid + 1 + i)
    r = 0
    for e, st in enumerate(closed_walk(n, rng).tolist()):
        mid += st
        bids = {mid - 1 - i for i in range(depth)}
        asks = {mid + 1 + i for i in range(depth)}
        starts[e] = r
        new_b = {mid - 1 - i: int(rng.integers(1_000_000, 50_000_000)) for i in range(depth)}
        new_a = {mid + 1 + i: int(rng.integers(1_000_000, 50_000_000)) for i in range(depth)}
        for px in sorted(prev_bids - bids):
            new_b[px] = 0
        for px in sorted(prev_asks - asks):
            new_a[px] = 0
        rows.extend((D.SIDE_BID, px, q) for px, q in sorted(new_b.items(), reverse=True))
        rows.extend((D.SIDE_ASK, px, q) for px, q in sorted(new_a.items()))
        counts[e] = len(rows) - r
        r = len(rows)
        prev_bids, prev_asks = bids, asks
    lv = np.array(rows, dtype=np.int64)
    return np.array(snap, dtype=np.int64), lv, starts, counts


def as_partial_snapshots(lv, starts, counts):
    """The same pool as depth-N partial books, the form the seed's feed (and
    Binance's depth20 stream) delivers and the seed's benchmark times: per
    event, the whole ladder, bids best first, then asks best first."""
    rows, s_starts, s_counts = [], np.zeros_like(starts), np.zeros_like(counts)
    for e in range(starts.shape[0]):
        ev = lv[starts[e] : starts[e] + counts[e]]
        ev = ev[ev[:, D.LV_QTY] > 0]
        s_starts[e] = len(rows)
        rows.extend(ev[ev[:, D.LV_SIDE] == D.SIDE_BID].tolist())
        rows.extend(ev[ev[:, D.LV_SIDE] == D.SIDE_ASK].tolist())
        s_counts[e] = len(rows) - s_starts[e]
    return np.array(rows, dtype=np.int64), s_starts, s_counts


def gen_trades(n, seed):
    rng = np.random.default_rng(seed)
    px = 7_322_350 + rng.integers(-25, 26, n).astype(np.int64)
    qty = rng.integers(100_000, 10_000_000, n).astype(np.int64)
    bim = rng.integers(0, 2, n).astype(np.int64)
    return px, qty, bim


TS0 = 1_711_200_000_000_000_000
TS_STEP = 100_000_000  # event time advances 100 ms per tick, also across pool cycles


# --------------------------------------------------------------------------
# njit drivers (the in-kernel timing); tick i uses pool slot i % pool
# --------------------------------------------------------------------------


@njit  # no cache: numba would not notice a change in the kernels module it calls
def drive_book(state, book, params, lv, starts, counts, snapshot, i0, i1):
    nq = 0
    pool = starts.shape[0]
    for i in range(i0, i1):
        k = i & (pool - 1)  # pool is a power of two: no division in the timed loop
        if snapshot:
            act = K.on_book_snapshot(state, book, params, lv, starts[k], counts[k], TS0 + i * TS_STEP)
        else:
            act = K.on_book_delta(state, book, params, lv, starts[k], counts[k], TS0 + i * TS_STEP)
        if act == D.ACT_QUOTE:
            nq += 1
    return nq


@njit  # no cache: numba would not notice a change in the kernels module it calls
def drive_trade(state, book, params, px, qty, bim, i0, i1):
    nc = 0
    pool = px.shape[0]
    for i in range(i0, i1):
        k = i & (pool - 1)  # pool is a power of two: no division in the timed loop
        if K.on_trade(state, book, params, px[k], qty[k], bim[k], TS0 + i * TS_STEP) != D.ACT_NONE:
            nc += 1
    return nc


@njit  # no cache: numba would not notice a change in the kernels module it calls
def drive_tick(state, book, params, lv, starts, counts, px, qty, bim, fside, fqty, i0, i1):
    nq = 0
    pool = starts.shape[0]
    for i in range(i0, i1):
        k = i & (pool - 1)  # pool is a power of two: no division in the timed loop
        ts = TS0 + i * TS_STEP
        if K.on_book_delta(state, book, params, lv, starts[k], counts[k], ts) == D.ACT_QUOTE:
            nq += 1
        K.on_trade(state, book, params, px[k], qty[k], bim[k], ts)
        if K.on_fill(state, book, params, fside[k], px[k], fqty[k], ts) == D.ACT_QUOTE:
            nq += 1
    return nq


# --------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------


# The book the strategy service builds (strategy.book_slots), not a toy one.
SLOTS = StrategyConfig().book_slots


def _fresh(params, snap):
    s, b = new_state(), new_book(SLOTS)
    K.on_book_snapshot(s, b, params, snap, 0, snap.shape[0], 0)
    return s, b


def _timed(run, batches, batch):
    """Warm up, then ns per tick of each batch; run(i0, i1) -> requotes."""
    run(0, WARMUP_TICKS)
    per, total = [], 0
    for k in range(batches):
        i0 = WARMUP_TICKS + k * batch
        t0 = time.perf_counter_ns()
        total += run(i0, i0 + batch)
        per.append((time.perf_counter_ns() - t0) / batch)
    return per, total


def _book_python(s, b, params, lv, starts, counts, snapshot):
    """A Python loop calling the book entry point once per tick (the service's cost)."""
    st_l, cn_l, size, quote = starts.tolist(), counts.tolist(), starts.shape[0], D.ACT_QUOTE
    f = K.on_book_snapshot if snapshot else K.on_book_delta

    def run(i0, i1):
        nq = 0
        for i in range(i0, i1):
            k = i & (size - 1)
            if f(s, b, params, lv, st_l[k], cn_l[k], TS0 + i * TS_STEP) == quote:
                nq += 1
        return nq

    return run


def bench_book(depth, batches, batch, pool, stream_pool, snapshot=False):
    """Book rows: a diff per tick (snapshot=False) or a depth-N partial book per tick."""
    params = default_params(mp_levels=min(5, depth))
    form = as_partial_snapshots if snapshot else (lambda *a: a)
    snap, *ev = gen_book_events(depth, pool, seed=depth)
    lv, starts, counts = form(*ev)
    s, b = _fresh(params, snap)
    kern = _timed(partial(drive_book, s, b, params, lv, starts, counts, snapshot), batches, batch)
    s, b = _fresh(params, snap)
    py = _timed(_book_python(s, b, params, lv, starts, counts, snapshot), batches, batch)
    snap, *ev = gen_book_events(depth, stream_pool, seed=depth)
    lv_s, starts_s, counts_s = form(*ev)
    s, b = _fresh(params, snap)
    stream = _timed(partial(drive_book, s, b, params, lv_s, starts_s, counts_s, snapshot), batches, batch)
    extra = {"requotes_python": py[1], "requotes_kernel": kern[1], "rows_per_event": float(counts.mean())}
    return py[0], kern[0], stream[0], extra


def _trade_python(s, b, params, px, qty, bim):
    pl, ql, bl, size, f = px.tolist(), qty.tolist(), bim.tolist(), px.shape[0], K.on_trade

    def run(i0, i1):
        for i in range(i0, i1):
            k = i & (size - 1)
            f(s, b, params, pl[k], ql[k], bl[k], TS0 + i * TS_STEP)
        return 0

    return run


def bench_trade(batches, batch, pool, stream_pool):
    snap, *_ = gen_book_events(20, 1, seed=20)
    params = default_params()
    px, qty, bim = gen_trades(pool, seed=7)
    s, b = _fresh(params, snap)
    kern = _timed(partial(drive_trade, s, b, params, px, qty, bim), batches, batch)
    s, b = _fresh(params, snap)
    py = _timed(_trade_python(s, b, params, px, qty, bim), batches, batch)
    extra = {"vpin_bps_end": int(s[D.S_VPIN_BPS]), "toxic_end": int(s[D.S_TOXIC])}
    px, qty, bim = gen_trades(stream_pool, seed=7)
    s, b = _fresh(params, snap)
    stream = _timed(partial(drive_trade, s, b, params, px, qty, bim), batches, batch)
    return py[0], kern[0], stream[0], extra


def _tick_inputs(size):
    snap, lv, starts, counts = gen_book_events(20, size, seed=99)
    px, qty, bim = gen_trades(size, seed=98)
    fside = (np.arange(size, dtype=np.int64) % 2).astype(np.int64)  # buy, sell, ...
    fqty = np.full(size, 30_000, dtype=np.int64)  # partial fills
    return snap, (lv, starts, counts, px, qty, bim, fside, fqty)


def _tick_python(s, b, params, lv, starts, counts, px, qty, bim, fside, fqty):
    st_l, cn_l, p_l, q_l, b_l, fs_l, fq_l = (x.tolist() for x in (starts, counts, px, qty, bim, fside, fqty))
    fb, ft, ff, quote, size = K.on_book_delta, K.on_trade, K.on_fill, D.ACT_QUOTE, starts.shape[0]

    def run(i0, i1):
        nq = 0
        for i in range(i0, i1):
            k = i & (size - 1)
            t = TS0 + i * TS_STEP
            if fb(s, b, params, lv, st_l[k], cn_l[k], t) == quote:
                nq += 1
            ft(s, b, params, p_l[k], q_l[k], b_l[k], t)
            if ff(s, b, params, fs_l[k], p_l[k], fq_l[k], t) == quote:
                nq += 1
        return nq

    return run


def bench_tick(batches, batch, pool, stream_pool):
    params = default_params()
    snap, args = _tick_inputs(pool)
    s, b = _fresh(params, snap)
    kern = _timed(partial(drive_tick, s, b, params, *args), batches, batch)
    s, b = _fresh(params, snap)
    py = _timed(_tick_python(s, b, params, *args), batches, batch)
    extra = {"requotes_python": py[1], "requotes_kernel": kern[1], "position_end": int(s[D.S_POSITION])}
    snap, args = _tick_inputs(stream_pool)
    s, b = _fresh(params, snap)
    stream = _timed(partial(drive_tick, s, b, params, *args), batches, batch)
    return py[0], kern[0], stream[0], extra


_STARTUP = """
import time
t0 = time.perf_counter()
import numpy as np
from common.hotpath import default_params, new_book, new_state, kernels as K
t1 = time.perf_counter()
p, s, b = default_params(), new_state(), new_book()
lv = np.array([[0, 100, 5], [1, 101, 5]], dtype=np.int64)
K.on_book_snapshot(s, b, p, lv, 0, 2, 0)
K.on_book_delta(s, b, p, lv, 0, 2, 1)
K.on_trade(s, b, p, 100, 5, 1, 2)
K.on_fill(s, b, p, 0, 100, 5, 3)
t2 = time.perf_counter()
print(t1 - t0, t2 - t1, t2 - t0)
"""


def startup_times():
    """(cold: empty numba cache -> compile, cached: second process)."""
    out = {}
    with tempfile.TemporaryDirectory() as cache_dir:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
        for label in ("jit_compile", "cached_cold_start"):
            res = subprocess.run(
                [sys.executable, "-c", _STARTUP],
                env=env,
                cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                capture_output=True,
                text=True,
                check=True,
            )
            imp, first, total = (float(x) for x in res.stdout.split())
            out[label] = {"import_s": imp, "first_calls_s": first, "total_s": total}
    return out


def _pow2(text):
    v = int(text)
    if v < 1 or v & (v - 1):
        raise argparse.ArgumentTypeError(f"{text} is not a power of two")
    return v


def build_parser():
    ap = argparse.ArgumentParser(prog="python -m benchmarks.hotpath", description=__doc__.splitlines()[0])
    ap.add_argument("--json", metavar="FILE", help="write the results as JSON")
    ap.add_argument("--batches", type=int, default=21, help="timed batches per row (median taken)")
    ap.add_argument("--batch", type=int, default=2_000, help="calls per batch")
    ap.add_argument("--pool", type=_pow2, default=1024, help="events in the replayed pool (power of two; default 1024)")
    ap.add_argument(
        "--stream-pool",
        type=_pow2,
        default=32768,
        help="events in the pool of the out-of-cache run (power of two; default 32768)",
    )
    ap.add_argument("--skip-startup", action="store_true", help="skip the compile / cold-start subprocesses")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    results = {}
    t_jit = time.perf_counter()
    # compile (or load from cache) everything once, outside the timings
    bench_book(5, 1, 10, 16, 16)
    bench_book(5, 1, 10, 16, 16, snapshot=True)
    bench_trade(1, 10, 16, 16)
    bench_tick(1, 10, 16, 16)
    warm_s = time.perf_counter() - t_jit
    sizes = (args.pool, args.stream_pool)
    for depth in (5, 10, 20, 40):
        results[f"book_update_d{depth}"] = bench_book(depth, args.batches, args.batch, *sizes)
    for depth in (5, 10, 20, 40):
        results[f"book_partial_d{depth}"] = bench_book(depth, args.batches, args.batch, *sizes, snapshot=True)
    results["trade"] = bench_trade(args.batches, args.batch, *sizes)
    results["full_tick"] = bench_tick(args.batches, args.batch, *sizes)
    rows = {}
    for name, (py, nk, ns, extra) in results.items():
        rows[name] = {
            "median_ns": round(statistics.median(nk), 1),
            "in_kernel_ns": round(statistics.median(nk), 1),
            "in_kernel_stream_ns": round(statistics.median(ns), 1),
            "python_call_ns": round(statistics.median(py), 1),
            "in_kernel_ns_min": round(min(nk), 1),
            "python_call_ns_min": round(min(py), 1),
            "seed_cpp_ns": SEED_CPP_NS[name.replace("partial", "update")],
            "batches": len(py),
            "calls_per_batch": args.batch,
            **extra,
        }
    startup = None if args.skip_startup else startup_times()
    # The rows at the top level, keyed as the issue and the seed's Criterion table name
    # them (doc["book_update_d5"]["median_ns"]); the rest beside them.
    doc = {
        **rows,
        "startup": startup,
        "in_process_first_use_s": round(warm_s, 3),
        "warmup_ticks": WARMUP_TICKS,
        "notes": {
            "median_ns": "= in_kernel_ns: per call from compiled code, as the seed's Criterion loop calls its kernel",
            "in_kernel_ns": "njit driver loop calling the entry point once per tick over the in-cache event pool",
            "in_kernel_stream_ns": "the same over a pool too large for the caches (rows come from memory)",
            "python_call_ns": "Python loop, one kernel call per tick, incl. the Python -> numba call",
            "seed_cpp_ns": "seed C++ (g++ -O3 -march=native, FFI copy incl.), FINDINGS.md",
        },
        "pool": args.pool,
        "stream_pool": args.stream_pool,
        "machine": {"python": platform.python_version(), "cpu_count": os.cpu_count(), "platform": platform.platform()},
    }
    hdr = f"{'row':<17}{'in_kernel_ns':>13}{'stream_ns':>11}{'python_ns':>11}{'seed C++':>10}  requotes / notes"
    print(hdr)
    for name, r in rows.items():
        note = ""
        if "requotes_python" in r:
            note = f"requoted {r['requotes_kernel']} of {r['batches'] * r['calls_per_batch']} calls (kernel)"
            note += f", {r['requotes_python']} (python)"
        if name.startswith("book"):
            note += f", {r['rows_per_event']:.1f} rows/delta"
        if name == "trade":
            note = f"VPIN at end {r['vpin_bps_end']} bps"
        print(
            f"{name:<17}{r['in_kernel_ns']:>13.1f}{r['in_kernel_stream_ns']:>11.1f}{r['python_call_ns']:>11.1f}"
            f"{r['seed_cpp_ns']:>10}  {note}"
        )
    if startup:
        for label, v in startup.items():
            print(
                f"{label:<17} import {v['import_s'] * 1e3:8.1f} ms, first calls {v['first_calls_s'] * 1e3:8.1f} ms,"
                f" total {v['total_s'] * 1e3:8.1f} ms (subprocess)"
            )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(doc, fh, indent=2)
        print(f"wrote {args.json}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
