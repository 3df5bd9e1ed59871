"""A local stand-in for Binance spot: a minimal RFC 6455 websocket server plus the REST depth endpoint.

Stdlib only (socket, threading, hashlib/base64 for the handshake). It plays a
list of captured combined-stream messages to whoever connects, keeps the
"exchange" order book up to date as the diffs go out (or are skipped), and
answers ``GET /api/v3/depth`` with that book, so a client that resyncs after a
gap gets a snapshot that matches the stream it is reading.

Faults, for tests: `skip` (indices of messages never sent: an injected gap),
`drop_at` (close the connection abruptly once, at that index or later, once
`drop_after_snapshots` snapshots were served; the next connection continues
after `lost_on_drop` further messages, at least one diff, are lost),
and a ping sent to every new connection (the client must answer with a pong).
Binds 127.0.0.1 on ephemeral ports only.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import socket
import struct
import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def load_capture(path: str | Path) -> tuple[list[bytes], dict]:
    """(combined-stream messages, the REST snapshot) of a raw capture file."""
    messages: list[bytes] = []
    snapshot: dict = {}
    with gzip.open(path, "rb") as f:
        for line in f:
            payload = line.rstrip(b"\n").partition(b" ")[2]
            if payload.startswith(b'{"stream"'):
                messages.append(payload)
            else:
                snapshot = json.loads(payload)
    return messages, snapshot


def frame(opcode: int, payload: bytes) -> bytes:
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([n])
    elif n < 1 << 16:
        head += bytes([126]) + struct.pack(">H", n)
    else:
        head += bytes([127]) + struct.pack(">Q", n)
    return head + payload


class ExchangeBook:
    """The server's book: decimal strings as Binance sends them, sorted numerically."""

    def __init__(self, snapshot: dict) -> None:
        self.last_id = snapshot["lastUpdateId"]
        self.bids = {p: q for p, q in snapshot["bids"]}
        self.asks = {p: q for p, q in snapshot["asks"]}

    def apply(self, data: dict) -> None:
        if data["u"] <= self.last_id:
            return
        for side, levels in ((self.bids, data["b"]), (self.asks, data["a"])):
            for p, q in levels:
                if Decimal(q) == 0:
                    side.pop(p, None)
                else:
                    side[p] = q
        self.last_id = data["u"]

    def snapshot(self, limit: int) -> dict:
        bids = sorted(self.bids.items(), key=lambda kv: Decimal(kv[0]), reverse=True)[:limit]
        asks = sorted(self.asks.items(), key=lambda kv: Decimal(kv[0]))[:limit]
        return {"lastUpdateId": self.last_id, "bids": [list(x) for x in bids], "asks": [list(x) for x in asks]}


class FakeBinance:
    def __init__(
        self,
        messages: list[bytes],
        snapshot: dict,
        skip: set[int] | None = None,
        drop_at: int | None = None,
        lost_on_drop: int = 0,
        drop_after_snapshots: int = 0,
    ) -> None:
        self.messages = messages
        self.book = ExchangeBook(snapshot)
        self.skip = set(skip or ())
        self.drop_at = drop_at
        self.lost_on_drop = lost_on_drop
        self.drop_after_snapshots = drop_after_snapshots
        self.pos = 0
        self.lock = threading.Lock()
        self.connections = 0
        self.paths: list[str] = []
        self.pongs = 0
        self.snapshot_requests = 0
        self.sent = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._socks: list[socket.socket] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.ws_port = self.listener.getsockname()[1]
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                url = urlparse(self.path)
                if url.path != "/api/v3/depth":
                    self.send_error(404)
                    return
                limit = int(parse_qs(url.query).get("limit", ["100"])[0])
                with server.lock:
                    server.snapshot_requests += 1
                    body = json.dumps(server.book.snapshot(limit), separators=(",", ":")).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True
        self.rest_port = self.http.server_address[1]

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    def start(self) -> FakeBinance:
        for target in (self._accept_loop, self.http.serve_forever):
            t = threading.Thread(target=target, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def close(self) -> None:
        self._stop.set()
        self.http.shutdown()
        self.http.server_close()
        self.listener.close()
        for s in self._socks:
            try:
                s.close()
            except OSError:
                pass
        for t in self._threads:
            t.join(timeout=2)

    def __enter__(self) -> FakeBinance:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ websocket side
    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._socks.append(conn)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    def _handshake(self, conn: socket.socket) -> bool:
        conn.settimeout(5)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                return False
            data += chunk
        lines = data.split(b"\r\n")
        path = lines[0].split(b" ")[1].decode()
        headers = {}
        for ln in lines[1:]:
            k, sep, v = ln.partition(b":")
            if sep:
                headers[k.strip().lower()] = v.strip()
        key = headers.get(b"sec-websocket-key")
        if key is None:
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            return False
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        conn.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        self.paths.append(path)
        return True

    def _read_frames(self, conn: socket.socket, send_lock: threading.Lock, closed: threading.Event) -> None:
        """Client -> server: masked frames; answer ping and close, count pongs."""
        buf = b""
        conn.settimeout(0.2)
        while not closed.is_set() and not self._stop.is_set():
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
            while len(buf) >= 2:
                opcode = buf[0] & 0x0F
                n = buf[1] & 0x7F
                off = 2
                if n == 126:
                    if len(buf) < 4:
                        break
                    n, off = struct.unpack(">H", buf[2:4])[0], 4
                elif n == 127:
                    if len(buf) < 10:
                        break
                    n, off = struct.unpack(">Q", buf[2:10])[0], 10
                masked = buf[1] & 0x80
                end = off + (4 if masked else 0) + n
                if len(buf) < end:
                    break
                mask = buf[off : off + 4] if masked else b"\0\0\0\0"
                raw = buf[off + (4 if masked else 0) : end]
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(raw))
                buf = buf[end:]
                if opcode == 0x8:
                    closed.set()
                    try:
                        with send_lock:
                            conn.sendall(frame(0x8, payload[:2]))
                    except OSError:
                        pass
                    return
                if opcode == 0x9:
                    with send_lock:
                        conn.sendall(frame(0xA, payload))
                elif opcode == 0xA:
                    self.pongs += 1
        closed.set()

    def _serve(self, conn: socket.socket) -> None:
        try:
            if not self._handshake(conn):
                conn.close()
                return
        except OSError:
            conn.close()
            return
        self.connections += 1
        send_lock = threading.Lock()
        closed = threading.Event()
        reader = threading.Thread(target=self._read_frames, args=(conn, send_lock, closed), daemon=True)
        reader.start()
        conn.settimeout(5)
        try:
            with send_lock:
                conn.sendall(frame(0x9, b"are you there"))
            while not closed.is_set() and not self._stop.is_set():
                with self.lock:
                    if self.pos >= len(self.messages):
                        msg = None
                    elif (
                        self.drop_at is not None
                        and self.pos >= self.drop_at
                        and self.snapshot_requests >= self.drop_after_snapshots
                    ):
                        self.drop_at = None
                        # the connection dies; the exchange moves on meanwhile (at least one diff)
                        lost = diffs = 0
                        while self.pos < len(self.messages) and (lost < self.lost_on_drop or not diffs):
                            diffs += b"@depth@" in self.messages[self.pos][:40]
                            self._advance()
                            lost += 1
                        msg = b"DROP"
                    elif self.drop_at is not None and self.pos >= self.drop_at:
                        # Hold the stream at the drop point until the client has asked for
                        # the snapshots the scenario needs: a slow client must see the same
                        # drop as a fast one.
                        msg = b"WAIT"
                    else:
                        msg = self._advance()
                if msg == b"WAIT":
                    closed.wait(0.01)
                    continue
                if msg == b"DROP":
                    conn.shutdown(socket.SHUT_RDWR)
                    conn.close()
                    return
                if msg is None:
                    closed.wait(0.05)  # the capture is over: keep the connection open, idle
                    continue
                if msg:
                    with send_lock:
                        conn.sendall(frame(0x1, msg))
                    self.sent += 1
        except OSError:
            pass
        finally:
            closed.set()
            reader.join(timeout=1)
            try:
                conn.close()
            except OSError:
                pass

    def _advance(self) -> bytes:
        """Move the exchange one message on (under the lock); b"" when the message is skipped."""
        msg = self.messages[self.pos]
        idx = self.pos
        self.pos += 1
        if b"@depth@" in msg[:40]:
            self.book.apply(json.loads(msg)["data"])
        return b"" if idx in self.skip else msg
