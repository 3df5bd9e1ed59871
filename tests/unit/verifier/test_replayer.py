"""The verifier's replay: identical hashes for identical input, and a clock-reading core is caught at the right seq."""

from __future__ import annotations

import time

import msgspec

from common import config
from common import events as E
from common.core import state_hash
from services.verifier.core import Replayer, build_cores

N = 10  # hash interval in these tests


class CountingCore:
    """A deterministic core: counts trades and sums their qty."""

    name = "counter"

    def __init__(self) -> None:
        self.n = 0
        self.qty = 0

    def apply(self, ev: E.Sequenced) -> list:
        if isinstance(ev.body, E.Trade):
            self.n += 1
            self.qty += ev.body.qty
        return []

    def state(self) -> object:
        return {"n": self.n, "qty": self.qty}

    def load_state(self, st) -> None:
        self.n, self.qty = st["n"], st["qty"]


class ClockReadingCore(CountingCore):
    """The test double: from a given seq on it lets the wall clock into its state."""

    def __init__(self, from_seq: int) -> None:
        super().__init__()
        self.from_seq = from_seq
        self.t = 0

    def apply(self, ev: E.Sequenced) -> list:
        super().apply(ev)
        if ev.seq >= self.from_seq:
            self.t = time.perf_counter_ns()
        return []

    def state(self) -> object:
        st = super().state()
        if self.t:  # identical to the honest core until the clock creeps in
            st["t"] = self.t  # type: ignore[index]
        return st


def seqd(seq: int, body: E._Body, source: str = "feed") -> E.Sequenced:
    return E.Sequenced(E.CODEC_VERSION, seq, 1, seq, source, seq, f"k{seq}", 1_000 + seq, 2_000 + seq, body)


def live_run(core: CountingCore, n_events: int) -> list[E.Sequenced]:
    """What a live service does: apply each event, publish its hash every N seqs (a later event)."""
    out: list[E.Sequenced] = []
    seq = 0
    pending: list[E._Body] = []
    for i in range(n_events):
        seq += 1
        ev = seqd(seq, pending.pop(0) if pending else E.Trade("BTCUSDT", i + 1, 100 + i, 1 + i % 7, i % 2 == 0))
        out.append(ev)
        core.apply(ev)
        if seq % N == 0:
            pending.append(E.StateHash(core.name, seq, state_hash(core.state())))
    return out


def test_identical_input_gives_identical_hashes_and_every_hash_checks():
    log = live_run(CountingCore(), 200)
    a = Replayer({"counter": (CountingCore(), N)})
    b = Replayer({"counter": (CountingCore(), N)})
    for ev in log:
        assert a.apply(ev) is None
        b.apply(ev)
    assert a.hashes() == b.hashes()
    assert a.checked >= 15 and not a.divergences


def test_a_clock_reading_core_is_caught_at_the_right_seq():
    log = live_run(ClockReadingCore(from_seq=95), 200)
    rep = Replayer({"counter": (CountingCore(), N)})
    for ev in log:
        rep.apply(ev)
    assert rep.divergences, "the verifier missed a non-deterministic core"
    first = rep.divergences[0]
    assert first.service == "counter"
    assert first.seq == 100  # the first hash point at or after the clock crept in
    assert first.expected != first.published
    # Every hash before the fault agreed.
    assert rep.checked > len(rep.divergences)


def test_the_real_cores_replay_identically_from_the_same_events():
    cfg = config.from_dict({})
    evs = [
        seqd(
            1,
            E.BookSnapshot(
                "BTCUSDT",
                1,
                E.pack_levels([(100_00 - i, 10_000 + i) for i in range(20)]),
                E.pack_levels([(100_05 + i, 10_000 + i) for i in range(20)]),
            ),
        )
    ]
    for i in range(2, 400):
        if i % 3:
            evs.append(seqd(i, E.BookDelta("BTCUSDT", i, i, E.pack_levels([(100_00 - i % 7, 5_000 + i)]), b"")))
        else:
            evs.append(seqd(i, E.Trade("BTCUSDT", i, 100_05, 1000, i % 2 == 0)))
    one, two = Replayer(build_cores(cfg)), Replayer(build_cores(cfg))
    for ev in evs:
        one.apply(ev)
        two.apply(ev)
    assert one.hashes() == two.hashes()
    assert set(one.hashes()) == {"strategy", "risk", "router", "execution"}


def test_a_verifier_resumed_from_its_snapshot_checks_on_as_if_never_stopped():
    log = live_run(CountingCore(), 200)
    whole = Replayer({"counter": (CountingCore(), N)})
    for ev in log:
        whole.apply(ev)
    first = Replayer({"counter": (CountingCore(), N)})
    for ev in log[:105]:  # stop between a hash point (100) and its publication
        first.apply(ev)
    snap = msgspec.msgpack.decode(msgspec.msgpack.encode(first.state()))  # as the SnapshotStore stores it
    resumed = Replayer({"counter": (CountingCore(), N)})
    resumed.load_state(snap)
    assert resumed.last_seq == 105
    for ev in log[105:]:
        resumed.apply(ev)
    assert resumed.hashes() == whole.hashes()
    assert (resumed.checked, resumed.unverifiable, resumed.divergences) == (whole.checked, 0, [])


def _two_symbol_events() -> list[E.Sequenced]:
    evs = []
    seq = 0
    for sym, base in (("BTCUSDT", 100_00), ("ETHUSDT", 30_00)):
        seq += 1
        bids = E.pack_levels([(base - i, 10_000 + i) for i in range(20)])
        asks = E.pack_levels([(base + 5 + i, 10_000 + i) for i in range(20)])
        evs.append(seqd(seq, E.BookSnapshot(sym, 1, bids, asks)))
    for i in range(2, 300):
        sym, base = ("BTCUSDT", 100_00) if i % 2 else ("ETHUSDT", 30_00)
        seq += 1
        if i % 3:
            evs.append(seqd(seq, E.BookDelta(sym, i, i, E.pack_levels([(base - i % 7, 5_000 + i)]), b"")))
        else:
            evs.append(seqd(seq, E.Trade(sym, i, base + 5, 1000, i % 2 == 0)))
    return evs


def test_every_declared_strategy_instance_is_replayed_and_its_hashes_checked():
    """Two strategy instances side by side (one per symbol): each publishes its own hashes, and
    a verifier whose config declares the second instance checks both; one that does not know
    it checks only the first."""
    from common.units import load_symbols
    from services.strategy.core import StrategyCore

    cfg = config.from_dict({"strategy": {"hash_every": 10, "instances": [["strategy-eth", "ETHUSDT"]]}})
    symbols = load_symbols(cfg.symbols.exchange_info)
    live = [StrategyCore(sc, symbols) for sc in cfg.strategy.all_instances()]
    assert [c.name for c in live] == ["strategy", "strategy-eth"]
    log, seq, pending = [], 0, []
    for ev in _two_symbol_events():
        seq += 1
        ev = seqd(seq, pending.pop(0) if pending else ev.body, ev.source)
        log.append(ev)
        for core in live:
            core.apply(ev)
            if seq % 10 == 0:
                pending.append(E.StateHash(core.name, seq, state_hash(core.state())))
    hashes = {(e.body.service, e.body.covers_seq): e.body.hash for e in log if isinstance(e.body, E.StateHash)}
    assert any(s == "strategy-eth" for s, _ in hashes)
    assert hashes[("strategy", 10)] != hashes[("strategy-eth", 10)]  # different books: a mix-up would show

    rep = Replayer(build_cores(cfg))
    for ev in log:
        assert rep.apply(ev) is None
    published = sum(1 for e in log if isinstance(e.body, E.StateHash))
    assert rep.checked == published and not rep.divergences

    undeclared = Replayer(build_cores(config.from_dict({"strategy": {"hash_every": 10}})))
    for ev in log:
        undeclared.apply(ev)
    assert undeclared.checked == sum(1 for s, _ in hashes if s == "strategy") < published


def test_a_strategy_instance_takes_its_symbols_from_the_config():
    import argparse

    from services.strategy.service import build

    cfg = config.from_dict({"strategy": {"instances": [["strategy-eth", "ETHUSDT"]]}})
    core, _, _ = build(cfg, argparse.Namespace(name="strategy-eth", symbols=None))
    assert core.name == "strategy-eth" and list(core.books) == ["ETHUSDT"]
    core, _, _ = build(cfg, argparse.Namespace(name=None, symbols=None))
    assert core.name == "strategy" and list(core.books) == ["BTCUSDT"]
    try:
        build(cfg, argparse.Namespace(name="strategy-eth", symbols="BTCUSDT"))
    except config.ConfigError as exc:
        assert "differs from strategy.instances" in str(exc)
    else:
        raise AssertionError("an instance ran on other symbols than its declaration")
    for bad in ([["strategy", "ETHUSDT"]], [["x", ""]], [["a:b", "ETHUSDT"]]):
        try:
            config.from_dict({"strategy": {"instances": bad}})
        except config.ConfigError:
            pass
        else:
            raise AssertionError(f"accepted {bad}")
