"""Binance spot messages -> normalized integer events, and the local-book sync.

Pure code: no sockets, no clock. The replay source and the live client feed
the same `Normalizer` with raw messages (the capture format's JSON, or the
websocket text and the REST snapshot body) and get back `(event_ns, body)`
items whose bodies come from `common.events`.

Every input line is accounted for exactly once in `Counters`: `accepted` (by
the type of the event it produced), `dropped` (by reason: harmless, such as a
diff older than the snapshot) or `rejected` (by reason: malformed or
inconsistent input, logged). A diff-depth message that arrives while a symbol
waits for its snapshot is buffered and counted when its fate is known (after
the snapshot, or at `finish()`), so after `finish()`
``sum(accepted) + sum(dropped) + sum(rejected) == lines``.

The diff-depth sync follows Binance's documented local order book procedure:
buffer diffs until a REST snapshot arrives, drop the buffered diffs with
``u <= lastUpdateId``, require the first applied diff to satisfy
``U <= lastUpdateId + 1 <= u`` and every next one ``U == previous u + 1``.
Anything else (or a diff that crosses the book) declares a gap (a
`GapDeclared` event, source ``depth:<SYMBOL>``), clears the book and waits for
a new snapshot; the live client sees that in `needs_snapshot()` and refetches.
"""

from __future__ import annotations

import collections
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import msgspec

from common.book import PriceBook
from common.events import (
    BestBidOffer,
    BookDelta,
    BookSnapshot,
    GapDeclared,
    Trade,
    _Body,
    pack_pairs,
)
from common.hotpath.levels_json import parse_levels, scratch
from common.metrics import METRICS
from common.units import BUILTIN, INT64_MAX, MAX_DECIMAL_LEN, SymbolSpec, SymbolTable, UnitError, parse_decimal

log = logging.getLogger(__name__)

Item = tuple[int, _Body]  # (event time in ns, event body)

# Reject reasons (malformed or inconsistent input).
R_LINE_TOO_LONG = "line_too_long"
R_BAD_LINE = "bad_line"  # no "<ns> <json>" shape
R_BAD_TIMESTAMP = "bad_timestamp"
R_BAD_JSON = "bad_json"
R_NOT_OBJECT = "not_object"
R_MISSING_FIELD = "missing_field"
R_BAD_FIELD = "bad_field"  # wrong type of an id, time or flag
R_BAD_PRICE = "bad_price"
R_BAD_QTY = "bad_qty"
R_OFF_GRID = "off_grid"
R_BAD_LEVEL = "bad_level"
R_UNKNOWN_STREAM = "unknown_stream"
R_UNKNOWN_SYMBOL = "unknown_symbol"
R_SYMBOL_MISMATCH = "symbol_mismatch"
R_CROSSED_BOOK = "crossed_book"
R_CROSSED_BBO = "crossed_bbo"
R_DEPTH_GAP = "depth_gap"
R_BAD_IDS = "bad_ids"  # U > u
# Drop reasons (well-formed but not needed).
D_BLANK = "blank_line"
D_STALE = "stale_diff"  # u <= the last applied id (or the snapshot's)
D_STALE_SNAPSHOT = "stale_snapshot"  # snapshot not newer than the synced book
D_SNAPSHOT_TOO_OLD = "snapshot_too_old"  # older than the first buffered diff
D_BUFFER_OVERFLOW = "buffer_overflow"
D_UNSYNCED_AT_END = "unsynced_at_end"  # buffered, and no snapshot ever came
D_NO_SYMBOL = "snapshot_without_symbol"
# A depth5/10/20 partial book while the symbol's diff-depth book is synced: the
# partial would replace a full-depth book with 20 levels every 100 ms.
D_PARTIAL_SYNCED = "partial_depth_while_synced"

_MS = 1_000_000
_PEEK = 48  # bytes of a message looked at for its stream's kind (a combined stream's name comes first)
_LOG_FIRST = 20  # log every reject of a reason up to this many, then every 1000th


class Reject(Exception):
    """One input line that cannot become an event."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class Counters:
    lines: int = 0
    accepted: collections.Counter[str] = field(default_factory=collections.Counter)
    dropped: collections.Counter[str] = field(default_factory=collections.Counter)
    rejected: collections.Counter[str] = field(default_factory=collections.Counter)
    events: collections.Counter[str] = field(default_factory=collections.Counter)  # emitted, incl. gaps

    def settled(self) -> int:
        return sum(self.accepted.values()) + sum(self.dropped.values()) + sum(self.rejected.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "accepted": dict(sorted(self.accepted.items())),
            "dropped": dict(sorted(self.dropped.items())),
            "rejected": dict(sorted(self.rejected.items())),
            "events": dict(sorted(self.events.items())),
        }

    def flat(self) -> dict[str, int]:
        """Flat int counters for a Heartbeat."""
        out = {"lines": self.lines}
        out.update({f"accepted.{k}": v for k, v in self.accepted.items()})
        out.update({f"dropped.{k}": v for k, v in self.dropped.items()})
        out.update({f"rejected.{k}": v for k, v in self.rejected.items()})
        return out


# ---------------------------------------------------------------- the book
LocalBook = PriceBook  # the feed's name for it


# ---------------------------------------------------------------- parsing helpers
def _field(data: dict[str, Any], key: str) -> Any:
    try:
        return data[key]
    except KeyError:
        raise Reject(R_MISSING_FIELD, key) from None


def _int_field(data: dict[str, Any], key: str) -> int:
    v = _field(data, key)
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise Reject(R_BAD_FIELD, f"{key}={v!r}")
    return v


def _opt_ms(data: dict[str, Any], key: str) -> int | None:
    v = data.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise Reject(R_BAD_FIELD, f"{key}={v!r}")
    return v * _MS


_DEC_CACHE: list[dict[str, int]] = [{} for _ in range(19)]
_DEC_CACHE_MAX = 200_000
_POW10 = tuple(10**i for i in range(19))


def _plain_decimal(text: str, scale: int) -> int | None:
    """`parse_decimal(text, scale)` for the one shape market data sends ("61837.63000000"), else None.

    None means "not that shape, or not valid": the caller then asks
    parse_decimal, so unusual input gets parse_decimal's own verdict and message.
    Only ASCII digits pass (int() alone would also take signs, blanks,
    underscores and non-ASCII digits).
    """
    whole, dot, frac = text.partition(".")
    if not whole.isdigit() or not text.isascii() or len(text) > MAX_DECIMAL_LEN or not 0 <= scale <= 18:
        return None
    if dot:
        if not frac.isdigit():
            return None
        if len(frac) > scale:
            if frac[scale:].strip("0"):
                return None
            frac = frac[:scale]
    value = int(whole + frac) * _POW10[scale - len(frac)]
    return value if value <= INT64_MAX else None


def _decimal(text: Any, scale: int, reason: str) -> int:
    """Exact decimal -> int at `scale`; a valid decimal finer than the scale is off the grid.

    Parsed values are memoized per scale (market data repeats the same price
    strings all the time); the cache is bounded and only holds successes.
    """
    cache = _DEC_CACHE[scale]
    try:
        return cache[text]
    except KeyError:
        pass
    except TypeError:  # unhashable (a list or dict where a string belongs)
        raise Reject(reason, f"decimal must be a string, got {type(text).__name__}") from None
    value = _plain_decimal(text, scale) if type(text) is str else None
    if value is not None:
        return _remember(cache, text, value)
    try:
        value = parse_decimal(text, scale)
    except UnitError as exc:
        # Off the grid = a valid decimal once cut to the scale (only extra digits were wrong).
        dot = text.find(".") if isinstance(text, str) else -1
        if dot > 0 and len(text) > dot + 1 + scale and text[dot + 1 + scale :].isdigit():
            try:
                parse_decimal(text[: dot + 1 + scale] if scale else text[:dot], scale)
            except UnitError:
                pass
            else:
                raise Reject(R_OFF_GRID, str(exc)) from None
        raise Reject(reason, str(exc)) from None
    return _remember(cache, text, value)


def _remember(memo: dict[str, int], text: Any, value: int) -> int:
    """Memoize a success (bounded: the memo starts over when full); only str keys, as JSON gives them."""
    if type(text) is str:
        if len(memo) >= _DEC_CACHE_MAX:
            memo.clear()
        memo[text] = value
    return value


# id(spec) -> (spec, price text -> valid price, qty text -> valid qty incl. 0). Holding the spec keeps its
# id from being reused; keyed by identity because a SymbolTable may replace a symbol's spec.
_MEMO: dict[int, tuple[SymbolSpec, dict[str, int], dict[str, int]]] = {}


def _memo(spec: SymbolSpec) -> tuple[dict[str, int], dict[str, int]]:
    """Strings that already passed this spec's `_price` / `_qty(allow_zero=True)`: one lookup instead of
    the parse, range and grid checks (a capture repeats the same few thousand strings)."""
    m = _MEMO.get(id(spec))
    if m is None:
        m = _MEMO[id(spec)] = (spec, {}, {})
    return m[1], m[2]


def _memo_price(spec: SymbolSpec, prices: dict[str, int], text: Any, zero_ok: bool = False) -> int:
    """`_price` (or `_touch_price` when zero_ok), through the spec's price memo."""
    try:
        return prices[text]
    except (KeyError, TypeError):
        pass
    px = _touch_price(spec, text) if zero_ok else _price(spec, text)
    return _remember(prices, text, px) if px else px


def _memo_qty(spec: SymbolSpec, qtys: dict[str, int], text: Any, allow_zero: bool) -> int:
    """`_qty` through the spec's qty memo (which also holds zeros: they pass only when allow_zero)."""
    try:
        q = qtys[text]
    except (KeyError, TypeError):
        pass
    else:
        if q or allow_zero:
            return q
    return _remember(qtys, text, _qty(spec, text, allow_zero))


def _price(spec: SymbolSpec, text: Any) -> int:
    px = _decimal(text, spec.price_scale, R_BAD_PRICE)
    if px <= 0:
        raise Reject(R_BAD_PRICE, f"non-positive price {text!r}")
    if px % spec.tick:
        raise Reject(R_OFF_GRID, f"price {text!r} not on tick {spec.fmt_price(spec.tick)}")
    return px


def _touch_price(spec: SymbolSpec, text: Any) -> int:
    """A bookTicker price: zero is allowed (an empty side)."""
    if _decimal(text, spec.price_scale, R_BAD_PRICE) == 0:
        return 0
    return _price(spec, text)


def _qty(spec: SymbolSpec, text: Any, allow_zero: bool) -> int:
    # Only the atom grid (qty_scale) binds a quantity: a book level or a trade
    # aggregates resting orders, some placed under an older, finer lot step
    # (the 2024 captures hold "25.42618900" with step 0.00001), so the order
    # entry step does not apply to market data.
    q = _decimal(text, spec.qty_scale, R_BAD_QTY)
    if q == 0 and not allow_zero:
        raise Reject(R_BAD_QTY, f"zero quantity {text!r}")
    return q


def _levels(spec: SymbolSpec, raw: Any, allow_zero: bool) -> list[tuple[int, int]]:
    if not isinstance(raw, list):
        raise Reject(R_BAD_LEVEL, f"levels must be a list, got {type(raw).__name__}")
    prices, qtys = _memo(spec)
    out = []
    for lvl in raw:
        # Memo hits inline (a capture's book levels are most of its strings); a miss,
        # a zero where none is allowed or a malformed level takes the checked way below.
        try:
            if type(lvl) is list and len(lvl) == 2:
                px, q = prices[lvl[0]], qtys[lvl[1]]
                if q or allow_zero:
                    out.append((px, q))
                    continue
        except (KeyError, TypeError):
            pass
        if not isinstance(lvl, list) or len(lvl) != 2:
            raise Reject(R_BAD_LEVEL, f"level {lvl!r:.60}")
        out.append((_memo_price(spec, prices, lvl[0]), _memo_qty(spec, qtys, lvl[1], allow_zero)))
    return out


def parse_local_ns(text: bytes) -> int:
    """The capture's local timestamp, in ns; the 2023 captures use us (and ms is tolerated)."""
    if not text.isdigit() or len(text) > 20:
        raise Reject(R_BAD_TIMESTAMP, repr(text[:24]))
    ts = int(text)
    if ts < 10**14:  # milliseconds (1.7e12 today)
        return ts * 1_000_000
    if ts < 10**17:  # microseconds (1.7e15 today)
        return ts * 1_000
    return ts


# ---------------------------------------------------------------- depth sync
AWAITING, SYNCED = "awaiting_snapshot", "synced"


@dataclass
class _Diff:
    event_ns: int
    first: int
    last: int
    bids: list[tuple[int, int]]
    asks: list[tuple[int, int]]
    packed: tuple[bytes, bytes] | None = None  # (bids, asks) as pack_pairs gives them, when already made


class _DiffData(msgspec.Struct):
    """A depth diff's fields as the fast path takes them: the level arrays left as raw JSON."""

    U: int
    u: int
    b: msgspec.Raw
    a: msgspec.Raw
    e: str = "depthUpdate"
    E: int | None = None
    s: str | None = None


class _BboData(msgspec.Struct):
    u: int
    b: str
    B: str
    a: str
    A: str
    s: str | None = None
    E: int | None = None
    T: int | None = None


class _TradeData(msgspec.Struct):
    t: int
    p: str
    q: str
    m: bool
    e: str = "trade"
    s: str | None = None
    T: int | None = None
    E: int | None = None


_Data = TypeVar("_Data")


class _Message(msgspec.Struct, Generic[_Data]):
    """A combined-stream message: the stream's name and its data, typed per kind."""

    stream: str
    data: _Data


_diff_dec = msgspec.json.Decoder(_Message[_DiffData])
_bbo_dec = msgspec.json.Decoder(_Message[_BboData])
_trade_dec = msgspec.json.Decoder(_Message[_TradeData])


class DepthSync:
    """The diff-depth state machine of one symbol (Binance's local book procedure)."""

    def __init__(self, symbol: str, buffer_limit: int) -> None:
        self.symbol = symbol
        self.state = AWAITING
        self.last_id = 0
        self.book = LocalBook()
        self.buffer: collections.deque[_Diff] = collections.deque()
        self.buffer_limit = buffer_limit
        self.gaps = 0
        self._bridged = False  # the first diff after a snapshot has been applied


_json = msgspec.json.Decoder()


class Normalizer:
    """Raw Binance messages in, `(event_ns, body)` items out; counts every line."""

    # Combined-stream diffs, best bid/offers and trades try the _fast_* paths first (False:
    # the checked way only, for tests).
    fast_paths = True

    def __init__(
        self,
        table: SymbolTable = BUILTIN,
        *,
        max_line_bytes: int = 1 << 20,
        default_symbol: str = "",
        buffer_limit: int = 10_000,
    ) -> None:
        self.table = table
        self.max_line_bytes = max_line_bytes
        self.default_symbol = default_symbol.upper()
        self.buffer_limit = buffer_limit
        self.counters = Counters()
        self.syncs: dict[str, DepthSync] = {}
        self._last_symbol = ""
        self._logged: collections.Counter[str] = collections.Counter()
        self._scratch = scratch()  # parse_levels' output, reused by every diff
        # Load the kernel now (from numba's cache: ~0.3 s), not on the first diff: a live
        # feed's first book would wait for it, and a backtest's read-ahead child would
        # load it again after the fork instead of inheriting it.
        parse_levels(b"[]", self._scratch, 0, 0, 1, True)
        self._normalize_hist = METRICS.stage("feed_normalize")  # one lookup, not one a message

    # ------------------------------------------------------------ accounting
    def _accept(self, out: list[Item], event_ns: int, body: _Body) -> None:
        name = type(body).__name__
        self.counters.accepted[name] += 1
        self.counters.events[name] += 1
        out.append((event_ns, body))

    def _drop(self, reason: str) -> None:
        self.counters.dropped[reason] += 1

    def _reject(self, reason: str, detail: str) -> None:
        self.counters.rejected[reason] += 1
        n = self._logged[reason] = self._logged[reason] + 1
        if n <= _LOG_FIRST or n % 1000 == 0:
            log.warning("feed: rejected line %d: %s: %s (%d so far)", self.counters.lines, reason, detail, n)

    def sync(self, symbol: str) -> DepthSync:
        s = self.syncs.get(symbol)
        if s is None:
            s = self.syncs[symbol] = DepthSync(symbol, self.buffer_limit)
        return s

    def book(self, symbol: str) -> LocalBook:
        return self.sync(symbol.upper()).book

    def needs_snapshot(self) -> list[str]:
        """Symbols waiting for a REST snapshot with diffs already buffered (the live client fetches)."""
        return [s.symbol for s in self.syncs.values() if s.state == AWAITING and s.buffer]

    # ------------------------------------------------------------ entry points
    def feed_line(self, line: bytes) -> list[Item]:
        """One line of the raw capture format: ``<local ns> <JSON>`` (newline optional)."""
        self.counters.lines += 1
        out: list[Item] = []
        try:
            if len(line) > self.max_line_bytes:
                raise Reject(R_LINE_TOO_LONG, f"{len(line)} bytes > {self.max_line_bytes}")
            line = line.rstrip(b"\r\n")
            if not line or line.isspace():  # what `not line.strip()` says, without copying the line
                self._drop(D_BLANK)
                return out
            ts, sep, payload = line.partition(b" ")
            if not sep:
                raise Reject(R_BAD_LINE, "no '<ns> <json>' separator")
            t0 = time.perf_counter_ns()
            self._message(parse_local_ns(ts), payload, "", out)
            self._normalize_hist.record(time.perf_counter_ns() - t0)
        except Reject as rej:
            self._reject(rej.reason, rej.detail)
        return out

    def feed_message(self, local_ns: int, payload: bytes | str, snapshot_symbol: str = "") -> list[Item]:
        """One message as received (websocket text, or a REST snapshot body with its symbol)."""
        self.counters.lines += 1
        out: list[Item] = []
        if isinstance(payload, str):
            payload = payload.encode()
        try:
            if len(payload) > self.max_line_bytes:
                raise Reject(R_LINE_TOO_LONG, f"{len(payload)} bytes > {self.max_line_bytes}")
            t0 = time.perf_counter_ns()
            self._message(local_ns, payload, snapshot_symbol.upper(), out)
            self._normalize_hist.record(time.perf_counter_ns() - t0)
            # Exchange event time to our receipt (live: the network and the
            # exchange's own publishing delay; a capture's clock may lag, so
            # only non-negative values count).
            for event_ns, _body in out:
                if 0 < event_ns <= local_ns:
                    METRICS.record("feed_recv", local_ns - event_ns)
        except Reject as rej:
            self._reject(rej.reason, rej.detail)
        return out

    def line_too_long(self, nbytes: int) -> None:
        """Account for a line the reader refused to load whole."""
        self.counters.lines += 1
        self._reject(R_LINE_TOO_LONG, f"{nbytes}+ bytes > {self.max_line_bytes}")

    def finish(self) -> list[Item]:
        """End of input: whatever is still buffered never got a snapshot."""
        for s in self.syncs.values():
            while s.buffer:
                s.buffer.popleft()
                self._drop(D_UNSYNCED_AT_END)
        return []

    def declare_gap(self, symbol: str, reason: str, local_ns: int) -> list[Item]:
        """Drop a symbol's sync from outside (e.g. the live client gave up on it)."""
        s = self.sync(symbol.upper())
        out: list[Item] = []
        if s.state == SYNCED:
            self._gap(s, s.last_id + 1, s.last_id + 1, reason, local_ns, out)
        return out

    # ------------------------------------------------------------ dispatch
    def _spec(self, symbol: Any) -> SymbolSpec:
        if not isinstance(symbol, str) or symbol not in self.table:
            raise Reject(R_UNKNOWN_SYMBOL, repr(symbol))
        return self.table[symbol]

    def _message(self, local_ns: int, payload: bytes, snapshot_symbol: str, out: list[Item]) -> None:
        if self.fast_paths:
            head = payload[:_PEEK]
            if b"@bookTicker" in head:
                if self._fast_bbo(local_ns, payload, out):
                    return
            elif b"@trade" in head:
                if self._fast_trade(local_ns, payload, out):
                    return
            elif (b"@depth@" in head or b'@depth"' in head) and self._fast_diff(local_ns, payload, out):
                return
        try:
            msg = _json.decode(payload)
        except msgspec.DecodeError as exc:
            raise Reject(R_BAD_JSON, str(exc)) from None
        if not isinstance(msg, dict):
            raise Reject(R_NOT_OBJECT, type(msg).__name__)
        stream = msg.get("stream")
        if stream is None:
            if "lastUpdateId" in msg:  # the REST snapshot
                self._snapshot(local_ns, msg, snapshot_symbol, out)
                return
            if msg.get("e") == "depthUpdate" or msg.get("e") == "trade" or ("u" in msg and "B" in msg):
                stream = ""  # a raw (non-combined) stream message; dispatch on its content
                data = msg
            else:
                raise Reject(R_UNKNOWN_STREAM, "no 'stream' key and not a snapshot")
        else:
            data = msg.get("data")
            if not isinstance(stream, str):
                raise Reject(R_UNKNOWN_STREAM, repr(stream))
            if not isinstance(data, dict):
                raise Reject(R_MISSING_FIELD if data is None else R_NOT_OBJECT, "data")
        sym_part, _, kind = stream.partition("@")
        if not kind:  # raw stream: infer the kind from the payload
            e = data.get("e")
            kind = "depth" if e == "depthUpdate" else "trade" if e == "trade" else "bookTicker"
        s = data.get("s")
        symbol = sym_part.upper() if sym_part else (s if isinstance(s, str) else "")
        if s is not None and s != symbol:
            raise Reject(R_SYMBOL_MISMATCH, f"stream {stream!r} carries s={s!r}")
        if kind.startswith("depth"):
            spec = self._spec(symbol)
            self._last_symbol = symbol
            levels = kind[5:].partition("@")[0]
            if levels == "":
                self._diff(local_ns, spec, data, out)
                return
            if levels in ("5", "10", "20"):
                self._partial(local_ns, spec, data, out)
                return
            raise Reject(R_UNKNOWN_STREAM, repr(stream))
        if kind == "trade":
            spec = self._spec(symbol)
            self._last_symbol = symbol
            self._trade(local_ns, spec, data, out)
            return
        if kind == "bookTicker":
            spec = self._spec(symbol)
            self._last_symbol = symbol
            self._bbo(local_ns, spec, data, out)
            return
        raise Reject(R_UNKNOWN_STREAM, repr(stream))

    # ------------------------------------------------------------ fast paths
    # Each takes a combined-stream message of its kind in exactly Binance's shape (a
    # diff's levels parsed by common.hotpath.levels_json). For anything else it returns
    # False, having changed nothing the checked way would not, and the checked way
    # (_message onward) accepts or rejects the message as it always has. A price or
    # qty string the memo does not know goes through the checked way's own helpers, in
    # its order, so it raises the same Reject. What they accept becomes the very events
    # the checked way makes: tests/unit/feed/test_fast_paths_agree.py holds the two
    # ways to the same events, counters and books on every real capture and on broken
    # messages. Why: the checked way's 20-odd Python calls a message were most of the
    # feed's time, and decoding a diff's level strings most of a diff's.

    def _fast_spec(self, stream: str, kind: str, s: str | None) -> SymbolSpec | None:
        """The spec of a `<symbol>@<kind>` stream whose data names the same symbol (or none)."""
        sym_part, _, k = stream.partition("@")
        # a diff's stream is "depth" or "depth@<speed>" (depth5/10/20 are partial books)
        if not sym_part or (k != kind and not (kind == "depth" and k.startswith("depth@"))):
            return None
        symbol = sym_part.upper()
        if s is not None and s != symbol:
            return None
        spec = self.table.get(symbol)
        if spec is not None:
            self._last_symbol = symbol
        return spec

    def _fast_bbo(self, local_ns: int, payload: bytes, out: list[Item]) -> bool:
        try:
            m = _bbo_dec.decode(payload)
        except msgspec.DecodeError:
            return False
        d = m.data
        if d.u < 0 or (d.E is not None and d.E < 0) or (not d.E and d.T is not None and d.T < 0):
            return False
        spec = self._fast_spec(m.stream, "bookTicker", d.s)
        if spec is None:
            return False
        prices, qtys = _memo(spec)
        bpx = prices.get(d.b)
        if bpx is None:
            bpx = _memo_price(spec, prices, d.b, zero_ok=True)
        bq = qtys.get(d.B)
        if bq is None:
            bq = _memo_qty(spec, qtys, d.B, allow_zero=True)
        apx = prices.get(d.a)
        if apx is None:
            apx = _memo_price(spec, prices, d.a, zero_ok=True)
        aq = qtys.get(d.A)
        if aq is None:
            aq = _memo_qty(spec, qtys, d.A, allow_zero=True)
        if bpx and apx and bpx >= apx:
            return False  # the checked way rejects it, with its message
        t_ns = d.E * _MS if d.E else d.T * _MS if d.T else local_ns
        self._accept(out, t_ns, BestBidOffer(spec.symbol, d.u, bpx, bq, apx, aq))
        return True

    def _fast_trade(self, local_ns: int, payload: bytes, out: list[Item]) -> bool:
        try:
            m = _trade_dec.decode(payload)
        except msgspec.DecodeError:
            return False
        d = m.data
        if d.e != "trade" or d.t < 0 or (d.T is not None and d.T < 0) or (not d.T and d.E is not None and d.E < 0):
            return False
        spec = self._fast_spec(m.stream, "trade", d.s)
        if spec is None:
            return False
        prices, qtys = _memo(spec)
        px = prices.get(d.p)
        if px is None:
            px = _memo_price(spec, prices, d.p)
        qty = qtys.get(d.q)
        if not qty:  # unknown, or zero (which a trade may not be): the checked helper says
            qty = _memo_qty(spec, qtys, d.q, allow_zero=False)
        t_ns = d.T * _MS if d.T else d.E * _MS if d.E else local_ns
        self._accept(out, t_ns, Trade(spec.symbol, d.t, px, qty, d.m))
        return True

    def _fast_diff(self, local_ns: int, payload: bytes, out: list[Item]) -> bool:
        try:
            m = _diff_dec.decode(payload)
        except msgspec.DecodeError:
            return False
        d = m.data
        if d.e != "depthUpdate" or not 0 <= d.U <= d.u or (d.E is not None and d.E < 0):
            return False
        spec = self._fast_spec(m.stream, "depth", d.s)
        if spec is None:
            return False
        # (The levels never pass through the symbol's string memo here: nothing depends on
        # what it holds, and best bid/offers and trades fill it themselves.)
        lv = self._scratch
        nb = parse_levels(bytes(d.b), lv, spec.price_scale, spec.qty_scale, spec.tick, True)
        if nb < 0:
            return False
        bids = lv[: 2 * nb].astype("<i8", copy=False)
        na = parse_levels(bytes(d.a), lv[2 * nb :], spec.price_scale, spec.qty_scale, spec.tick, True)
        if na < 0:
            return False
        asks = lv[2 * nb : 2 * (nb + na)].astype("<i8", copy=False)
        fb, fa = bids.tolist(), asks.tolist()
        diff = _Diff(
            d.E * _MS if d.E else local_ns,
            d.U,
            d.u,
            list(zip(fb[::2], fb[1::2], strict=True)),
            list(zip(fa[::2], fa[1::2], strict=True)),
            (bids.tobytes(), asks.tobytes()),
        )
        self._take_diff(spec, diff, out)
        return True

    # ------------------------------------------------------------ message kinds
    def _trade(self, local_ns: int, spec: SymbolSpec, d: dict[str, Any], out: list[Item]) -> None:
        if d.get("e", "trade") != "trade":
            raise Reject(R_BAD_FIELD, f"e={d.get('e')!r} on a trade stream")
        tid = _int_field(d, "t")
        prices, qtys = _memo(spec)
        px = _memo_price(spec, prices, _field(d, "p"))
        qty = _memo_qty(spec, qtys, _field(d, "q"), allow_zero=False)
        m = _field(d, "m")
        if not isinstance(m, bool):
            raise Reject(R_BAD_FIELD, f"m={m!r}")
        t_ns = _opt_ms(d, "T") or _opt_ms(d, "E") or local_ns
        self._accept(out, t_ns, Trade(spec.symbol, tid, px, qty, m))

    def _bbo(self, local_ns: int, spec: SymbolSpec, d: dict[str, Any], out: list[Item]) -> None:
        uid = _int_field(d, "u")
        prices, qtys = _memo(spec)
        bpx = _memo_price(spec, prices, _field(d, "b"), zero_ok=True)
        bq = _memo_qty(spec, qtys, _field(d, "B"), allow_zero=True)
        apx = _memo_price(spec, prices, _field(d, "a"), zero_ok=True)
        aq = _memo_qty(spec, qtys, _field(d, "A"), allow_zero=True)
        if bpx and apx and bpx >= apx:
            raise Reject(R_CROSSED_BBO, f"bid {spec.fmt_price(bpx)} >= ask {spec.fmt_price(apx)}")
        t_ns = _opt_ms(d, "E") or _opt_ms(d, "T") or local_ns
        self._accept(out, t_ns, BestBidOffer(spec.symbol, uid, bpx, bq, apx, aq))

    def _partial(self, local_ns: int, spec: SymbolSpec, d: dict[str, Any], out: list[Item]) -> None:
        uid = _int_field(d, "lastUpdateId")
        bids = _levels(spec, _field(d, "bids"), allow_zero=False)
        asks = _levels(spec, _field(d, "asks"), allow_zero=False)
        if bids and asks and max(p for p, _ in bids) >= min(p for p, _ in asks):
            raise Reject(R_CROSSED_BOOK, "partial depth is crossed")
        sync = self.syncs.get(spec.symbol)
        if sync is not None and sync.state == SYNCED:
            self._drop(D_PARTIAL_SYNCED)
            return
        t_ns = _opt_ms(d, "E") or local_ns
        self._accept(out, t_ns, BookSnapshot(spec.symbol, uid, pack_pairs(bids), pack_pairs(asks)))

    def _snapshot_symbol(self, lid: int) -> str:
        """Which symbol an unlabelled REST snapshot line belongs to (a capture holds no symbol)."""
        waiting = [s for s in self.syncs.values() if s.state == AWAITING and s.buffer and s.buffer[0].first <= lid + 1]
        if len(waiting) == 1:
            return waiting[0].symbol
        for s in waiting:
            if any(d.first <= lid + 1 <= d.last for d in s.buffer):
                return s.symbol
        return self._last_symbol or self.default_symbol

    def _snapshot(self, local_ns: int, d: dict[str, Any], symbol: str, out: list[Item]) -> None:
        lid = _int_field(d, "lastUpdateId")
        symbol = symbol or self._snapshot_symbol(lid)
        if not symbol:
            self._drop(D_NO_SYMBOL)
            return
        spec = self._spec(symbol)
        bids = _levels(spec, _field(d, "bids"), allow_zero=False)
        asks = _levels(spec, _field(d, "asks"), allow_zero=False)
        s = self.sync(spec.symbol)
        if s.state == SYNCED and lid <= s.last_id:
            self._drop(D_STALE_SNAPSHOT)
            return
        # Buffered diffs the snapshot already contains are stale.
        while s.buffer and s.buffer[0].last <= lid:
            s.buffer.popleft()
            self._drop(D_STALE)
        if s.buffer and s.buffer[0].first > lid + 1:
            # Older than the stream we hold: Binance says fetch it again.
            self._drop(D_SNAPSHOT_TOO_OLD)
            log.info("feed: %s snapshot %d older than buffered diff U=%d", symbol, lid, s.buffer[0].first)
            return
        book = LocalBook()
        book.load(bids, asks)
        if book.crossed():
            raise Reject(R_CROSSED_BOOK, f"{symbol} snapshot {lid} is crossed")
        s.book = book
        s.state = SYNCED
        s.last_id = lid
        s._bridged = False
        self._accept(out, local_ns, BookSnapshot(spec.symbol, lid, pack_pairs(bids), pack_pairs(asks)))
        pending, s.buffer = s.buffer, collections.deque()
        while pending:
            diff = pending.popleft()
            if s.state != SYNCED:  # a gap inside the buffer: the rest waits for the next snapshot
                self._buffer(s, diff)
                continue
            self._apply(s, spec, diff, out)

    def _diff(self, local_ns: int, spec: SymbolSpec, d: dict[str, Any], out: list[Item]) -> None:
        if d.get("e", "depthUpdate") != "depthUpdate":
            raise Reject(R_BAD_FIELD, f"e={d.get('e')!r} on a depth stream")
        first = _int_field(d, "U")
        last = _int_field(d, "u")
        if first > last:
            raise Reject(R_BAD_IDS, f"U={first} > u={last}")
        bids = _levels(spec, _field(d, "b"), allow_zero=True)
        asks = _levels(spec, _field(d, "a"), allow_zero=True)
        self._take_diff(spec, _Diff(_opt_ms(d, "E") or local_ns, first, last, bids, asks), out)

    def _take_diff(self, spec: SymbolSpec, diff: _Diff, out: list[Item]) -> None:
        """A parsed diff: buffered until its symbol's book is synced, else applied."""
        s = self.sync(spec.symbol)
        if s.state == AWAITING:
            self._buffer(s, diff)
        else:
            self._apply(s, spec, diff, out)

    def _buffer(self, s: DepthSync, diff: _Diff) -> None:
        if len(s.buffer) >= s.buffer_limit:
            s.buffer.popleft()
            self._drop(D_BUFFER_OVERFLOW)
        s.buffer.append(diff)

    def _apply(self, s: DepthSync, spec: SymbolSpec, diff: _Diff, out: list[Item]) -> None:
        if diff.last <= s.last_id:
            self._drop(D_STALE)
            return
        ok = (diff.first <= s.last_id + 1) if not s._bridged else (diff.first == s.last_id + 1)
        if not ok:
            self._reject(R_DEPTH_GAP, f"{s.symbol} expected U={s.last_id + 1}, got U={diff.first} u={diff.last}")
            self._gap(s, s.last_id + 1, max(diff.first - 1, s.last_id + 1), R_DEPTH_GAP, diff.event_ns, out)
            return
        s.book.apply(diff.bids, diff.asks)
        if s.book.crossed():
            bb, ba = s.book.best_bid()[0], s.book.best_ask()[0]
            self._reject(R_CROSSED_BOOK, f"{s.symbol} diff u={diff.last} crosses: {bb} >= {ba}")
            self._gap(s, diff.first, diff.last, R_CROSSED_BOOK, diff.event_ns, out)
            return
        s.last_id = diff.last
        s._bridged = True
        packed = diff.packed or (pack_pairs(diff.bids), pack_pairs(diff.asks))
        self._accept(out, diff.event_ns, BookDelta(spec.symbol, diff.first, diff.last, *packed))

    def _gap(self, s: DepthSync, lo: int, hi: int, reason: str, event_ns: int, out: list[Item]) -> None:
        s.state = AWAITING
        s.book = LocalBook()
        s.gaps += 1
        body = GapDeclared(f"depth:{s.symbol}", lo, hi, reason)
        self.counters.events["GapDeclared"] += 1
        out.append((event_ns, body))
        log.warning("feed: %s book out of sync (%s, ids %d..%d): resync from a snapshot", s.symbol, reason, lo, hi)
