"""The hot-path benchmark's JSON, as the issue and the seed's Criterion table key it:
one entry per row at the top level, each with its median_ns. (A tiny run: the numbers
are not looked at, only that each row was measured and written where a reader looks.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
ROWS = [f"book_update_d{d}" for d in (5, 10, 20, 40)] + [f"book_partial_d{d}" for d in (5, 10, 20, 40)]
ROWS += ["trade", "full_tick"]


def test_rows_are_top_level_keys_with_median_ns(tmp_path: Path) -> None:
    out = tmp_path / "hotpath.json"
    args = ["--skip-startup", "--batches", "2", "--batch", "50", "--pool", "16", "--stream-pool", "32"]
    subprocess.run(
        [sys.executable, "-m", "benchmarks.hotpath", *args, "--json", str(out)],
        cwd=ROOT, check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    doc = json.loads(out.read_text())
    for row in ROWS:
        assert doc[row]["median_ns"] > 0, row
        assert doc[row]["median_ns"] == doc[row]["in_kernel_ns"]
        assert doc[row]["seed_cpp_ns"] > 0
    assert doc["startup"] is None  # --skip-startup
    assert doc["warmup_ticks"] == 1000
