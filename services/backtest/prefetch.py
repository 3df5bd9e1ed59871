"""Read an input ahead in a child process, so parsing overlaps the engine on a second core.

The engine is one Python thread; what feeds it (the capture's JSON through the
feed's Normalizer, or the synthetic generator) is Python too and, run inline,
costs as much time per event as a core does. `Prefetched(inner)` runs
`inner.items()` in a forked child and hands the items over a pipe in msgpack
batches (one msgspec call packs a batch, one unpacks it), so the two overlap.
`raw_batches()` hands the batches over undecoded: the backtest's market run
scans their bytes as they are, and decodes a batch only when a core needs
one of its items (decoding cost about 1.5 us an item, three times what the
engine then spent on it). An input that makes its own batches
(`Input.raw_batches`, the synthetic market) sends those as they are, and
`row_batches()` sends an input's row batches (`Input.row_batches`, the
market run's own rows): the parent receives each into one reused buffer and
reads it there.

Nothing about the run changes: the items are the same objects, decoded from
their own encoding, in the same order (one producer, one FIFO pipe), and the
child's input accounting (lines read, accepted, dropped, rejected) is sent back
when it is done. An exception in the child is re-raised in the parent after
the items read before it. The parent holds the pipe's only read end: if it
stops early or dies, the child's next send fails and the child ends (a child
still alive 5 s after an early stop is terminated).
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
from collections.abc import Iterator
from typing import Any

import msgspec
import numpy as np

from common.hotpath import rowbatch
from common.hotpath.rowbatch import RowBatch
from services.backtest.inputs import Input, decode_batch
from services.feed.binance import Item

PIPE_BYTES = 1 << 20
BATCH = 1024  # items per pipe message: large enough to amortize a message, small enough to start at once
_ITEMS, _DONE, _ERROR = b"I", b"D", b"E"
_ROWS = rowbatch.TAG.to_bytes(1, "little")  # a row batch's first byte
_enc = msgspec.msgpack.Encoder()


def available() -> bool:
    """Prefetching needs fork (the child inherits the input as built, nothing is pickled)."""
    return "fork" in multiprocessing.get_all_start_methods()


def by_default() -> bool:
    """The CLI's default: read ahead where it can overlap, i.e. with fork and 2+ CPUs."""
    return available() and (os.cpu_count() or 1) >= 2


def _produce(inner: Input, recv: Any, conn: Any, batch: int, rows: bool) -> None:
    # The fork copied the pipe's read end too: closing it here makes the parent's the only
    # one, so when the parent stops reading (or dies) our next send fails and we end.
    recv.close()
    buf: list[Item] = []
    sending = False  # inside a send: a failure there leaves nothing safe to send after it
    try:
        raw = None if rows else inner.raw_batches()
        if rows:
            for b in inner.row_batches() or ():
                sending = True
                conn.send_bytes(b.words.view(np.uint8))  # (its first byte is _ROWS)
                sending = False
        elif raw is not None:  # already encoded, whole batches
            for payload in raw:
                sending = True
                conn.send_bytes(_ITEMS + payload)
                sending = False
        else:
            for item in inner.items():
                buf.append(item)
                if len(buf) >= batch:
                    sending = True
                    conn.send_bytes(_ITEMS + _enc.encode(buf))
                    sending = False
                    buf.clear()
        sending = True
        if buf:
            conn.send_bytes(_ITEMS + _enc.encode(buf))
        buf.clear()
        conn.send_bytes(_DONE + pickle.dumps(inner.accounting()))
    except (BrokenPipeError, ConnectionResetError):
        pass  # the parent stopped reading: nothing to report to
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent
        if not sending:
            try:
                if buf:  # what was read before the failure, then the failure: as inline
                    conn.send_bytes(_ITEMS + _enc.encode(buf))
                conn.send_bytes(_ERROR + _pickled(exc))
            except Exception:  # noqa: BLE001 - the parent then reports an unfinished input
                pass
    finally:
        conn.close()


def _pickled(exc: BaseException) -> bytes:
    """The exception as the parent will raise it: itself if it survives a pickle round trip
    (many don't: their __init__ wants other arguments than .args), else a RuntimeError
    naming it."""
    try:
        payload = pickle.dumps(exc)
        pickle.loads(payload)
        return payload
    except Exception:  # noqa: BLE001
        return pickle.dumps(RuntimeError(f"{type(exc).__name__}: {exc}"))


def _widen(conn: Any) -> None:
    """A pipe that holds several batches: at Linux's default 64 KiB a row batch (about 74 KB)
    took two wake-ups of each side."""
    try:
        import fcntl

        fcntl.fcntl(conn.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (ImportError, AttributeError, OSError):
        pass  # another OS, or a system limit below it: the default pipe works, only slower


def _receive_into(recv: Any, buf: bytearray) -> tuple[memoryview, bytearray]:
    """The next message, received into buf (or a larger buffer that replaces it)."""
    try:
        n = recv.recv_bytes_into(buf)
    except multiprocessing.BufferTooShort as exc:
        msg = exc.args[0]
        n = len(msg)
        buf = bytearray(max(n, 2 * len(buf)))
        buf[:n] = msg
    return memoryview(buf)[:n], buf


class Prefetched(Input):
    """`inner`'s items, produced in a forked child process (see the module docstring)."""

    def __init__(self, inner: Input, batch: int = BATCH) -> None:
        if not available():
            raise RuntimeError("prefetching needs the 'fork' start method")
        self.inner = inner
        self.name = inner.name
        self.total = inner.total
        self.batch = batch
        self._accounting: dict[str, Any] | None = None
        self.process: Any = None  # the last run's child (multiprocessing.Process), for diagnostics

    def items(self) -> Iterator[Item]:
        for payload in self._payloads():
            yield from decode_batch(payload)

    def raw_batches(self) -> Iterator[bytes]:
        """The batches as the child sent them, undecoded."""
        return (bytes(payload) for payload in self._payloads())

    def row_batches(self) -> Iterator[RowBatch] | None:
        """The inner input's row batches, made in the child; None if it makes none. Each is
        read where it was received, in a buffer the next one reuses."""
        if self.inner.row_batches() is None:  # (a generator not started: nothing made)
            return None
        return (RowBatch.parse(payload) for payload in self._payloads(rows=True))

    def _payloads(self, rows: bool = False) -> Iterator[memoryview]:
        ctx = multiprocessing.get_context("fork")
        recv, send = ctx.Pipe(duplex=False)
        _widen(send)
        proc = ctx.Process(
            target=_produce, args=(self.inner, recv, send, self.batch, rows), name="backtest-input", daemon=True
        )
        self.process = proc
        proc.start()
        send.close()  # the child holds the only writer: its exit is our EOF
        try:
            buf = bytearray(1 << 16)
            while True:
                try:
                    if rows:
                        msg, buf = _receive_into(recv, buf)
                    else:
                        msg = memoryview(recv.recv_bytes())
                except EOFError:
                    proc.join(timeout=5)
                    raise RuntimeError(f"the input process ended without finishing (exit {proc.exitcode})") from None
                kind, payload = msg[:1], msg[1:]
                if kind == _ROWS:
                    yield msg
                elif kind == _ITEMS:
                    yield payload
                elif kind == _DONE:
                    self._accounting = pickle.loads(payload)
                    return
                else:
                    raise pickle.loads(payload)
        finally:
            recv.close()
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
                proc.join()

    def accounting(self) -> dict[str, Any]:
        if self._accounting is None:
            raise RuntimeError("the input's accounting arrives when all its items have been read")
        return self._accounting

    def describe(self) -> str:
        return self.inner.describe() + " (read ahead in a child process)"
