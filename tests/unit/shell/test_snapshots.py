"""Snapshots: checksummed, newest good one wins, a corrupt one is reported and skipped."""

from __future__ import annotations

import logging

from common.shell import KEEP_SNAPSHOTS, SnapshotStore, restore


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


class _Core:
    """Takes a state dict, or refuses one that says so (as a core whose layout changed does)."""

    def __init__(self) -> None:
        self.loaded: object = None

    def load_state(self, state: object) -> None:
        if isinstance(state, dict) and state.get("fits") is False:
            raise ValueError("book layout changed")
        self.loaded = state


def test_restore_loads_the_newest_snapshot_and_returns_its_seq(tmp_path):
    store, core = SnapshotStore(tmp_path), _Core()
    store.save(500, {"n": 5})
    assert restore(core, store, "strategy") == 500 and core.loaded == {"n": 5}


def test_a_snapshot_this_build_cannot_take_means_a_full_replay_not_a_crash(tmp_path, caplog):
    store, core = SnapshotStore(tmp_path), _Core()
    store.save(500, {"fits": False})
    with caplog.at_level(logging.ERROR):
        assert restore(core, store, "strategy") == 0
    assert core.loaded is None
    assert "snapshot at seq 500 does not fit this build (book layout changed)" in caplog.text


def test_no_snapshot_means_seq_zero(tmp_path):
    assert restore(_Core(), SnapshotStore(tmp_path), "risk") == 0


def test_ints_beyond_msgpack_round_trip_and_hash(tmp_path):
    """State ints are Python's: an account's traded volume passes 2**64 notional units after
    $1.8bn on BTCUSDT. A snapshot keeps such ints exactly and a state hash takes them,
    distinguishing each value, where plain msgpack raised OverflowError."""
    from common.accounting import Position
    from common.core import canonical, state_hash
    from common.units import BUILTIN
    from services.risk.core import RiskCore

    big = {"volume": 2**64, "neg": -(2**63) - 1, "deep": [{"x": 10**30}], "small": 5, "edge": 2**64 - 1}
    store = SnapshotStore(tmp_path)
    store.save(7, big)
    assert store.load_latest() == (7, big)
    assert canonical({"small": 5}) == canonical({"small": 5})  # plain states: plain msgpack
    assert state_hash(big) == state_hash(dict(big)) != state_hash({**big, "volume": 2**64 + 1})

    risk = RiskCore(None, BUILTIN)
    pos = risk.account.positions["BTCUSDT"] = Position("BTCUSDT")
    pos.volume = 2**64 + 12345
    h = state_hash(risk.state())
    store.save(8, risk.state())
    seq, state = store.load_latest()
    again = RiskCore(None, BUILTIN)
    again.load_state(state)
    assert seq == 8 and state_hash(again.state()) == h
    assert again.account.positions["BTCUSDT"].volume == 2**64 + 12345
