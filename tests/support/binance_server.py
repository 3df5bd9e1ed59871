"""A local stand-in for the Binance spot REST API and user-data stream.

Follows the documented behaviour closely enough to test an adapter with no
network: signed endpoints verify the HMAC-SHA256 signature over the query
string concatenated with the body (-1022), the timestamp against recvWindow
(-1021), the API key (-2015) and the parameters (-1102, -1106, -1104, -1121,
-1013 filter failures); orders are kept in a table keyed by clientOrderId and
a clientOrderId already in use by an open order is refused with -2010
"Duplicate order sent."; new-order responses come in the ACK / RESULT / FULL
shapes; every response carries X-MBX-USED-WEIGHT-1M (and order endpoints
X-MBX-ORDER-COUNT-10S / -1D). Faults can be injected: any status with any
body and headers (429 + Retry-After, 418, 5xx, bad JSON), or a response held
back long enough for the client to time out after the order was accepted.

The user-data stream is a minimal RFC 6455 server on the stdlib (handshake
with hashlib/base64, unmasked text frames out, client frames read and
ignored except close/ping), pushing executionReport and
outboundAccountPosition events for the orders of this server.

Every socket binds 127.0.0.1 on an ephemeral port. Money is decimal.Decimal
here (test support, not engine state); nothing goes through float.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import socket
import socketserver
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
EIGHT = Decimal("0.00000001")

# Request weights of the endpoints served (Binance spot, 2024).
WEIGHTS = {
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
    ("GET", "/api/v3/time"): 1,
}
SIGNED = {
    ("POST", "/api/v3/order"),
    ("DELETE", "/api/v3/order"),
    ("GET", "/api/v3/order"),
    ("DELETE", "/api/v3/openOrders"),
    ("GET", "/api/v3/openOrders"),
    ("GET", "/api/v3/account"),
    ("GET", "/api/v3/myTrades"),
}
ALLOWED_PARAMS = {
    ("POST", "/api/v3/order"): {
        "symbol", "side", "type", "timeInForce", "quantity", "quoteOrderQty", "price", "newClientOrderId",
        "newOrderRespType", "recvWindow", "timestamp", "signature", "selfTradePreventionMode",
    },
    ("DELETE", "/api/v3/order"): {
        "symbol", "orderId", "origClientOrderId", "newClientOrderId", "recvWindow", "timestamp", "signature",
    },
    ("GET", "/api/v3/order"): {"symbol", "orderId", "origClientOrderId", "recvWindow", "timestamp", "signature"},
    ("DELETE", "/api/v3/openOrders"): {"symbol", "recvWindow", "timestamp", "signature"},
    ("GET", "/api/v3/openOrders"): {"symbol", "recvWindow", "timestamp", "signature"},
    ("GET", "/api/v3/account"): {"omitZeroBalances", "recvWindow", "timestamp", "signature"},
    ("GET", "/api/v3/myTrades"): {
        "symbol", "orderId", "startTime", "endTime", "fromId", "limit", "recvWindow", "timestamp", "signature",
    },
    ("POST", "/api/v3/userDataStream"): set(),
    ("PUT", "/api/v3/userDataStream"): {"listenKey"},
    ("DELETE", "/api/v3/userDataStream"): {"listenKey"},
    ("GET", "/api/v3/time"): set(),
}
CID_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.:/_-")


def _missing(name: str) -> ApiError:
    return ApiError(400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def d8(value: Decimal) -> str:
    """Binance's 8-decimal rendering of a Decimal, exact."""
    return f"{value.quantize(EIGHT):f}"


class ApiError(Exception):
    def __init__(self, status: int, code: int, msg: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg, self.headers = status, code, msg, headers or {}


@dataclass
class SymbolRules:
    tick: Decimal
    step: Decimal
    base: str
    quote: str


@dataclass
class Market:
    bid: Decimal
    ask: Decimal
    bid_qty: Decimal | None = None  # None = unlimited liquidity at the touch
    ask_qty: Decimal | None = None


@dataclass
class Order:
    symbol: str
    order_id: int
    cid: str
    side: str
    type: str
    tif: str
    price: Decimal
    orig_qty: Decimal
    time: int
    executed: Decimal = Decimal(0)
    cum_quote: Decimal = Decimal(0)
    status: str = "NEW"
    fills: list[dict[str, Any]] = field(default_factory=list)

    @property
    def open(self) -> bool:
        return self.status in ("NEW", "PARTIALLY_FILLED")

    def view(self) -> dict[str, Any]:
        """The shape of GET /api/v3/order."""
        return {
            "symbol": self.symbol,
            "orderId": self.order_id,
            "orderListId": -1,
            "clientOrderId": self.cid,
            "price": d8(self.price),
            "origQty": d8(self.orig_qty),
            "executedQty": d8(self.executed),
            "cummulativeQuoteQty": d8(self.cum_quote),
            "status": self.status,
            "timeInForce": self.tif,
            "type": self.type,
            "side": self.side,
            "stopPrice": "0.00000000",
            "icebergQty": "0.00000000",
            "time": self.time,
            "updateTime": self.time,
            "isWorking": self.open,
            "workingTime": self.time,
            "origQuoteOrderQty": "0.00000000",
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }


@dataclass
class Fault:
    status: int
    body: bytes
    headers: dict[str, str]
    path: str | None
    process: bool  # do the work first, then answer with the fault (a lost response)
    delay: float  # seconds to hold the response back


class _WsConn:
    def __init__(self, sock: socket.socket, listen_key: str) -> None:
        self.sock = sock
        self.listen_key = listen_key
        self.lock = threading.Lock()
        self.closed = False

    def send_text(self, text: str) -> bool:
        payload = text.encode("utf-8")
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x81, n)
        elif n < 1 << 16:
            head = struct.pack("!BBH", 0x81, 126, n)
        else:
            head = struct.pack("!BBQ", 0x81, 127, n)
        return self._send(head + payload)

    def _send(self, data: bytes) -> bool:
        with self.lock:
            if self.closed:
                return False
            try:
                self.sock.sendall(data)
                return True
            except OSError:
                self.closed = True
                return False

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class BinanceTestServer:
    """REST on one port, the user-data websocket on another; both 127.0.0.1."""

    def __init__(
        self,
        api_key: str,
        api_secret: str,
        *,
        clock_ms: Callable[[], int] | None = None,
        weight_limit_1m: int = 6000,
        order_limit_10s: int = 100,
        order_limit_1d: int = 200000,
        commission_rate: str = "0.001",
        commission_asset: str | None = None,  # None: the asset received, as Binance charges without BNB
    ) -> None:
        self.api_key = api_key
        self._secret = api_secret.encode()
        self.clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self.weight_limit_1m = weight_limit_1m
        self.order_limit_10s = order_limit_10s
        self.order_limit_1d = order_limit_1d
        self.commission_rate = Decimal(commission_rate)
        self.commission_asset = commission_asset
        self.symbols: dict[str, SymbolRules] = {
            "BTCUSDT": SymbolRules(Decimal("0.01"), Decimal("0.00001"), "BTC", "USDT"),
            "ETHUSDT": SymbolRules(Decimal("0.01"), Decimal("0.0001"), "ETH", "USDT"),
        }
        self.markets: dict[str, Market] = {
            "BTCUSDT": Market(Decimal("60000.00"), Decimal("60000.10")),
            "ETHUSDT": Market(Decimal("3000.00"), Decimal("3000.10")),
        }
        self.balances: dict[str, list[Decimal]] = {
            "BTC": [Decimal("1.5"), Decimal(0)],
            "ETH": [Decimal("10"), Decimal(0)],
            "USDT": [Decimal("100000"), Decimal(0)],
            "BNB": [Decimal("0"), Decimal(0)],
        }
        self.orders: dict[str, Order] = {}  # every order ever accepted, by clientOrderId (latest wins)
        self.all_orders: list[Order] = []
        self.requests: list[tuple[str, str, str]] = []  # (method, path, api key header seen)
        self.listen_keys: set[str] = set()
        self.keepalives = 0
        self._ids = itertools.count(1001)
        self._trade_ids = itertools.count(5001)
        self._lock = threading.RLock()
        self._faults: list[Fault] = []
        self._weight: dict[int, int] = {}
        self._orders_10s: dict[int, int] = {}
        self._orders_1d: dict[int, int] = {}
        self._ws: list[_WsConn] = []
        self._ws_cond = threading.Condition(self._lock)
        self._release = threading.Event()  # ends any held-back response at shutdown
        self._http: ThreadingHTTPServer | None = None
        self._wss: socketserver.ThreadingTCPServer | None = None
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------ lifecycle
    def start(self) -> BinanceTestServer:
        server = self

        class Handler(_RestHandler):
            owner = server

        class WsHandler(_WsHandler):
            owner = server

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self._wss = socketserver.ThreadingTCPServer(("127.0.0.1", 0), WsHandler)
        self._wss.daemon_threads = True
        for srv in (self._http, self._wss):
            t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self._release.set()
        self.drop_ws()
        for srv in (self._http, self._wss):
            if srv is not None:
                srv.shutdown()
                srv.server_close()
        for t in self._threads:
            t.join(timeout=5)

    def __enter__(self) -> BinanceTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def rest_url(self) -> str:
        assert self._http is not None
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    @property
    def ws_url(self) -> str:
        assert self._wss is not None
        return f"ws://127.0.0.1:{self._wss.server_address[1]}"

    # ------------------------------------------------------------ test controls
    def inject(
        self,
        status: int,
        *,
        code: int | None = None,
        msg: str = "",
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        path: str | None = None,
        count: int = 1,
        process: bool = False,
        delay: float = 0.0,
    ) -> None:
        """Answer the next `count` requests (to `path`, if given) with this fault."""
        if body is None:
            body = json.dumps({"code": code, "msg": msg}).encode() if code is not None else b""
        with self._lock:
            for _ in range(count):
                self._faults.append(Fault(status, body, dict(headers or {}), path, process, delay))

    def hold_response(self, seconds: float, *, path: str = "/api/v3/order", count: int = 1) -> None:
        """Process the next request normally but hold its response back (a client timeout)."""
        with self._lock:
            for _ in range(count):
                self._faults.append(Fault(0, b"", {}, path, True, seconds))

    def count(self, method: str, path: str) -> int:
        with self._lock:
            return sum(1 for m, p, _ in self.requests if m == method and p == path)

    def order_count(self) -> int:
        with self._lock:
            return len(self.all_orders)

    def set_market(
        self, symbol: str, bid: str, ask: str, bid_qty: str | None = None, ask_qty: str | None = None
    ) -> None:
        with self._lock:
            self.markets[symbol] = Market(
                Decimal(bid), Decimal(ask),
                None if bid_qty is None else Decimal(bid_qty),
                None if ask_qty is None else Decimal(ask_qty),
            )

    def fill(self, cid: str, qty: str, price: str | None = None, *, maker: bool = True) -> dict[str, Any]:
        """A counterparty trades against the resting order `cid`; pushes the reports."""
        with self._lock:
            order = self.orders[cid]
            if not order.open:
                raise ValueError(f"order {cid} is {order.status}")
            px = Decimal(price) if price is not None else order.price
            trade = self._execute(order, Decimal(qty), px, maker)
            self._push_order(order, "TRADE", trade)
            self._push_account(order.symbol)
            return trade

    def wait_ws(self, n: int = 1, timeout: float = 5.0) -> bool:
        """Wait until at least `n` user-data websockets are connected."""
        deadline = time.monotonic() + timeout
        with self._ws_cond:
            while sum(1 for c in self._ws if not c.closed) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._ws_cond.wait(left)
            return True

    def ws_connections(self) -> int:
        with self._lock:
            return sum(1 for c in self._ws if not c.closed)

    def drop_ws(self) -> None:
        with self._lock:
            conns, self._ws = self._ws, []
        for c in conns:
            c.close()

    def push_raw(self, text: str) -> int:
        with self._lock:
            conns = [c for c in self._ws if not c.closed]
        return sum(1 for c in conns if c.send_text(text))

    # ------------------------------------------------------------ request handling
    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for i, f in enumerate(self._faults):
                if f.path is None or f.path == path:
                    return self._faults.pop(i)
        return None

    def _rate_headers(self, now: int, order: bool) -> dict[str, str]:
        h = {"X-MBX-USED-WEIGHT-1M": str(self._weight.get(now // 60000, 0))}
        if order:
            h["X-MBX-ORDER-COUNT-10S"] = str(self._orders_10s.get(now // 10000, 0))
            h["X-MBX-ORDER-COUNT-1D"] = str(self._orders_1d.get(now // 86400000, 0))
        return h

    def handle(self, method: str, raw_path: str, body: str, headers: Any) -> tuple[int, bytes, dict[str, str]]:
        parts = urlsplit(raw_path)
        path = parts.path
        now = self.clock_ms()
        with self._lock:
            self.requests.append((method, path, headers.get("X-MBX-APIKEY", "") and "present"))
        fault = self._take_fault(path)
        if fault is not None and not fault.process:
            return fault.status, fault.body, fault.headers
        try:
            status, payload, extra = self._dispatch(method, path, parts.query, body, headers, now)
        except ApiError as err:
            status, payload, extra = err.status, {"code": err.code, "msg": err.msg}, err.headers
        if fault is not None:
            if fault.delay:
                self._release.wait(fault.delay)
            if fault.status:
                return fault.status, fault.body, fault.headers
        return status, json.dumps(payload).encode(), extra

    def _dispatch(
        self, method: str, path: str, query: str, body: str, headers: Any, now: int
    ) -> tuple[int, Any, dict[str, str]]:
        key = (method, path)
        if key not in WEIGHTS:
            raise ApiError(404, -1000, "An unknown error occurred while processing the request.")
        is_order = key == ("POST", "/api/v3/order")
        with self._lock:
            minute = now // 60000
            used = self._weight.get(minute, 0) + WEIGHTS[key]
            self._weight[minute] = used
            if used > self.weight_limit_1m:
                retry = str(60 - (now % 60000) // 1000)
                raise ApiError(
                    429, -1003,
                    "Too much request weight used; current limit is "
                    f"{self.weight_limit_1m} request weight per 1 MINUTE.",
                    {"Retry-After": retry, **self._rate_headers(now, False)},
                )
        api_key = headers.get("X-MBX-APIKEY")
        if key != ("GET", "/api/v3/time"):
            if api_key is None:
                raise ApiError(400, -2014, "API-key format invalid.")
            if not hmac.compare_digest(api_key.encode(), self.api_key.encode()):
                raise ApiError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        pairs = parse_qsl(query, keep_blank_values=True) + parse_qsl(body, keep_blank_values=True)
        names = [k for k, _ in pairs]
        if len(names) != len(set(names)):
            raise ApiError(400, -1101, "Duplicate values for a parameter detected.")
        params = dict(pairs)
        unknown = set(params) - ALLOWED_PARAMS[key]
        if unknown:
            read = len(params) - len(unknown)
            raise ApiError(
                400, -1104,
                f"Not all sent parameters were read; read '{read}' parameter(s) but was sent '{len(params)}'.",
            )
        if key in SIGNED:
            self._check_signed(query, body, params, now)
        with self._lock:
            if is_order:
                for table, span in ((self._orders_10s, 10000), (self._orders_1d, 86400000)):
                    table[now // span] = table.get(now // span, 0) + 1
                if self._orders_10s[now // 10000] > self.order_limit_10s:
                    raise ApiError(
                        429, -1015,
                        f"Too many new orders; current limit is {self.order_limit_10s} orders per 10 SECOND.",
                        {"Retry-After": "10", **self._rate_headers(now, True)},
                    )
            try:
                result = getattr(self, "_" + method.lower() + path.replace("/api/v3/", "_"))(params, now)
            except ApiError as err:
                err.headers.update(self._rate_headers(now, path == "/api/v3/order"))
                raise
            return 200, result, self._rate_headers(now, path == "/api/v3/order")

    def _check_signed(self, query: str, body: str, params: dict[str, str], now: int) -> None:
        for name in ("timestamp", "signature"):
            if not params.get(name):
                raise _missing(name)

        def strip(raw: str) -> str:
            return "&".join(p for p in raw.split("&") if p and not p.startswith("signature="))

        payload = strip(query) + strip(body)
        want = hmac.new(self._secret, payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want, params["signature"].lower()):
            raise ApiError(400, -1022, "Signature for this request is not valid.")
        try:
            ts = int(params["timestamp"])
            window = int(params.get("recvWindow", "5000"))
        except ValueError:
            raise _missing("timestamp") from None
        if window <= 0 or window > 60000:
            raise ApiError(400, -1131, "recvWindow must be less than 60000")
        if ts >= now + 1000:
            raise ApiError(400, -1021, "Timestamp for this request was 1000ms ahead of the server's time.")
        if now - ts > window:
            raise ApiError(400, -1021, "Timestamp for this request is outside of the recvWindow.")

    # ------------------------------------------------------------ endpoints
    def _rules(self, params: dict[str, str]) -> SymbolRules:
        sym = params.get("symbol", "")
        if not sym:
            raise _missing("symbol")
        if sym not in self.symbols:
            raise ApiError(400, -1121, "Invalid symbol.")
        return self.symbols[sym]

    @staticmethod
    def _decimal(params: dict[str, str], name: str) -> Decimal:
        raw = params.get(name, "")
        if not raw:
            raise _missing(name)
        if not all(ch in "0123456789." for ch in raw) or raw.count(".") > 1:
            raise ApiError(
                400, -1100,
                f"Illegal characters found in parameter '{name}'; "
                "legal range is '^([0-9]{1,20})(\\.[0-9]{1,20})?$'.",
            )
        return Decimal(raw)

    def _post_order(self, p: dict[str, str], now: int) -> dict[str, Any]:
        rules = self._rules(p)
        side = p.get("side", "")
        if not side:
            raise _missing("side")
        if side not in ("BUY", "SELL"):
            raise ApiError(400, -1117, "Invalid side.")
        otype = p.get("type", "")
        if otype not in ("LIMIT", "LIMIT_MAKER", "MARKET"):
            raise ApiError(400, -1116, "Invalid orderType.")
        tif = p.get("timeInForce")
        if otype == "LIMIT":
            if not tif:
                raise _missing("timeInForce")
            if tif not in ("GTC", "IOC", "FOK"):
                raise ApiError(400, -1115, "Invalid timeInForce.")
        elif tif is not None:
            raise ApiError(400, -1106, "Parameter 'timeInForce' sent when not required.")
        qty = self._decimal(p, "quantity")
        if otype == "MARKET":
            if "price" in p:
                raise ApiError(400, -1106, "Parameter 'price' sent when not required.")
            price = Decimal(0)
        else:
            price = self._decimal(p, "price")
            if price <= 0 or price % rules.tick:
                raise ApiError(400, -1013, "Filter failure: PRICE_FILTER")
        if qty <= 0 or qty % rules.step:
            raise ApiError(400, -1013, "Filter failure: LOT_SIZE")
        resp_type = p.get("newOrderRespType", "FULL")
        if resp_type not in ("ACK", "RESULT", "FULL"):
            raise ApiError(400, -1130, "Data sent for parameter 'newOrderRespType' is not valid.")
        cid = p.get("newClientOrderId") or f"srv{next(self._ids)}"
        if len(cid) > 36 or not set(cid) <= CID_CHARS:
            raise ApiError(
                400, -1100,
                "Illegal characters found in parameter 'newClientOrderId'; "
                "legal range is '^[\\.A-Z\\:/a-z0-9_-]{1,36}$'.",
            )
        prior = self.orders.get(cid)
        if prior is not None and prior.open:
            raise ApiError(400, -2010, "Duplicate order sent.")
        mkt = self.markets[p["symbol"]]
        crosses = otype == "MARKET" or (price >= mkt.ask if side == "BUY" else price <= mkt.bid)
        if otype == "LIMIT_MAKER" and crosses:
            raise ApiError(400, -2010, "Order would immediately match and take.")
        order = Order(p["symbol"], next(self._ids), cid, side, otype, tif or "GTC", price, qty, now)
        avail = (mkt.ask_qty if side == "BUY" else mkt.bid_qty) if crosses else Decimal(0)
        can = qty if avail is None else min(qty, avail)
        if tif == "FOK" and can < qty:
            can = Decimal(0)
        self.orders[cid] = order
        self.all_orders.append(order)
        self._push_order(order, "NEW", None)
        trades = []
        if crosses and can > 0:
            px = mkt.ask if side == "BUY" else mkt.bid
            trades.append(self._execute(order, can, px, False))
            if avail is not None:
                if side == "BUY":
                    mkt.ask_qty = avail - can
                else:
                    mkt.bid_qty = avail - can
            self._push_order(order, "TRADE", trades[-1])
        if order.open and (otype == "MARKET" or tif in ("IOC", "FOK")):
            order.status = "EXPIRED"
            self._push_order(order, "EXPIRED", None)
        if trades:
            self._push_account(order.symbol)
        out: dict[str, Any] = {
            "symbol": order.symbol,
            "orderId": order.order_id,
            "orderListId": -1,
            "clientOrderId": cid,
            "transactTime": now,
        }
        if resp_type == "ACK":
            return out
        view = order.view()
        for k in ("price", "origQty", "executedQty", "origQuoteOrderQty", "cummulativeQuoteQty", "status",
                  "timeInForce", "type", "side", "workingTime", "selfTradePreventionMode"):
            out[k] = view[k]
        if resp_type == "FULL":
            out["fills"] = [
                {"price": t["price"], "qty": t["qty"], "commission": t["commission"],
                 "commissionAsset": t["commissionAsset"], "tradeId": t["id"]}
                for t in trades
            ]
        return out

    def _execute(self, order: Order, qty: Decimal, px: Decimal, maker: bool) -> dict[str, Any]:
        rules = self.symbols[order.symbol]
        order.executed += qty
        order.cum_quote += qty * px
        order.status = "FILLED" if order.executed >= order.orig_qty else "PARTIALLY_FILLED"
        received = rules.base if order.side == "BUY" else rules.quote
        asset = self.commission_asset or received
        gross = qty if asset == rules.base else qty * px
        commission = (gross * self.commission_rate).quantize(EIGHT, rounding=ROUND_HALF_UP)
        base = self.balances.setdefault(rules.base, [Decimal(0), Decimal(0)])
        quote = self.balances.setdefault(rules.quote, [Decimal(0), Decimal(0)])
        sign = 1 if order.side == "BUY" else -1
        base[0] += sign * qty
        quote[0] -= sign * qty * px
        self.balances.setdefault(asset, [Decimal(0), Decimal(0)])[0] -= commission
        trade = {
            "symbol": order.symbol, "id": next(self._trade_ids), "orderId": order.order_id, "orderListId": -1,
            "price": d8(px), "qty": d8(qty), "quoteQty": d8(qty * px), "commission": d8(commission),
            "commissionAsset": asset, "time": self.clock_ms(), "isBuyer": order.side == "BUY",
            "isMaker": maker, "isBestMatch": True,
        }
        order.fills.append(trade)
        return trade

    def _delete_order(self, p: dict[str, str], now: int) -> dict[str, Any]:
        self._rules(p)
        order = self._find(p)
        if not order.open:
            raise ApiError(400, -2011, "Unknown order sent.")
        order.status = "CANCELED"
        cancel_cid = p.get("newClientOrderId") or f"cxl{next(self._ids)}"
        self._push_order(order, "CANCELED", None, cancel_cid=cancel_cid)
        view = order.view()
        out = {"symbol": order.symbol, "origClientOrderId": order.cid, "orderId": order.order_id,
               "orderListId": -1, "clientOrderId": cancel_cid, "transactTime": now}
        for k in ("price", "origQty", "executedQty", "origQuoteOrderQty", "cummulativeQuoteQty", "status",
                  "timeInForce", "type", "side", "selfTradePreventionMode"):
            out[k] = view[k]
        return out

    def _find(self, p: dict[str, str]) -> Order:
        if "origClientOrderId" in p:
            order = self.orders.get(p["origClientOrderId"])
        elif "orderId" in p:
            order = next((o for o in self.all_orders if str(o.order_id) == p["orderId"]), None)
        else:
            raise ApiError(400, -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")
        if order is None or order.symbol != p["symbol"]:
            raise ApiError(400, -2013, "Order does not exist.")
        return order

    def _get_order(self, p: dict[str, str], now: int) -> dict[str, Any]:
        self._rules(p)
        return self._find(p).view()

    def _delete_openOrders(self, p: dict[str, str], now: int) -> list[dict[str, Any]]:
        self._rules(p)
        live = [o for o in self.orders.values() if o.open and o.symbol == p["symbol"]]
        if not live:
            raise ApiError(400, -2011, "Unknown order sent.")
        out = []
        for o in live:
            o.status = "CANCELED"
            cancel_cid = f"cxl{next(self._ids)}"
            self._push_order(o, "CANCELED", None, cancel_cid=cancel_cid)
            view = o.view()
            row = {"symbol": o.symbol, "origClientOrderId": o.cid, "orderId": o.order_id, "orderListId": -1,
                   "clientOrderId": cancel_cid, "transactTime": now}
            for k in ("price", "origQty", "executedQty", "cummulativeQuoteQty", "status", "timeInForce", "type",
                      "side", "selfTradePreventionMode"):
                row[k] = view[k]
            out.append(row)
        return out

    def _get_openOrders(self, p: dict[str, str], now: int) -> list[dict[str, Any]]:
        sym = p.get("symbol")
        if sym:
            self._rules(p)
        return [o.view() for o in self.orders.values() if o.open and (not sym or o.symbol == sym)]

    def _get_account(self, p: dict[str, str], now: int) -> dict[str, Any]:
        return {
            "makerCommission": 10, "takerCommission": 10, "buyerCommission": 0, "sellerCommission": 0,
            "canTrade": True, "canWithdraw": True, "canDeposit": True, "brokered": False,
            "requireSelfTradePrevention": False, "preventSor": False, "updateTime": now, "accountType": "SPOT",
            "balances": [{"asset": a, "free": d8(f), "locked": d8(lk)} for a, (f, lk) in sorted(self.balances.items())],
            "permissions": ["SPOT"], "uid": 354937868,
        }

    def _get_myTrades(self, p: dict[str, str], now: int) -> list[dict[str, Any]]:
        self._rules(p)
        oid = p.get("orderId")
        return [
            dict(t) for o in self.all_orders if o.symbol == p["symbol"] and (oid is None or str(o.order_id) == oid)
            for t in o.fills
        ]

    def _post_userDataStream(self, p: dict[str, str], now: int) -> dict[str, Any]:
        key = hashlib.sha256(f"lk{next(self._ids)}".encode()).hexdigest()
        self.listen_keys.add(key)
        return {"listenKey": key}

    def _put_userDataStream(self, p: dict[str, str], now: int) -> dict[str, Any]:
        if p.get("listenKey") not in self.listen_keys:
            raise ApiError(400, -1125, "This listenKey does not exist.")
        self.keepalives += 1
        return {}

    def _delete_userDataStream(self, p: dict[str, str], now: int) -> dict[str, Any]:
        self.listen_keys.discard(p.get("listenKey", ""))
        return {}

    def _get_time(self, p: dict[str, str], now: int) -> dict[str, Any]:
        return {"serverTime": now}

    # ------------------------------------------------------------ user-data pushes
    def _push_order(self, order: Order, exec_type: str, trade: dict[str, Any] | None, cancel_cid: str = "") -> None:
        ev = {
            "e": "executionReport", "E": self.clock_ms(), "s": order.symbol,
            "c": cancel_cid or order.cid, "S": order.side, "o": order.type, "f": order.tif,
            "q": d8(order.orig_qty), "p": d8(order.price), "P": "0.00000000", "F": "0.00000000",
            "g": -1, "C": order.cid if cancel_cid else "", "x": exec_type, "X": order.status, "r": "NONE",
            "i": order.order_id, "l": trade["qty"] if trade else "0.00000000",
            "z": d8(order.executed), "L": trade["price"] if trade else "0.00000000",
            "n": trade["commission"] if trade else "0", "N": trade["commissionAsset"] if trade else None,
            "T": self.clock_ms(), "t": trade["id"] if trade else -1, "v": 0, "I": next(self._ids),
            "w": order.open, "m": bool(trade and trade["isMaker"]), "M": False, "O": order.time,
            "Z": d8(order.cum_quote), "Y": trade["quoteQty"] if trade else "0.00000000", "Q": "0.00000000",
            "W": order.time, "V": "EXPIRE_MAKER",
        }
        self.push_raw(json.dumps(ev))

    def _push_account(self, symbol: str) -> None:
        rules = self.symbols[symbol]
        ev = {
            "e": "outboundAccountPosition", "E": self.clock_ms(), "u": self.clock_ms(),
            "B": [
                {"a": a, "f": d8(self.balances[a][0]), "l": d8(self.balances[a][1])} for a in (rules.base, rules.quote)
            ],
        }
        self.push_raw(json.dumps(ev))

    def _ws_register(self, conn: _WsConn) -> None:
        with self._ws_cond:
            self._ws.append(conn)
            self._ws_cond.notify_all()


class _RestHandler(BaseHTTPRequestHandler):
    owner: BinanceTestServer
    protocol_version = "HTTP/1.1"
    timeout = 10

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        status, payload, headers = self.owner.handle(self.command, self.path, body, self.headers)
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(payload)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        try:
            self.wfile.write(payload)
        except OSError:
            pass

    do_GET = do_POST = do_PUT = do_DELETE = _serve


class _WsHandler(socketserver.BaseRequestHandler):
    owner: BinanceTestServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(10)
        try:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(4096)
                if not chunk or len(head) > 65536:
                    return
                head += chunk
            lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
            parts = lines[0].split(" ")
            hdrs = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
            key = hdrs.get("sec-websocket-key", "")
            path = parts[1] if len(parts) > 1 else ""
            listen_key = path[len("/ws/"):] if path.startswith("/ws/") else ""
            if parts[0] != "GET" or not key or listen_key not in self.owner.listen_keys:
                sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
            sock.sendall(
                (
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
                ).encode()
            )
            conn = _WsConn(sock, listen_key)
            self.owner._ws_register(conn)
            sock.settimeout(0.2)
            buf = b""
            while not conn.closed:
                try:
                    chunk = sock.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if not chunk:
                    break
                buf += chunk
                while True:
                    frame = _parse_frame(buf)
                    if frame is None:
                        break
                    opcode, payload, used = frame
                    buf = buf[used:]
                    if opcode == 0x8:
                        conn._send(struct.pack("!BB", 0x88, len(payload[:125])) + payload[:125])
                        conn.close()
                        break
                    if opcode == 0x9:
                        conn._send(struct.pack("!BB", 0x8A, len(payload[:125])) + payload[:125])
            conn.close()
        except OSError:
            return


def _parse_frame(buf: bytes) -> tuple[int, bytes, int] | None:
    """One client frame from the front of `buf`: (opcode, unmasked payload, bytes used), or None if short."""
    if len(buf) < 2:
        return None
    b0, b1 = buf[0], buf[1]
    n = b1 & 0x7F
    pos = 2
    if n == 126:
        if len(buf) < 4:
            return None
        n = struct.unpack("!H", buf[2:4])[0]
        pos = 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n = struct.unpack("!Q", buf[2:10])[0]
        pos = 10
    mask = b""
    if b1 & 0x80:
        if len(buf) < pos + 4:
            return None
        mask = buf[pos:pos + 4]
        pos += 4
    if len(buf) < pos + n:
        return None
    data = buf[pos:pos + n]
    if mask:
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    return b0 & 0x0F, data, pos + n
