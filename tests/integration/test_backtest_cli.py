"""`python -m services.backtest` as a real process: --help, --json, determinism, CSV, --plot, sweeps, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TIMING = {"wall_s", "events_per_s", "sequenced_per_s"}
REQUIRED = {"events", "events_per_s", "orders", "fills", "round_trips", "realized_pnl", "max_drawdown", "win_rate",
            "sharpe", "fees"}  # fmt: skip


def bt(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("ATOMIC_MESH_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "services.backtest", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_help() -> None:
    r = bt("--help")
    assert r.returncode == 0
    for flag in ("--data", "--log", "--synthetic", "--fill-model", "--json", "--equity-csv", "--plot", "--sweep"):
        assert flag in r.stdout
    for flag in ("--per-event", "--prefetch", "--progress"):
        assert flag in r.stdout


def test_json_twice_identical_but_timing_and_same_equity_csv(tmp_path: Path) -> None:
    args = ("--synthetic", "2000", "--seed", "4", "--fill-model", "touch", "--json", "--no-progress")
    a = bt(*args, "--equity-csv", str(tmp_path / "a.csv"))
    b = bt(*args, "--equity-csv", str(tmp_path / "b.csv"))
    assert a.returncode == 0, a.stderr
    assert b.returncode == 0, b.stderr
    ja, jb = last_json(a.stdout), last_json(b.stdout)
    assert REQUIRED <= set(ja)
    assert ja["events"] == 2000 and ja["fills"] > 0
    assert isinstance(ja["events_per_s"], int) and ja["events_per_s"] > 0
    strip = lambda j: json.dumps({k: v for k, v in j.items() if k not in TIMING}, sort_keys=True)  # noqa: E731
    assert strip(ja) == strip(jb)
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    rows = (tmp_path / "a.csv").read_text().splitlines()
    assert rows[0].startswith("seq,event_ns,") and len(rows) == ja["fills"] + 1
    assert "BACKTEST REPORT" in a.stdout  # the text report comes first, JSON last


def test_per_event_gives_the_market_runs_report_and_equity_csv(tmp_path: Path) -> None:
    args = ("--synthetic", "3000", "--seed", "6", "--json", "--no-progress")
    a = bt(*args, "--equity-csv", str(tmp_path / "a.csv"))
    b = bt(*args, "--per-event", "--equity-csv", str(tmp_path / "b.csv"))
    assert a.returncode == 0, a.stderr
    assert b.returncode == 0, b.stderr
    ja, jb = last_json(a.stdout), last_json(b.stdout)
    assert ja.pop("market_run")["events"] > 2000
    assert jb.pop("market_run") == {"off": "switched off (--per-event)"}
    strip = lambda j: json.dumps({k: v for k, v in j.items() if k not in TIMING}, sort_keys=True)  # noqa: E731
    assert strip(ja) == strip(jb)
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert "Market run" in a.stdout and "off: switched off (--per-event)" in b.stdout
    r = bt("--synthetic", "100", "--sweep", "gamma=0.1,0.2", "--per-event")
    assert r.returncode == 2 and "--per-event does not apply to --sweep" in r.stderr


def test_plot_without_matplotlib_is_a_clear_error(tmp_path: Path) -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        r = bt("--synthetic", "500", "--plot", str(tmp_path / "eq.png"))
        assert r.returncode != 0
        assert "matplotlib" in r.stderr and "not installed" in r.stderr
        assert not (tmp_path / "eq.png").exists()
    else:
        r = bt("--synthetic", "3000", "--fill-model", "touch", "--plot", str(tmp_path / "eq.png"))
        assert r.returncode == 0, r.stderr
        assert (tmp_path / "eq.png").read_bytes()[:4] == b"\x89PNG"


def test_sweep_grid_sorted_by_realized_pnl() -> None:
    r = bt("--synthetic", "1000", "--fill-model", "touch", "--sweep", "half_spread=5,20",
           "--sweep", "risk.max_consecutive_losses=5,100000", "--jobs", "2", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    rows = last_json(r.stdout)["sweep"]
    assert len(rows) == 4
    assert sorted(row["grid_index"] for row in rows) == [0, 1, 2, 3]
    pnl = [row["realized_pnl_units"] for row in rows]
    assert pnl == sorted(pnl, reverse=True)
    assert {tuple(sorted(row["params"].items())) for row in rows} == {
        (("half_spread", h), ("risk.max_consecutive_losses", m)) for h in (5, 20) for m in (5, 100000)
    }
    assert "realized" in r.stdout and "half_spread" in r.stdout


def test_bad_config_key_and_bad_input_fail_with_named_errors(tmp_path: Path) -> None:
    r = bt("--synthetic", "100", "--set", "strategy.gamma=1")
    assert r.returncode == 3 and "strategy.gamma" in r.stderr
    r = bt("--data", str(tmp_path / "missing.gz"))
    assert r.returncode == 4 and "does not exist" in r.stderr
    r = bt("--synthetic", "lots")
    assert r.returncode == 4
    r = bt("--synthetic", "100", "--sweep", "nonsense_key=1,2")
    assert r.returncode == 3 and "nonsense_key" in r.stderr
