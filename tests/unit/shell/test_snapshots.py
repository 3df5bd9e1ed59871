"""Snapshots: checksummed, newest good one wins, a corrupt one is reported and skipped."""

from __future__ import annotations

import logging

from common.shell import KEEP_SNAPSHOTS, SnapshotStore


def test_newest_good_snapshot_is_loaded(tmp_path):
    store = SnapshotStore(tmp_path)
    for seq in (100, 200, 300):
        store.save(seq, {"n": seq, "blob": b"\x00\x01"})
    assert store.load_latest() == (300, {"n": 300, "blob": b"\x00\x01"})


def test_a_corrupt_snapshot_is_reported_and_an_older_one_used(tmp_path, caplog):
    store = SnapshotStore(tmp_path)
    store.save(100, {"n": 100})
    newest = store.save(200, {"n": 200})
    data = bytearray(newest.read_bytes())
    data[-1] ^= 0xFF
    newest.write_bytes(bytes(data))
    with caplog.at_level(logging.ERROR):
        assert store.load_latest() == (100, {"n": 100})
    assert "snap-00000000000000000200.bin is corrupt" in caplog.text


def test_all_corrupt_means_a_full_replay(tmp_path):
    store = SnapshotStore(tmp_path)
    p = store.save(100, {"n": 100})
    p.write_bytes(b"\x00" * 4)
    assert store.load_latest() is None


def test_only_the_newest_few_are_kept(tmp_path):
    store = SnapshotStore(tmp_path)
    for seq in range(1, 10):
        store.save(seq * 10, {"n": seq})
    assert len(list(tmp_path.glob("snap-*.bin"))) == KEEP_SNAPSHOTS
