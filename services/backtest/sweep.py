"""Parameter sweeps: the same input through a grid of configs, one process per run.

``--sweep gamma_ppm=50000,100000,200000 --sweep toxic_bps=6000,8000`` is the
cartesian product of the values, in the order given (the first key varies
slowest). A bare key is a [strategy] key; ``section.key`` names any section
(``risk.max_consecutive_losses=5,1000``). Values are TOML literals (ints,
floats, true/false; anything else is taken as a string) and go through the
config's own validation, so a typo fails before any run starts.

Runs go to a multiprocessing Pool (`imap`, so results come back in grid
order whatever finishes first); each worker rebuilds the input from its
spec and runs the full engine. The table is sorted by realized PnL (net of
fees), best first, ties by grid order: deterministic.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import tomllib
from typing import Any

from common import config as config_mod
from common.config import MeshConfig
from services.backtest.inputs import Input

InputSpec = tuple[str, Any]  # ("data", [files]) | ("log", dir) | ("synthetic", (n, seed)) | ("seed", None)


class SweepError(ValueError):
    pass


def parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_sweeps(specs: list[str]) -> list[tuple[str, str, list[Any]]]:
    """``key=v1,v2`` strings -> (section, key, values)."""
    out = []
    for spec in specs:
        key, eq, vals = spec.partition("=")
        if not eq or not key or not vals:
            raise SweepError(f"--sweep {spec!r}: expected KEY=V1,V2,...")
        section, dot, name = key.strip().rpartition(".")
        section = section if dot else "strategy"
        out.append((section, name, [parse_value(v.strip()) for v in vals.split(",") if v.strip()]))
    return out


def apply_overrides(cfg: MeshConfig, overrides: list[tuple[str, str, Any]]) -> MeshConfig:
    by_section: dict[str, dict[str, Any]] = {}
    for section, key, value in overrides:
        by_section.setdefault(section, {})[key] = value
    for section, changes in by_section.items():
        cfg = config_mod.replace(cfg, section, **changes)
    return cfg


def grid(sweeps: list[tuple[str, str, list[Any]]]) -> list[list[tuple[str, str, Any]]]:
    axes = [[(s, k, v) for v in vals] for s, k, vals in sweeps]
    return [list(point) for point in itertools.product(*axes)]


def _label(point: list[tuple[str, str, Any]]) -> str:
    return " ".join(f"{k if s == 'strategy' else f'{s}.{k}'}={v}" for s, k, v in point)


def _one(job: tuple[int, MeshConfig, InputSpec, str, list[tuple[str, str, Any]]]) -> dict[str, Any]:
    from services.backtest.cli import make_input
    from services.backtest.run import run_backtest

    index, cfg, spec, fill_model, point = job
    cfg = apply_overrides(cfg, point)
    inp: Input = make_input(spec, cfg)
    res = run_backtest(cfg, inp, fill_model, label=_label(point))
    rep = res.report
    rep["grid_index"] = index
    rep["params"] = {(k if s == "strategy" else f"{s}.{k}"): v for s, k, v in point}
    return rep


def run_sweep(
    cfg: MeshConfig, spec: InputSpec, fill_model: str, sweeps: list[tuple[str, str, list[Any]]], jobs: int = 0
) -> list[dict[str, Any]]:
    points = grid(sweeps)
    for point in points:  # validate every point before starting any run
        try:
            apply_overrides(cfg, point)
        except config_mod.ConfigError as exc:
            raise SweepError(str(exc)) from None
    work = [(i, cfg, spec, fill_model, p) for i, p in enumerate(points)]
    procs = max(1, min(jobs or os.cpu_count() or 1, len(work)))
    if procs == 1:
        results = [_one(w) for w in work]
    else:
        from services.backtest.engine import warm_up

        warm_up()  # load the kernels once, before the workers fork
        ctx = multiprocessing.get_context("fork") if "fork" in multiprocessing.get_all_start_methods() else None
        pool = (ctx or multiprocessing).Pool(procs)
        try:
            results = list(pool.imap(_one, work))
        finally:
            pool.close()
            pool.join()
    return sort_results(results)


def sort_results(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(results, key=lambda r: (-r["units"]["realized_pnl"], r["grid_index"]))


def table(results: list[dict[str, Any]]) -> str:
    keys = list(results[0]["params"]) if results else []
    head = ["#", *keys, "realized", "fees", "fills", "trips", "win", "sharpe", "max_dd", "orders", "rejected"]
    rows = []
    for rank, r in enumerate(results, 1):
        rows.append([
            str(rank), *(str(r["params"][k]) for k in keys), r["realized_pnl"], r["fees"], str(r["fills"]),
            str(r["round_trips"]), r["win_rate_text"], f"{r['sharpe']:.3f}" if r["sharpe"] is not None else "n/a",
            r["max_drawdown"], str(r["orders"]), str(sum(r["risk_rejected"].values())),
        ])  # fmt: skip
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(head)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(head, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def summary(r: dict[str, Any]) -> dict[str, Any]:
    """A sweep row for JSON: the params and the headline numbers."""
    keep = ("grid_index", "params", "events", "orders", "fills", "round_trips", "realized_pnl", "fees",
            "max_drawdown", "win_rate", "sharpe", "hashes")  # fmt: skip
    return {k: r[k] for k in keep} | {"realized_pnl_units": r["units"]["realized_pnl"]}
