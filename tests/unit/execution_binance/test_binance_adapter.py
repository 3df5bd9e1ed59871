"""The Binance spot adapter against a local Binance stand-in (tests/support/binance_server.py)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    encode,
)
from common.units import SymbolSpec, SymbolTable, rescale_ceil
from services.execution.binance import (
    CID_PATTERN,
    BinanceAdapter,
    BinanceConfig,
    CancelFailed,
    Credentials,
    CredentialsError,
    Secret,
    client_order_id,
    sign,
)
from tests.support.binance_server import BinanceTestServer

API_KEY = "tEsTkEy7f3a9c0d1e2b4a6c8e0f1a3b5c7d9e1f3a5b7c9d1e3f5a7b9c1d3e5f7a9"
API_SECRET = "tEsTsEcReT9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2"


class ManualClock:
    """Milliseconds that move only when told; starts at the real time so timestamps look real."""

    def __init__(self) -> None:
        self.now = time.time_ns() // 1_000_000
        self.lock = threading.Lock()

    def __call__(self) -> int:
        with self.lock:
            return self.now

    def advance(self, ms: int) -> None:
        with self.lock:
            self.now += ms

    def sleep(self, seconds: float) -> None:
        self.advance(int(seconds * 1000) + 1)


@pytest.fixture
def server():
    srv = BinanceTestServer(API_KEY, API_SECRET).start()
    yield srv
    srv.stop()


def make_adapter(srv: BinanceTestServer, **kw: Any) -> BinanceAdapter:
    clock = kw.pop("clock_ms", None)
    sleep = kw.pop("sleep", None)
    creds = kw.pop("credentials", Credentials(Secret(API_KEY), Secret(API_SECRET)))
    cfg = BinanceConfig(rest_base=srv.rest_url, ws_base=srv.ws_url, timeout_s=kw.pop("timeout_s", 2.0), **kw)
    return BinanceAdapter(cfg, creds, clock_ms=clock, sleep=sleep)


@pytest.fixture
def adapter(server):
    ad = make_adapter(server)
    yield ad
    ad.close()


def child(cid: str = "c1", side: int = BUY, price: int = 5_999_000, qty: int = 123_000, tif: int = GTC,
          post_only: bool = False, symbol: str = "BTCUSDT") -> ChildOrder:
    return ChildOrder("p1", cid, "binance", symbol, side, price, qty, tif, post_only, "direct")


def poll_until(ad: BinanceAdapter, pred: Callable[[list[Any]], bool], timeout: float = 5.0) -> list[Any]:
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got += ad.poll_user_stream()
        if pred(got):
            return got
        time.sleep(0.01)
    return got


# ---------------------------------------------------------------- signing and ids
def test_signature_matches_binance_documented_example():
    # The HMAC-SHA256 worked example of the spot REST docs ("SIGNED endpoint examples for POST /api/v3/order").
    secret = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
    query = ("symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1"
             "&recvWindow=5000&timestamp=1499827319559")
    assert sign(secret, query) == "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
    assert sign(secret.encode(), query) == sign(secret, query)
    assert sign(secret, query + "0") != sign(secret, query)


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=0, max_size=200), st.text(min_size=0, max_size=200))
def test_client_order_id_is_deterministic_and_valid(a: str, b: str):
    ca = client_order_id(a)
    assert ca == client_order_id(a)
    assert len(ca) <= 36 and CID_PATTERN.match(ca)
    if a != b:
        assert ca != client_order_id(b)


# ---------------------------------------------------------------- orders
def test_limit_gtc_sends_exact_decimals_and_acks(server, adapter):
    out = adapter.submit(child("c1", BUY, price=5_999_012, qty=123_000))
    assert len(out) == 1 and isinstance(out[0], OrderAck)
    assert out[0].child_id == "c1" and out[0].venue == "binance" and out[0].venue_order_id.isdigit()
    order = server.orders[client_order_id("c1")]
    assert (order.type, order.tif, order.side) == ("LIMIT", "GTC", "BUY")
    assert order.price == Decimal("59990.12") and order.orig_qty == Decimal("0.00123")
    rows = adapter.open_orders("BTCUSDT")
    assert rows == [{
        "child_id": "c1", "client_order_id": client_order_id("c1"), "venue_order_id": out[0].venue_order_id,
        "symbol": "BTCUSDT", "side": BUY, "type": "LIMIT", "tif": "GTC", "status": "NEW",
        "price": 5_999_012, "qty": 123_000, "filled": 0,
    }]


def test_crossing_limit_sell_fills_with_exact_ints_and_quote_fee(server, adapter):
    out = adapter.submit(child("s1", SELL, price=5_999_900, qty=123_000))
    assert [type(e) for e in out] == [OrderAck, OrderFill]
    fill = out[1]
    # sold 0.00123 at the bid 60000.00; 0.1% commission in USDT = 0.0738 -> notional scale 10
    assert (fill.price, fill.qty, fill.leaves_qty, fill.side) == (6_000_000, 123_000, 0, SELL)
    assert fill.fee == 738_000_000 and fill.liquidity == TAKER
    assert fill.trade_id.isdigit()


def test_market_buy_fee_in_base_asset_is_valued_at_the_fill_price_and_carried(server, adapter):
    out = adapter.submit(child("m1", BUY, price=0, qty=123_000, tif=IOC))
    assert [type(e) for e in out] == [OrderAck, OrderFill]
    order = server.orders[client_order_id("m1")]
    assert order.type == "MARKET"
    fill = out[1]
    # commission 0.00000123 BTC (Binance charges the asset received); worth 0.00000123 * 60000.10
    # = 0.073800123 USDT, i.e. 738_001_230 at the notional scale 10**-10
    assert (fill.price, fill.qty, fill.leaves_qty, fill.fee, fill.fee_base) == (6_000_010, 123_000, 0, 738_001_230, 123)
    assert adapter.counters()["fee_base_fills"] == 1
    assert adapter.fees_other() == {}


def test_a_fee_in_a_third_asset_is_recorded_not_converted():
    server = BinanceTestServer(API_KEY, API_SECRET, commission_asset="BNB").start()
    try:
        server.set_market("BTCUSDT", "60000.00", "60000.10")
        adapter = make_adapter(server)
        try:
            fill = adapter.submit(child("b1", BUY, price=0, qty=123_000, tif=IOC))[1]
            assert (fill.fee, fill.fee_base) == (0, 0)
            # the stand-in charges 0.1% of the quote notional, as a count of BNB: 0.07380012
            assert adapter.fees_other() == {"BNB": 7_380_012} and adapter.counters()["fee_other:BNB"] == 7_380_012
        finally:
            adapter.close()
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("amount", "price", "qty_scale", "want"),
    [
        (123, 6_000_010, 8, 738_001_230),  # qty scale = asset scale: exact
        (123, 6_000_010, 5, 738_002),  # 0.0738001230 USDT at 10**-7: rounded up, never down
        (100, 6_000_000, 5, 600_000),  # exact at 10**-7: no rounding
        (1, 1, 9, 10),  # a finer qty scale multiplies
    ],
)
def test_base_fee_value_rounds_up_at_the_notional_scale(amount, price, qty_scale, want):
    # the adapter's valuation: amount * price rescaled from the asset scale (8) to the qty scale
    assert rescale_ceil(amount * price, 8, qty_scale) == want


def test_market_buy_partially_filled_then_expired(server, adapter):
    server.set_market("BTCUSDT", "60000.00", "60000.10", ask_qty="0.00100")
    out = adapter.submit(child("m2", BUY, price=0, qty=123_000))
    assert [type(e) for e in out] == [OrderAck, OrderFill, OrderExpired]
    assert out[1].qty == 100_000 and out[1].leaves_qty == 23_000
    assert out[2].leaves_qty == 23_000


def test_post_only_uses_limit_maker_and_rejects_when_it_would_take(server, adapter):
    out = adapter.submit(child("pm1", BUY, price=5_999_000, post_only=True))
    assert [type(e) for e in out] == [OrderAck]
    order = server.orders[client_order_id("pm1")]
    assert order.type == "LIMIT_MAKER"
    out = adapter.submit(child("pm2", BUY, price=6_000_010, post_only=True))
    assert len(out) == 1 and isinstance(out[0], OrderRejected)
    assert out[0].reason == "-2010:Order would immediately match and take."
    assert server.count("POST", "/api/v3/order") == 2


def test_ioc_and_fok_expire_with_leaves(server, adapter):
    out = adapter.submit(child("i1", BUY, price=5_999_000, tif=IOC))
    assert [type(e) for e in out] == [OrderAck, OrderExpired]
    assert out[1].leaves_qty == 123_000
    server.set_market("BTCUSDT", "60000.00", "60000.10", ask_qty="0.00100")
    out = adapter.submit(child("f1", BUY, price=6_000_010, tif=FOK))
    assert [type(e) for e in out] == [OrderAck, OrderExpired]
    assert server.orders[client_order_id("f1")].executed == 0


def test_cancel_and_cancel_of_a_gone_order(server, adapter):
    adapter.submit(child("k1"))
    out = adapter.cancel("k1", "BTCUSDT")
    assert out == [OrderCancelled("binance", "k1", "BTCUSDT", 123_000, "canceled")]
    assert server.orders[client_order_id("k1")].status == "CANCELED"
    again = adapter.cancel("k1", "BTCUSDT")
    assert len(again) == 1 and isinstance(again[0], CancelFailed)
    assert again[0].code == -2011 and again[0].reason == "-2011:Unknown order sent."


def test_cancel_reports_fills_it_had_not_seen(server, adapter):
    adapter.submit(child("k2", SELL, price=6_100_000, qty=200_000))
    server.fill(client_order_id("k2"), "0.00050")  # no user stream running: only REST will tell
    out = adapter.cancel("k2", "BTCUSDT")
    assert [type(e) for e in out] == [OrderFill, OrderCancelled]
    assert (out[0].qty, out[0].price, out[0].leaves_qty, out[0].liquidity) == (50_000, 6_100_000, 150_000, MAKER)
    assert out[1].leaves_qty == 150_000


def test_cancel_all(server, adapter):
    adapter.submit(child("a1"))
    adapter.submit(child("a2", price=5_998_000))
    out = adapter.cancel_all("BTCUSDT")
    assert sorted((e.child_id, type(e)) for e in out) == [("a1", OrderCancelled), ("a2", OrderCancelled)]
    assert adapter.cancel_all("BTCUSDT") == []  # -2011 when nothing is open: not a failure
    assert adapter.open_orders("BTCUSDT") == []


def test_balances_are_exact_ints(server, adapter):
    bal = adapter.balances()
    assert bal["BTC"] == 150_000_000 and bal["USDT"] == 10_000_000_000_000


# ---------------------------------------------------------------- never doubled
def test_resend_of_same_child_does_not_create_a_second_order(server, adapter):
    first = adapter.submit(child("r1"))
    assert [type(e) for e in first] == [OrderAck]
    assert adapter.submit(child("r1")) == []  # same process: answered from its own state
    assert server.count("POST", "/api/v3/order") == 1
    # a restarted execution service (fresh adapter, no memory) resending the same child:
    fresh = make_adapter(server)
    try:
        again = fresh.submit(child("r1"))  # Binance: -2010 "Duplicate order sent." -> query
        assert [type(e) for e in again] == [OrderAck]
        assert again[0].venue_order_id == first[0].venue_order_id
        assert fresh.counters()["duplicate_detected"] == 1
        fresh2 = make_adapter(server)
        try:
            looked = fresh2.submit(child("r1"), resend=True)  # catch-up: look first, no POST at all
            assert [type(e) for e in looked] == [OrderAck]
        finally:
            fresh2.close()
    finally:
        fresh.close()
    assert server.order_count() == 1
    assert server.count("POST", "/api/v3/order") == 2


def test_resend_after_restart_of_a_filled_order_is_not_doubled(server, adapter):
    adapter.submit(child("r2", SELL, price=5_999_900))  # fills at once; Binance would accept the cid again
    fresh = make_adapter(server)
    try:
        out = fresh.submit(child("r2", SELL, price=5_999_900), resend=True)
        assert [type(e) for e in out] == [OrderAck, OrderFill]  # state recovered via query + myTrades
        assert out[1].qty == 123_000 and out[1].price == 6_000_000
    finally:
        fresh.close()
    assert server.order_count() == 1


def test_timeout_after_acceptance_is_resolved_by_query_not_resent(server):
    ad = make_adapter(server, timeout_s=0.3)
    try:
        server.hold_response(2.0, path="/api/v3/order")
        out = ad.submit(child("t1"))
        assert [type(e) for e in out] == [OrderAck]
        assert server.order_count() == 1 and server.count("POST", "/api/v3/order") == 1
        assert ad.counters()["timeouts"] == 1
    finally:
        ad.close()


def test_5xx_after_acceptance_is_resolved_by_query(server, adapter):
    server.inject(502, body=b"<html>bad gateway</html>", path="/api/v3/order", process=True)
    out = adapter.submit(child("t2"))
    assert [type(e) for e in out] == [OrderAck]
    assert server.order_count() == 1 and server.count("POST", "/api/v3/order") == 1


def test_lost_request_is_reported_unknown_and_never_blindly_resent(server):
    clock = ManualClock()
    server.clock_ms = clock
    ad = make_adapter(server, clock_ms=clock)
    try:
        server.inject(502, body=b"<html>bad gateway</html>", path="/api/v3/order")  # never processed
        out = ad.submit(child("t3"))
        assert len(out) == 1 and out[0].reason.startswith("STATUS_UNKNOWN:HTTP502")
        assert ad.submit(child("t3")) == []  # resend inside recvWindow: looked up, not sent
        assert ad.poll_user_stream() == []
        clock.advance(6_001)  # past recvWindow: the lost request can no longer land
        assert ad.poll_user_stream() == []
        assert ad.counters()["unknown_resolved_absent"] == 1
        assert ad.submit(child("t3")) == []
        assert server.order_count() == 0 and server.count("POST", "/api/v3/order") == 1
        # ...but an order that does land late is still reported after the provisional reject
        server.hold_response(0.5)
        late = make_adapter(server, clock_ms=clock, timeout_s=0.1)
        try:
            server.inject(503, body=b"", path="/api/v3/order")  # the look-up fails too
            out = late.submit(child("t4"))
            assert out[0].reason.startswith("STATUS_UNKNOWN:")
            clock.advance(1_001)
            got = late.poll_user_stream()  # re-checks orders of unknown status
            assert [type(e) for e in got] == [OrderAck]
        finally:
            late.close()
    finally:
        ad.close()


def test_dead_keepalive_connection_is_reopened_not_misreported(server, adapter):
    import socket

    assert adapter.balances()  # opens the persistent connection
    adapter._conn.sock.shutdown(socket.SHUT_RDWR)  # the peer went away while idle
    out = adapter.submit(child("t5"))
    assert [type(e) for e in out] == [OrderAck]
    assert server.order_count() == 1


# ---------------------------------------------------------------- errors become events
@pytest.mark.parametrize(
    "status, body, prefix",
    [
        (400, b'{"code":-1013,"msg":"Filter failure: PRICE_FILTER"}', "-1013:Filter failure: PRICE_FILTER"),
        (400, b'{"code":-2010,"msg":"Account has insufficient balance for requested action."}', "-2010:Account"),
        (403, b"<html>WAF</html>", "HTTP403:"),
    ],
)
def test_error_responses_become_order_rejected(server, adapter, status, body, prefix):
    server.inject(status, body=body, path="/api/v3/order")
    out = adapter.submit(child("e1"))
    assert len(out) == 1 and isinstance(out[0], OrderRejected)
    assert out[0].reason.startswith(prefix) and out[0].child_id == "e1"
    assert server.order_count() == 0


def test_unreadable_response_everywhere_is_a_status_unknown_reject(server, adapter):
    server.inject(200, body=b"{not json", count=10)
    out = adapter.submit(child("e2"))
    assert len(out) == 1 and isinstance(out[0], OrderRejected)
    assert out[0].reason.startswith("STATUS_UNKNOWN:")
    assert adapter.cancel("e2", "BTCUSDT")[-1].reason.startswith("BADJSON:")
    assert adapter.open_orders("BTCUSDT") == [] and adapter.balances() == {}


def test_bad_signature_and_stale_timestamp_are_rejects(server):
    wrong = make_adapter(server, credentials=Credentials(Secret(API_KEY), Secret("not-the-secret")))
    late = make_adapter(server, clock_ms=lambda: time.time_ns() // 1_000_000 - 10_000, recv_window_ms=5000)
    early = make_adapter(server, clock_ms=lambda: time.time_ns() // 1_000_000 + 5_000)
    try:
        assert wrong.submit(child("g1"))[0].reason == "-1022:Signature for this request is not valid."
        assert late.submit(child("g2"))[0].reason == "-1021:Timestamp for this request is outside of the recvWindow."
        assert early.submit(child("g3"))[0].reason.startswith("-1021:Timestamp for this request was 1000ms ahead")
    finally:
        for ad in (wrong, late, early):
            ad.close()
    assert server.order_count() == 0


def test_local_checks_reject_without_sending(server, adapter):
    coarse = BinanceAdapter(
        BinanceConfig(rest_base=server.rest_url), Credentials(Secret(API_KEY), Secret(API_SECRET)),
        SymbolTable([SymbolSpec("BTCUSDT", price_scale=2, qty_scale=8, tick=10, step=1000, base="BTC", quote="USDT")]),
    )
    assert coarse.submit(child("l1", price=5_999_005))[0].reason.startswith("LOCAL:price")
    coarse.close()
    assert adapter.submit(child("l2", qty=123_456))[0].reason.startswith("LOCAL:qty")
    assert adapter.submit(child("l3", symbol="NOPEUSDT"))[0].reason.startswith("LOCAL:unknown symbol")
    assert adapter.submit(child("l4", price=0, post_only=True))[0].reason.startswith("LOCAL:post_only")
    assert server.count("POST", "/api/v3/order") == 0


def test_network_down_is_a_reject_not_a_crash():
    srv = BinanceTestServer(API_KEY, API_SECRET).start()
    url = srv.rest_url
    srv.stop()
    ad = BinanceAdapter(BinanceConfig(rest_base=url, ws_base="ws://127.0.0.1:9", timeout_s=0.5),
                        Credentials(Secret(API_KEY), Secret(API_SECRET)))
    try:
        out = ad.submit(child("n1"))
        assert len(out) == 1 and isinstance(out[0], OrderRejected)
        assert isinstance(ad.cancel("n1", "BTCUSDT")[-1], CancelFailed)
        assert ad.cancel_all("BTCUSDT")[0].reason.startswith("NETWORK:")
    finally:
        ad.close()


# ---------------------------------------------------------------- rate limits
def test_429_retry_after_is_honoured(server):
    clock = ManualClock()
    server.clock_ms = clock
    ad = make_adapter(server, clock_ms=clock)
    try:
        msg = "Too much request weight used; current limit is 6000 request weight per 1 MINUTE."
        server.inject(429, code=-1003, msg=msg, headers={"Retry-After": "3"}, path="/api/v3/order")
        out = ad.submit(child("q1"))
        assert isinstance(out[0], OrderRejected) and out[0].reason.startswith("RATE_LIMITED:HTTP 429 -1003")
        clock.advance(2_900)
        out = ad.submit(child("q2"))  # still inside Retry-After: not sent at all
        assert isinstance(out[0], OrderRejected) and out[0].reason.startswith("RATE_LIMITED:")
        assert server.count("POST", "/api/v3/order") == 1
        clock.advance(200)
        assert [type(e) for e in ad.submit(child("q3"))] == [OrderAck]
        assert server.count("POST", "/api/v3/order") == 2
    finally:
        ad.close()


def test_418_ban_stops_sending(server):
    clock = ManualClock()
    server.clock_ms = clock
    ad = make_adapter(server, clock_ms=clock)
    try:
        server.inject(418, code=-1003, msg="Way too much request weight used; IP banned until 1.",
                      headers={"Retry-After": "120"})
        assert ad.submit(child("b1"))[0].reason.startswith("IP_BANNED:HTTP 418")
        clock.advance(60_000)
        assert ad.submit(child("b2"))[0].reason.startswith("IP_BANNED:")
        assert isinstance(ad.cancel("b2", "BTCUSDT")[0], CancelFailed)
        assert server.count("POST", "/api/v3/order") == 1 and server.count("DELETE", "/api/v3/order") == 0
        clock.advance(60_001)
        assert [type(e) for e in ad.submit(child("b3"))] == [OrderAck]
    finally:
        ad.close()


def test_backs_off_before_exceeding_weight_and_order_limits(server):
    clock = ManualClock()
    clock.now -= clock.now % 60_000  # start of a minute, so the windows do not roll by themselves
    server.clock_ms = clock
    sleeps: list[float] = []

    def sleep(s: float) -> None:
        sleeps.append(s)
        clock.sleep(s)

    ad = make_adapter(server, clock_ms=clock, sleep=sleep, order_limit_10s=2, max_wait_ms=10_000)
    try:
        assert [type(e) for e in ad.submit(child("w1"))] == [OrderAck]
        assert [type(e) for e in ad.submit(child("w2"))] == [OrderAck]
        assert ad.counters()["order_count_10s"] == 2  # read from X-MBX-ORDER-COUNT-10S
        assert [type(e) for e in ad.submit(child("w3"))] == [OrderAck]  # waited for the 10 s window
        assert len(sleeps) == 1 and 9.9 <= sleeps[0] <= 10.0
    finally:
        ad.close()
    tight = make_adapter(server, clock_ms=clock, sleep=sleep, weight_limit_1m=4, max_wait_ms=0)
    try:
        tight.submit(child("w4"))  # server says 4 weight used this minute (3 orders + this one)
        assert tight.counters()["used_weight_1m"] >= 4
        out = tight.submit(child("w5"))
        assert out[0].reason.startswith("RATE_LIMITED:") and "request weight" in out[0].reason
        assert server.count("POST", "/api/v3/order") == 4
    finally:
        tight.close()


# ---------------------------------------------------------------- secrets
def test_keys_never_in_logs_reprs_or_events(server, caplog, monkeypatch, tmp_path):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("BINANCE_API_KEY", API_KEY)
    monkeypatch.setenv("BINANCE_API_SECRET", API_SECRET)
    cfg = BinanceConfig(rest_base=server.rest_url, ws_base=server.ws_url, timeout_s=0.3)
    ad = BinanceAdapter(cfg)  # keys from the environment
    events: list[Any] = []
    try:
        events += ad.submit(child("x1"))
        events += ad.submit(child("x2", SELL, price=5_999_900))
        server.inject(400, code=-1013, msg="Filter failure: LOT_SIZE")
        events += ad.submit(child("x3"))
        server.inject(429, code=-1003, msg="slow down", headers={"Retry-After": "0"})
        events += ad.submit(child("x4"))
        server.hold_response(1.0)
        events += ad.submit(child("x5"))
        events += ad.cancel("x1", "BTCUSDT") + ad.cancel("x1", "BTCUSDT") + ad.cancel_all("BTCUSDT")
        ad.balances()
        ad.start_user_stream()
        assert server.wait_ws(1)
        events += poll_until(ad, lambda got: True, timeout=0.2)
        texts = [repr(ad), str(ad), repr(cfg), repr(ad._creds), str(ad._creds.api_key), repr(ad.counters())]
        texts += [r.getMessage() for r in caplog.records] + [repr(e) for e in events]
        blob = "\n".join(texts) + b"".join(encode(e) for e in events).decode("latin-1")
        assert any("HTTP 400" in r.getMessage() for r in caplog.records)  # logging did happen
        assert API_KEY not in blob and API_SECRET not in blob
        assert API_KEY[:16] not in blob and API_SECRET[:16] not in blob
        with pytest.raises(TypeError):
            import pickle
            pickle.dumps(ad._creds.api_secret)
    finally:
        ad.close()
    keyfile = tmp_path / "binance.env"
    keyfile.write_text(f"BINANCE_API_KEY={API_KEY}\nBINANCE_API_SECRET={API_SECRET}\n")
    keyfile.chmod(0o600)
    creds = Credentials.from_file(str(keyfile))
    assert creds.api_key.reveal() == API_KEY and creds.api_secret.reveal() == API_SECRET
    assert API_SECRET not in repr(creds)
    with pytest.raises(CredentialsError) as err:
        Credentials.from_env({"BINANCE_API_KEY": API_KEY})
    assert API_KEY not in str(err.value)


def test_config_refuses_unknown_keys():
    with pytest.raises(ValueError, match="rest_bsae"):
        BinanceConfig.from_mapping({"rest_bsae": "http://127.0.0.1:1"})
    cfg = BinanceConfig.from_mapping({"recv_window_ms": 3000})
    assert cfg.recv_window_ms == 3000 and cfg.rest_base == "https://api.binance.com"
    assert cfg.ws_base == "wss://stream.binance.com:9443"


# ---------------------------------------------------------------- user-data stream
def test_user_stream_fills_arrive_as_exact_order_fills(server, adapter):
    adapter.start_user_stream()
    assert server.wait_ws(1)
    ack = adapter.submit(child("u1", SELL, price=6_100_012, qty=200_000))
    assert [type(e) for e in ack] == [OrderAck]
    cid = client_order_id("u1")
    server.fill(cid, "0.00050")
    server.fill(cid, "0.00150", "61000.13")
    got = poll_until(adapter, lambda g: sum(isinstance(e, OrderFill) for e in g) >= 2
                     and adapter.stream_balances().get("BTC") == 149_800_000)
    fills = [e for e in got if isinstance(e, OrderFill)]
    assert [type(e) for e in got] == [OrderFill, OrderFill]  # the stream's NEW was already reported
    f0 = fills[0]
    assert (f0.price, f0.qty, f0.leaves_qty, f0.liquidity) == (6_100_012, 50_000, 150_000, MAKER)
    assert (fills[1].price, fills[1].qty, fills[1].leaves_qty) == (6_100_013, 150_000, 0)
    # 61000.12 * 0.0005 * 0.001 = 0.03050006 USDT, at notional scale 10
    assert fills[0].fee == 305_000_600
    assert fills[0].trade_id != fills[1].trade_id
    # outboundAccountPosition kept the balances: 1.5 - 0.002 BTC
    assert adapter.stream_balances()["BTC"] == 149_800_000


def test_user_stream_reports_cancel_expiry_and_ignores_duplicates(server, adapter):
    adapter.start_user_stream()
    assert server.wait_ws(1)
    # cancelled outside this adapter (e.g. from the web UI): only the stream tells
    adapter.submit(child("u2"))
    server._delete_order({"symbol": "BTCUSDT", "origClientOrderId": client_order_id("u2")}, 0)
    got = poll_until(adapter, lambda g: any(isinstance(e, OrderCancelled) for e in g))
    assert got == [OrderCancelled("binance", "u2", "BTCUSDT", 123_000, "canceled")]
    # EXPIRED_IN_MATCH (self-trade prevention) as documented: x=TRADE_PREVENTION, X=EXPIRED_IN_MATCH
    adapter.submit(child("u3"))
    report = {"e": "executionReport", "s": "BTCUSDT", "c": client_order_id("u3"), "C": "", "x": "TRADE_PREVENTION",
              "X": "EXPIRED_IN_MATCH", "q": "0.00123000", "z": "0.00000000", "i": 1, "S": "BUY"}
    server.push_raw(json.dumps(report))
    server.push_raw(json.dumps(report))
    server.push_raw("{garbage")
    got = poll_until(adapter, lambda g: adapter.counters().get("stream_bad_json", 0) >= 1)
    assert got == [OrderExpired("binance", "u3", "BTCUSDT", 123_000)]


def test_user_stream_rejected_report():
    ad = BinanceAdapter(BinanceConfig(rest_base="http://127.0.0.1:9"), Credentials(Secret("k"), Secret("s")))
    ad._track(client_order_id("u4"), "u4", "BTCUSDT", BUY, 123_000)
    out = ad.on_stream_message(json.dumps({"subscriptionId": 0, "event": {
        "e": "executionReport", "s": "BTCUSDT", "c": client_order_id("u4"), "x": "REJECTED", "X": "REJECTED",
        "r": "INSUFFICIENT_BALANCES", "q": "0.00123000", "z": "0", "i": 7}}))
    assert out == [OrderRejected("binance", "u4", "BTCUSDT", "REJECTED:INSUFFICIENT_BALANCES")]
    assert ad.on_stream_message('{"e":"executionReport","s":"BTCUSDT","c":"someone-else","x":"NEW"}') == []
    ad.close()


def test_user_stream_reconnects_and_recovers_missed_fills(server, adapter):
    adapter.start_user_stream()
    assert server.wait_ws(1)
    adapter.submit(child("u5", SELL, price=6_100_000, qty=200_000))
    server.drop_ws()
    server.fill(client_order_id("u5"), "0.00070")  # pushed to nobody
    assert server.wait_ws(1)
    got = poll_until(adapter, lambda g: any(isinstance(e, OrderFill) for e in g))
    fills = [e for e in got if isinstance(e, OrderFill)]
    assert len(fills) == 1 and (fills[0].qty, fills[0].leaves_qty) == (70_000, 130_000)
    assert adapter.counters()["stream_reconnects"] >= 1


def test_keepalive_every_30_minutes_and_new_key_when_expired(server):
    clock = ManualClock()
    server.clock_ms = clock
    ad = make_adapter(server, clock_ms=clock)
    try:
        ad.start_user_stream()
        assert server.wait_ws(1)
        ad.poll_user_stream()
        clock.advance(29 * 60_000)
        ad.poll_user_stream()
        assert server.keepalives == 0
        clock.advance(60_000)
        ad.poll_user_stream()
        assert server.keepalives == 1
        server.listen_keys.clear()  # the key expired on the venue side
        clock.advance(30 * 60_000)
        ad.poll_user_stream()  # keepalive -> -1125 -> new listenKey, reconnect
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not (server.listen_keys and server.ws_connections() >= 1
                                                     and ad.user_stream_connected):
            time.sleep(0.01)
        assert len(server.listen_keys) == 1 and ad._listen_key in server.listen_keys
        assert server.count("POST", "/api/v3/userDataStream") == 2
    finally:
        ad.close()
