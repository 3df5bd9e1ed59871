"""Binance spot adapter: the one place execution talks to the real exchange.

A transport shell, not a core: it reads the wall clock (only for the signed
`timestamp` and for rate-limit windows, through an injectable `clock_ms`),
does network I/O, and turns everything that comes back into event bodies of
`common.events`. The execution service calls it only for live events, never
while replaying or catching up.

Interface (what the execution service calls)::

    submit(child, key=None, resend=False) -> list[body]   # OrderAck / OrderFill / OrderRejected / ...
    cancel(child_id, symbol)               -> list[body]   # OrderCancelled / ... / CancelFailed
    cancel_all(symbol)                     -> list[body]
    open_orders(symbol)                    -> list[dict]
    balances()                             -> dict[str, int]   # asset -> free, at `asset_scale`
    poll_user_stream()                     -> list[body]
    start_user_stream(), close(), counters()

Rules it keeps:

* Integers in, integers out. Prices and quantities are formatted from ints
  with the symbol's scales and parsed back exactly (`common.units`), never
  through float.
* Client order ids are a pure function of the engine's idempotency key
  (default: the child id): "am-" + 32 base32 characters of SHA-256, 35
  characters of Binance's allowed set. A resend is recognised, never
  doubled: a key already sent by this process is answered from its tracked
  state (no request); `resend=True` (catch-up after a restart) and every
  ambiguous outcome (-2010 "Duplicate order sent.", timeouts, 5xx, -1006 /
  -1007, unreadable JSON) query the order by origClientOrderId first and
  report what exists.
* Each fact is reported once. REST responses, order queries, myTrades and the
  user-data stream all pass one gate per order: one OrderAck, one OrderFill
  per trade id, one terminal event. Fills are never dropped, even after a
  terminal event (a TRADE pushed before a cancel can be read after the
  cancel's REST answer). When a terminal state reports more executed qty
  than the fills seen, the missing trades are fetched (GET myTrades) first.
* Fees: a commission in the symbol's quote asset becomes `OrderFill.fee` in
  quote units at the symbol's notional scale. A commission in the base asset
  (what Binance charges on a buy without BNB) is valued at the fill's own
  price, rounded up (never in the payer's favour), into `fee`, and its amount
  goes into `OrderFill.fee_base` (10**-asset_scale units), so positions and
  PnL carry it and reconciliation expects the base balance that much lower
  (counted as `fee_base_fills`). A commission in any other asset (BNB) has
  no price here and is NOT converted: the fill carries fee=0 and the amount
  is added to `counters()` as `fee_other:<ASSET>` in units of
  10**-asset_scale (and `fee_other_fills`).
* Errors never escape: every Binance error body, HTTP 4xx/5xx, timeout,
  network failure or bad JSON becomes an OrderRejected (submit) or a
  CancelFailed record (cancel), with the code and message in `reason`.
* Rate limits: X-MBX-USED-WEIGHT-1M and X-MBX-ORDER-COUNT-10S/-1D are read
  from every response; a request that would exceed the configured limits
  waits for the window to roll if that is at most `max_wait_ms`, else is
  refused locally. HTTP 429 blocks all sending until Retry-After has passed;
  HTTP 418 (IP ban) stops sending until its Retry-After (or for good when
  none is given, until `clear_ban()`); both reported as rejects.
* Secrets: the API key and secret live in `Secret` wrappers whose repr is
  masked; they are never logged, never in a repr/str, never in an event.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import http.client
import json
import logging
import os
import re
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import msgspec

from common.events import (
    BUY,
    FOK,
    GTC,
    IOC,
    MAKER,
    SELL,
    TAKER,
    ChildOrder,
    OrderAck,
    OrderCancelled,
    OrderExpired,
    OrderFill,
    OrderRejected,
)
from common.units import ASSET_SCALE, BUILTIN, SymbolSpec, SymbolTable, UnitError, parse_decimal, rescale_ceil

from .binance_userstream import RECONNECTED, UserStream

log = logging.getLogger("services.execution.binance")

VENUE = "binance"
CID_PATTERN = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
SIDE_NAME = {BUY: "BUY", SELL: "SELL"}
TIF_NAME = {GTC: "GTC", IOC: "IOC", FOK: "FOK"}

# Request weights (Binance spot REST, 2024), used for the local pre-check only;
# the server's X-MBX-USED-WEIGHT-1M header is the truth once it arrives.
WEIGHT = {
    ("POST", "/api/v3/order"): 1,
    ("DELETE", "/api/v3/order"): 1,
    ("GET", "/api/v3/order"): 4,
    ("DELETE", "/api/v3/openOrders"): 1,
    ("GET", "/api/v3/openOrders"): 6,
    ("GET", "/api/v3/account"): 20,
    ("GET", "/api/v3/myTrades"): 20,
    ("POST", "/api/v3/userDataStream"): 2,
    ("PUT", "/api/v3/userDataStream"): 2,
    ("DELETE", "/api/v3/userDataStream"): 2,
}
UNKNOWN_STATUS_CODES = (-1006, -1007)  # "execution status unknown" (errors.md)
FOREVER = 1 << 62


# ---------------------------------------------------------------- secrets and config
class Secret:
    """A string that never shows itself: repr/str are masked, pickling refused."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("a Secret cannot be pickled")


class CredentialsError(ValueError):
    """Credentials missing or unreadable; the message never contains them."""


@dataclass(frozen=True)
class Credentials:
    api_key: Secret
    api_secret: Secret

    ENV_KEY = "BINANCE_API_KEY"
    ENV_SECRET = "BINANCE_API_SECRET"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Credentials:
        env = os.environ if env is None else env
        key, secret = env.get(cls.ENV_KEY, ""), env.get(cls.ENV_SECRET, "")
        if not key or not secret:
            raise CredentialsError(f"{cls.ENV_KEY} and {cls.ENV_SECRET} must both be set")
        return cls(Secret(key.strip()), Secret(secret.strip()))

    @classmethod
    def from_file(cls, path: str) -> Credentials:
        """A file of `BINANCE_API_KEY=...` / `BINANCE_API_SECRET=...` lines (or a JSON object)."""
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            raise CredentialsError(f"cannot read credentials file {path!r}: {exc.strerror}") from None
        if os.name == "posix" and os.stat(path).st_mode & 0o077:
            log.warning("credentials file %s is readable by group/others; chmod 600 it", path)
        values: dict[str, str] = {}
        if text.lstrip().startswith("{"):
            try:
                values = {str(k): str(v) for k, v in json.loads(text).items()}
            except (ValueError, AttributeError):
                raise CredentialsError(f"credentials file {path!r} is not a JSON object") from None
        else:
            for line in text.splitlines():
                name, sep, value = line.partition("=")
                if sep and not name.strip().startswith("#"):
                    values[name.strip()] = value.strip().strip("'\"")
        return cls.from_env(
            {k.upper() if k.upper().startswith("BINANCE_") else "BINANCE_" + k.upper(): v for k, v in values.items()}
        )

    @classmethod
    def load(cls, path: str = "", env: Mapping[str, str] | None = None) -> Credentials:
        return cls.from_file(path) if path else cls.from_env(env)


@dataclass(frozen=True)
class BinanceConfig:
    """Static adapter settings; refuses unknown keys by name."""

    rest_base: str = "https://api.binance.com"
    ws_base: str = "wss://stream.binance.com:9443"
    venue: str = VENUE
    api_key_file: str = ""  # empty: BINANCE_API_KEY / BINANCE_API_SECRET from the environment
    recv_window_ms: int = 5000
    timeout_s: float = 5.0
    idle_reconnect_s: float = 25.0  # reopen a keep-alive connection idle longer than this
    cid_prefix: str = "am-"
    new_order_resp_type: str = "FULL"
    weight_limit_1m: int = 6000
    order_limit_10s: int = 100
    order_limit_1d: int = 200000
    limit_headroom: int = 0  # refuse this much below each limit
    max_wait_ms: int = 1000  # longest we block waiting for a rate window to roll
    keepalive_ms: int = 30 * 60 * 1000
    reconnect_min_s: float = 0.05
    reconnect_max_s: float = 30.0
    unknown_retry_ms: int = 1000  # how often poll() re-queries orders of unknown status
    asset_scale: int = ASSET_SCALE  # balances and non-quote fees, as VenueSnapshot and fee_base count them
    max_tracked: int = 100_000

    def __post_init__(self) -> None:
        if len(self.cid_prefix) > 4 or not CID_PATTERN.match(self.cid_prefix + "x"):
            raise ValueError(f"cid_prefix {self.cid_prefix!r} must be <= 4 characters of [.A-Z:/a-z0-9_-]")
        if self.new_order_resp_type not in ("ACK", "RESULT", "FULL"):
            raise ValueError(f"new_order_resp_type {self.new_order_resp_type!r} not ACK/RESULT/FULL")
        if not 0 < self.recv_window_ms <= 60000:
            raise ValueError(f"recv_window_ms {self.recv_window_ms} out of range 1..60000")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> BinanceConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        for name in values:
            if name not in known:
                raise ValueError(f"unknown binance config key {name!r}; known: {sorted(known)}")
        return cls(**dict(values))


# ---------------------------------------------------------------- pure helpers
def sign(secret: str | bytes, payload: str) -> str:
    """Binance HMAC-SHA256 signature: hex of HMAC(secret, totalParams)."""
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, payload.encode(), hashlib.sha256).hexdigest()


def client_order_id(key: str, prefix: str = "am-") -> str:
    """Deterministic clientOrderId for an idempotency key: prefix + base32(SHA-256)[:32]."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()[:20]
    cid = prefix + base64.b32encode(digest).decode("ascii")  # 160 bits -> 32 chars, no padding
    assert CID_PATTERN.match(cid), cid
    return cid


class CancelFailed(msgspec.Struct, frozen=True):
    """A cancel the venue refused or that could not be confirmed.

    Not (yet) in the event catalogue: common/events.py has no cancel-reject
    body. `code` is the Binance error code (0 when there is none)."""

    venue: str
    child_id: str
    symbol: str
    code: int
    reason: str


@dataclass
class _Resp:
    kind: str  # ok / error (definite, nothing happened) / unknown (may have happened) / limited
    status: int = 0
    code: int = 0
    msg: str = ""
    data: Any = None
    tag: str = ""  # reason prefix when there is no Binance code (RATE_LIMITED, TIMEOUT, ...)

    @property
    def reason(self) -> str:
        if self.kind == "ok":
            return "OK"
        tag = self.tag or (str(self.code) if self.code else (f"HTTP{self.status}" if self.status else "ERROR"))
        return f"{tag}:{self.msg}" if self.msg else tag


@dataclass
class _Track:
    """What this adapter has reported for one order (the dedup gate)."""

    child_id: str
    cid: str
    symbol: str
    side: int
    qty: int
    venue_order_id: str = ""
    acked: bool = False
    filled: int = 0
    trades: set[str] = field(default_factory=set)
    terminal: bool = False
    unknown: bool = False  # sent, outcome not known yet
    sent_ms: int = 0  # timestamp of the last POST (0: not sent by this process)
    last_check_ms: int = 0


# ---------------------------------------------------------------- the adapter
class BinanceAdapter:
    def __init__(
        self,
        config: BinanceConfig | None = None,
        credentials: Credentials | None = None,
        symbols: SymbolTable = BUILTIN,
        *,
        clock_ms: Callable[[], int] | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.cfg = config or BinanceConfig()
        self._creds = credentials or Credentials.load(self.cfg.api_key_file)
        self.symbols = symbols
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._sleep = sleep or time.sleep
        url = urlsplit(self.cfg.rest_base)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"rest_base {self.cfg.rest_base!r} is not an http(s) URL")
        self._scheme, self._host = url.scheme, url.hostname
        self._port = url.port or (443 if url.scheme == "https" else 80)
        self._conn: http.client.HTTPConnection | None = None
        self._conn_used = 0.0  # monotonic time of the last response on _conn
        self._http_lock = threading.RLock()
        # rate-limit state (under _http_lock)
        self._weight = (0, 0)  # (minute window, used)
        self._orders_10s = (0, 0)
        self._orders_1d = (0, 0)
        self._blocked_until = 0
        self._banned_until = 0
        # order state (caller's thread only)
        self._tracks: dict[str, _Track] = {}
        self._by_child: dict[str, str] = {}
        self._counters: dict[str, int] = {}
        self._fees_other: dict[str, int] = {}
        self._stream_balances: dict[str, int] = {}
        # user stream
        self._stream: UserStream | None = None
        self._listen_key = ""
        self._last_keepalive = 0
        self.last_error = ""

    def __repr__(self) -> str:
        return (
            f"BinanceAdapter(venue={self.cfg.venue!r}, rest_base={self.cfg.rest_base!r}, "
            f"ws_base={self.cfg.ws_base!r}, tracked={len(self._tracks)})"
        )

    __str__ = __repr__

    # ------------------------------------------------------------ bookkeeping
    def _count(self, name: str, n: int = 1) -> None:
        self._counters[name] = self._counters.get(name, 0) + n

    def counters(self) -> dict[str, int]:
        with self._http_lock:
            out = dict(self._counters)
            out["used_weight_1m"] = self._weight[1]
            out["order_count_10s"] = self._orders_10s[1]
            out["order_count_1d"] = self._orders_1d[1]
        for asset, amount in self._fees_other.items():
            out[f"fee_other:{asset}"] = amount
        return out

    def fees_other(self) -> dict[str, int]:
        """Commissions not in the quote asset, per asset, in 10**-asset_scale units."""
        return dict(self._fees_other)

    def stream_balances(self) -> dict[str, int]:
        """Free balances as last pushed by outboundAccountPosition (10**-asset_scale units)."""
        return dict(self._stream_balances)

    def cid_for(self, key: str) -> str:
        return client_order_id(key, self.cfg.cid_prefix)

    def clear_ban(self) -> None:
        with self._http_lock:
            self._banned_until = 0
            self._blocked_until = 0

    # ------------------------------------------------------------ HTTP
    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self._scheme == "https":
                self._conn = http.client.HTTPSConnection(
                    self._host, self._port, timeout=self.cfg.timeout_s, context=ssl.create_default_context()
                )
            else:
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=self.cfg.timeout_s)
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except OSError:
                pass
            self._conn = None

    def _admit(self, weight: int, is_order: bool) -> str:
        """'' if the request may go now (after waiting, if short), else the reason it may not."""
        now = self._clock_ms()
        if now < self._banned_until:
            left = "until cleared" if self._banned_until >= FOREVER else f"{self._banned_until - now}ms"
            return f"IP_BANNED:HTTP 418 received; not sending for {left}"
        if now < self._blocked_until:
            return f"RATE_LIMITED:HTTP 429 Retry-After; not sending for {self._blocked_until - now}ms"
        headroom = self.cfg.limit_headroom
        checks = [(self._weight, 60000, self.cfg.weight_limit_1m, weight, "request weight per 1m")]
        if is_order:
            checks.append((self._orders_10s, 10000, self.cfg.order_limit_10s, 1, "orders per 10s"))
            checks.append((self._orders_1d, 86400000, self.cfg.order_limit_1d, 1, "orders per 1d"))
        for state, span, limit, cost, what in checks:
            window, used = state
            now = self._clock_ms()
            if window == now // span and used + cost > limit - headroom:
                wait = (window + 1) * span - now
                if wait > self.cfg.max_wait_ms:
                    cap = limit - headroom
                    return f"RATE_LIMITED:{used}+{cost} {what} would exceed {cap}; window rolls in {wait}ms"
                self._count("rate_limit_waits")
                self._sleep(wait / 1000.0)
        return ""

    def _note_usage(self, weight: int, is_order: bool, headers: Mapping[str, str] | None) -> None:
        now = self._clock_ms()

        def bump(state: tuple[int, int], span: int, cost: int, header: str | None) -> tuple[int, int]:
            window = now // span
            used = state[1] if state[0] == window else 0
            if header is not None and header.isdigit():
                return window, int(header)
            return window, used + cost

        h = headers or {}
        self._weight = bump(self._weight, 60000, weight, h.get("X-MBX-USED-WEIGHT-1M"))
        if is_order:
            self._orders_10s = bump(self._orders_10s, 10000, 1, h.get("X-MBX-ORDER-COUNT-10S"))
            self._orders_1d = bump(self._orders_1d, 86400000, 1, h.get("X-MBX-ORDER-COUNT-1D"))

    def _request(self, method: str, path: str, params: dict[str, str], *, signed: bool = True) -> _Resp:
        """One REST call; never raises. Classifies the outcome for the caller."""
        weight = WEIGHT.get((method, path), 1)
        is_order = (method, path) == ("POST", "/api/v3/order")
        with self._http_lock:
            refusal = self._admit(weight, is_order)
            if refusal:
                self._count("refused_locally")
                tag, _, msg = refusal.partition(":")
                return _Resp("limited", 0, 0, msg, tag=tag)
            query = dict(params)
            if signed:
                query["recvWindow"] = str(self.cfg.recv_window_ms)
                query["timestamp"] = str(self._clock_ms())
            text = urlencode(query)
            if signed:
                sig = sign(self._creds.api_secret.reveal(), text)
                text = f"{text}&signature={sig}" if text else f"signature={sig}"
            target = f"{path}?{text}" if text else path
            headers = {"X-MBX-APIKEY": self._creds.api_key.reveal(), "Accept": "application/json"}
            self._count("requests")
            status, body, resp_headers = 0, b"", {}
            if self._conn is not None and time.monotonic() - self._conn_used > self.cfg.idle_reconnect_s:
                self._drop_connection()  # the venue may have closed an idle keep-alive connection
            reused = self._conn is not None
            while True:
                conn = self._connection()
                try:
                    conn.request(method, target, headers=headers)
                    break
                except (OSError, http.client.HTTPException) as exc:
                    # failed while connecting or sending: the request was not received whole,
                    # so nothing can have executed. Once more on a fresh connection if stale.
                    self._drop_connection()
                    if reused and not isinstance(exc, ConnectionRefusedError):
                        reused = False
                        continue
                    self._count("network_errors")
                    log.warning("binance %s %s: not sent: %s", method, path, type(exc).__name__)
                    return _Resp("error", 0, 0, f"{type(exc).__name__}; request not sent", tag="NETWORK")
            try:
                resp = conn.getresponse()
                body = resp.read()
                status = resp.status
                resp_headers = {k.upper(): v for k, v in resp.getheaders()}
                self._conn_used = time.monotonic()
                if resp.will_close:
                    self._drop_connection()
            except TimeoutError:
                self._drop_connection()
                self._count("timeouts")
                log.warning("binance %s %s: timed out after %.1fs", method, path, self.cfg.timeout_s)
                return _Resp("unknown", 0, 0, "no response in time; execution status unknown", tag="TIMEOUT")
            except (OSError, http.client.HTTPException) as exc:
                self._drop_connection()
                self._count("network_errors")
                log.warning("binance %s %s: %s", method, path, type(exc).__name__)
                return _Resp("unknown", 0, 0, f"{type(exc).__name__}; execution status unknown", tag="NETWORK")
            self._note_usage(weight, is_order, resp_headers)
            return self._classify(method, path, status, body, resp_headers)

    def _classify(self, method: str, path: str, status: int, body: bytes, headers: Mapping[str, str]) -> _Resp:
        data: Any = None
        bad_json = False
        try:
            data = json.loads(body) if body else None
        except ValueError:
            bad_json = True
        code, msg = 0, ""
        if isinstance(data, dict) and isinstance(data.get("code"), int) and "msg" in data:
            code, msg = data["code"], str(data["msg"])[:300]
        if 200 <= status < 300 and not code:
            if bad_json or data is None:
                self._count("bad_json")
                log.warning("binance %s %s: HTTP %d with unreadable body", method, path, status)
                return _Resp("unknown", status, 0, "unreadable response; execution status unknown", tag="BADJSON")
            return _Resp("ok", status, 0, "", data)
        self._count(f"http_{status}")
        log.warning("binance %s %s: HTTP %d code %s %s", method, path, status, code or "-", msg)
        if status in (429, 418):
            retry = headers.get("RETRY-AFTER", "")
            now = self._clock_ms()
            until = now + int(retry) * 1000 if retry.isdigit() else None
            if status == 418:
                self._banned_until = until if until is not None else FOREVER
                tag = "IP_BANNED"
            else:
                self._blocked_until = until if until is not None else now + 60000
                tag = "RATE_LIMITED"
            detail = f"HTTP {status} {code or ''} {msg}".strip()
            return _Resp("limited", status, code, f"{detail}; Retry-After {retry or '-'}s", tag=tag)
        if status >= 500 or code in UNKNOWN_STATUS_CODES:
            tag = "" if code else f"HTTP{status}"
            return _Resp("unknown", status, code, msg or "execution status unknown", tag=tag)
        if bad_json or not code:
            return _Resp("error", status, 0, "unexpected body", tag=f"HTTP{status}")
        return _Resp("error", status, code, msg)

    # ------------------------------------------------------------ the gate
    def _spec(self, symbol: str) -> SymbolSpec | None:
        return self.symbols[symbol] if symbol in self.symbols else None

    def _track(self, cid: str, child_id: str, symbol: str, side: int, qty: int) -> _Track:
        tr = self._tracks.get(cid)
        if tr is None:
            if len(self._tracks) >= self.cfg.max_tracked:
                self._prune()
            tr = self._tracks[cid] = _Track(child_id, cid, symbol, side, qty)
            self._by_child[child_id] = cid
        return tr

    def _prune(self) -> None:
        for cid in [c for c, t in self._tracks.items() if t.terminal][: max(1, self.cfg.max_tracked // 10)]:
            tr = self._tracks.pop(cid)
            if self._by_child.get(tr.child_id) == cid:
                del self._by_child[tr.child_id]

    def _ack(self, tr: _Track, venue_order_id: str) -> list[Any]:
        if venue_order_id and not tr.venue_order_id:
            tr.venue_order_id = venue_order_id
        if tr.acked:
            return []
        tr.acked = True
        tr.unknown = False
        return [OrderAck(self.cfg.venue, tr.child_id, tr.venue_order_id, tr.symbol)]

    def _fill(
        self,
        tr: _Track,
        spec: SymbolSpec,
        price: str,
        qty: str,
        commission: Any,
        asset: Any,
        trade_id: str,
        liquidity: int,
        venue_order_id: str = "",
    ) -> list[Any]:
        if trade_id in tr.trades:
            return []
        px, q = spec.price(price), spec.qty(qty)
        if q <= 0 or px <= 0:
            self._count("fill_ignored_zero")
            return []
        out = self._ack(tr, venue_order_id)
        tr.trades.add(trade_id)
        tr.filled += q
        leaves = max(tr.qty - tr.filled, 0)
        if leaves == 0:
            tr.terminal = True
        fee, fee_base = self._fee(spec, px, str(commission) if commission is not None else "0", str(asset or ""))
        out.append(
            OrderFill(
                self.cfg.venue, tr.child_id, tr.symbol, tr.side, px, q, leaves, fee, liquidity, trade_id, fee_base
            )
        )
        return out

    def _fee(self, spec: SymbolSpec, px: int, commission: str, asset: str) -> tuple[int, int]:
        """(fee in quote units at the notional scale, base-asset commission in 10**-asset_scale units)."""
        try:
            if asset == spec.quote:
                return parse_decimal(commission, spec.notional_scale()), 0
        except UnitError:
            self._count("fee_quote_too_precise")
        try:
            amount = parse_decimal(commission, self.cfg.asset_scale)
        except UnitError:
            self._count("fee_unparsed")
            return 0, 0
        if amount > 0 and asset == spec.base:
            self._count("fee_base_fills")
            # amount * px is at asset_scale + price_scale; the fee's notional scale is
            # qty_scale + price_scale: a rescale from asset_scale to qty_scale.
            return rescale_ceil(amount * px, self.cfg.asset_scale, spec.qty_scale), amount
        if amount and asset:
            self._fees_other[asset] = self._fees_other.get(asset, 0) + amount
            self._count("fee_other_fills")
        return 0, 0

    def _terminal(self, tr: _Track, body: Any, ack_first: bool = True) -> list[Any]:
        if tr.terminal:
            return []
        out = self._ack(tr, "") if ack_first else []
        tr.terminal = True
        tr.unknown = False
        out.append(body)
        return out

    def _reject(self, tr: _Track, reason: str) -> list[Any]:
        self._count("rejects")
        return self._terminal(tr, OrderRejected(self.cfg.venue, tr.child_id, tr.symbol, reason), ack_first=False)

    def _catch_up_fills(self, tr: _Track, spec: SymbolSpec, executed: int) -> list[Any]:
        """Fetch trades when the venue reports more executed qty than the fills seen."""
        if executed <= tr.filled or not tr.venue_order_id:
            return []
        r = self._request("GET", "/api/v3/myTrades", {"symbol": tr.symbol, "orderId": tr.venue_order_id})
        if r.kind != "ok" or not isinstance(r.data, list):
            self._count("trade_fetch_failed")
            return []
        out: list[Any] = []
        for t in r.data:
            out += self._fill(
                tr,
                spec,
                t["price"],
                t["qty"],
                t.get("commission"),
                t.get("commissionAsset"),
                str(t["id"]),
                MAKER if t.get("isMaker") else TAKER,
            )
        return out

    def _apply_order(self, tr: _Track, spec: SymbolSpec, data: Mapping[str, Any], *, taker_fills: bool) -> list[Any]:
        """An order's state as REST reports it (new-order response, query, cancel) -> events."""
        out = self._ack(tr, str(data.get("orderId", "")))
        for f in data.get("fills") or ():
            out += self._fill(
                tr,
                spec,
                f["price"],
                f["qty"],
                f.get("commission"),
                f.get("commissionAsset"),
                str(f["tradeId"]),
                TAKER if taker_fills else MAKER,
            )
        status = data.get("status", "")
        if "executedQty" in data:
            executed = spec.qty(data["executedQty"])
            out += self._catch_up_fills(tr, spec, executed)
            leaves = max(spec.qty(data.get("origQty", "0")) - executed, 0) if "origQty" in data else 0
        else:
            leaves = max(tr.qty - tr.filled, 0)
        if status == "CANCELED" or status == "PENDING_CANCEL":
            out += self._terminal(tr, OrderCancelled(self.cfg.venue, tr.child_id, tr.symbol, leaves, "canceled"))
        elif status in ("EXPIRED", "EXPIRED_IN_MATCH"):
            out += self._terminal(tr, OrderExpired(self.cfg.venue, tr.child_id, tr.symbol, leaves))
        elif status == "REJECTED":
            out += self._reject(tr, "REJECTED:order rejected by the matching engine")
        return out

    def _cannot_land(self, tr: _Track) -> bool:
        """True once a request sent at `sent_ms` is past its recvWindow: the venue can no longer accept it."""
        return self._clock_ms() - tr.sent_ms > self.cfg.recv_window_ms + 1000

    def _query(self, tr: _Track) -> tuple[str, list[Any]]:
        """Look an order up by origClientOrderId: ('found', events) / ('absent', []) / ('failed', [])."""
        spec = self._spec(tr.symbol)
        assert spec is not None
        tr.last_check_ms = self._clock_ms()
        r = self._request("GET", "/api/v3/order", {"symbol": tr.symbol, "origClientOrderId": tr.cid})
        self._count("order_queries")
        if r.kind == "ok" and isinstance(r.data, dict):
            try:
                return "found", self._apply_order(tr, spec, r.data, taker_fills=False)
            except (KeyError, TypeError, UnitError) as exc:
                self.last_error = f"query parse: {exc}"
                return "failed", []
        if r.kind == "error" and r.code == -2013:
            return "absent", []
        self.last_error = r.reason
        return "failed", []

    # ------------------------------------------------------------ submit
    def submit(self, child: ChildOrder, key: str | None = None, resend: bool = False) -> list[Any]:
        """Send one child order. `key`: the idempotency key (default child_id).
        `resend`: the order may have been sent by an earlier run; look before sending."""
        try:
            return self._submit(child, key, resend)
        except Exception as exc:  # noqa: BLE001 - the adapter never raises into the service loop
            log.error("binance submit %s: internal error %s", child.child_id, type(exc).__name__)
            self._count("internal_errors")
            return [OrderRejected(self.cfg.venue, child.child_id, child.symbol, f"INTERNAL:{type(exc).__name__}")]

    def _local_check(self, child: ChildOrder, spec: SymbolSpec | None) -> str:
        if spec is None:
            return f"unknown symbol {child.symbol}"
        if child.side not in SIDE_NAME:
            return f"bad side {child.side}"
        if child.tif not in TIF_NAME:
            return f"bad tif {child.tif}"
        if child.qty <= 0 or child.qty % spec.step:
            return f"qty {child.qty} not a positive multiple of step {spec.step}"
        if child.price < 0 or (child.price and child.price % spec.tick):
            return f"price {child.price} not on tick {spec.tick}"
        if child.post_only and (child.price == 0 or child.tif != GTC):
            return "post_only needs a limit price and GTC"
        if child.price == 0 and child.tif == FOK:
            return "market order cannot be FOK"
        return ""

    def _submit(self, child: ChildOrder, key: str | None, resend: bool) -> list[Any]:
        spec = self._spec(child.symbol)
        cid = self.cid_for(key if key is not None else child.child_id)
        known = self._tracks.get(cid)
        if known is not None and not known.unknown and not resend:
            self._count("resend_suppressed")
            return []  # already sent by this process; everything known was reported
        problem = self._local_check(child, spec)
        if problem:
            tr = self._track(cid, child.child_id, child.symbol, child.side, child.qty)
            return self._reject(tr, f"LOCAL:{problem}")
        assert spec is not None
        tr = self._track(cid, child.child_id, child.symbol, child.side, child.qty)
        if known is not None or resend:
            state, events = self._query(tr)
            if state == "found":
                self._count("resend_recognised")
                return events
            if known is not None:
                # this process sent it and already reported STATUS_UNKNOWN: never POST it again
                if state == "absent" and self._cannot_land(tr):
                    self._resolve_absent(tr)
                else:
                    self._count("resend_deferred")
                return []
            if state == "failed":
                tr.unknown = True
                return [
                    OrderRejected(
                        self.cfg.venue,
                        tr.child_id,
                        tr.symbol,
                        f"STATUS_UNKNOWN:could not look the order up: {self.last_error}",
                    )
                ]
        params = {
            "symbol": child.symbol,
            "side": SIDE_NAME[child.side],
        }
        if child.price == 0:
            params["type"] = "MARKET"
        elif child.post_only:
            params["type"] = "LIMIT_MAKER"
        else:
            params["type"] = "LIMIT"
            params["timeInForce"] = TIF_NAME[child.tif]
        params["quantity"] = spec.fmt_qty(child.qty)
        if child.price:
            params["price"] = spec.fmt_price(child.price)
        params["newClientOrderId"] = cid
        params["newOrderRespType"] = self.cfg.new_order_resp_type
        tr.sent_ms = self._clock_ms()
        r = self._request("POST", "/api/v3/order", params)
        if r.kind == "ok" and isinstance(r.data, dict):
            self._count("orders_sent")
            return self._apply_order(tr, spec, r.data, taker_fills=True)
        if r.kind == "error" and r.code == -2010 and "duplicate" in r.msg.lower():
            self._count("duplicate_detected")
            state, events = self._query(tr)
            if state == "found":
                return events
            return self._reject(tr, r.reason)
        if r.kind in ("error", "limited"):
            return self._reject(tr, r.reason)
        # unknown: it may have reached the matching engine. Look, never send again blindly:
        # a request still in flight could fill, and a second one with the same id would then
        # be accepted as a new order (Binance refuses a clientOrderId only among OPEN orders).
        self._count("submit_unknown")
        state, events = self._query(tr)
        if state == "found":
            self._count("resend_recognised")
            return events
        tr.unknown = True
        return [OrderRejected(self.cfg.venue, tr.child_id, tr.symbol, f"STATUS_UNKNOWN:{r.reason}")]

    # ------------------------------------------------------------ cancel
    def cancel(self, child_id: str, symbol: str) -> list[Any]:
        try:
            return self._cancel(child_id, symbol)
        except Exception as exc:  # noqa: BLE001
            log.error("binance cancel %s: internal error %s", child_id, type(exc).__name__)
            self._count("internal_errors")
            return [CancelFailed(self.cfg.venue, child_id, symbol, 0, f"INTERNAL:{type(exc).__name__}")]

    def _cancel(self, child_id: str, symbol: str) -> list[Any]:
        spec = self._spec(symbol)
        if spec is None:
            return [CancelFailed(self.cfg.venue, child_id, symbol, 0, f"LOCAL:unknown symbol {symbol}")]
        cid = self._by_child.get(child_id) or self.cid_for(child_id)
        r = self._request("DELETE", "/api/v3/order", {"symbol": symbol, "origClientOrderId": cid})
        tr = self._tracks.get(cid)
        if r.kind == "ok" and isinstance(r.data, dict):
            self._count("cancels")
            if tr is None:
                tr = self._adopt(cid, child_id, spec, r.data)
            return self._apply_order(tr, spec, r.data, taker_fills=False)
        self._count("cancel_failures")
        out: list[Any] = []
        if tr is not None and r.kind in ("error", "unknown") and r.code in (-2011, -2013, 0):
            state, events = self._query(tr)  # already filled / cancelled / expired? report it
            out += events
        out.append(CancelFailed(self.cfg.venue, child_id, symbol, r.code, r.reason))
        return out

    def cancel_foreign(self, cid: str, symbol: str) -> tuple[bool, str]:
        """Cancel an order this engine did not place, by its client order id: (done, reason)."""
        try:
            r = self._request("DELETE", "/api/v3/order", {"symbol": symbol, "origClientOrderId": cid})
        except Exception as exc:  # noqa: BLE001
            self._count("internal_errors")
            return False, f"INTERNAL:{type(exc).__name__}"
        if r.kind == "ok":
            self._count("foreign_cancels")
            return True, "OK"
        self._count("cancel_failures")
        return False, r.reason

    def status(self, child_id: str) -> str:
        """What this process knows of an order: "untracked", "unknown" (sent, outcome not known),
        "never_arrived" (it was unknown and the venue can no longer accept it), "acked", or "terminal"."""
        tr = self._tracks.get(self._by_child.get(child_id) or self.cid_for(child_id))
        if tr is None:
            return "untracked"
        if tr.unknown:
            return "unknown"
        if tr.terminal and not tr.acked and tr.filled == 0 and tr.sent_ms:
            return "never_arrived"
        return "acked" if tr.acked and not tr.terminal else "terminal"

    def restore(
        self,
        child_id: str,
        symbol: str,
        side: int,
        qty: int,
        *,
        acked: bool,
        venue_order_id: str,
        filled: int,
        trade_ids: list[str],
    ) -> None:
        """Seed the dedup gate with what the log already holds for an order (after a restart),
        so a re-query reports only what is new."""
        tr = self._track(self.cid_for(child_id), child_id, symbol, side, qty)
        tr.acked = tr.acked or acked
        tr.venue_order_id = tr.venue_order_id or venue_order_id
        tr.filled = max(tr.filled, filled)
        tr.trades.update(trade_ids)

    def _adopt(self, cid: str, child_id: str, spec: SymbolSpec, data: Mapping[str, Any]) -> _Track:
        side = BUY if data.get("side") == "BUY" else SELL
        return self._track(cid, child_id, spec.symbol, side, spec.qty(data.get("origQty", "0")))

    def cancel_all(self, symbol: str) -> list[Any]:
        try:
            spec = self._spec(symbol)
            if spec is None:
                return [CancelFailed(self.cfg.venue, "", symbol, 0, f"LOCAL:unknown symbol {symbol}")]
            r = self._request("DELETE", "/api/v3/openOrders", {"symbol": symbol})
            if r.kind == "error" and r.code == -2011:
                return []  # nothing open
            if r.kind != "ok" or not isinstance(r.data, list):
                self._count("cancel_failures")
                return [CancelFailed(self.cfg.venue, "", symbol, r.code, r.reason)]
            out: list[Any] = []
            for row in r.data:
                tr = self._tracks.get(str(row.get("origClientOrderId", "")))
                if tr is None:
                    self._count("cancel_all_foreign")
                    continue
                out += self._apply_order(tr, spec, row, taker_fills=False)
            return out
        except Exception as exc:  # noqa: BLE001
            log.error("binance cancel_all %s: internal error %s", symbol, type(exc).__name__)
            self._count("internal_errors")
            return [CancelFailed(self.cfg.venue, "", symbol, 0, f"INTERNAL:{type(exc).__name__}")]

    # ------------------------------------------------------------ queries
    def open_orders(self, symbol: str) -> list[dict[str, Any]]:
        """Open orders as plain dicts of ints; [] (and `last_error` set) on failure."""
        try:
            spec = self._spec(symbol)
            if spec is None:
                self.last_error = f"unknown symbol {symbol}"
                return []
            r = self._request("GET", "/api/v3/openOrders", {"symbol": symbol})
            if r.kind != "ok" or not isinstance(r.data, list):
                self.last_error = r.reason
                return []
            out = []
            for o in r.data:
                cid = str(o.get("clientOrderId", ""))
                tr = self._tracks.get(cid)
                out.append(
                    {
                        "child_id": tr.child_id if tr else "",
                        "client_order_id": cid,
                        "venue_order_id": str(o.get("orderId", "")),
                        "symbol": o.get("symbol", symbol),
                        "side": BUY if o.get("side") == "BUY" else SELL,
                        "type": o.get("type", ""),
                        "tif": o.get("timeInForce", ""),
                        "status": o.get("status", ""),
                        "price": spec.price(o.get("price", "0")),
                        "qty": spec.qty(o.get("origQty", "0")),
                        "filled": spec.qty(o.get("executedQty", "0")),
                    }
                )
            return out
        except Exception as exc:  # noqa: BLE001
            self.last_error = f"INTERNAL:{type(exc).__name__}"
            return []

    def balances(self, include_locked: bool = False) -> dict[str, int]:
        """asset -> free (or free + locked) balance in 10**-asset_scale units; {} on failure."""
        try:
            r = self._request("GET", "/api/v3/account", {"omitZeroBalances": "true"})
            if r.kind != "ok" or not isinstance(r.data, dict):
                self.last_error = r.reason
                return {}
            out = {}
            scale = self.cfg.asset_scale
            for b in r.data.get("balances", []):
                free = parse_decimal(b["free"], scale)
                locked = parse_decimal(b.get("locked", "0"), scale)
                out[str(b["asset"])] = free + locked if include_locked else free
            return out
        except Exception as exc:  # noqa: BLE001
            self.last_error = f"INTERNAL:{type(exc).__name__}"
            return {}

    # ------------------------------------------------------------ user-data stream
    def start_user_stream(self) -> None:
        """Start the websocket reader (it fetches its own listenKey)."""
        if self._stream is None:
            self._stream = UserStream(
                self.cfg.ws_base,
                self._provide_listen_key,
                timeout_s=self.cfg.timeout_s,
                backoff_min_s=self.cfg.reconnect_min_s,
                backoff_max_s=self.cfg.reconnect_max_s,
            )
            self._stream.start()

    @property
    def user_stream_connected(self) -> bool:
        return self._stream is not None and self._stream.connected

    def _provide_listen_key(self, refresh: bool) -> str:
        """Called on the stream thread: the current listenKey, a new one when `refresh`."""
        with self._http_lock:
            if self._listen_key and not refresh:
                return self._listen_key
            r = self._request("POST", "/api/v3/userDataStream", {}, signed=False)
            if r.kind == "ok" and isinstance(r.data, dict) and r.data.get("listenKey"):
                self._listen_key = str(r.data["listenKey"])
                self._last_keepalive = self._clock_ms()
                return self._listen_key
            self.last_error = r.reason
            return ""

    def _keepalive(self) -> None:
        if not self._listen_key or self._clock_ms() - self._last_keepalive < self.cfg.keepalive_ms:
            return
        r = self._request("PUT", "/api/v3/userDataStream", {"listenKey": self._listen_key}, signed=False)
        self._last_keepalive = self._clock_ms()
        if r.kind == "ok":
            self._count("keepalives")
        elif r.code == -1125 and self._stream is not None:
            log.warning("binance user stream: listenKey expired; getting a new one")
            with self._http_lock:
                self._listen_key = ""
            self._stream.kick()

    def poll_user_stream(self, max_messages: int = 10000) -> list[Any]:
        """Drain what the stream delivered; keepalive and reconcile as due. Never raises."""
        out: list[Any] = []
        try:
            self._keepalive()
        except Exception as exc:  # noqa: BLE001
            self._count("internal_errors")
            log.error("binance keepalive: internal error %s", type(exc).__name__)
        if self._stream is not None:
            for _ in range(max_messages):
                try:
                    msg = self._stream.messages.get_nowait()
                except Exception:  # noqa: BLE001 - queue.Empty
                    break
                try:
                    if msg is RECONNECTED:
                        self._count("stream_reconnects")
                        out += self._resync()
                    else:
                        out += self.on_stream_message(str(msg))
                except Exception as exc:  # noqa: BLE001
                    self._count("stream_errors")
                    log.error("binance user stream: cannot handle a message: %s", type(exc).__name__)
        try:
            out += self._recheck_unknown()
        except Exception as exc:  # noqa: BLE001
            self._count("internal_errors")
            log.error("binance recheck: internal error %s", type(exc).__name__)
        return out

    def _resync(self) -> list[Any]:
        out: list[Any] = []
        for tr in [t for t in self._tracks.values() if not t.terminal]:
            out += self._query(tr)[1]
        return out

    def _recheck_unknown(self) -> list[Any]:
        now = self._clock_ms()
        out: list[Any] = []
        for tr in [t for t in self._tracks.values() if t.unknown and not t.terminal]:
            if now - tr.last_check_ms >= self.cfg.unknown_retry_ms:
                state, events = self._query(tr)
                out += events
                if state == "absent" and self._cannot_land(tr):
                    self._resolve_absent(tr)
        return out

    def _resolve_absent(self, tr: _Track) -> None:
        """It never arrived and no longer can: the STATUS_UNKNOWN reject already reported stands."""
        tr.unknown = False
        tr.terminal = True
        self._count("unknown_resolved_absent")

    def on_stream_message(self, text: str) -> list[Any]:
        """One user-data stream message (raw JSON) -> bodies. Public so tests can feed it."""
        try:
            ev = json.loads(text)
        except ValueError:
            self._count("stream_bad_json")
            return []
        if isinstance(ev, dict) and isinstance(ev.get("event"), dict):
            ev = ev["event"]  # WebSocket-API subscription envelope
        if not isinstance(ev, dict):
            self._count("stream_ignored")
            return []
        kind = ev.get("e")
        if kind == "executionReport":
            return self._on_execution_report(ev)
        if kind == "outboundAccountPosition":
            for b in ev.get("B", []):
                try:
                    self._stream_balances[str(b["a"])] = parse_decimal(str(b["f"]), self.cfg.asset_scale)
                except (KeyError, UnitError):
                    self._count("stream_bad_balance")
            self._count("stream_balance_updates")
            return []
        self._count("stream_ignored")
        return []

    def _on_execution_report(self, ev: Mapping[str, Any]) -> list[Any]:
        x, status = ev.get("x", ""), ev.get("X", "")
        cid = str(ev.get("C") or "") if x == "CANCELED" else ""
        cid = cid or str(ev.get("c", ""))
        tr = self._tracks.get(cid)
        spec = self._spec(str(ev.get("s", "")))
        if tr is None or spec is None:
            self._count("stream_foreign_orders")
            return []
        self._count("stream_reports")
        vid = str(ev.get("i", ""))
        if x == "NEW":
            return self._ack(tr, vid)
        if x == "TRADE":
            return self._fill(
                tr, spec, ev["L"], ev["l"], ev.get("n"), ev.get("N"), str(ev["t"]), MAKER if ev.get("m") else TAKER, vid
            )
        leaves = max(spec.qty(ev.get("q", "0")) - spec.qty(ev.get("z", "0")), 0)
        if x == "CANCELED":
            out = self._ack(tr, vid) + self._catch_up_fills(tr, spec, spec.qty(ev.get("z", "0")))
            return out + self._terminal(tr, OrderCancelled(self.cfg.venue, tr.child_id, tr.symbol, leaves, "canceled"))
        if x == "REJECTED":
            return self._reject(tr, f"REJECTED:{ev.get('r', '')}")
        if x in ("EXPIRED", "TRADE_PREVENTION") or status in ("EXPIRED", "EXPIRED_IN_MATCH"):
            out = self._ack(tr, vid) + self._catch_up_fills(tr, spec, spec.qty(ev.get("z", "0")))
            return out + self._terminal(tr, OrderExpired(self.cfg.venue, tr.child_id, tr.symbol, leaves))
        self._count("stream_ignored")
        return []

    # ------------------------------------------------------------ shutdown
    def close(self) -> None:
        if self._stream is not None:
            self._stream.stop()
            self._stream = None
        if self._listen_key:
            self._request("DELETE", "/api/v3/userDataStream", {"listenKey": self._listen_key}, signed=False)
            self._listen_key = ""
        with self._http_lock:
            self._drop_connection()

    def __enter__(self) -> BinanceAdapter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = [
    "BinanceAdapter",
    "BinanceConfig",
    "CancelFailed",
    "Credentials",
    "CredentialsError",
    "Secret",
    "client_order_id",
    "sign",
]
