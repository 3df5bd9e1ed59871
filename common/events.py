"""The event catalogue of the whole engine and its versioned msgpack codec.

Every record is a frozen msgspec Struct encoded as a positional msgpack array
whose first element is an integer tag, so frames stay plain msgpack that any
msgpack reader can open, and decoding is ~3x cheaper than maps.

Two envelopes carry the bodies:

* `Ingest` -- what a producer PUSHes to the sequencer: its own source id and
  source sequence number (for exactly-once ingest), its Lamport time, the
  idempotency key of the effect, and the event time.
* `Sequenced` -- what the sequencer PUBlishes, journals and the logger
  archives: the same plus epoch, global seq, Lamport stamp and receive time.

Both begin with the codec version, so a reader can refuse a frame from a
future format instead of misreading it. Decoding anything malformed or
unknown raises exactly one error type, `FrameError`, carrying the raw bytes.
"""

from __future__ import annotations

import struct
from itertools import chain
from typing import Annotated, Union

import msgspec
import numpy as np

CODEC_VERSION = 1

NonNeg = Annotated[int, msgspec.Meta(ge=0)]
Pos = Annotated[int, msgspec.Meta(gt=0)]
U64 = Annotated[int, msgspec.Meta(ge=0)]  # full uint64 range; msgspec rejects an le bound above int64

# Side / time-in-force / liquidity are small ints so numba kernels and the
# wire share one meaning.
BUY = 1
SELL = 2
SIDES = (BUY, SELL)
GTC, IOC, FOK = 0, 1, 2
MAKER, TAKER = 1, 2


class FrameError(ValueError):
    """A frame that is not a valid event of the current codec version."""

    def __init__(self, reason: str, raw: bytes) -> None:
        super().__init__(f"{reason} (frame of {len(raw)} bytes: {bytes(raw[:48])!r})")
        self.reason = reason
        self.raw = bytes(raw)


class _Body(msgspec.Struct, array_like=True, frozen=True, tag_field="kind"):
    """Base of every event body; `kind` is the integer tag on the wire."""

    @classmethod
    def type_name(cls) -> str:
        return cls.__name__


# ---------------------------------------------------------------- market data
class BookSnapshot(_Body, tag=1):
    """Full book. `bids`/`asks` are packed little-endian int64 (price, qty) pairs."""

    symbol: str
    update_id: NonNeg
    bids: bytes
    asks: bytes


class BookDelta(_Body, tag=2):
    """Changed levels; qty 0 removes a level. Ids are the exchange's U..u."""

    symbol: str
    first_id: NonNeg
    last_id: NonNeg
    bids: bytes
    asks: bytes


class Trade(_Body, tag=3):
    symbol: str
    trade_id: NonNeg
    price: Pos
    qty: Pos
    buyer_maker: bool  # True: the aggressor sold


class BestBidOffer(_Body, tag=4):
    symbol: str
    update_id: NonNeg
    bid_px: NonNeg
    bid_qty: NonNeg
    ask_px: NonNeg
    ask_qty: NonNeg


# ---------------------------------------------------------------- order flow
class OrderIntent(_Body, tag=10):
    strategy: str
    symbol: str
    order_id: str
    side: Annotated[int, msgspec.Meta(ge=1, le=2)]
    price: NonNeg  # 0 = market order
    qty: Pos
    tif: Annotated[int, msgspec.Meta(ge=0, le=2)] = GTC
    post_only: bool = False
    algo: str = ""  # routing algorithm; "" = the router's default for the symbol
    # The sequencer's stamp (recv_ns) of the event the intent answers: risk refuses an
    # intent sequenced too long after it (a restarted strategy's late outputs).
    cause_recv_ns: NonNeg = 0


class CancelIntent(_Body, tag=11):
    strategy: str
    symbol: str
    order_id: str


class CancelAll(_Body, tag=12):
    origin: str
    symbol: str  # "" = every symbol
    reason: str


class RiskApproved(_Body, tag=20):
    order_id: str
    symbol: str
    side: int
    price: NonNeg
    qty: Pos
    tif: int
    post_only: bool
    intent_seq: NonNeg
    algo: str = ""


class RiskRejected(_Body, tag=21):
    order_id: str
    symbol: str
    reason: str  # a reason code such as "max_order_qty"
    detail: str
    intent_seq: NonNeg


class ChildOrder(_Body, tag=30):
    parent_id: str
    child_id: str
    venue: str
    symbol: str
    side: int
    price: NonNeg
    qty: Pos
    tif: int
    post_only: bool
    algo: str


class ChildCancel(_Body, tag=31):
    child_id: str
    venue: str
    symbol: str


class OrderAck(_Body, tag=40):
    venue: str
    child_id: str
    venue_order_id: str
    symbol: str


class OrderFill(_Body, tag=41):
    venue: str
    child_id: str
    symbol: str
    side: int
    price: Pos
    qty: Pos
    leaves_qty: NonNeg
    fee: int  # quote-currency units at the symbol's notional scale; negative = rebate
    liquidity: int  # MAKER / TAKER
    trade_id: str
    # Commission the venue took in the BASE asset (Binance's default on a buy), in
    # 10**-8 units of that asset, as venue balances are counted. `fee` already holds
    # its quote value; this says the base balance grew by that much less than qty.
    fee_base: NonNeg = 0


class OrderCancelled(_Body, tag=42):
    venue: str
    child_id: str
    symbol: str
    leaves_qty: NonNeg
    reason: str


class OrderRejected(_Body, tag=43):
    venue: str
    child_id: str
    symbol: str
    reason: str


class OrderExpired(_Body, tag=44):
    venue: str
    child_id: str
    symbol: str
    leaves_qty: NonNeg


class CancelRejected(_Body, tag=45):
    """A venue refused a cancel (the order is unknown to it, or already final)."""

    venue: str
    child_id: str
    symbol: str
    reason: str


# ---------------------------------------------------------------- control
class StateHash(_Body, tag=50):
    service: str
    covers_seq: NonNeg
    hash: U64


class Heartbeat(_Body, tag=51):
    service: str
    state: str  # starting / recovering / live / stopping
    last_seq: NonNeg
    counters: dict[str, int]


class HashDivergence(_Body, tag=53):
    """The verifier's replay of `service` disagrees with the hash it published."""

    service: str
    covers_seq: NonNeg
    expected: U64  # the verifier's
    published: U64  # the service's


class Correction(_Body, tag=54):
    """A difference reconciliation found between the engine's view and a venue's,
    written down explicitly instead of silently overwriting either side."""

    service: str
    what: str  # unknown_venue_order / missing_at_venue / balance_mismatch / inject_refused
    venue: str
    symbol: str
    child_id: str
    detail: str


class VenueSnapshot(_Body, tag=46):
    """What a live venue says it holds, read by the execution shell at reconcile
    time and sequenced (source = the venue), so the comparison with the log is
    made by the core and replays identically. `orders` rows are
    (client_order_id, symbol, side, price, qty, filled); `balances` are free +
    locked per asset in 10**-8 units. `ok` is False (and `detail` says why)
    when the venue could not be read; such a snapshot reconciles nothing."""

    venue: str
    orders: list[tuple[str, str, int, int, int, int]]
    balances: dict[str, int]
    ok: bool
    detail: str


class OperatorCommand(_Body, tag=52):
    command: str  # kill / reset-kill / reset-breaker / ...
    arg: str
    operator: str


class SequencerEpoch(_Body, tag=60):
    """First event of every sequencer run: the new epoch and, so producers can
    confirm what the previous run accepted, the last source seq per source."""

    epoch: Pos
    first_seq: Pos
    sources: dict[str, int]


class Clock(_Body, tag=61):
    """The engine's only source of time (event_ns of the envelope) and the
    sequencer's heartbeat: `last_seq` lets consumers notice a lost tail."""

    last_seq: NonNeg


class GapDeclared(_Body, tag=62):
    """A hole a producer or the logger could not fill, made explicit."""

    source: str
    from_seq: NonNeg
    to_seq: NonNeg
    reason: str


Body = Union[  # noqa: UP007 - one subscript keeps the catalogue a single readable list
    BookSnapshot,
    BookDelta,
    Trade,
    BestBidOffer,
    OrderIntent,
    CancelIntent,
    CancelAll,
    RiskApproved,
    RiskRejected,
    ChildOrder,
    ChildCancel,
    OrderAck,
    OrderFill,
    OrderCancelled,
    OrderRejected,
    OrderExpired,
    CancelRejected,
    VenueSnapshot,
    StateHash,
    Heartbeat,
    OperatorCommand,
    HashDivergence,
    Correction,
    SequencerEpoch,
    Clock,
    GapDeclared,
]
BODY_TYPES: tuple[type[_Body], ...] = Body.__args__  # type: ignore[attr-defined]
BY_NAME: dict[str, type[_Body]] = {t.__name__: t for t in BODY_TYPES}
MARKET_DATA = (BookSnapshot, BookDelta, Trade, BestBidOffer)


class Ingest(msgspec.Struct, array_like=True, frozen=True):
    v: int
    source: str
    source_seq: Pos
    lamport: NonNeg
    key: str  # idempotency key: producer id + the (epoch, seq) that caused it
    event_ns: NonNeg
    body: Body


class Sequenced(msgspec.Struct, array_like=True, frozen=True):
    v: int
    seq: Pos
    epoch: Pos
    lamport: NonNeg
    source: str
    source_seq: NonNeg
    key: str
    event_ns: NonNeg
    recv_ns: NonNeg
    body: Body


class SequencedHead(msgspec.Struct, array_like=True, frozen=True):
    """Prefix of `Sequenced`: decodes seq and source without touching the body."""

    v: int
    seq: int
    epoch: int
    lamport: int
    source: str
    source_seq: int


def head_of(ev: Sequenced) -> SequencedHead:
    """The head of an already-decoded event (what producers confirm from)."""
    return SequencedHead(ev.v, ev.seq, ev.epoch, ev.lamport, ev.source, ev.source_seq)


_enc = msgspec.msgpack.Encoder()
_ingest_dec = msgspec.msgpack.Decoder(Ingest)
_seq_dec = msgspec.msgpack.Decoder(Sequenced)
_head_dec = msgspec.msgpack.Decoder(SequencedHead)
_batch_dec = msgspec.msgpack.Decoder(list[msgspec.Raw])


# Hostile bytes can fail in more ways than msgspec's own errors: invalid UTF-8
# in a str field, or nesting deep enough to exhaust the recursion limit.
_DECODE_ERRORS = (
    msgspec.DecodeError,
    msgspec.ValidationError,
    UnicodeDecodeError,
    RecursionError,
    ValueError,
    TypeError,
)


def encode(obj: msgspec.Struct) -> bytes:
    return _enc.encode(obj)


def _decode(dec: msgspec.msgpack.Decoder, raw: bytes, what: str):  # type: ignore[no-untyped-def]
    try:
        obj = dec.decode(raw)
    except _DECODE_ERRORS as exc:
        raise FrameError(f"malformed {what}: {type(exc).__name__}: {exc}", raw) from None
    if obj.v != CODEC_VERSION:
        raise FrameError(f"{what} codec version {obj.v}, expected {CODEC_VERSION}", raw)
    return obj


def decode_ingest(raw: bytes) -> Ingest:
    return _decode(_ingest_dec, raw, "ingest frame")  # type: ignore[no-any-return]


def decode_sequenced(raw: bytes) -> Sequenced:
    return _decode(_seq_dec, raw, "sequenced event")  # type: ignore[no-any-return]


def decode_head(raw: bytes) -> SequencedHead:
    return _decode(_head_dec, raw, "sequenced event")  # type: ignore[no-any-return]


def encode_batch(raws: list[bytes]) -> bytes:
    """One stream frame: a msgpack array of already-encoded sequenced events."""
    return _enc.encode([msgspec.Raw(r) for r in raws])


def split_batch(frame: bytes) -> list[bytes]:
    try:
        return [bytes(r) for r in _batch_dec.decode(frame)]
    except _DECODE_ERRORS as exc:
        raise FrameError(f"malformed stream batch: {exc}", frame) from None


def ingest(source: str, source_seq: int, lamport: int, key: str, event_ns: int, body: _Body) -> bytes:
    return _enc.encode(Ingest(CODEC_VERSION, source, source_seq, lamport, key, event_ns, body))


# ---------------------------------------------------------------- book levels
LEVEL_DTYPE = np.dtype("<i8")


def pack_levels(levels: list[tuple[int, int]] | np.ndarray) -> bytes:
    """(price, qty) pairs -> packed little-endian int64 bytes."""
    arr = np.asarray(levels, dtype=LEVEL_DTYPE).reshape(-1, 2)
    return arr.tobytes()


def pack_pairs(levels: list[tuple[int, int]]) -> bytes:
    """`pack_levels` of a list of (price, qty) pairs of Python ints in int64 range: the same bytes.

    For the feed's per-event books, which carry a handful of levels: there
    numpy's array setup costs more than the packing. Unlike pack_levels it
    takes nothing else (no arrays, no ragged or non-int rows).
    """
    if not levels:  # one side of most deltas
        return b""
    return struct.pack(f"<{2 * len(levels)}q", *chain.from_iterable(levels))


def unpack_levels(buf: bytes) -> np.ndarray:
    """Packed bytes -> read-only (n, 2) int64 array, no copy."""
    if len(buf) % 16:
        raise FrameError(f"book levels of {len(buf)} bytes are not whole (price, qty) pairs", buf)
    return np.frombuffer(buf, dtype=LEVEL_DTYPE).reshape(-1, 2)
