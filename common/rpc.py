"""Request/reply over DEALER -> ROUTER for the two control endpoints.

Requests and replies are msgpack arrays `[request_id, op, *args]`. The client
never blocks forever: a call either gets its own reply (matched by id, so a
late reply to an earlier timed-out call is discarded) or returns None at its
deadline. Operations:

* sequencer_ctl: `hello(source)` -> `[last_source_seq, head_seq, epoch]`;
  `range(from, to, max_n)` -> `[[payload, ...], head_seq]` from the journal.
* logger_ctl: `range(from, to, max_n)` -> `[[payload, ...], last_seq]` from the log;
  `head()` -> `[last_seq]`.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

import msgspec
import zmq

from common import sockets
from common.config import MeshConfig

log = logging.getLogger(__name__)
_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder(list)


class RpcClient:
    def __init__(self, ctx: zmq.Context, cfg: MeshConfig, endpoint: str) -> None:
        self.ctx, self.cfg, self.endpoint = ctx, cfg, endpoint
        self._ids = itertools.count(1)
        self.sock = sockets.dealer(ctx, cfg, endpoint)

    def call(self, op: str, *args: Any, timeout_ms: int = 1000) -> list[Any] | None:
        rid = next(self._ids)
        deadline = time.monotonic() + timeout_ms / 1000
        # A DEALER with no live peer blocks a send (on tcp a peer that refused our CURVE
        # handshake leaves none): wait for room only until the deadline.
        if not self.sock.poll(timeout_ms, zmq.POLLOUT):
            return None
        try:
            self.sock.send(_enc.encode([rid, op, *args]), zmq.NOBLOCK)
        except zmq.Again:
            return None
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not poller.poll(max(1, int(left * 1000))):
                return None
            reply = _dec.decode(self.sock.recv())
            if reply and reply[0] == rid:
                if reply[1] == "error":
                    raise RuntimeError(f"{self.endpoint} {op}: {reply[2]}")
                return list(reply[2:])

    def close(self) -> None:
        self.sock.close(linger=0)


def serve_one(sock: zmq.Socket, handler: Callable[[str, list[Any]], list[Any]]) -> None:
    """Answer one pending request on a ROUTER socket (call when it is readable)."""
    frames = sock.recv_multipart()
    ident, body = frames[0], frames[-1]
    try:
        req = _dec.decode(body)
        rid, op, args = req[0], req[1], req[2:]
    except (msgspec.DecodeError, IndexError, TypeError):
        log.warning("rejected malformed control request of %d bytes", len(body))
        return
    try:
        reply = [rid, op, *handler(op, args)]
    except Exception as exc:  # a bad request must not take the service down
        log.warning("control request %s failed: %s", op, exc)
        reply = [rid, "error", str(exc)]
    sock.send_multipart([ident, _enc.encode(reply)])
