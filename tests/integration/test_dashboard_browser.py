"""The dashboard in a real browser over the real mesh.

The mesh (sequencer, logger, feed, strategy, risk, router, execution) runs
under the real supervisord (harness.Mesh); the dashboard is a separate
process started here, read-only, on a free loopback port; headless Debian
Chromium, driven by Playwright, loads the page and waits (with deadlines)
until every panel shows live data. The screenshot is kept at
artifacts/dashboard.png (git-ignored).

Skips when /usr/bin/chromium or playwright is not installed:
    apt-get install -y chromium && pip install playwright   (never `playwright install`)
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.integration.harness import REPO, Mesh, wait_for

pytestmark = pytest.mark.timeout(180)

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("ATOMIC_MESH_ARTIFACTS", REPO / "artifacts"))
ALL = ["sequencer", "logger", "feed", "strategy", "risk", "router", "execution"]
SETTINGS = {
    "feed": {"rate": 400.0, "seed": 3},
    "logger": {"fsync": "none"},
    "risk": {"max_open_orders": 200, "max_orders_per_second": 1000, "deadman_ms": 1500},
}
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
if not os.access(CHROMIUM, os.X_OK):
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install -y chromium)", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str) -> dict:
    """GET a JSON body; a 503 (/health not ok yet) is a body too, and its socket is closed."""
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return json.loads(exc.read())


@pytest.fixture
def mesh():
    m = Mesh(ALL, SETTINGS)
    try:
        yield m.start()
    finally:
        m.cleanup()


@pytest.fixture
def dashboard(mesh):
    port = free_port()
    log = open(mesh.root / "dashboard.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.dashboard", "--config", str(mesh.config_path), "--port", str(port)],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: proc.poll() is None and get_json(base + "/health")["ok"], 60, "dashboard /health ok")
        yield base, proc
    finally:
        proc.terminate()
        try:
            rc = proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait(5)
        log.close()
        text = (mesh.root / "dashboard.log").read_text(errors="replace")
        assert rc == 0, f"dashboard exited {rc}:\n{text[-3000:]}"
        assert "Traceback" not in text and " ERROR " not in text, text[-3000:]


def test_dashboard_panels_fill_with_live_data_in_chromium(mesh, dashboard):
    base, _proc = dashboard
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    profile = tempfile.mkdtemp(prefix="am-chromium-")
    console_errors: list[str] = []
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1500, "height": 1900})
                page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e: console_errors.append(str(e)))
                page.goto(base + "/", wait_until="domcontentloaded", timeout=30_000)

                def count() -> int:
                    return int(page.locator("#event-count").inner_text() or "0")

                page.wait_for_function("() => document.getElementById('conn').textContent === 'live'", timeout=30_000)
                page.wait_for_function("() => +document.getElementById('event-count').textContent > 0", timeout=30_000)
                first = count()
                wait_for(lambda: count() > first + 200, 30, "the event count to grow in the page")
                page.wait_for_function(
                    "() => document.querySelectorAll('#book-bids tbody tr').length === 20"
                    " && document.querySelectorAll('#book-asks tbody tr').length === 20",
                    timeout=30_000,
                )
                # the latency table has numbers: tick-to-order measured from the stream, with a p50 in time units
                page.wait_for_function(
                    "() => [...document.querySelectorAll('#latency-table tbody tr')].some(r =>"
                    " r.cells[0].textContent === 'tick_to_order'"
                    " && /\\d+(\\.\\d+)? (ns|µs|ms|s)$/.test(r.cells[3].textContent)"
                    " && +r.cells[2].textContent > 0)",
                    timeout=45_000,
                )
                wait_for(
                    lambda: page.locator("#cluster-table tbody tr").count() >= 6,
                    30,
                    "six services in the cluster panel",
                )
                page.wait_for_function(
                    "() => [...document.querySelectorAll('#cluster-table tbody tr')]"
                    ".filter(r => r.cells[1].textContent === 'UP').length >= 6",
                    timeout=30_000,
                )
                page.wait_for_function(
                    "() => document.querySelectorAll('#orders-table tbody tr').length > 0", timeout=45_000
                )
                page.wait_for_function(
                    "() => document.querySelectorAll('#events-table tbody tr').length >= 100", timeout=30_000
                )
                page.wait_for_function(
                    "() => /exact/.test(document.getElementById('insp-note').textContent)"
                    " && document.getElementById('inspector').textContent.includes('fair (microprice)')",
                    timeout=30_000,
                )
                page.wait_for_function(
                    "() => document.querySelectorAll('#hash-table tbody tr').length >= 3", timeout=45_000
                )
                # filter by type in the page
                page.select_option("#type-filter", "Trade")
                page.wait_for_function(
                    "() => { const rows = [...document.querySelectorAll('#events-table tbody tr')];"
                    " return rows.length > 0 && rows.every(r => r.cells[2].textContent === 'Trade'); }",
                    timeout=15_000,
                )
                page.select_option("#type-filter", "")
                shot = ARTIFACTS / "dashboard.png"
                page.screenshot(path=str(shot), full_page=True)
                assert shot.stat().st_size > 20_000

                # the page's numbers agree with the server's view, and the server is healthy
                view = get_json(base + "/api/state")
                assert len(view["trading"][0]["book"]["bids"]) == 20
                assert view["strategy"]["exact"] is True
                replica = next(h for h in view["hashes"] if h["service"] == "strategy").get("replica")
                assert replica is None or replica["mismatch"] == 0
                # closing the page mid-stream leaves the server serving
                page.close()
            finally:
                browser.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    health = get_json(base + "/health")
    assert health["ok"] and health["lag"] < 5000, health
    assert not [e for e in console_errors if "favicon" not in e], console_errors
