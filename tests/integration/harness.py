"""Start the real mesh under the real supervisord, in a temp dir, and tear it down.

The supervisord.conf used is the repo's own, rewritten only where it must be:
paths point into a temp directory (short, so ipc:// paths fit), the
interpreter is this test's, and programs not asked for are left out.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import config, eventlog, events

REPO = Path(__file__).resolve().parents[2]


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(v)


def write_toml(path: Path, sections: dict[str, dict[str, Any]]) -> None:
    lines = []
    for name, keys in sections.items():
        lines.append(f"[{name}]")
        lines.extend(f"{k} = {toml_value(v)}" for k, v in keys.items())
        lines.append("")
    path.write_text("\n".join(lines))


def wait_for(cond: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll cond until truthy; fail with `what` at the deadline (never a bare sleep).

    A poll that reads the event log costs more as the log grows; sleeping at
    least as long as the poll took keeps the test process from taking more
    than half a core from the services it waits on (there are two)."""
    start = time.monotonic()
    end = start + timeout
    last_exc: Exception | None = None
    while time.monotonic() < end:
        t0 = time.monotonic()
        try:
            got = cond()
            if got:
                print(f"waited {time.monotonic() - start:.1f}s for {what}", file=sys.stderr)
                return got
        except Exception as exc:  # the condition may race a file being written
            last_exc = exc
        time.sleep(max(interval, time.monotonic() - t0))
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_exc})" if last_exc else "")
    )


def _timed(method: Callable[..., Any]) -> Callable[..., Any]:
    """Report a slow step's duration on stderr (pytest shows it with a failure)."""

    def run(*args: Any, **kwargs: Any) -> Any:
        t0 = time.monotonic()
        try:
            return method(*args, **kwargs)
        finally:
            print(f"{method.__name__} took {time.monotonic() - t0:.1f}s", file=sys.stderr)

    return run


class Mesh:
    def __init__(self, programs: list[str], settings: dict[str, dict[str, Any]] | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="am-", dir="/tmp"))
        self.run = self.root / "run"
        self.run.mkdir(mode=0o700)
        self.programs = programs
        sections = {k: dict(v) for k, v in (settings or {}).items()}
        sections.setdefault("run", {})["dir"] = str(self.run)
        self.config_path = self.root / "mesh.toml"
        write_toml(self.config_path, sections)
        self.cfg = config.load(self.config_path)
        self.conf = self.root / "supervisord.conf"
        self.conf.write_text(self._render_conf())
        self.started = False

    def _render_conf(self) -> str:
        text = (REPO / "supervisord.conf").read_text()
        text = text.replace("%(here)s/run", str(self.run))
        text = text.replace("%(here)s/mesh.toml", str(self.config_path))
        text = text.replace("%(here)s", str(REPO))
        text = re.sub(r"command=python3 ", f"command={sys.executable} ", text)
        out, keep = [], True
        for block in re.split(r"(?m)^(?=\[)", text):
            m = re.match(r"\[program:([\w-]+)\]", block)
            if m:
                keep = m.group(1) in self.programs
                if keep:
                    out.append(block)
            else:
                out.append(block)
        return "".join(out)

    # -- lifecycle
    def start(self, timeout: float = 30) -> Mesh:
        subprocess.run(
            [sys.executable, "-m", "supervisor.supervisord", "-c", str(self.conf)], check=True, cwd=REPO, timeout=30
        )
        self.started = True
        wait_for(lambda: all(self.state(p) == "RUNNING" for p in self.programs), timeout, f"{self.programs} RUNNING")
        return self

    def ctl(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "supervisor.supervisorctl", "-c", str(self.conf), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO,
        )

    def state(self, program: str) -> str:
        out = self.ctl("status", program).stdout.split()
        return out[1] if len(out) > 1 else ""

    def pid(self, program: str) -> int:
        out = self.ctl("pid", program).stdout.strip()
        return int(out) if out.isdigit() else 0

    def kill9(self, program: str) -> int:
        pid = self.pid(program)
        assert pid, f"{program} has no pid"
        os.kill(pid, signal.SIGKILL)
        wait_for(
            lambda: self.pid(program) not in (0, pid) and self.state(program) == "RUNNING", 30, f"{program} restarted"
        )
        return pid

    @_timed
    def stop(self) -> None:
        if not self.started:
            return
        pids = [self.pid(p) for p in self.programs]
        sup_pid_file = self.run / "supervisord.pid"
        sup_pid = int(sup_pid_file.read_text()) if sup_pid_file.exists() else 0
        self.ctl("shutdown")
        end = time.monotonic() + 20
        while time.monotonic() < end and sup_pid and _alive(sup_pid):
            time.sleep(0.05)
        for pid in [sup_pid, *pids]:
            if pid and _alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.started = False

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def service_log(self, program: str) -> str:
        path = self.run / f"{program}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- reading what the mesh wrote
    @property
    def log_dir(self) -> Path:
        return self.cfg.under_run(self.cfg.logger.log_dir)

    def events(self, from_seq: int = 1) -> list[events.Sequenced]:
        """The log's events from from_seq on (a poll that needs only recent events
        should say so: decoding the whole log on every poll grows with the run)."""
        return [events.decode_sequenced(p) for _s, p in eventlog.read_range(self.log_dir, max(1, from_seq))]

    def count_source(self, source: str) -> int:
        n = 0
        for _s, p in eventlog.read_range(self.log_dir, 1):
            if events.decode_head(p).source == source:
                n += 1
        return n

    @_timed
    def replay_verify(self) -> dict[str, Any]:
        """`python -m services.verifier --replay --verify --json` over this mesh's log: its JSON summary."""
        import json

        cmd = [sys.executable, "-m", "services.verifier", "--config", str(self.config_path)]
        out = subprocess.run(
            [*cmd, "--replay", "--verify", "--json"], capture_output=True, text=True, timeout=300, cwd=REPO
        )
        return json.loads(out.stdout.strip().splitlines()[-1])

    @_timed
    def check(self) -> dict[str, Any]:
        import json

        out = subprocess.run(
            [sys.executable, "-m", "services.logger", "--config", str(self.config_path), "--check", "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
        )
        return json.loads(out.stdout.strip().splitlines()[-1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (reaped later by its parent) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
