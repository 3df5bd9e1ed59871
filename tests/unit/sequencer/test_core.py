"""services.sequencer.core: accept in order, deduplicate, stamp (epoch, seq, Lamport)."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common import events as E
from services.sequencer.core import SOURCE, SequencerCore


def frame(
    source: str, source_seq: int, lamport: int = 0, body: E._Body | None = None, key: str = "", event_ns: int = 5
) -> bytes:
    return E.ingest(source, source_seq, lamport, key or f"{source}:{source_seq}", event_ns, body or E.Clock(source_seq))


def offer(core: SequencerCore, *args: object, recv_ns: int = 100, **kw: object) -> E.Sequenced | None:
    out = core.offer(frame(*args, **kw), recv_ns)  # type: ignore[arg-type]
    return None if out is None else E.decode_sequenced(out)


def counters(core: SequencerCore) -> tuple[int, int, int, int]:
    c = core.counters
    return c["accepted"], c["duplicates"], c["out_of_order"], c["malformed"]


def test_fresh_core() -> None:
    core = SequencerCore()
    assert (core.epoch, core.last_seq, core.lamport, core.sources) == (1, 0, 0, {})
    assert counters(core) == (0, 0, 0, 0)


def test_accepts_in_order_and_stamps_contiguous_seq_from_one() -> None:
    core = SequencerCore()
    body = E.Trade("BTCUSDT", 9, 6183763, 5, False)
    outs = []
    for i in range(1, 11):
        ev = offer(core, "feed", i, 0, body=body, key=f"key{i}", event_ns=1000 + i, recv_ns=2000 + i)
        assert ev is not None
        outs.append(ev)
    assert [e.seq for e in outs] == list(range(1, 11))
    for i, ev in enumerate(outs, 1):
        assert (ev.v, ev.epoch, ev.source, ev.source_seq, ev.key) == (E.CODEC_VERSION, 1, "feed", i, f"key{i}")
        assert (ev.event_ns, ev.recv_ns) == (1000 + i, 2000 + i)
        assert ev.body == body
    assert core.last_seq == 10 and core.sources == {"feed": 10}
    assert counters(core) == (10, 0, 0, 0)


def test_output_is_plain_msgpack_sequenced() -> None:
    core = SequencerCore()
    raw = core.offer(frame("feed", 1, 4), 77)
    assert raw is not None
    plain = msgpack.unpackb(raw)
    assert plain[:9] == [E.CODEC_VERSION, 1, 1, 5, "feed", 1, "feed:1", 5, 77]
    assert E.decode_head(raw).seq == 1


def test_lamport_is_max_of_own_and_incoming_plus_one() -> None:
    core = SequencerCore()
    assert offer(core, "a", 1, 0).lamport == 1  # max(0, 0) + 1
    assert offer(core, "a", 2, 10).lamport == 11  # incoming ahead: max(1, 10) + 1
    assert offer(core, "b", 1, 3).lamport == 12  # incoming behind: max(11, 3) + 1
    assert offer(core, "b", 2, 12).lamport == 13  # equal: max(12, 12) + 1
    assert core.lamport == 13
    # A refused frame does not move the clock.
    assert offer(core, "b", 2, 1000) is None
    assert offer(core, "b", 9, 1000) is None
    assert core.lamport == 13
    assert offer(core, "b", 3, 0).lamport == 14


@settings(max_examples=100, deadline=None)
@given(lamports=st.lists(st.integers(min_value=0, max_value=10**12), min_size=1, max_size=30))
def test_lamport_strictly_increases_and_dominates_inputs(lamports: list[int]) -> None:
    core = SequencerCore()
    prev = 0
    for i, lam in enumerate(lamports, 1):
        ev = offer(core, "p", i, lam)
        assert ev is not None
        assert ev.lamport == max(prev, lam) + 1
        prev = ev.lamport


def test_duplicates_dropped() -> None:
    core = SequencerCore()
    for i in (1, 2, 3):
        assert offer(core, "feed", i) is not None
    assert offer(core, "feed", 3) is None  # same
    assert offer(core, "feed", 1) is None  # lower
    assert offer(core, "feed", 2) is None
    assert counters(core) == (3, 3, 0, 0)
    assert core.last_seq == 3 and core.sources == {"feed": 3}
    assert offer(core, "feed", 4).seq == 4  # no hole left behind in the global seq


def test_skip_ahead_refused_then_accepted_after_the_missing_one() -> None:
    core = SequencerCore()
    assert offer(core, "feed", 1) is not None
    assert offer(core, "feed", 3) is None  # 2 lost in flight
    assert offer(core, "feed", 4) is None
    assert counters(core) == (1, 0, 2, 0)
    assert core.sources == {"feed": 1} and core.last_seq == 1
    # The producer's resend brings them in order.
    assert offer(core, "feed", 2).seq == 2
    ev3 = offer(core, "feed", 3)
    assert ev3 is not None and (ev3.seq, ev3.source_seq) == (3, 3)
    assert offer(core, "feed", 4).seq == 4
    assert counters(core) == (4, 0, 2, 0)


def test_first_frame_of_a_source_must_be_one() -> None:
    core = SequencerCore()
    assert offer(core, "risk", 2) is None
    assert counters(core)[2] == 1 and core.last_seq == 0 and core.sources == {}


def test_sources_are_independent() -> None:
    core = SequencerCore()
    order = [("feed", 1), ("risk", 1), ("feed", 2), ("strategy", 1), ("risk", 2), ("feed", 3)]
    evs = [offer(core, s, n) for s, n in order]
    assert [(e.seq, e.source, e.source_seq) for e in evs] == [(i, s, n) for i, (s, n) in enumerate(order, 1)]
    assert core.sources == {"feed": 3, "risk": 2, "strategy": 1}
    # A duplicate or skip on one source does not affect another.
    assert offer(core, "feed", 3) is None
    assert offer(core, "risk", 5) is None
    assert offer(core, "strategy", 2).seq == 7
    assert counters(core) == (7, 1, 1, 0)


@settings(max_examples=100, deadline=None)
@given(ops=st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(min_value=1, max_value=8)), max_size=60))
def test_model_random_offers(ops: list[tuple[str, int]]) -> None:
    """Against a trivially correct model: per-source strict order, global contiguous seq."""
    core = SequencerCore()
    model: dict[str, int] = {}
    seq = 0
    for src, n in ops:
        ev = offer(core, src, n)
        last = model.get(src, 0)
        if n == last + 1:
            seq += 1
            model[src] = n
            assert ev is not None and (ev.seq, ev.source, ev.source_seq) == (seq, src, n)
        else:
            assert ev is None
    assert core.sources == model and core.last_seq == seq
    acc, dup, ooo, bad = counters(core)
    assert acc == seq and acc + dup + ooo == len(ops) and bad == 0


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xc1",
        b"garbage",
        msgpack.packb([2, "feed", 1, 0, "k", 0, [61, 1]]),  # future codec version
        msgpack.packb([1, "feed", 0, 0, "k", 0, [61, 1]]),  # source_seq must be > 0
        msgpack.packb([1, "feed", 1, 0, "k", 0, [99, 1]]),  # unknown tag
        msgpack.packb([1, "feed", 1, 0, "k", 0, [3, "X", 1, 1, -1, True]]),  # negative qty
    ],
)
def test_malformed_frame_raises_and_counts(raw: bytes) -> None:
    core = SequencerCore()
    assert offer(core, "feed", 1) is not None
    with pytest.raises(E.FrameError) as ei:
        core.offer(raw, 1)
    assert ei.value.raw == raw
    assert counters(core) == (1, 0, 0, 1)
    assert core.last_seq == 1 and core.sources == {"feed": 1} and core.lamport == 1
    assert offer(core, "feed", 2).seq == 2  # the core carries on


def test_sequenced_frame_offered_as_ingest_is_malformed() -> None:
    core = SequencerCore()
    out = core.offer(frame("feed", 1), 1)
    with pytest.raises(E.FrameError):
        core.offer(out, 2)  # type: ignore[arg-type]
    assert counters(core)[3] == 1


def test_own_events_use_the_sequencer_source() -> None:
    core = SequencerCore()
    offer(core, "feed", 1, 40)
    ev = E.decode_sequenced(core.own(E.Clock(1), 555))
    assert (ev.seq, ev.source, ev.source_seq, ev.lamport) == (2, SOURCE, 1, 42)
    assert (ev.event_ns, ev.recv_ns) == (555, 555)
    assert ev.key == f"{SOURCE}:1:1"
    ev2 = E.decode_sequenced(core.own(E.Clock(2), 556))
    assert (ev2.seq, ev2.source_seq) == (3, 2)
    assert core.sources == {"feed": 1, SOURCE: 2}


def test_restore_resumes_at_last_plus_one_in_next_epoch() -> None:
    core = SequencerCore()
    sources = {"feed": 41, "risk": 7, SOURCE: 3}
    core.restore(last_seq=1000, last_epoch=4, lamport=5000, sources=sources)
    assert (core.epoch, core.last_seq, core.lamport) == (5, 1000, 5000)
    assert core.sources == sources and core.sources is not sources  # a copy
    sources["feed"] = 0
    assert core.sources["feed"] == 41

    # The previous run's accepted events are duplicates now; the next is accepted.
    assert offer(core, "feed", 41) is None
    assert offer(core, "feed", 43) is None
    ev = offer(core, "feed", 42, 10)
    assert ev is not None
    assert (ev.seq, ev.epoch, ev.lamport) == (1001, 5, 5001)
    assert offer(core, "newcomer", 1).seq == 1002


def test_epoch_event_carries_the_table_from_before_itself() -> None:
    core = SequencerCore()
    core.restore(last_seq=50, last_epoch=2, lamport=70, sources={"feed": 40, SOURCE: 9})
    ev = E.decode_sequenced(core.epoch_event(12345))
    assert isinstance(ev.body, E.SequencerEpoch)
    assert (ev.body.epoch, ev.body.first_seq) == (3, 51)
    assert ev.body.sources == {"feed": 40, SOURCE: 9}  # not SOURCE: 10, which is the epoch event's own
    assert (ev.seq, ev.epoch, ev.source, ev.source_seq, ev.lamport) == (51, 3, SOURCE, 10, 71)
    assert ev.event_ns == ev.recv_ns == 12345
    assert core.sources[SOURCE] == 10
    # The producers then carry on from there.
    assert offer(core, "feed", 41).seq == 52


def test_epoch_event_of_a_fresh_core() -> None:
    core = SequencerCore()
    ev = E.decode_sequenced(core.epoch_event(1))
    assert ev.body == E.SequencerEpoch(1, 1, {})
    assert (ev.seq, ev.source_seq) == (1, 1)


def test_restore_from_the_journal_tail_round_trip() -> None:
    """What a restart does: read the last journaled event back and resume after it."""
    first = SequencerCore()
    first.offer(E.ingest("feed", 1, 0, "k", 0, E.Clock(0)), 1)
    first.offer(E.ingest("feed", 2, 9, "k", 0, E.Clock(0)), 2)
    last = E.decode_sequenced(first.offer(E.ingest("risk", 1, 0, "k", 0, E.Clock(0)), 3))  # type: ignore[arg-type]
    second = SequencerCore()
    second.restore(last.seq, last.epoch, last.lamport, first.sources)
    ev = E.decode_sequenced(second.epoch_event(4))
    assert (ev.seq, ev.epoch) == (last.seq + 1, last.epoch + 1)
    assert ev.lamport > last.lamport
    assert ev.body.sources == {"feed": 2, "risk": 1}


def test_invalid_utf8_source_is_malformed() -> None:
    core = SequencerCore()
    raw = frame("feed", 1).replace(b"\xa4feed", b"\xa4fe\xff\xfe")
    assert raw != frame("feed", 1)
    with pytest.raises(E.FrameError):
        core.offer(raw, 1)
    assert counters(core) == (0, 0, 0, 1)


def test_deeply_nested_ingest_frame_is_malformed() -> None:
    core = SequencerCore()
    good = frame("feed", 1)
    assert good[0] == 0x97
    raw = b"\x98" + good[1:] + b"\x91" * 5000 + b"\x01"
    with pytest.raises(E.FrameError):
        core.offer(raw, 1)
    assert counters(core) == (0, 0, 0, 1)


def test_batch_frames_are_told_apart_from_single_ingest_frames() -> None:
    from services.sequencer.service import is_batch

    one = E.ingest("feed", 1, 1, "", 5, E.Clock(0))
    for n in (1, 2, 15, 16, 64, 70000):
        frames = [one] * n
        assert is_batch(E.encode_batch(frames)), n
    assert not is_batch(one)
    assert not is_batch(b"") and not is_batch(b"\x91") and not is_batch(b"\xdc\x00")
