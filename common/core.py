"""The contract between a service's pure core and its transport shell.

A core is a deterministic state machine over the sequenced stream: it is fed
every `Sequenced` event in seq order and returns the events it wants to emit.
It never touches a socket, the wall clock or an unseeded RNG, and its state
holds no floats, so the verifier, the backtester and the tests can drive the
very same core with no sockets at all and get the same outputs and hashes.

Every output carries an idempotency key derived from the event that caused
it: `<producer>:<epoch>:<seq>:<n>` (n = index among that event's outputs).
A replay of the same events yields the same keys, which is how a restarted
service recognises outputs that are already in the log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import msgspec
import xxhash

from common import events


@dataclass(frozen=True, slots=True)
class Output:
    body: events._Body
    key: str
    event_ns: int


class Core(Protocol):
    name: str

    def apply(self, ev: events.Sequenced) -> list[Output]:
        """Consume one sequenced event; return what to emit because of it."""
        ...

    def state(self) -> object:
        """The full state as plain msgpack-encodable data (ints, str, bytes, lists, dicts)."""
        ...

    def load_state(self, state: object) -> None:
        """Restore what state() returned."""
        ...


def parent_of(child_id: str) -> str:
    """The router names children `<parent>.<n>`; a bare parent id is its own parent."""
    head, _, tail = child_id.rpartition(".")
    return head if head and tail.isdigit() else child_id


def cause_seq(key: str) -> int:
    """The seq of the event that caused an output, from its key (0 if not an output key)."""
    parts = key.split(":")
    if len(parts) >= 4 and parts[2].isdigit():
        return int(parts[2])
    return 0


def output_key(producer: str, ev: events.Sequenced, n: int) -> str:
    return f"{producer}:{ev.epoch}:{ev.seq}:{n}"


def outputs_for(producer: str, ev: events.Sequenced, bodies: list[events._Body]) -> list[Output]:
    """Wrap bodies caused by `ev` with their keys; event time is the cause's."""
    return [Output(b, output_key(producer, ev, i), ev.event_ns) for i, b in enumerate(bodies)]


_canon = msgspec.msgpack.Encoder(order="deterministic")
_plain = msgspec.msgpack.Encoder()

# msgpack ext type of an int msgpack cannot hold (below -2**63 or above 2**64 - 1): its
# decimal text. State ints are Python's, unbounded: an account's traded volume in
# notional units (10**-10 USDT on BTCUSDT) passes 2**64 after $1.8bn, and a hash or a
# snapshot must not then fail.
BIGINT_EXT = 1
_MIN, _MAX = -(1 << 63), (1 << 64) - 1


def _widen(obj: object) -> object:
    """obj with every int outside msgpack's range as Ext(BIGINT_EXT, decimal text)."""
    t = type(obj)
    if t is int:
        return obj if _MIN <= obj <= _MAX else msgspec.msgpack.Ext(BIGINT_EXT, str(obj).encode())  # type: ignore[operator]
    if t is dict:
        return {k: _widen(v) for k, v in obj.items()}  # type: ignore[attr-defined]
    if t is list or t is tuple:
        return [_widen(v) for v in obj]  # type: ignore[attr-defined]
    return obj


def pack(obj: object, encoder: msgspec.msgpack.Encoder = _plain) -> bytes:
    """msgpack of obj; an int beyond msgpack's range is written as a BIGINT_EXT ext
    (the walk that does it runs only when such an int is there)."""
    try:
        return encoder.encode(obj)
    except OverflowError:
        return encoder.encode(_widen(obj))


def _ext_hook(code: int, data: memoryview) -> object:
    if code == BIGINT_EXT:
        return int(bytes(data))
    return msgspec.msgpack.Ext(code, bytes(data))


def unpack(data: bytes) -> Any:
    """The inverse of `pack`: BIGINT_EXT exts back to ints."""
    return msgspec.msgpack.decode(data, ext_hook=_ext_hook)


def canonical(state: object) -> bytes:
    """Deterministic msgpack of a state (dict keys sorted), the input of state hashes."""
    return pack(state, _canon)


def state_hash(state: object) -> int:
    return xxhash.xxh3_64_intdigest(canonical(state))
