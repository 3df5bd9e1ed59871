"""common.eventlog: segments, torn tails vs corruption, ranges, check, follow."""

from __future__ import annotations

import threading
import time
import types
from pathlib import Path

import pytest

from common import eventlog as L
from common import events as E

SMALL_SEG = 200  # a Clock record is ~30 bytes: a segment holds ~7 of them


def payload(seq: int, body: E._Body | None = None, source: str = "feed") -> bytes:
    return E.encode(
        E.Sequenced(E.CODEC_VERSION, seq, 1, seq, source, seq, f"k{seq}", seq * 10, seq * 10 + 1, body or E.Clock(seq))
    )


def write_log(
    d: Path, seqs: list[int], segment_bytes: int = SMALL_SEG, batch: int = 3, fsync: str = "none"
) -> dict[int, bytes]:
    w = L.LogWriter(d, segment_bytes, fsync=fsync)
    written = {}
    for i in range(0, len(seqs), batch):
        recs = [(s, payload(s)) for s in seqs[i : i + batch]]
        w.append(recs)
        written.update(recs)
    w.close()
    return written


def log_with_long_last_segment(d: Path) -> dict[int, bytes]:
    """Seqs 1..40: several small sealed segments, then a newest one holding many records."""
    written = write_log(d, list(range(1, 26)))
    written.update(write_log(d, list(range(26, 41)), segment_bytes=1 << 20))
    assert len(offsets(L.list_segments(d)[-1])) >= 15
    return written


def all_records(d: Path) -> list[tuple[int, bytes]]:
    return list(L.read_range(d, 0))


def offsets(seg: Path) -> list[int]:
    return [off for off, _ in L.scan(seg.read_bytes(), seg.name, last_segment=False)]


def snapshot(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in L.list_segments(d)}


# ---------------------------------------------------------------- write / read
def test_round_trip_across_segment_rolls(tmp_path: Path) -> None:
    seqs = list(range(1, 61))
    written = write_log(tmp_path, seqs)
    segs = L.list_segments(tmp_path)
    assert len(segs) >= 5, "segment_bytes should have forced several rolls"
    # Each segment is named by the first seq it holds, and no segment overshoots by more than one batch.
    for seg in segs:
        recs = list(L.scan(seg.read_bytes(), seg.name, last_segment=True))
        first_seq = E.decode_head(recs[0][1]).seq
        assert seg.name == L.segment_name(first_seq)
    got = all_records(tmp_path)
    assert [s for s, _ in got] == seqs
    assert all(p == written[s] for s, p in got)
    assert L.check(tmp_path).ok


def test_segment_file_format(tmp_path: Path) -> None:
    p = payload(1)
    write_log(tmp_path, [1], segment_bytes=1 << 20)
    (seg,) = L.list_segments(tmp_path)
    assert seg.name == "00000000000000000001.seg"
    data = seg.read_bytes()
    assert data == L.frame_record(p)
    length, digest = L.HEADER.unpack_from(data)
    assert length == len(p) and data[L.HEADER.size :] == p
    import xxhash

    assert digest == xxhash.xxh3_64_intdigest(p)


def test_one_batch_rolls_mid_batch(tmp_path: Path) -> None:
    # One append of many records still splits across segments at the boundary.
    w = L.LogWriter(tmp_path, SMALL_SEG)
    w.append([(s, payload(s)) for s in range(1, 31)])
    w.close()
    segs = L.list_segments(tmp_path)
    assert len(segs) >= 3
    assert [s for s, _ in all_records(tmp_path)] == list(range(1, 31))
    for seg in segs[:-1]:
        # Rolled once the size reached segment_bytes: never more than one record past it.
        assert SMALL_SEG <= seg.stat().st_size < SMALL_SEG + len(L.frame_record(payload(30)))


def test_read_range_every_window(tmp_path: Path) -> None:
    n = 30
    written = write_log(tmp_path, list(range(1, n + 1)))
    assert len(L.list_segments(tmp_path)) >= 3
    for lo in range(0, n + 2):
        for hi in range(lo - 1, n + 2):
            got = list(L.read_range(tmp_path, lo, hi))
            want = [s for s in range(max(lo, 1), min(hi, n) + 1)]
            assert [s for s, _ in got] == want, (lo, hi)
            assert all(p == written[s] for s, p in got)
        assert [s for s, _ in L.read_range(tmp_path, lo)] == list(range(max(lo, 1), n + 1))


def test_read_range_stops_early_without_reading_later_damage(tmp_path: Path) -> None:
    write_log(tmp_path, list(range(1, 31)))
    segs = L.list_segments(tmp_path)
    last = segs[-1]
    data = bytearray(last.read_bytes())
    data[L.HEADER.size + 2] ^= 0xFF  # corrupt the newest segment's first record
    last.write_bytes(bytes(data))
    assert [s for s, _ in L.read_range(tmp_path, 1, 5)] == [1, 2, 3, 4, 5]


def test_read_range_empty_and_missing_dir(tmp_path: Path) -> None:
    assert list(L.read_range(tmp_path, 1)) == []
    assert list(L.read_range(tmp_path / "nope", 1, 10)) == []
    assert L.list_segments(tmp_path / "nope") == []


def test_list_segments_ignores_other_files(tmp_path: Path) -> None:
    write_log(tmp_path, [1, 2, 3], segment_bytes=1 << 20)
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "abc.seg").write_bytes(b"junk")
    (tmp_path / "00000000000000000001.seg.tmp").write_bytes(b"junk")
    assert [p.name for p in L.list_segments(tmp_path)] == ["00000000000000000001.seg"]
    assert [s for s, _ in all_records(tmp_path)] == [1, 2, 3]


# ---------------------------------------------------------------- recover
def test_recover_empty_and_missing_dir(tmp_path: Path) -> None:
    tail = L.recover(tmp_path)
    assert (tail.last_seq, tail.last_payload, tail.truncated, tail.segments) == (0, None, None, 0)
    missing = tmp_path / "a" / "b"
    tail = L.recover(missing)
    assert missing.is_dir() and tail.last_seq == 0 and tail.truncated is None


def test_recover_clean_log_changes_nothing(tmp_path: Path) -> None:
    written = write_log(tmp_path, list(range(1, 41)))
    before = snapshot(tmp_path)
    tail = L.recover(tmp_path)
    assert tail.last_seq == 40 and tail.last_payload == written[40]
    assert tail.truncated is None and tail.segments == len(before)
    assert snapshot(tmp_path) == before


def _torn_suffixes() -> dict[str, bytes]:
    rec = L.frame_record(payload(41))
    bad_sum = bytearray(rec)
    bad_sum[-1] ^= 0x55
    return {
        "partial header": rec[:5],
        "header only": rec[: L.HEADER.size],
        "partial payload": rec[:-3],
        "bad checksum at the very end": bytes(bad_sum),
        "few trailing zeros": b"\0" * 5,
        "many trailing zeros": b"\0" * 64,
        "record then zeros": b"\0" * (L.HEADER.size + 3),
    }


@pytest.mark.parametrize("kind", list(_torn_suffixes()))
def test_recover_truncates_torn_tail(tmp_path: Path, kind: str) -> None:
    written = write_log(tmp_path, list(range(1, 41)))
    last = L.list_segments(tmp_path)[-1]
    good = snapshot(tmp_path)
    good_size = last.stat().st_size
    with open(last, "ab") as fh:
        fh.write(_torn_suffixes()[kind])

    report = L.check(tmp_path)
    assert report.damaged is not None and report.damaged.torn_tail
    assert (report.damaged.segment, report.damaged.offset) == (last.name, good_size)

    tail = L.recover(tmp_path)
    assert tail.last_seq == 40 and tail.last_payload == written[40]
    assert tail.truncated is not None and tail.truncated.torn_tail
    assert (tail.truncated.segment, tail.truncated.offset) == (last.name, good_size)
    assert last.stat().st_size == good_size
    assert snapshot(tmp_path) == good  # nothing good dropped, byte for byte
    assert [s for s, _ in all_records(tmp_path)] == list(range(1, 41))
    assert L.check(tmp_path).ok
    # Recovering again is a no-op.
    again = L.recover(tmp_path)
    assert again.last_seq == 40 and again.truncated is None


def test_recover_drops_a_fresh_segment_with_no_whole_record(tmp_path: Path) -> None:
    # Crash right after a roll: the new segment holds only part of its first record.
    write_log(tmp_path, list(range(1, 21)))
    before = snapshot(tmp_path)
    torn = tmp_path / L.segment_name(21)
    torn.write_bytes(L.frame_record(payload(21))[:-4])
    tail = L.recover(tmp_path)
    assert tail.last_seq == 20
    assert not torn.exists()
    assert tail.segments == len(before)
    assert snapshot(tmp_path) == before


def test_recover_empty_newest_segment(tmp_path: Path) -> None:
    write_log(tmp_path, list(range(1, 21)))
    before = snapshot(tmp_path)
    (tmp_path / L.segment_name(21)).write_bytes(b"")
    tail = L.recover(tmp_path)
    assert tail.last_seq == 20 and snapshot(tmp_path) == before


def _flip(path: Path, offset: int, mask: int = 0xFF) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= mask
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("where", ["payload", "checksum"])
def test_mid_file_corruption_in_last_segment_is_not_truncated(tmp_path: Path, where: str) -> None:
    log_with_long_last_segment(tmp_path)
    last = L.list_segments(tmp_path)[-1]
    offs = offsets(last)
    assert len(offs) >= 3
    victim = offs[len(offs) // 2]  # an earlier record, with good records after it
    _flip(last, victim + (L.HEADER.size + 1 if where == "payload" else 6))
    before = snapshot(tmp_path)

    report = L.check(tmp_path)
    assert report.damaged is not None and not report.damaged.torn_tail
    assert (report.damaged.segment, report.damaged.offset) == (last.name, victim)
    assert not report.ok
    assert report.as_dict()["damaged"] == {
        "segment": last.name,
        "offset": victim,
        "reason": "checksum mismatch",
        "torn_tail": False,
    }

    with pytest.raises(L.LogDamaged) as ei:
        L.recover(tmp_path)
    assert (ei.value.damage.segment, ei.value.damage.offset, ei.value.damage.torn_tail) == (last.name, victim, False)
    assert snapshot(tmp_path) == before  # nothing truncated


def test_corrupted_length_in_earlier_record_is_not_a_torn_tail(tmp_path: Path) -> None:
    log_with_long_last_segment(tmp_path)
    last = L.list_segments(tmp_path)[-1]
    offs = offsets(last)
    before = snapshot(tmp_path)
    _flip(last, offs[0] + 2, 0x01)  # one bit: length += 65536, < MAX_RECORD, past the end of the file
    try:
        with pytest.raises(L.LogDamaged):
            L.recover(tmp_path)
    finally:
        # Whatever recover() did, it must not have destroyed the good records after the damage.
        after = snapshot(tmp_path)
    assert set(after) == set(before)
    assert len(after[last.name]) == len(before[last.name])


def test_impossible_length_in_earlier_record_is_corruption(tmp_path: Path) -> None:
    log_with_long_last_segment(tmp_path)
    last = L.list_segments(tmp_path)[-1]
    offs = offsets(last)
    _flip(last, offs[1] + 3, 0x80)  # length >= 2 GiB: beyond MAX_RECORD
    before = snapshot(tmp_path)
    with pytest.raises(L.LogDamaged) as ei:
        L.recover(tmp_path)
    assert ei.value.damage.offset == offs[1] and not ei.value.damage.torn_tail
    assert "impossible record length" in ei.value.damage.reason
    assert snapshot(tmp_path) == before


def test_damage_in_sealed_segment(tmp_path: Path) -> None:
    write_log(tmp_path, list(range(1, 41)))
    segs = L.list_segments(tmp_path)
    sealed = segs[1]
    offs = offsets(sealed)
    victim = offs[-1]  # even the last record of a sealed segment is corruption, not a torn tail
    _flip(sealed, victim + L.HEADER.size + 2)
    report = L.check(tmp_path)
    assert report.damaged is not None
    assert (report.damaged.segment, report.damaged.offset, report.damaged.torn_tail) == (sealed.name, victim, False)
    # Records before the damage were counted; nothing after it is trusted.
    first_of_sealed = int(sealed.name[:-4])
    assert report.last_seq == first_of_sealed + len(offs) - 2
    # A range reader crossing it reports the damage instead of skipping it.
    with pytest.raises(L.LogDamaged) as ei:
        list(L.read_range(tmp_path, 1))
    assert (ei.value.damage.segment, ei.value.damage.offset) == (sealed.name, victim)
    # recover() only reads the newest segment: the sealed damage does not move the tail.
    before = snapshot(tmp_path)
    assert L.recover(tmp_path).last_seq == 40
    assert snapshot(tmp_path) == before


def test_truncated_sealed_segment_is_corruption(tmp_path: Path) -> None:
    write_log(tmp_path, list(range(1, 41)))
    sealed = L.list_segments(tmp_path)[0]
    data = sealed.read_bytes()
    sealed.write_bytes(data[:-4])
    report = L.check(tmp_path)
    assert report.damaged is not None and report.damaged.segment == sealed.name and not report.damaged.torn_tail


# ---------------------------------------------------------------- check
def _write_events(d: Path, evs: list[tuple[int, E._Body | None, str]], segment_bytes: int = 1 << 20) -> None:
    w = L.LogWriter(d, segment_bytes)
    for seq, body, source in evs:
        w.append([(seq, payload(seq, body, source))])
    w.close()


def test_check_clean(tmp_path: Path) -> None:
    write_log(tmp_path, list(range(1, 41)))
    r = L.check(tmp_path)
    assert r.ok and r.count == 40 and (r.first_seq, r.last_seq) == (1, 40)
    assert r.as_dict() == {
        "path": str(tmp_path),
        "count": 40,
        "first_seq": 1,
        "last_seq": 40,
        "gaps": [],
        "duplicates": 0,
        "damaged": False,
        "undecodable": 0,
    }


def test_check_empty(tmp_path: Path) -> None:
    r = L.check(tmp_path)
    assert r.ok and r.count == 0 and r.first_seq is None and r.last_seq is None


def test_check_gaps_duplicates_and_declared(tmp_path: Path) -> None:
    evs: list[tuple[int, E._Body | None, str]] = [
        (1, None, "feed"),
        (2, E.GapDeclared("strategy", 4, 5, "a producer's own gap does not declare a log gap"), "strategy"),
        (3, E.GapDeclared("logger", 4, 6, "not exactly the gap"), "logger"),
        (6, None, "feed"),  # gap 4..5, undeclared
        (7, None, "feed"),
        (7, None, "feed"),  # duplicate (same)
        (5, None, "feed"),  # duplicate (lower)
        (8, E.GapDeclared("logger", 9, 11, "lost"), "logger"),
        (12, None, "feed"),  # gap 9..11, declared by seq 8
        (13, E.GapDeclared("sequencer", 15, 15, "lost"), "sequencer"),
        (16, None, "feed"),  # gap 14..15: declaration names 15..15 only
        (18, None, "feed"),  # gap 17..17
        (19, E.GapDeclared("logger", 17, 17, "declared after the fact"), "logger"),
    ]
    _write_events(tmp_path, evs)
    r = L.check(tmp_path)
    assert r.gaps == [
        {"from": 4, "to": 5, "declared": False},
        {"from": 9, "to": 11, "declared": True},
        {"from": 14, "to": 15, "declared": False},
        {"from": 17, "to": 17, "declared": True},
    ]
    assert r.duplicates == 2
    assert r.count == len(evs)
    assert (r.first_seq, r.last_seq) == (1, 19)
    assert r.damaged is None and not r.ok


def test_check_gap_across_segments(tmp_path: Path) -> None:
    seqs = list(range(1, 11)) + list(range(15, 31))
    write_log(tmp_path, seqs)
    assert len(L.list_segments(tmp_path)) >= 3
    r = L.check(tmp_path)
    assert r.gaps == [{"from": 11, "to": 14, "declared": False}] and r.duplicates == 0
    assert r.count == len(seqs) and r.last_seq == 30


def test_check_counts_undecodable(tmp_path: Path) -> None:
    w = L.LogWriter(tmp_path, 1 << 20)
    w.append([(1, payload(1)), (2, b"\x93\x01\x02\x03"), (3, payload(3))])  # checksummed but not an event
    w.close()
    r = L.check(tmp_path)
    assert r.undecodable == 1 and r.count == 2 and not r.ok
    # Its seq is unknown, so seq 2 is reported missing rather than silently assumed present.
    assert r.gaps == [{"from": 2, "to": 2, "declared": False}]


# ---------------------------------------------------------------- writer
def test_writer_fsync_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = L.os.fdatasync
    monkeypatch.setattr(L.os, "fdatasync", lambda fd: (calls.append(fd), real(fd))[1])
    w = L.LogWriter(tmp_path, 1 << 20, fsync="batch")
    for s in range(1, 4):
        w.append([(s, payload(s))])
        assert w.durable_seq == s == w.last_seq
    assert len(calls) == 3
    w.close()
    assert [s for s, _ in all_records(tmp_path)] == [1, 2, 3]


def test_writer_fsync_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(L.os, "fdatasync", lambda fd: calls.append(fd))
    w = L.LogWriter(tmp_path, 1 << 20, fsync="none")
    w.append([(1, payload(1)), (2, payload(2))])
    assert w.last_seq == 2 and w.durable_seq == 0 and calls == []
    w.close()
    assert calls == []
    assert [s for s, _ in all_records(tmp_path)] == [1, 2]  # in the page cache, readable


def test_writer_fsync_interval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1_000_000_000]
    monkeypatch.setattr(L, "time", types.SimpleNamespace(monotonic_ns=lambda: now[0], sleep=time.sleep))
    calls: list[int] = []
    real = L.os.fdatasync
    monkeypatch.setattr(L.os, "fdatasync", lambda fd: (calls.append(fd), real(fd))[1])
    w = L.LogWriter(tmp_path, 1 << 20, fsync="interval", fsync_interval_ms=100)
    w.append([(1, payload(1))])
    assert calls == [] and w.durable_seq == 0
    now[0] += 99_000_000
    w.append([(2, payload(2))])
    assert calls == [] and w.durable_seq == 0
    now[0] += 1_000_000  # 100 ms since the writer started
    w.append([(3, payload(3))])
    assert len(calls) == 1 and w.durable_seq == 3
    now[0] += 50_000_000
    w.append([(4, payload(4))])
    assert len(calls) == 1 and w.durable_seq == 3
    w.close()  # closing an interval writer makes everything durable
    assert len(calls) == 2 and w.durable_seq == 4
    assert [s for s, _ in all_records(tmp_path)] == [1, 2, 3, 4]


def test_writer_empty_append_is_noop(tmp_path: Path) -> None:
    w = L.LogWriter(tmp_path, 1 << 20)
    w.append([])
    assert L.list_segments(tmp_path) == []
    w.close()


def test_recovered_writer_appends_after_last_record(tmp_path: Path) -> None:
    written = write_log(tmp_path, list(range(1, 26)))
    last = L.list_segments(tmp_path)[-1]
    with open(last, "ab") as fh:
        fh.write(L.frame_record(payload(26))[:-2])  # torn
    tail = L.recover(tmp_path)
    assert tail.last_seq == 25
    w = L.LogWriter(tmp_path, SMALL_SEG)
    new = [(s, payload(s)) for s in range(tail.last_seq + 1, 41)]
    for i in range(0, len(new), 4):
        w.append(new[i : i + 4])
    w.close()
    written.update(new)
    got = all_records(tmp_path)
    assert [s for s, _ in got] == list(range(1, 41))
    assert all(p == written[s] for s, p in got)
    assert L.check(tmp_path).ok
    assert L.recover(tmp_path).last_seq == 40


def test_recover_readonly_last(tmp_path: Path) -> None:
    assert L.recover_readonly_last(tmp_path) == 0
    write_log(tmp_path, list(range(1, 21)))
    last = L.list_segments(tmp_path)[-1]
    with open(last, "ab") as fh:
        fh.write(b"\x01\x02")
    before = snapshot(tmp_path)
    assert L.recover_readonly_last(tmp_path) == 20
    assert snapshot(tmp_path) == before  # read-only: the torn bytes are still there


# ---------------------------------------------------------------- follow
def _consume(gen, until_seq: int, got: list[int], on_record=None) -> None:  # type: ignore[no-untyped-def]
    for seq, p in gen:
        assert E.decode_head(p).seq == seq
        got.append(seq)
        if on_record:
            on_record(seq)
        if seq >= until_seq:
            return


def test_follow_yields_live_appends_across_rolls(tmp_path: Path) -> None:
    write_log(tmp_path, list(range(1, 6)))
    deadline = time.monotonic() + 10
    seen: dict[int, threading.Event] = {s: threading.Event() for s in range(1, 61)}
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            w = L.LogWriter(tmp_path, SMALL_SEG)
            for start in range(6, 61, 5):
                w.append([(s, payload(s)) for s in range(start, start + 5)])
                # Hand-shake: the next batch is written only once the follower has
                # seen this one, so the follower is really live, not reading a finished log.
                if not seen[start + 4].wait(timeout=5):
                    raise AssertionError(f"follower never saw seq {start + 4}")
            w.close()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            errors.append(exc)

    got: list[int] = []
    gen = L.follow(tmp_path, 3, poll_s=0.002, stop=lambda: time.monotonic() > deadline)
    t = threading.Thread(target=writer, daemon=True)
    t.start()
    try:
        _consume(gen, 60, got, on_record=lambda s: seen[s].set())
    finally:
        t.join(timeout=5)
    assert not errors, errors
    assert got == list(range(3, 61))
    assert len(L.list_segments(tmp_path)) >= 5  # it really crossed several rolls


def test_follow_starts_in_the_right_segment_and_waits_for_the_first_one(tmp_path: Path) -> None:
    deadline = time.monotonic() + 5
    gen = L.follow(tmp_path, 1, poll_s=0.002, stop=lambda: time.monotonic() > deadline)
    errors: list[BaseException] = []
    started = threading.Event()

    def writer() -> None:
        try:
            started.wait(5)
            write_log(tmp_path, list(range(1, 21)))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    started.set()
    got: list[int] = []
    _consume(gen, 20, got)
    t.join(5)
    assert not errors and got == list(range(1, 21))

    # Starting late: from_seq deep in a later segment skips everything before it.
    late = list(L.follow(tmp_path, 17, poll_s=0.002, stop=_stop_after(lambda: True, 1)))
    assert [s for s, _ in late] == [17, 18, 19, 20]


def _stop_after(cond, polls: int):  # type: ignore[no-untyped-def]
    """A stop() that lets follow() make `polls` passes first."""
    n = [0]

    def stop() -> bool:
        n[0] += 1
        return n[0] > polls and cond()

    return stop


def test_follow_waits_for_a_record_being_written(tmp_path: Path) -> None:
    write_log(tmp_path, [1, 2], segment_bytes=1 << 20)
    (seg,) = L.list_segments(tmp_path)
    rec = L.frame_record(payload(3))
    with open(seg, "ab") as fh:
        fh.write(rec[:7])  # the writer is mid-append
    deadline = time.monotonic() + 5
    gen = L.follow(tmp_path, 1, poll_s=0.002, stop=lambda: time.monotonic() > deadline)
    assert [next(gen)[0], next(gen)[0]] == [1, 2]

    def finish() -> None:
        with open(seg, "ab") as fh:
            fh.write(rec[7:])

    t = threading.Thread(target=finish, daemon=True)
    t.start()
    seq, p = next(gen)
    t.join(5)
    assert seq == 3 and p == payload(3)


def test_follow_reports_corruption(tmp_path: Path) -> None:
    write_log(tmp_path, [1, 2, 3], segment_bytes=1 << 20)
    (seg,) = L.list_segments(tmp_path)
    offs = offsets(seg)
    _flip(seg, offs[1] + L.HEADER.size + 1)
    deadline = time.monotonic() + 5
    gen = L.follow(tmp_path, 1, poll_s=0.002, stop=lambda: time.monotonic() > deadline)
    assert next(gen)[0] == 1
    with pytest.raises(L.LogDamaged) as ei:
        next(gen)
    assert (ei.value.damage.segment, ei.value.damage.offset) == (seg.name, offs[1])


def test_follow_stops_when_told(tmp_path: Path) -> None:
    write_log(tmp_path, [1, 2], segment_bytes=1 << 20)
    assert [s for s, _ in L.follow(tmp_path, 1, poll_s=0.001, stop=_stop_after(lambda: True, 2))] == [1, 2]


def test_indexed_range_reads_match_full_scans(tmp_path):
    """A range read that starts from the writer's sparse index returns exactly what a scan does."""
    from common import eventlog as L

    w = L.LogWriter(tmp_path, segment_bytes=20_000)
    recs = [
        (s, E.encode(E.Sequenced(E.CODEC_VERSION, s, 1, s, "feed", s, "", s, s, E.Clock(s)))) for s in range(1, 3001)
    ]
    for i in range(0, len(recs), 37):
        w.append(recs[i : i + 37])
    assert len(L.list_segments(tmp_path)) > 3 and len(w.index) > 10
    for lo, hi in [(1, 5), (255, 260), (1000, 1400), (2990, 3000), (2999, 4000)]:
        start = w.locate(lo)
        assert start is not None
        fast = list(L.read_range(tmp_path, lo, hi, start))
        slow = list(L.read_range(tmp_path, lo, hi))
        assert fast == slow and [s for s, _ in fast] == list(range(lo, min(hi, 3000) + 1))
    # A reopened writer indexes its active segment again.
    w.close()
    w2 = L.LogWriter(tmp_path, segment_bytes=20_000, last_seq=3000)
    assert w2.locate(3000) is not None and w2.locate(3000)[0] == L.list_segments(tmp_path)[-1]
