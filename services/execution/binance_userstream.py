"""The Binance user-data websocket: one background reader thread, nothing else.

The thread only moves raw text frames into a queue; parsing and all adapter
state stay on the caller's thread (`BinanceAdapter.poll_user_stream`). It
connects to `<ws_base>/ws/<listenKey>`, and on any disconnect or failed
handshake reconnects with capped exponential backoff, asking the adapter for
a fresh listenKey when the handshake is refused. After every reconnect (not
the first connect) it queues `RECONNECTED`, so the adapter can reconcile the
orders it still tracks: events pushed while the socket was down are lost.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

import websocket

log = logging.getLogger("services.execution.binance.userstream")

RECONNECTED = object()  # queued after a reconnect: events may have been missed


class UserStream:
    def __init__(
        self,
        ws_base: str,
        listen_key: Callable[[bool], str],
        *,
        timeout_s: float = 5.0,
        backoff_min_s: float = 0.05,
        backoff_max_s: float = 30.0,
    ) -> None:
        self._ws_base = ws_base.rstrip("/")
        self._listen_key = listen_key  # (refresh) -> listenKey; "" when none can be had
        self._timeout_s = timeout_s
        self._backoff_min_s = backoff_min_s
        self._backoff_max_s = backoff_max_s
        self.messages: queue.Queue[object] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ws: websocket.WebSocket | None = None
        self._lock = threading.Lock()
        self.connects = 0
        self.failures = 0

    def __repr__(self) -> str:
        return f"UserStream(ws_base={self._ws_base!r}, connects={self.connects}, failures={self.failures})"

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="binance-userstream", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.kick()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def kick(self) -> None:
        """Close the current socket; the thread reconnects (used after a listenKey change)."""
        with self._lock:
            ws = self._ws
        if ws is not None:
            try:
                ws.abort()
            except Exception:  # noqa: BLE001 - closing a dead socket may fail any way
                pass

    @property
    def connected(self) -> bool:
        with self._lock:
            return self._ws is not None and self._ws.connected

    def _run(self) -> None:
        backoff = self._backoff_min_s
        refresh = False
        while not self._stop.is_set():
            key = ""
            try:
                key = self._listen_key(refresh)
            except Exception as exc:  # noqa: BLE001 - the thread must outlive any failure
                log.warning("user stream: listenKey unavailable: %s", type(exc).__name__)
            refresh = False
            ws = None
            if key:
                try:
                    ws = websocket.create_connection(f"{self._ws_base}/ws/{key}", timeout=self._timeout_s)
                except websocket.WebSocketBadStatusException as exc:
                    log.warning("user stream: handshake refused (%s); will ask for a new listenKey", exc.status_code)
                    refresh = True
                except (OSError, websocket.WebSocketException) as exc:
                    log.warning("user stream: connect failed: %s", type(exc).__name__)
            if ws is None:
                self.failures += 1
                if self._stop.wait(backoff):
                    break
                backoff = min(backoff * 2, self._backoff_max_s)
                continue
            with self._lock:
                self._ws = ws
            self.connects += 1
            if self.connects > 1:
                self.messages.put(RECONNECTED)
            log.info("user stream: connected (connection %d)", self.connects)
            backoff = self._backoff_min_s
            ws.settimeout(0.2)
            try:
                while not self._stop.is_set():
                    try:
                        msg = ws.recv()
                    except websocket.WebSocketTimeoutException:
                        continue
                    if isinstance(msg, bytes):
                        msg = msg.decode("utf-8", "replace")
                    if msg:
                        self.messages.put(msg)
                    elif not ws.connected:
                        break
            except (OSError, websocket.WebSocketException) as exc:
                log.info("user stream: disconnected: %s", type(exc).__name__)
            finally:
                with self._lock:
                    self._ws = None
                try:
                    ws.close(timeout=0.2)
                except Exception:  # noqa: BLE001
                    pass
            if not self._stop.is_set():
                self.failures += 1
                if self._stop.wait(backoff):
                    break
                backoff = min(backoff * 2, self._backoff_max_s)
