"""The append-only event log: the sequencer's journal and the logger's archive.

On disk a log is a directory of segments named by the first sequence number
they hold (`00000000000000000001.seg`). A segment is a run of records:

    u32 little-endian payload length | u64 xxh3_64(payload) | payload

where the payload is one encoded `Sequenced` event, byte for byte as it was
published. A batch of records goes to the kernel in one write(), so a process
crash leaves whole records (only a power loss can tear one); the fsync policy
decides how often the page cache is forced to disk.

Reading never guesses. A record that runs past the end of the last segment,
or fails its checksum as the last thing in it, is a *torn tail*: recovery
truncates it (it was never acknowledged as durable). Anything else that fails
-- a bad checksum followed by more data, an absurd length, damage in a sealed
segment -- is *corruption*: it is reported with the segment and byte offset,
and nothing after it is trusted or silently skipped.
"""

from __future__ import annotations

import bisect
import os
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import xxhash

from common.events import FrameError, decode_head

HEADER = struct.Struct("<IQ")
INDEX_EVERY = 256
MAX_RECORD = 16 << 20
SUFFIX = ".seg"
_hash = xxhash.xxh3_64_intdigest


class LogDamaged(Exception):
    def __init__(self, damage: Damage) -> None:
        super().__init__(str(damage))
        self.damage = damage


@dataclass(frozen=True)
class Damage:
    segment: str
    offset: int
    reason: str
    torn_tail: bool

    def __str__(self) -> str:
        kind = "torn tail" if self.torn_tail else "corruption"
        return f"{kind} in {self.segment} at byte {self.offset}: {self.reason}"

    def as_dict(self) -> dict[str, object]:
        return {"segment": self.segment, "offset": self.offset, "reason": self.reason, "torn_tail": self.torn_tail}


def frame_record(payload: bytes) -> bytes:
    return HEADER.pack(len(payload), _hash(payload)) + payload


def segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}{SUFFIX}"


def list_segments(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.name.endswith(SUFFIX) and p.name[:-4].isdigit())


def scan(buf: bytes | memoryview, segment: str, last_segment: bool) -> Iterator[tuple[int, bytes]]:
    """Yield (offset, payload) of every good record; raise LogDamaged at the first bad one."""
    view = memoryview(buf)
    end = len(view)
    off = 0
    while off < end:
        if end - off < HEADER.size:
            raise LogDamaged(Damage(segment, off, f"{end - off} bytes, less than a record header", last_segment))
        length, digest = HEADER.unpack_from(view, off)
        body_end = off + HEADER.size + length
        if length == 0 or length > MAX_RECORD:
            zeros = not any(view[off:])
            raise LogDamaged(Damage(segment, off, f"impossible record length {length}", last_segment and zeros))
        if body_end > end:
            # A write cut short looks like this, but so does a flipped bit in
            # a length field: only call it torn when no good record follows.
            torn = last_segment and not _good_record_after(view, off + 1)
            raise LogDamaged(Damage(segment, off, f"record of {length} bytes runs past the end", torn))
        payload = bytes(view[off + HEADER.size : body_end])
        if _hash(payload) != digest:
            torn = last_segment and body_end == end
            raise LogDamaged(Damage(segment, off, "checksum mismatch", torn))
        yield off, payload
        off = body_end


_SEQUENCED_MARK = 0x9A  # msgpack fixarray of 10: every payload is a Sequenced event


def _good_record_after(view: memoryview, start: int) -> bool:
    """Is there any checksum-valid record starting after `start`? (damage triage only)"""
    end = len(view)
    pos = start
    raw = bytes(view)
    while True:
        pos = raw.find(bytes([_SEQUENCED_MARK]), pos + HEADER.size)
        if pos < 0:
            return False
        hdr = pos - HEADER.size
        length, digest = HEADER.unpack_from(raw, hdr)
        if 0 < length <= MAX_RECORD and pos + length <= end and _hash(raw[pos : pos + length]) == digest:
            return True
        pos = pos - HEADER.size + 1


@dataclass
class Tail:
    """Where a log ends after recovery."""

    last_seq: int = 0
    last_payload: bytes | None = None
    truncated: Damage | None = None
    segments: int = 0


def recover(directory: Path) -> Tail:
    """Find the last good record, truncating a torn tail; raise LogDamaged on corruption.

    Only the newest segment is read in full: older ones were sealed when the
    writer rolled, and a range reader will report any damage in them.
    """
    directory.mkdir(parents=True, exist_ok=True)
    segs = list_segments(directory)
    tail = Tail(segments=len(segs))
    while segs:
        last = segs[-1]
        data = last.read_bytes()
        good_end = 0
        try:
            for off, payload in scan(data, last.name, last_segment=True):
                good_end = off + HEADER.size + len(payload)
                tail.last_payload = payload
        except LogDamaged as exc:
            if not exc.damage.torn_tail:
                raise
            tail.truncated = exc.damage
            with open(last, "r+b") as fh:
                fh.truncate(good_end)
                os.fsync(fh.fileno())
        if tail.last_payload is None:
            # A segment with no whole record carries nothing: drop it and look
            # at the previous one (a crash right after a roll).
            last.unlink()
            segs.pop()
            tail.segments -= 1
            continue
        break
    if tail.last_payload is not None:
        tail.last_seq = decode_head(tail.last_payload).seq
    return tail


class LogWriter:
    """Appends batches of records to the newest segment, rolling at segment_bytes."""

    def __init__(
        self, directory: Path, segment_bytes: int, fsync: str = "none", fsync_interval_ms: int = 100, last_seq: int = 0
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self.fsync_interval_ns = fsync_interval_ms * 1_000_000
        self._fd = -1
        self._size = 0
        self._since_index = 0
        self._last_sync = time.monotonic_ns()
        self._dirty = False
        self.last_seq = last_seq  # as found by recover()
        self.durable_seq = last_seq  # highest seq known to be fsynced (recovered records are on disk)
        # Sparse index of the segments this writer has seen: (seq, segment, byte offset)
        # every INDEX_EVERY records, so a range read seeks instead of scanning.
        self.index: list[tuple[int, Path, int]] = []
        segs = list_segments(self.directory)
        if segs:
            self._open(segs[-1])
            self._index_segment(segs[-1])

    def _open(self, path: Path) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._size = os.fstat(self._fd).st_size
        self.current = path

    def _index_segment(self, seg: Path) -> None:
        data = seg.read_bytes()
        n = 0
        for off, payload in scan(data, seg.name, last_segment=True):
            if n % INDEX_EVERY == 0:
                self.index.append((decode_head(payload).seq, seg, off))
            n += 1
        self._since_index = n % INDEX_EVERY

    def locate(self, seq: int) -> tuple[Path, int] | None:
        """Segment and offset of an indexed record at or before `seq`, if this writer indexed one."""
        i = bisect.bisect_right(self.index, (seq, Path("~"), 1 << 62)) - 1
        if i < 0:
            return None
        _s, seg, off = self.index[i]
        return seg, off

    def append(self, records: list[tuple[int, bytes]]) -> None:
        """Append (seq, payload) records, in seq order, with one write per segment."""
        if not records:
            return
        if self._fd < 0 or self._size >= self.segment_bytes:
            self._roll(records[0][0])
        out = bytearray()
        for seq, payload in records:
            if self._size + len(out) >= self.segment_bytes and out:
                self._write(out)
                out = bytearray()
                self._roll(seq)
            if self._since_index == 0:
                self.index.append((seq, self.current, self._size + len(out)))
            self._since_index = (self._since_index + 1) % INDEX_EVERY
            out += HEADER.pack(len(payload), _hash(payload))
            out += payload
            self.last_seq = seq
        self._write(out)
        self._maybe_sync()

    def _write(self, buf: bytearray) -> None:
        view = memoryview(buf)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self._size += len(buf)
        self._dirty = True

    def _roll(self, first_seq: int) -> None:
        if self._fd >= 0:
            os.fsync(self._fd)  # a sealed segment is always durable
        self._open(self.directory / segment_name(first_seq))
        self._since_index = 0  # every segment's first record is indexed
        _fsync_dir(self.directory)

    def _maybe_sync(self) -> None:
        if self.fsync == "batch" or (
            self.fsync == "interval" and time.monotonic_ns() - self._last_sync >= self.fsync_interval_ns
        ):
            self.sync()

    def sync(self) -> None:
        if self._fd >= 0 and self._dirty:
            os.fdatasync(self._fd)
            self._dirty = False
        self._last_sync = time.monotonic_ns()
        self.durable_seq = self.last_seq

    def close(self) -> None:
        if self._fd >= 0:
            if self.fsync != "none":
                self.sync()
            os.close(self._fd)
            self._fd = -1


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_range(
    directory: Path, from_seq: int, to_seq: int | None = None, start: tuple[Path, int] | None = None
) -> Iterator[tuple[int, bytes]]:
    """Yield (seq, payload) for from_seq <= seq <= to_seq, in log order.

    `start` (from LogWriter.locate) is a segment and offset at or before
    from_seq: reading begins there. Without it the segment holding from_seq
    is found by name and scanned from its start. Records are read one at a
    time, so a short range costs a short read, not a whole segment.
    """
    segs = list_segments(directory)
    first = 0
    for i, seg in enumerate(segs):
        if int(seg.name[:-4]) <= from_seq:
            first = i
    offset = 0
    if start is not None and start[0] in segs:
        first, offset = segs.index(start[0]), start[1]
    for i in range(first, len(segs)):
        seg = segs[i]
        if to_seq is not None and int(seg.name[:-4]) > to_seq:
            return
        last_segment = i == len(segs) - 1
        for _off, payload in _scan_file(seg, offset if i == first else 0, last_segment):
            seq = decode_head(payload).seq
            if seq < from_seq:
                continue
            if to_seq is not None and seq > to_seq:
                return
            yield seq, payload


def _scan_file(seg: Path, offset: int, last_segment: bool) -> Iterator[tuple[int, bytes]]:
    """Like scan(), from a byte offset, reading the file incrementally."""
    with open(seg, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        end = fh.tell()
        fh.seek(offset)
        off = offset
        while off < end:
            header = fh.read(HEADER.size)
            if len(header) < HEADER.size:
                raise LogDamaged(Damage(seg.name, off, f"{len(header)} bytes, less than a record header", last_segment))
            length, digest = HEADER.unpack(header)
            if length == 0 or length > MAX_RECORD or off + HEADER.size + length > end:
                # Let the full scanner classify it (torn tail or corruption).
                fh.seek(off)
                rest = fh.read()
                for _ in scan(rest, seg.name, last_segment):
                    pass
                raise LogDamaged(Damage(seg.name, off, f"bad record length {length}", last_segment))
            payload = fh.read(length)
            if _hash(payload) != digest:
                torn = last_segment and off + HEADER.size + length == end
                raise LogDamaged(Damage(seg.name, off, "checksum mismatch", torn))
            yield off, payload
            off += HEADER.size + length


@dataclass
class CheckReport:
    path: str
    count: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    gaps: list[dict[str, object]] = field(default_factory=list)
    duplicates: int = 0
    damaged: Damage | None = None
    undecodable: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "count": self.count,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "gaps": self.gaps,
            "duplicates": self.duplicates,
            "damaged": self.damaged.as_dict() if self.damaged else False,
            "undecodable": self.undecodable,
        }

    @property
    def ok(self) -> bool:
        return not self.gaps and not self.duplicates and self.damaged is None and not self.undecodable


def check(directory: Path) -> CheckReport:
    """Verify every record of a log: checksums, decoding, seq order, gaps, duplicates.

    A gap is `declared` when a GapDeclared event from the stream itself
    (source "logger" or "sequencer") names exactly that range of global seqs.
    """
    from common.events import GapDeclared, decode_sequenced

    report = CheckReport(path=str(directory))
    segs = list_segments(directory)
    declared: set[tuple[int, int]] = set()
    expected: int | None = None
    for i, seg in enumerate(segs):
        try:
            for _off, payload in scan(seg.read_bytes(), seg.name, last_segment=i == len(segs) - 1):
                try:
                    ev = decode_sequenced(payload)
                except FrameError:
                    report.undecodable += 1
                    continue
                seq = ev.seq
                if isinstance(ev.body, GapDeclared) and ev.body.source in ("logger", "sequencer"):
                    declared.add((ev.body.from_seq, ev.body.to_seq))
                report.count += 1
                if report.first_seq is None:
                    report.first_seq = seq
                if expected is not None and seq < expected:
                    report.duplicates += 1
                    continue
                if expected is not None and seq > expected:
                    report.gaps.append({"from": expected, "to": seq - 1, "declared": False})
                expected = seq + 1
                report.last_seq = seq
        except LogDamaged as exc:
            report.damaged = exc.damage
            break
    for gap in report.gaps:
        gap["declared"] = (gap["from"], gap["to"]) in declared
    return report


def follow(directory: Path, from_seq: int, poll_s: float = 0.05, stop=lambda: False) -> Iterator[tuple[int, bytes]]:  # type: ignore[no-untyped-def]
    """Yield records with seq >= from_seq, then keep yielding new ones as they are appended.

    An incomplete record at the end of the newest segment is the writer
    mid-append: it is waited for, not reported. Rolling to a new segment is
    noticed by its appearance in the directory.
    """
    seg_idx = 0
    segs = list_segments(directory)
    for i, seg in enumerate(segs):
        if int(seg.name[:-4]) <= from_seq:
            seg_idx = i
    offset = 0
    while not stop():
        segs = list_segments(directory)
        if seg_idx >= len(segs):
            time.sleep(poll_s)
            continue
        seg = segs[seg_idx]
        with open(seg, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
        pos = 0
        while len(data) - pos >= HEADER.size:
            length, digest = HEADER.unpack_from(data, pos)
            end = pos + HEADER.size + length
            if end > len(data):
                break
            payload = data[pos + HEADER.size : end]
            if _hash(payload) != digest:
                raise LogDamaged(Damage(seg.name, offset + pos, "checksum mismatch", False))
            pos = end
            seq = decode_head(payload).seq
            if seq >= from_seq:
                yield seq, payload
        offset += pos
        if seg_idx + 1 < len(segs) and pos == len(data):
            seg_idx += 1
            offset = 0
            continue
        time.sleep(poll_s)


def recover_readonly_last(directory: Path) -> int:
    """Seq of the last good record, without repairing anything (for readers)."""
    segs = list_segments(directory)
    for seg in reversed(segs):
        last = 0
        try:
            for _off, payload in scan(seg.read_bytes(), seg.name, last_segment=True):
                last = decode_head(payload).seq
        except LogDamaged:
            pass
        if last:
            return last
    return 0
