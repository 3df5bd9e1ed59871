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
`row_batches()` hands over an input's row batches (`Input.row_batches`, the
market run's own rows) in shared memory: the child copies each into a free
slot of a ring mapped before the fork and sends the slot's number; the parent
reads the batch where it lies and hands the slot back when it is asked for
the next batch, before it waits for one. (Through the pipe, each batch was
copied into the kernel and out again: about 20 us a batch on the parent's
side.) A batch larger than a slot goes through the pipe instead, received
into one reused buffer.

Nothing about the run changes: the items are the same objects, decoded from
their own encoding, in the same order (one producer, one FIFO pipe), and the
child's input accounting (lines read, accepted, dropped, rejected) is sent back
when it is done. An exception in the child is re-raised in the parent after
the items read before it. The parent holds the pipe's only read end: if it
stops early or dies, the child's next send fails and the child ends (a child
still alive 5 s after an early stop is terminated).
"""

from __future__ import annotations

import mmap
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
SLOTS = 8  # ring slots: enough for the child to run a few batches ahead
SLOT_BYTES = 1 << 19  # a synthetic batch (inputs.SYNTH_BATCH events) is about 300 KB
BATCH = 1024  # items per pipe message: large enough to amortize a message, small enough to start at once
_ITEMS, _DONE, _ERROR, _SLOT = b"I", b"D", b"E", b"S"
_enc = msgspec.msgpack.Encoder()


def available() -> bool:
    """Prefetching needs fork (the child inherits the input as built, nothing is pickled)."""
    return "fork" in multiprocessing.get_all_start_methods()


def by_default() -> bool:
    """The CLI's default: read ahead where it can overlap, i.e. with fork and 2+ CPUs."""
    return available() and (os.cpu_count() or 1) >= 2


def _produce(inner: Input, recv: Any, conn: Any, batch: int, ring: _Ring | None) -> None:
    # The fork copied the pipe's read end too: closing it here makes the parent's the only
    # one, so when the parent stops reading (or dies) our next send fails and we end.
    recv.close()
    if ring is not None:
        ring.back_send.close()  # (and the ring's slots come back on a pipe only the parent writes)
    buf: list[Item] = []
    sending = False  # inside a send: a failure there leaves nothing safe to send after it
    try:
        raw = None if ring is not None else inner.raw_batches()
        if ring is not None:
            made = inner.row_batches()
            if made is None:  # (the parent asked before the fork: the same input says the same)
                raise RuntimeError(f"{inner.describe()} made no row batches in the read-ahead child")
            for b in made:
                msg = ring.put(b.words)
                sending = True
                conn.send_bytes(msg if msg is not None else b.words.view(np.uint8))  # (rowbatch.HEAD_BYTES first)
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
        pass  # the parent stopped reading (or handing slots back): nothing to report to
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


class _Ring:
    """SLOTS slots of SLOT_BYTES in an anonymous shared mapping, which the forked child
    inherits, and a pipe on which the parent hands slots back to it."""

    def __init__(self, ctx: Any) -> None:
        self.mem = mmap.mmap(-1, SLOTS * SLOT_BYTES)  # MAP_SHARED: one memory for both processes
        self.back_recv, self.back_send = ctx.Pipe(duplex=False)
        self.free = list(range(SLOTS))  # the child's: slots it may fill
        self.held: int | None = None  # the parent's: the slot of the batch it gave last

    def put(self, words: np.ndarray) -> bytes | None:
        """(child) words copied into a free slot, once one is free: the message naming it;
        None if they do not fit in a slot."""
        n = words.nbytes
        if n > SLOT_BYTES:
            return None
        if not self.free:
            try:
                self.free.append(int.from_bytes(self.back_recv.recv_bytes(), "little"))
            except EOFError:  # the parent is gone: as a send to it would fail
                raise BrokenPipeError("the parent stopped handing slots back") from None
        k = self.free.pop()
        memoryview(self.mem)[k * SLOT_BYTES : k * SLOT_BYTES + n] = memoryview(words).cast("B")
        return _SLOT + k.to_bytes(4, "little") + n.to_bytes(4, "little")

    def take(self, payload: memoryview) -> memoryview:
        """(parent) The batch a slot message names, where it lies, held until release()."""
        k = int.from_bytes(payload[:4], "little")
        n = int.from_bytes(payload[4:8], "little")
        self.held = k
        return memoryview(self.mem)[k * SLOT_BYTES : k * SLOT_BYTES + n]

    def release(self) -> None:
        """(parent) The held slot back to the child: its batch is done with."""
        if self.held is not None:
            k, self.held = self.held, None
            try:
                self.back_send.send_bytes(k.to_bytes(4, "little"))
            except (BrokenPipeError, ConnectionResetError):
                pass  # the child has finished: it needs no more slots

    def close(self) -> None:
        self.back_send.close()
        self.back_recv.close()


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
        read where it arrived (its ring slot, or the receive buffer), which a later batch
        reuses once the next is asked for."""
        if self.inner.row_batches() is None:  # (a generator not started: nothing made)
            return None
        return (RowBatch.parse(payload) for payload in self._payloads(rows=True))

    def _payloads(self, rows: bool = False) -> Iterator[memoryview]:
        ctx = multiprocessing.get_context("fork")
        recv, send = ctx.Pipe(duplex=False)
        _widen(send)
        ring = _Ring(ctx) if rows else None
        proc = ctx.Process(
            target=_produce, args=(self.inner, recv, send, self.batch, ring), name="backtest-input", daemon=True
        )
        self.process = proc
        proc.start()
        send.close()  # the child holds the only writer: its exit is our EOF
        if ring is not None:
            ring.back_recv.close()  # ... and the only reader of the slots handed back
        try:
            buf = bytearray(1 << 16 if rows else 0)  # (rows only: received into it)
            while True:
                if ring is not None:
                    # Asked for the next batch, so done with the one given last: its slot goes
                    # back before we wait (a child that waits for a slot must get one).
                    ring.release()
                try:
                    if rows:
                        msg, buf = _receive_into(recv, buf)
                    else:
                        msg = memoryview(recv.recv_bytes())
                except EOFError:
                    proc.join(timeout=5)
                    raise RuntimeError(f"the input process ended without finishing (exit {proc.exitcode})") from None
                kind, payload = msg[:1], msg[1:]
                if kind == _SLOT and ring is not None:
                    yield ring.take(payload)
                elif msg[:8] == rowbatch.HEAD_BYTES:  # a row batch too large for a slot
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
            if ring is not None:
                ring.close()  # (the mapping goes with the last batch that views it)
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
