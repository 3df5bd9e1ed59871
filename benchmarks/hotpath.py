"""Hot-path benchmark: ``python -m benchmarks.hotpath --json FILE``.

Rows: book_update_d5/d10/d20/d40 (book delta + weighted microprice + vol +
requote rule + quote generation), trade (VPIN ring + distance histogram +
multiplier), full_tick (book delta at depth 20 + trade + fill).

Two timings per row, both medians over repeated batches after a 1,000-tick
warm-up, in ns per call (per tick for full_tick):
  python_call_ns : a Python for-loop calling the kernel once per event,
                   timed with perf_counter_ns around each batch; includes the
                   Python -> numba call overhead and the loop itself.
  in_kernel_ns   : an @njit driver loop over the pre-generated event array,
                   timed around the whole driver call; no call overhead.
``median_ns`` = python_call_ns (what a Python service pays per event).
The book changes on every event (random-walk mid, new quantities), so the
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

import numpy as np
from numba import njit

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


def gen_book_events(depth, n, seed):
    """Per event: a delta rewriting a depth-level ladder per side around a
    random-walk mid (new qty everywhere) plus removals of levels that left
    the ladder, so the book holds `depth` levels a side throughout."""
    rng = np.random.default_rng(seed)
    mid = 7_322_350
    rows = []
    starts = np.zeros(n, dtype=np.int64)
    counts = np.zeros(n, dtype=np.int64)
    ts = 1_711_200_000_000_000_000 + np.arange(n, dtype=np.int64) * 100_000_000
    prev_bids, prev_asks = set(), set()
    snap = []
    for i in range(depth):
        snap.append((D.SIDE_BID, mid - 1 - i, int(rng.integers(1_000_000, 50_000_000))))
        snap.append((D.SIDE_ASK, mid + 1 + i, int(rng.integers(1_000_000, 50_000_000))))
        prev_bids.add(mid - 1 - i)
        prev_asks.add(mid + 1 + i)
    r = 0
    for e in range(n):
        mid += int(rng.integers(-4, 5))
        bids = {mid - 1 - i for i in range(depth)}
        asks = {mid + 1 + i for i in range(depth)}
        starts[e] = r
        for px in sorted(prev_bids - bids):
            rows.append((D.SIDE_BID, px, 0))
        for px in sorted(prev_asks - asks):
            rows.append((D.SIDE_ASK, px, 0))
        for i in range(depth):
            rows.append((D.SIDE_BID, mid - 1 - i, int(rng.integers(1_000_000, 50_000_000))))
            rows.append((D.SIDE_ASK, mid + 1 + i, int(rng.integers(1_000_000, 50_000_000))))
        counts[e] = len(rows) - r
        r = len(rows)
        prev_bids, prev_asks = bids, asks
    lv = np.array(rows, dtype=np.int64)
    return np.array(snap, dtype=np.int64), lv, starts, counts, ts


def gen_trades(n, seed):
    rng = np.random.default_rng(seed)
    px = 7_322_350 + rng.integers(-25, 26, n).astype(np.int64)
    qty = rng.integers(100_000, 10_000_000, n).astype(np.int64)
    bim = rng.integers(0, 2, n).astype(np.int64)
    ts = 1_711_200_000_050_000_000 + np.arange(n, dtype=np.int64) * 100_000_000
    return px, qty, bim, ts


# --------------------------------------------------------------------------
# njit drivers (the in-kernel timing)
# --------------------------------------------------------------------------


@njit  # no cache: numba would not notice a change in the kernels module it calls
def drive_book(state, book, params, lv, starts, counts, ts, i0, i1):
    nq = 0
    for i in range(i0, i1):
        if K.on_book_delta(state, book, params, lv, starts[i], counts[i], ts[i]) == D.ACT_QUOTE:
            nq += 1
    return nq


@njit  # no cache: numba would not notice a change in the kernels module it calls
def drive_trade(state, book, params, px, qty, bim, ts, i0, i1):
    nc = 0
    for i in range(i0, i1):
        if K.on_trade(state, book, params, px[i], qty[i], bim[i], ts[i]) != D.ACT_NONE:
            nc += 1
    return nc


@njit  # no cache: numba would not notice a change in the kernels module it calls
def drive_tick(state, book, params, lv, starts, counts, ts, px, qty, bim, fside, fqty, i0, i1):
    nq = 0
    for i in range(i0, i1):
        if K.on_book_delta(state, book, params, lv, starts[i], counts[i], ts[i]) == D.ACT_QUOTE:
            nq += 1
        K.on_trade(state, book, params, px[i], qty[i], bim[i], ts[i])
        if K.on_fill(state, book, params, fside[i], px[i], fqty[i], ts[i]) == D.ACT_QUOTE:
            nq += 1
    return nq


# --------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------


def _fresh(params, snap, cap):
    s, b = new_state(), new_book(cap)
    K.on_book_snapshot(s, b, params, snap, 0, snap.shape[0], 0)
    return s, b


def bench_book(depth, batches, batch):
    n = WARMUP_TICKS + batches * batch
    snap, lv, starts, counts, ts = gen_book_events(depth, n, seed=depth)
    params = default_params(mp_levels=min(5, depth))
    cap = max(D.BOOK_CAP, depth)
    st_l, cn_l, ts_l = starts.tolist(), counts.tolist(), ts.tolist()
    f = K.on_book_delta
    quote = D.ACT_QUOTE
    # python loop
    s, b = _fresh(params, snap, cap)
    for i in range(WARMUP_TICKS):
        f(s, b, params, lv, st_l[i], cn_l[i], ts_l[i])
    py, req_py = [], 0
    for k in range(batches):
        i0 = WARMUP_TICKS + k * batch
        t0 = time.perf_counter_ns()
        for i in range(i0, i0 + batch):
            if f(s, b, params, lv, st_l[i], cn_l[i], ts_l[i]) == quote:
                req_py += 1
        py.append((time.perf_counter_ns() - t0) / batch)
    # njit driver
    s, b = _fresh(params, snap, cap)
    drive_book(s, b, params, lv, starts, counts, ts, 0, WARMUP_TICKS)
    nk, req_k = [], 0
    for k in range(batches):
        i0 = WARMUP_TICKS + k * batch
        t0 = time.perf_counter_ns()
        req_k += drive_book(s, b, params, lv, starts, counts, ts, i0, i0 + batch)
        nk.append((time.perf_counter_ns() - t0) / batch)
    rows_per_event = float(counts[WARMUP_TICKS:].mean())
    return py, nk, {"requotes_python": req_py, "requotes_kernel": req_k, "rows_per_event": rows_per_event}


def bench_trade(batches, batch):
    n = WARMUP_TICKS + batches * batch
    px, qty, bim, ts = gen_trades(n, seed=7)
    snap, *_ = gen_book_events(20, 1, seed=20)
    params = default_params()
    pl, ql, bl, tl = px.tolist(), qty.tolist(), bim.tolist(), ts.tolist()
    f = K.on_trade
    s, b = _fresh(params, snap, D.BOOK_CAP)
    for i in range(WARMUP_TICKS):
        f(s, b, params, pl[i], ql[i], bl[i], tl[i])
    py = []
    for k in range(batches):
        i0 = WARMUP_TICKS + k * batch
        t0 = time.perf_counter_ns()
        for i in range(i0, i0 + batch):
            f(s, b, params, pl[i], ql[i], bl[i], tl[i])
        py.append((time.perf_counter_ns() - t0) / batch)
    s, b = _fresh(params, snap, D.BOOK_CAP)
    drive_trade(s, b, params, px, qty, bim, ts, 0, WARMUP_TICKS)
    nk = []
    for k in range(batches):
        i0 = WARMUP_TICKS + k * batch
        t0 = time.perf_counter_ns()
        drive_trade(s, b, params, px, qty, bim, ts, i0, i0 + batch)
        nk.append((time.perf_counter_ns() - t0) / batch)
    return py, nk, {"vpin_bps_end": int(s[D.S_VPIN_BPS]), "toxic_end": int(s[D.S_TOXIC])}


def bench_tick(batches, batch):
    depth = 20
    n = WARMUP_TICKS + batches * batch
    snap, lv, starts, counts, ts = gen_book_events(depth, n, seed=99)
    px, qty, bim, _ = gen_trades(n, seed=98)
    fside = (np.arange(n, dtype=np.int64) % 2).astype(np.int64)  # buy, sell, ...
    fqty = np.full(n, 30_000, dtype=np.int64)  # partial fills
    params = default_params()
    lists = [x.tolist() for x in (starts, counts, ts, px, qty, bim, fside, fqty)]
    st_l, cn_l, ts_l, p_l, q_l, b_l, fs_l, fq_l = lists
    fb, ft, ff = K.on_book_delta, K.on_trade, K.on_fill
    quote = D.ACT_QUOTE

    def run_py(s, b, i0, i1):
        nq = 0
        for i in range(i0, i1):
            t = ts_l[i]
            if fb(s, b, params, lv, st_l[i], cn_l[i], t) == quote:
                nq += 1
            ft(s, b, params, p_l[i], q_l[i], b_l[i], t)
            if ff(s, b, params, fs_l[i], p_l[i], fq_l[i], t) == quote:
                nq += 1
        return nq

    s, b = _fresh(params, snap, D.BOOK_CAP)
    run_py(s, b, 0, WARMUP_TICKS)
    py, req_py = [], 0
    for k in range(batches):
        i0 = WARMUP_TICKS + k * batch
        t0 = time.perf_counter_ns()
        req_py += run_py(s, b, i0, i0 + batch)
        py.append((time.perf_counter_ns() - t0) / batch)
    s, b = _fresh(params, snap, D.BOOK_CAP)
    args = (lv, starts, counts, ts, px, qty, bim, fside, fqty)
    drive_tick(s, b, params, *args, 0, WARMUP_TICKS)
    nk, req_k = [], 0
    for k in range(batches):
        i0 = WARMUP_TICKS + k * batch
        t0 = time.perf_counter_ns()
        req_k += drive_tick(s, b, params, *args, i0, i0 + batch)
        nk.append((time.perf_counter_ns() - t0) / batch)
    return py, nk, {"requotes_python": req_py, "requotes_kernel": req_k, "position_end": int(s[D.S_POSITION])}


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


def build_parser():
    ap = argparse.ArgumentParser(prog="python -m benchmarks.hotpath", description=__doc__.splitlines()[0])
    ap.add_argument("--json", metavar="FILE", help="write the results as JSON")
    ap.add_argument("--batches", type=int, default=21, help="timed batches per row (median taken)")
    ap.add_argument("--batch", type=int, default=2_000, help="calls per batch")
    ap.add_argument("--skip-startup", action="store_true", help="skip the compile / cold-start subprocesses")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    results = {}
    t_jit = time.perf_counter()
    # compile (or load from cache) everything once, outside the timings
    bench_book(5, 1, 10)
    bench_trade(1, 10)
    bench_tick(1, 10)
    warm_s = time.perf_counter() - t_jit
    for depth in (5, 10, 20, 40):
        results[f"book_update_d{depth}"] = bench_book(depth, args.batches, args.batch)
    results["trade"] = bench_trade(args.batches, args.batch)
    results["full_tick"] = bench_tick(args.batches, args.batch)
    rows = {}
    for name, (py, nk, extra) in results.items():
        rows[name] = {
            "median_ns": round(statistics.median(py), 1),
            "python_call_ns": round(statistics.median(py), 1),
            "in_kernel_ns": round(statistics.median(nk), 1),
            "python_call_ns_min": round(min(py), 1),
            "in_kernel_ns_min": round(min(nk), 1),
            "seed_cpp_ns": SEED_CPP_NS[name],
            "batches": len(py),
            "calls_per_batch": args.batch,
            **extra,
        }
    startup = None if args.skip_startup else startup_times()
    doc = {
        "rows": rows,
        "startup": startup,
        "in_process_first_use_s": round(warm_s, 3),
        "warmup_ticks": WARMUP_TICKS,
        "notes": {
            "python_call_ns": "Python loop, one kernel call per event, incl. call overhead (median of batches)",
            "in_kernel_ns": "njit driver loop over a pre-generated event array, no call overhead",
            "median_ns": "= python_call_ns",
            "seed_cpp_ns": "seed C++ (g++ -O3 -march=native, FFI copy incl.), FINDINGS.md",
        },
        "machine": {"python": platform.python_version(), "cpu_count": os.cpu_count(), "platform": platform.platform()},
    }
    print(f"{'row':<17}{'python_call_ns':>15}{'in_kernel_ns':>14}{'seed C++ ns':>13}  requotes / notes")
    for name, r in rows.items():
        note = ""
        if "requotes_python" in r:
            note = f"requoted {r['requotes_python']} of {r['batches'] * r['calls_per_batch']} calls (python)"
            note += f", {r['requotes_kernel']} (kernel)"
        if name.startswith("book"):
            note += f", {r['rows_per_event']:.1f} rows/delta"
        if name == "trade":
            note = f"VPIN at end {r['vpin_bps_end']} bps"
        print(f"{name:<17}{r['python_call_ns']:>15.1f}{r['in_kernel_ns']:>14.1f}{r['seed_cpp_ns']:>13}  {note}")
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
