"""The dashboard's shell: a read-only stream follower thread and an aiohttp server.

    python -m services.dashboard [--config PATH] [--host H] [--port P] [--allow-remote]

* Read-only. It subscribes to the sequenced stream and asks the logger /
  sequencer for ranges (gap repair, the same StreamFollower every service
  uses); it never sends an event into the mesh, and the HTTP side has no
  write action at all (GET only; the websocket ignores what a page sends).
* Loopback only. It refuses to bind anything but a loopback address unless
  --allow-remote is given, checks the Host header (so a DNS-rebinding page
  cannot read it) and the Origin of websocket upgrades (so another site open
  in the same browser cannot either).
* Starts fast: from max(1, head - backfill); when the strategy's newest
  snapshot is within `replay_max` events of the head it starts there instead,
  loads it into an in-process StrategyCore and follows from it, so the
  strategy inspector (StrategyCore.inspect()) and the book are exact.

Routes: `/` (the page), `/static/*`, `/ws` (JSON view pushed every
push_interval_ms), `/api/state` (the same view, once), `/metrics`
(Prometheus text format 0.0.4), `/health` (JSON; 503 when not ok).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import zmq
from aiohttp import WSMsgType, web

from common import events as E
from common import runtime
from common.config import MeshConfig
from common.dashboard_config import DashboardConfig, settings_of
from common.rpc import RpcClient
from common.shell import SnapshotStore
from common.stream import FellBehind, StreamFollower
from common.units import load_symbols
from services.dashboard.state import DashboardState

log = logging.getLogger("dashboard")
STATIC = Path(__file__).resolve().parent / "static"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


CLIENTS: web.AppKey[set[Client]] = web.AppKey("clients", set)


class RemoteBindRefused(ValueError):
    pass


def is_loopback_host(host: str) -> bool:
    """True when every address `host` names is a loopback address."""
    h = host.strip("[]")
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(h, None)
    except socket.gaierror:
        return False
    addrs = {info[4][0] for info in infos}
    return bool(addrs) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addrs)


def check_bind(host: str, allow_remote: bool) -> None:
    if allow_remote or is_loopback_host(host):
        return
    raise RemoteBindRefused(
        f"refusing to bind {host!r}: not a loopback address. The dashboard shows trading state and has no "
        "authentication; bind 127.0.0.1 (the default), or pass --allow-remote if you really mean to expose it "
        "(and put it behind something that authenticates)."
    )


# ---------------------------------------------------------------- the follower thread
class Hub:
    """The state, its lock, and the thread that feeds it from the stream."""

    def __init__(self, cfg: MeshConfig | None, settings: DashboardConfig, state: DashboardState | None = None) -> None:
        self.cfg = cfg
        self.settings = settings
        self.lock = threading.Lock()
        self.state = state
        self.status = "starting"
        self.error = ""
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None
        self.last_batch_mono = time.monotonic()
        self.resyncs = 0
        # What HTTP serves: built by the thread that owns the state, swapped in whole,
        # so a request never waits for the follower (and the follower never for a request).
        self.view_text = "{}"
        self.metrics_text = ""
        self.health_body: dict[str, Any] = {"last_seq": 0, "head_seq": 0, "lag": 0}
        self._next_publish = 0.0

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="stream-follower", daemon=True)
        self.thread.start()

    def close(self, timeout: float = 5.0) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout)

    def _head(self, ctx: zmq.Context) -> int | None:
        assert self.cfg is not None
        rpc = RpcClient(ctx, self.cfg, "sequencer_ctl")
        try:
            while not self.stop.is_set():
                reply = rpc.call("hello", "", timeout_ms=500)
                if reply is not None:
                    return int(reply[1])
                self.status = "waiting for the sequencer"
        finally:
            rpc.close()
        return None

    def _build_state(self, head: int) -> tuple[DashboardState, int]:
        """A fresh state and the seq to follow from (see the module docstring)."""
        from services.strategy.core import StrategyCore  # numba compiles on first use; only here

        assert self.cfg is not None
        cfg, s = self.cfg, self.settings
        symbols = load_symbols(cfg.symbols.exchange_info)
        start = max(1, head - s.backfill + 1)
        inspector: Any = None
        exact = False
        since = start
        try:
            inspector = StrategyCore(cfg.strategy, symbols)
            snap_dir = cfg.run_dir / "snapshots" / cfg.strategy.name
            snap = SnapshotStore(snap_dir).load_latest() if snap_dir.is_dir() else None
            if snap is not None and head - snap[0] <= s.replay_max:
                inspector.load_state(snap[1])
                start = min(start, snap[0] + 1)
                exact, since = True, snap[0]
            elif head <= s.replay_max:
                start, exact, since = 1, True, 0
        except Exception as exc:  # an inspector problem must not keep the dashboard down
            log.warning("strategy inspector unavailable: %s", exc)
            inspector, exact = None, False
        state = DashboardState(s, symbols, inspector, exact, cfg.strategy.hash_every)
        state.inspector_since = since
        state.head_seq = head
        if exact and since:
            state.seed_books_from_inspector()
        log.info(
            "following from seq %d (head %d); strategy inspector %s",
            start,
            head,
            "exact" if exact else f"approximate, warming from seq {start}",
        )
        return state, start

    def _run(self) -> None:
        assert self.cfg is not None
        ctx = zmq.Context()
        try:
            while not self.stop.is_set():
                try:
                    self._follow(ctx)
                except FellBehind as exc:
                    self.resyncs += 1
                    self.status, self.error = "resyncing", f"fell behind: {exc}"
                    log.warning("fell behind; restarting from the head: %s", exc)
                except Exception as exc:  # the thread must never die silently
                    self.status, self.error = "error", f"{type(exc).__name__}: {exc}"
                    log.exception("stream follower failed; retrying in 1 s")
                    self.stop.wait(1.0)
        finally:
            ctx.destroy(linger=0)

    def _follow(self, ctx: zmq.Context) -> None:
        head = self._head(ctx)
        if head is None:
            return
        state, start = self._build_state(head)
        follower = StreamFollower(ctx, self.cfg, start)  # type: ignore[arg-type]
        with self.lock:
            self.state = state
        self.status, self.error = "following", ""
        interval = self.settings.push_interval_ms / 1000
        try:
            while not self.stop.is_set():
                batch = follower.poll(50)
                if batch:
                    with self.lock:
                        for _seq, raw in batch:
                            try:
                                ev = E.decode_sequenced(raw)
                            except E.FrameError as exc:
                                state.malformed += 1
                                log.error("skipped malformed event: %s", exc.reason)
                                continue
                            state.apply(ev)
                    self.last_batch_mono = time.monotonic()
                if time.monotonic() >= self._next_publish:
                    self.publish()
                    self._next_publish = time.monotonic() + interval
        finally:
            follower.close()

    def publish(self) -> None:
        """Render the view, the metrics and the health body from the state (the state's thread)."""
        with self.lock:
            st = self.state
            view = st.view() if st is not None else {}
            metrics = st.prometheus() if st is not None else ""
            health = st.health() if st is not None else {"last_seq": 0, "head_seq": 0, "lag": 0}
        view["status"] = {"follower": self.status, "error": self.error, "resyncs": self.resyncs}
        self.view_text = json.dumps(view, separators=(",", ":"))
        self.metrics_text = metrics
        self.health_body = health

    # -- reading (any thread): the last published texts, no lock
    def view_json(self) -> str:
        return self.view_text

    def health(self) -> tuple[bool, dict[str, Any]]:
        body = dict(self.health_body)
        idle_s = round(time.monotonic() - self.last_batch_mono, 3)
        ok = self.status == "following" and body["lag"] <= 10_000 and idle_s < 5.0
        body.update(ok=ok, status=self.status, error=self.error, idle_s=idle_s)
        return ok, body

    def metrics(self) -> str:
        up = 1 if self.status == "following" else 0
        return self.metrics_text + (
            "# HELP atomic_mesh_dashboard_following 1 while the dashboard follows the stream.\n"
            "# TYPE atomic_mesh_dashboard_following gauge\n"
            f"atomic_mesh_dashboard_following {up}\n"
        )


# ---------------------------------------------------------------- HTTP
def _host_ok(request: web.Request, allow_remote: bool) -> bool:
    if allow_remote:
        return True
    host = request.host.rsplit(":", 1)[0] if not request.host.endswith("]") else request.host
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_app(hub: Hub, allow_remote: bool = False) -> web.Application:
    clients: set[Client] = set()

    @web.middleware
    async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            return web.Response(status=405, text="read-only dashboard\n", headers={"Allow": "GET, HEAD"})
        if not _host_ok(request, allow_remote):
            return web.Response(status=421, text="unexpected Host header\n")
        resp = await handler(request)
        for k, v in SECURITY_HEADERS.items():
            resp.headers.setdefault(k, v)
        return resp

    async def index(_request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html")

    async def api_state(_request: web.Request) -> web.Response:
        return web.Response(text=hub.view_json(), content_type="application/json")

    async def health(_request: web.Request) -> web.Response:
        ok, body = hub.health()
        return web.json_response(body, status=200 if ok else 503)

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(text=hub.metrics(), headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    async def ws_handler(request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is not None and not allow_remote:
            o = origin.split("://", 1)[-1]
            if o != request.host:
                return web.Response(status=403, text="cross-origin websocket refused\n")
        # No permessage-deflate: aiohttp sends a large compressed frame from a task of its
        # own, and a page closed mid-send left that task's error unretrieved (logged as an
        # ERROR with a traceback, seen in CI). The page is on loopback; compression saved nothing.
        ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=4096, compress=False)
        await ws.prepare(request)
        client = Client(ws)
        clients.add(client)
        sender = asyncio.create_task(client.run())
        try:
            client.offer(hub.view_json())
            async for msg in ws:  # nothing a page sends changes anything; read only to notice the close
                if msg.type == WSMsgType.ERROR:
                    break
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            clients.discard(client)
            client.closed = True
            client.wake.set()
            sender.cancel()
            try:
                await sender
            except (asyncio.CancelledError, Exception):
                pass
            if not ws.closed:
                try:
                    await ws.close()
                except Exception:  # the peer is already gone
                    pass
        return ws

    async def broadcaster(app: web.Application) -> Any:
        interval = hub.settings.push_interval_ms / 1000

        async def loop() -> None:
            last = None
            while True:
                await asyncio.sleep(interval)
                text = hub.view_json()
                if not clients or text is last:
                    continue
                last = text
                for c in list(clients):
                    c.offer(text)

        task = asyncio.create_task(loop())
        yield
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        for c in list(clients):
            try:
                await c.ws.close(code=1001, message=b"server shutdown")
            except Exception:
                pass

    app = web.Application(middlewares=[guard])
    app[CLIENTS] = clients
    app.router.add_get("/", index)
    app.router.add_get("/ws", ws_handler)
    app.router.add_get("/api/state", api_state)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_static("/static/", STATIC, show_index=False, follow_symlinks=False)
    app.cleanup_ctx.append(broadcaster)
    return app


class Client:
    """One websocket: the latest view waits in a one-slot mailbox, so a slow or dead
    client only ever misses updates; it never blocks the others."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.pending: str | None = None
        self.wake = asyncio.Event()
        self.closed = False
        self.sent = 0
        self.dropped = 0

    def offer(self, text: str) -> None:
        if self.pending is not None:
            self.dropped += 1
        self.pending = text
        self.wake.set()

    async def run(self) -> None:
        while not self.closed:
            await self.wake.wait()
            self.wake.clear()
            text, self.pending = self.pending, None
            if text is None or self.ws.closed:
                continue
            try:
                await self.ws.send_str(text)
                self.sent += 1
            except (ConnectionError, RuntimeError) as exc:  # closed under us: the handler cleans up
                log.debug("websocket send failed: %s", exc)
                self.closed = True
                return


# ---------------------------------------------------------------- process
def build_parser() -> argparse.ArgumentParser:
    p = runtime.base_parser("python -m services.dashboard", "Live, read-only dashboard of the mesh (HTTP + WebSocket).")
    p.add_argument(
        "--host", help="address to bind (default dashboard.host, 127.0.0.1); loopback only without --allow-remote"
    )
    p.add_argument("--port", type=int, help="port to bind (default dashboard.port, 3000)")
    p.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow binding a non-loopback address (the dashboard has no authentication)",
    )
    return p


async def serve(hub: Hub, host: str, port: int, allow_remote: bool) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = {"n": 0}

    def on_signal(signum: int) -> None:
        signals["n"] += 1
        if signals["n"] > 1:
            os._exit(128 + signum)  # a second signal escalates
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    runner = web.AppRunner(make_app(hub, allow_remote), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", host, port, exc.strerror or exc)
        await runner.cleanup()
        return runtime.EXIT_UNAVAILABLE
    hub.start()
    log.info("dashboard on http://%s:%d/ (read-only)", host if ":" not in host else f"[{host}]", port)
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        await runner.cleanup()
        await loop.run_in_executor(None, hub.close)
    return runtime.EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    runtime.setup_logging("dashboard", args.log_level)
    cfg = runtime.load_config(args.config, log)
    if cfg is None:
        return runtime.EXIT_CONFIG
    settings = settings_of(cfg)
    host = args.host or settings.host
    port = args.port if args.port is not None else settings.port
    if not 0 < port < 65536:
        log.error("port %d is out of range 1..65535", port)
        return runtime.EXIT_USAGE
    try:
        check_bind(host, args.allow_remote)
    except RemoteBindRefused as exc:
        log.error("%s", exc)
        print(f"error: {exc}", file=sys.stderr)
        return runtime.EXIT_USAGE
    if args.allow_remote and not is_loopback_host(host):
        log.warning("binding %s with --allow-remote: anyone who can reach it can read the trading state", host)
    return asyncio.run(serve(Hub(cfg, settings), host, port, args.allow_remote))
