"""common.events: the event catalogue and its versioned msgpack codec.

Values are generated from each Struct's own annotations (msgspec.inspect), so a
new body type or a new constraint is covered without touching this file.
"""

from __future__ import annotations

import msgpack
import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common import events as E

U64_MAX = (1 << 64) - 1
I64_MAX = (1 << 63) - 1
I64_MIN = -(1 << 63)

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Fields whose meaning is a small enum even where the Struct does not constrain it.
ENUM_FIELDS = {
    "side": st.sampled_from(E.SIDES),
    "tif": st.sampled_from((E.GTC, E.IOC, E.FOK)),
    "liquidity": st.sampled_from((E.MAKER, E.TAKER)),
}

levels = st.lists(
    st.tuples(st.integers(min_value=0, max_value=I64_MAX), st.integers(min_value=0, max_value=I64_MAX)), max_size=8
).map(E.pack_levels)


def _int_strategy(name: str, t: msgspec.inspect.IntType) -> st.SearchStrategy[int]:
    lo = I64_MIN
    if t.ge is not None:
        lo = t.ge
    if t.gt is not None:
        lo = t.gt + 1
    hi = U64_MAX if (name == "hash" and lo >= 0) else I64_MAX
    if t.le is not None:
        hi = t.le
    if t.lt is not None:
        hi = t.lt - 1
    return st.integers(min_value=lo, max_value=hi)


def _field_strategy(name: str, t: msgspec.inspect.Type) -> st.SearchStrategy:
    if name in ENUM_FIELDS and isinstance(t, msgspec.inspect.IntType):
        return ENUM_FIELDS[name]
    if isinstance(t, msgspec.inspect.IntType):
        return _int_strategy(name, t)
    if isinstance(t, msgspec.inspect.StrType):
        return st.text(max_size=12)
    if isinstance(t, msgspec.inspect.BoolType):
        return st.booleans()
    if isinstance(t, msgspec.inspect.BytesType):
        return levels  # every bytes field in the catalogue is packed book levels
    if isinstance(t, msgspec.inspect.ListType):
        return st.lists(_field_strategy("", t.item_type), max_size=3)
    if isinstance(t, msgspec.inspect.TupleType):
        return st.tuples(*(_field_strategy("", x) for x in t.item_types))
    if isinstance(t, msgspec.inspect.DictType):
        return st.dictionaries(_field_strategy("", t.key_type), _field_strategy("", t.value_type), max_size=4)
    raise AssertionError(f"no strategy for field {name!r} of type {t!r}: extend this test")


def body_strategy(cls: type) -> st.SearchStrategy:
    info = msgspec.inspect.type_info(cls)
    return st.builds(cls, **{f.name: _field_strategy(f.name, f.type) for f in info.fields})


def _field_names(cls: type) -> list[str]:
    return [f.name for f in msgspec.inspect.type_info(cls).fields]


def _tag(cls: type) -> int:
    return msgspec.inspect.type_info(cls).tag  # type: ignore[no-any-return]


BODY_STRATEGIES = {t: body_strategy(t) for t in E.BODY_TYPES}
any_body = st.one_of(*BODY_STRATEGIES.values())
nonneg = st.integers(min_value=0, max_value=I64_MAX)
pos = st.integers(min_value=1, max_value=I64_MAX)
text = st.text(max_size=12)


def sequenced_strategy(body: st.SearchStrategy = any_body) -> st.SearchStrategy[E.Sequenced]:
    return st.builds(
        E.Sequenced,
        v=st.just(E.CODEC_VERSION),
        seq=pos,
        epoch=pos,
        lamport=nonneg,
        source=text,
        source_seq=nonneg,
        key=text,
        event_ns=nonneg,
        recv_ns=nonneg,
        body=body,
    )


def _plain(raw: bytes) -> list:
    return msgpack.unpackb(raw, raw=False, strict_map_key=True)


def _as_plain(v: object) -> object:
    # msgpack has one array type: a tuple field reads back as a list.
    if isinstance(v, (list, tuple)):
        return [_as_plain(x) for x in v]
    return v


def _body_as_list(body: E._Body) -> list:
    return [_tag(type(body)), *(_as_plain(getattr(body, n)) for n in _field_names(type(body)))]


def _clock_sequenced(**over: object) -> E.Sequenced:
    fields = dict(
        v=E.CODEC_VERSION, seq=7, epoch=2, lamport=9, source="feed", source_seq=3, key="k", event_ns=11, recv_ns=12
    )
    fields.update(over)
    return E.Sequenced(**fields, body=E.Clock(5))  # type: ignore[arg-type]


# ---------------------------------------------------------------- catalogue sanity
def test_catalogue_tags_unique_and_names_match() -> None:
    tags = [_tag(t) for t in E.BODY_TYPES]
    assert len(tags) == len(set(tags)) == len(E.BODY_TYPES) >= 22
    assert all(isinstance(t, int) for t in tags)
    assert E.BY_NAME == {t.__name__: t for t in E.BODY_TYPES}
    assert all(t.type_name() == t.__name__ for t in E.BODY_TYPES)


# ---------------------------------------------------------------- round trips, every body type
@pytest.mark.parametrize("cls", E.BODY_TYPES, ids=lambda c: c.__name__)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_round_trip_both_envelopes(cls: type, data: st.DataObject) -> None:
    body = data.draw(BODY_STRATEGIES[cls])
    assert type(body) is cls

    # Ingest envelope.
    source, source_seq, lamport = data.draw(text), data.draw(pos), data.draw(nonneg)
    key, event_ns = data.draw(text), data.draw(nonneg)
    raw = E.ingest(source, source_seq, lamport, key, event_ns, body)
    got = E.decode_ingest(raw)
    assert got == E.Ingest(E.CODEC_VERSION, source, source_seq, lamport, key, event_ns, body)
    assert type(got.body) is cls and got.body == body
    # The frame is plain msgpack: positional array, codec version first, body tag first.
    plain = _plain(raw)
    assert plain == [E.CODEC_VERSION, source, source_seq, lamport, key, event_ns, _body_as_list(body)]
    assert plain[-1][0] == _tag(cls)
    assert E.encode(got) == raw  # deterministic: state hashes depend on it

    # Sequenced envelope around the same body.
    ev = data.draw(sequenced_strategy(st.just(body)))
    raw = E.encode(ev)
    got_seq = E.decode_sequenced(raw)
    assert got_seq == ev and type(got_seq.body) is cls
    plain = _plain(raw)
    assert plain[0] == E.CODEC_VERSION
    assert plain[:9] == [ev.v, ev.seq, ev.epoch, ev.lamport, ev.source, ev.source_seq, ev.key, ev.event_ns, ev.recv_ns]
    assert plain[9] == _body_as_list(body)
    assert plain[9][0] == _tag(cls)
    head = E.decode_head(raw)
    assert (head.v, head.seq, head.epoch, head.lamport, head.source, head.source_seq) == (
        ev.v,
        ev.seq,
        ev.epoch,
        ev.lamport,
        ev.source,
        ev.source_seq,
    )
    assert E.encode(got_seq) == raw


def test_u64_hash_extremes() -> None:
    for h in (0, I64_MAX, I64_MAX + 1, U64_MAX):
        ev = _clock_sequenced()
        ev = E.Sequenced(*[getattr(ev, f) for f in ev.__struct_fields__[:-1]], body=E.StateHash("risk", 10, h))
        raw = E.encode(ev)
        assert E.decode_sequenced(raw).body.hash == h
        assert _plain(raw)[9][3] == h


def test_order_intent_defaults_may_be_omitted_on_the_wire() -> None:
    # tif and post_only have defaults: an older producer may leave them out.
    raw = msgpack.packb([1, "s", 1, 0, "k", 0, [_tag(E.OrderIntent), "strat", "BTCUSDT", "o1", E.BUY, 100, 5]])
    body = E.decode_ingest(raw).body
    assert body == E.OrderIntent("strat", "BTCUSDT", "o1", E.BUY, 100, 5, E.GTC, False)


# ---------------------------------------------------------------- decode_head
def test_decode_head_reads_seq_and_source_without_the_body() -> None:
    raw = E.encode(_clock_sequenced(seq=123456789, source="execution", source_seq=77))
    head = E.decode_head(raw)
    assert head.seq == 123456789 and head.source == "execution" and head.source_seq == 77
    # The body is not validated by the head decoder (that is its point): an
    # unknown body tag still yields the head.
    plain = _plain(raw)
    plain[9] = [250, "whatever"]
    assert E.decode_head(msgpack.packb(plain)).seq == 123456789
    with pytest.raises(E.FrameError):
        E.decode_sequenced(msgpack.packb(plain))


def test_decode_head_refuses_wrong_version_and_ingest_frames() -> None:
    plain = _plain(E.encode(_clock_sequenced()))
    plain[0] = 2
    with pytest.raises(E.FrameError, match="codec version 2"):
        E.decode_head(msgpack.packb(plain))
    ingest = E.ingest("feed", 1, 0, "k", 0, E.Clock(1))
    with pytest.raises(E.FrameError):
        E.decode_head(ingest)


# ---------------------------------------------------------------- batches
@SETTINGS
@given(evs=st.lists(sequenced_strategy(), max_size=6))
def test_batch_round_trip(evs: list[E.Sequenced]) -> None:
    raws = [E.encode(e) for e in evs]
    frame = E.encode_batch(raws)
    assert E.split_batch(frame) == raws
    assert [E.decode_sequenced(r) for r in E.split_batch(frame)] == evs
    # The batch frame is plain msgpack too: an array of event arrays.
    assert _plain(frame) == [_plain(r) for r in raws]


def test_empty_batch() -> None:
    assert E.split_batch(E.encode_batch([])) == []
    assert E.encode_batch([]) == msgpack.packb([])


@pytest.mark.parametrize(
    "frame",
    [
        msgpack.packb({"a": 1}),
        msgpack.packb(5),
        msgpack.packb(b"xy"),
        msgpack.packb("s"),
        msgpack.packb(None),
        b"",
        b"\x92\x01",
        b"\xc1",
    ],
)
def test_split_batch_rejects_non_list(frame: bytes) -> None:
    with pytest.raises(E.FrameError) as ei:
        E.split_batch(frame)
    assert ei.value.raw == frame


# ---------------------------------------------------------------- malformed frames: exactly FrameError with raw
DECODERS = [E.decode_ingest, E.decode_sequenced, E.decode_head]


def _assert_frame_error(fn, raw: bytes, match: str | None = None) -> E.FrameError:  # type: ignore[no-untyped-def]
    with pytest.raises(E.FrameError, match=match) as ei:
        fn(raw)
    assert type(ei.value) is E.FrameError
    assert ei.value.raw == raw and type(ei.value.raw) is bytes
    assert isinstance(ei.value, ValueError)
    return ei.value


def test_frame_error_carries_full_raw_even_when_long() -> None:
    raw = b"\xc1" + b"x" * 1000
    err = _assert_frame_error(E.decode_ingest, raw)
    assert len(err.raw) == 1001  # the message is abbreviated, the attribute is not


def test_truncated_frames() -> None:
    ing = E.ingest("feed", 1, 2, "key", 3, E.Trade("BTCUSDT", 1, 100, 5, True))
    seq = E.encode(_clock_sequenced())
    for i in range(len(ing)):
        _assert_frame_error(E.decode_ingest, ing[:i])
    for i in range(len(seq)):
        _assert_frame_error(E.decode_sequenced, seq[:i])
    # decode_head skips the body but still needs the whole frame.
    for i in range(len(seq)):
        _assert_frame_error(E.decode_head, seq[:i])
    batch = E.encode_batch([seq, seq])
    for i in range(len(batch)):
        _assert_frame_error(E.split_batch, batch[:i])


def test_trailing_garbage_rejected() -> None:
    raw = E.encode(_clock_sequenced())
    _assert_frame_error(E.decode_sequenced, raw + b"\x00")
    _assert_frame_error(E.decode_ingest, E.ingest("a", 1, 0, "k", 0, E.Clock(1)) + b"\x01")


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=64))
def test_random_bytes_never_escape_as_another_error(raw: bytes) -> None:
    for fn in (*DECODERS, E.split_batch):
        try:
            fn(raw)
        except E.FrameError as exc:
            assert type(exc) is E.FrameError and exc.raw == raw


@settings(max_examples=100, deadline=None)
@given(ev=sequenced_strategy(), pos_=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_bit_flipped_frames_decode_or_raise_frame_error(ev: E.Sequenced, pos_: int, bit: int) -> None:
    raw = bytearray(E.encode(ev))
    raw[pos_ % len(raw)] ^= 1 << bit
    bad = bytes(raw)
    for fn in DECODERS:
        try:
            fn(bad)
        except E.FrameError as exc:
            assert exc.raw == bad


def test_unknown_tag() -> None:
    for tag in (0, 5, 99, 255, -1):
        raw = msgpack.packb([1, "feed", 1, 0, "k", 0, [tag, 1]])
        _assert_frame_error(E.decode_ingest, raw)
        plain = _plain(E.encode(_clock_sequenced()))
        plain[9] = [tag, 1]
        _assert_frame_error(E.decode_sequenced, msgpack.packb(plain))


def test_body_tag_as_string_rejected() -> None:
    _assert_frame_error(E.decode_ingest, msgpack.packb([1, "feed", 1, 0, "k", 0, ["Clock", 1]]))


@pytest.mark.parametrize("version", [0, 2, 99, -1])
def test_wrong_codec_version(version: int) -> None:
    good_ing = _plain(E.ingest("feed", 1, 0, "k", 0, E.Clock(1)))
    good_seq = _plain(E.encode(_clock_sequenced()))
    good_ing[0] = good_seq[0] = version
    _assert_frame_error(E.decode_ingest, msgpack.packb(good_ing), match=f"codec version {version}")
    _assert_frame_error(E.decode_sequenced, msgpack.packb(good_seq), match=f"codec version {version}")
    _assert_frame_error(E.decode_head, msgpack.packb(good_seq), match=f"codec version {version}")


def test_version_must_be_an_int() -> None:
    plain = _plain(E.ingest("feed", 1, 0, "k", 0, E.Clock(1)))
    plain[0] = "1"
    _assert_frame_error(E.decode_ingest, msgpack.packb(plain))


def _ingest_with_body(body: list) -> bytes:
    return msgpack.packb([1, "feed", 1, 0, "k", 0, body])


@pytest.mark.parametrize(
    "body",
    [
        [3, "BTCUSDT", 1, 100, -1, True],  # Trade: negative qty
        [3, "BTCUSDT", 1, 100, 0, True],  # Trade: qty must be > 0
        [3, "BTCUSDT", 1, 0, 5, True],  # Trade: price must be > 0
        [3, "BTCUSDT", -1, 100, 5, True],  # Trade: negative trade id
        [3, "BTCUSDT", 1, 100, 5, 1],  # Trade: int for bool
        [3, "BTCUSDT", 1, 100.0, 5, True],  # Trade: float for int
        [3, "BTCUSDT", 1, True, 5, True],  # Trade: bool for int
        [3, 7, 1, 100, 5, True],  # Trade: int for str
        [10, "s", "BTCUSDT", "o", 3, 100, 5],  # OrderIntent: side 3
        [10, "s", "BTCUSDT", "o", 0, 100, 5],  # OrderIntent: side 0
        [10, "s", "BTCUSDT", "o", 1, 100, 5, 3],  # OrderIntent: tif 3
        [10, "s", "BTCUSDT", "o", 1, -100, 5],  # OrderIntent: negative price
        [1, "BTCUSDT", 1, "notbytes", b""],  # BookSnapshot: str for bytes
        [50, "risk", 1, -1],  # StateHash: negative hash
        [51, "risk", "live", 1, {"a": "x"}],  # Heartbeat: str counter
        [51, "risk", "live", 1, [1, 2]],  # Heartbeat: list for dict
        [60, 0, 1, {}],  # SequencerEpoch: epoch must be > 0
        [3, "BTCUSDT", 1, 100],  # Trade: missing fields
        [3],  # Trade: no fields at all
        [],  # no tag
        [10, "s", "BTCUSDT", "o", 1, 100],  # OrderIntent: missing qty
        "notalist",
        None,
    ],
)
def test_invalid_body_is_frame_error(body: list) -> None:
    raw = _ingest_with_body(body)
    _assert_frame_error(E.decode_ingest, raw)


@pytest.mark.parametrize(
    ("index", "value"),
    [(1, 5), (2, 0), (2, -1), (3, -1), (4, None), (5, -5), (2, "1"), (2, 1.0)],
)
def test_invalid_ingest_envelope(index: int, value: object) -> None:
    plain = _plain(E.ingest("feed", 1, 0, "k", 0, E.Clock(1)))
    plain[index] = value
    _assert_frame_error(E.decode_ingest, msgpack.packb(plain))


def test_missing_envelope_fields() -> None:
    ing = _plain(E.ingest("feed", 1, 0, "k", 0, E.Clock(1)))
    seq = _plain(E.encode(_clock_sequenced()))
    for n in range(len(ing)):
        _assert_frame_error(E.decode_ingest, msgpack.packb(ing[:n]))
    for n in range(len(seq)):
        _assert_frame_error(E.decode_sequenced, msgpack.packb(seq[:n]))
    for n in range(6):
        _assert_frame_error(E.decode_head, msgpack.packb(seq[:n]))


@pytest.mark.parametrize(("index", "value"), [(1, 0), (2, 0), (3, -1), (4, 1), (5, -1), (8, -1)])
def test_invalid_sequenced_envelope(index: int, value: object) -> None:
    plain = _plain(E.encode(_clock_sequenced()))
    plain[index] = value
    _assert_frame_error(E.decode_sequenced, msgpack.packb(plain))


def test_map_instead_of_array() -> None:
    _assert_frame_error(E.decode_ingest, msgpack.packb({"v": 1, "source": "x"}))
    _assert_frame_error(E.decode_sequenced, msgpack.packb({"v": 1}))


def test_sequenced_is_not_ingest_and_back() -> None:
    _assert_frame_error(E.decode_ingest, E.encode(_clock_sequenced()))
    _assert_frame_error(E.decode_sequenced, E.ingest("feed", 1, 0, "k", 0, E.Clock(1)))


# ---------------------------------------------------------------- bugs found (xfail strict)
def _with_bad_utf8(raw: bytes) -> bytes:
    assert raw.count(b"\xa4feed") == 1
    return raw.replace(b"\xa4feed", b"\xa4fe\xff\xfe")


@pytest.mark.parametrize("which", ["ingest", "sequenced", "head"])
def test_invalid_utf8_string_is_a_frame_error(which: str) -> None:
    if which == "ingest":
        raw, fn = _with_bad_utf8(E.ingest("feed", 1, 0, "k", 0, E.Clock(1))), E.decode_ingest
    else:
        raw = _with_bad_utf8(E.encode(_clock_sequenced(source="feed")))
        fn = E.decode_sequenced if which == "sequenced" else E.decode_head
    _assert_frame_error(fn, raw)


NESTED = b"\x91" * 5000 + b"\x01"  # 5000 nested one-element arrays


def test_deeply_nested_batch_is_a_frame_error() -> None:
    _assert_frame_error(E.split_batch, NESTED)


@pytest.mark.parametrize("which", ["ingest", "head"])
def test_deeply_nested_trailing_element_is_a_frame_error(which: str) -> None:
    if which == "ingest":
        good = E.ingest("feed", 1, 0, "k", 0, E.Clock(1))
        assert good[0] == 0x97  # fixarray of 7
        raw, fn = b"\x98" + good[1:] + NESTED, E.decode_ingest
    else:
        good = E.encode(_clock_sequenced())
        assert good[0] == 0x9A  # fixarray of 10
        raw, fn = b"\x9a" + good[1:-2] + NESTED, E.decode_head  # body replaced by the nested value
        assert _plain(good)[9] == [_tag(E.Clock), 5] and good[-2:] == msgpack.packb([61, 5])[1:]
    _assert_frame_error(fn, raw)


# ---------------------------------------------------------------- book levels
@SETTINGS
@given(
    lv=st.lists(
        st.tuples(st.integers(min_value=I64_MIN, max_value=I64_MAX), st.integers(min_value=I64_MIN, max_value=I64_MAX)),
        max_size=50,
    )
)
def test_pack_unpack_levels(lv: list[tuple[int, int]]) -> None:
    buf = E.pack_levels(lv)
    assert len(buf) == 16 * len(lv)
    arr = E.unpack_levels(buf)
    assert arr.shape == (len(lv), 2) and arr.dtype == np.dtype("<i8")
    assert [tuple(int(x) for x in row) for row in arr] == lv
    assert E.unpack_levels(E.pack_levels(arr)).tolist() == arr.tolist()


def test_packed_levels_are_little_endian_int64_pairs() -> None:
    buf = E.pack_levels([(1, 2)])
    assert buf == (1).to_bytes(8, "little") + (2).to_bytes(8, "little")


def test_unpacked_levels_are_read_only() -> None:
    arr = E.unpack_levels(E.pack_levels([(1, 2)]))
    with pytest.raises(ValueError):
        arr[0, 0] = 5


@pytest.mark.parametrize("n", [1, 8, 15, 17, 31, 33])
def test_unpack_levels_rejects_partial_pairs(n: int) -> None:
    buf = bytes(range(n))
    with pytest.raises(E.FrameError) as ei:
        E.unpack_levels(buf)
    assert ei.value.raw == buf


def test_unpack_levels_empty() -> None:
    assert E.unpack_levels(b"").shape == (0, 2)
