"""Once per session, before the first test: numba's on-disk cache filled in a child process.

Why: from an empty cache (a fresh clone, or any change to a hot-path file) the backtest's
kernels take about 90 s to compile on the 2-core machine, longer on a slower one. Without
this, whichever test first ran them (a CLI test's subprocess, or a unit test in this
process) paid that compile inside its own 120 s timeout, and a CI run failed so. Here it
is paid once, outside every test's timeout, with a deadline of its own; every later
process (the pytest process, the services, the CLI) loads the kernels from the cache.
A warm cache costs about 1 s; a session of tests in none of KERNEL_DIRS skips it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
# The test folders whose tests run the backtest's or the strategy's kernels, the long compiles
# (in process, in a service, or in the CLI); others run only small kernels (the ladder's).
KERNEL_DIRS = ("integration", "unit/backtest", "unit/hotpath", "unit/strategy", "unit/feed", "unit/verifier")
WARM_DEADLINE_S = 1200
WARM = "from services.backtest.engine import warm_up; warm_up()"


def _runs_kernels(item: pytest.Item) -> bool:
    try:
        rel = Path(str(item.path)).resolve().relative_to(TESTS).as_posix()
    except ValueError:
        return False
    return any(rel == d or rel.startswith(d + "/") for d in KERNEL_DIRS)


def pytest_collection_finish(session: pytest.Session) -> None:
    if not any(_runs_kernels(item) for item in session.items):
        return
    report = session.config.pluginmanager.get_plugin("terminalreporter")
    t0 = time.perf_counter()
    env = dict(os.environ)
    env.pop("ATOMIC_MESH_CONFIG", None)
    try:
        r = subprocess.run([sys.executable, "-c", WARM], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=WARM_DEADLINE_S)  # fmt: skip
        done = f"exit {r.returncode}" + (f": {r.stderr[-2000:]}" if r.returncode else "")
    except subprocess.TimeoutExpired:
        done = f"not done within {WARM_DEADLINE_S} s"
    # A failure here is shown, not raised: the tests that need the kernels then fail with their
    # own messages, and the rest still report.
    if report is not None:
        report.write_line(f"filling numba's cache: {time.perf_counter() - t0:.1f} s, {done}")
