"""Normalization of real Binance lines, and every malformed variant rejected with its reason."""

from __future__ import annotations

import json
import logging

import pytest

from common.events import BestBidOffer, BookDelta, BookSnapshot, GapDeclared, Trade, unpack_levels
from services.feed import binance
from services.feed.binance import Normalizer, parse_local_ns

from .conftest import first_line

pytestmark = pytest.mark.timeout(30)

BTC = "btcusdt_20240808.gz"


def _split(line: bytes) -> tuple[int, dict]:
    ts, _, payload = line.rstrip(b"\n").partition(b" ")
    return int(ts), json.loads(payload)


def _line(ts: int, msg: object) -> bytes:
    return b"%d %s\n" % (ts, json.dumps(msg).encode())


def test_trade_line_is_exact():
    line = first_line(BTC, "trade")
    ts, msg = _split(line)
    d = msg["data"]
    n = Normalizer()
    [(ev_ns, body)] = n.feed_line(line)
    assert isinstance(body, Trade)
    assert body.symbol == "BTCUSDT"
    assert body.trade_id == d["t"]
    # exact: "61837.63000000" -> 6183763 pipettes, qty in 1e-8 atoms, no float anywhere
    whole, frac = d["p"].split(".")
    assert body.price == int(whole) * 100 + int(frac[:2])
    qwhole, qfrac = d["q"].split(".")
    assert body.qty == int(qwhole) * 10**8 + int(qfrac)
    assert body.buyer_maker is d["m"]
    assert ev_ns == d["T"] * 1_000_000  # exchange trade time, not the local receive time
    assert ev_ns != ts


def test_book_ticker_line_uses_local_time():
    line = first_line(BTC, "bookTicker")
    ts, msg = _split(line)
    d = msg["data"]
    [(ev_ns, body)] = Normalizer().feed_line(line)
    assert isinstance(body, BestBidOffer)
    assert body.update_id == d["u"]
    assert (body.bid_px, body.ask_px) == (round(float(d["b"]) * 100), round(float(d["a"]) * 100))
    assert body.bid_qty == int(d["B"].replace(".", "")) and body.ask_qty == int(d["A"].replace(".", ""))
    assert ev_ns == ts  # bookTicker carries no exchange time


def test_snapshot_then_diff_bridge():
    snap = first_line(BTC, "")
    n = Normalizer(default_symbol="BTCUSDT")
    [(_, body)] = n.feed_line(snap)
    assert isinstance(body, BookSnapshot)
    lid = _split(snap)[1]["lastUpdateId"]
    assert body.update_id == lid
    bids, asks = unpack_levels(body.bids), unpack_levels(body.asks)
    assert len(bids) == len(asks) == 1000
    assert (bids[:-1, 0] > bids[1:, 0]).all() and (asks[:-1, 0] < asks[1:, 0]).all()
    assert bids[0, 0] < asks[0, 0]
    assert n.counters.accepted == {"BookSnapshot": 1} and n.counters.lines == 1


def test_diff_line_becomes_delta_with_exchange_ids():
    line = first_line(BTC, "depth@100ms")
    ts, msg = _split(line)
    d = msg["data"]
    n = Normalizer()
    # a diff arrives before any snapshot: buffered, not yet counted
    assert n.feed_line(line) == []
    assert n.needs_snapshot() == ["BTCUSDT"]
    # a snapshot just behind it lets it through, unchanged
    snap = {"lastUpdateId": d["U"] - 1, "bids": [["1.00", "1.0"]], "asks": [["999999.00", "1.0"]]}
    out = n.feed_line(_line(ts + 1, snap))
    assert [type(b) for _, b in out] == [BookSnapshot, BookDelta]
    ev_ns, delta = out[1]
    assert (delta.first_id, delta.last_id) == (d["U"], d["u"])
    assert ev_ns == d["E"] * 1_000_000
    assert len(unpack_levels(delta.bids)) == len(d["b"]) and len(unpack_levels(delta.asks)) == len(d["a"])
    assert n.counters.accepted == {"BookSnapshot": 1, "BookDelta": 1}


def test_depth20_partial_is_a_snapshot():
    msg = {
        "stream": "btcusdt@depth20@100ms",
        "data": {"lastUpdateId": 7, "bids": [["100.01", "0.5"]], "asks": [["100.02", "0.25"]]},
    }
    [(ev_ns, body)] = Normalizer().feed_line(_line(1_723_161_254_000_000_000, msg))
    assert isinstance(body, BookSnapshot) and body.update_id == 7
    assert unpack_levels(body.bids).tolist() == [[10001, 50_000_000]]
    assert ev_ns == 1_723_161_254_000_000_000


def test_microsecond_timestamps_are_converted():
    assert parse_local_ns(b"1680652800004107") == 1680652800004107000
    assert parse_local_ns(b"1723161253937085768") == 1723161253937085768


def _trade(**over: object) -> dict:
    d = {"e": "trade", "E": 1, "s": "BTCUSDT", "t": 5, "p": "61837.63000000", "q": "0.00100000", "T": 2, "m": True}
    d.update(over)
    return {"stream": "btcusdt@trade", "data": {k: v for k, v in d.items() if v is not _DEL}}


def _bbo(**over: object) -> dict:
    d = {"u": 9, "s": "BTCUSDT", "b": "100.00", "B": "1.0", "a": "100.01", "A": "2.0"}
    d.update(over)
    return {"stream": "btcusdt@bookTicker", "data": {k: v for k, v in d.items() if v is not _DEL}}


def _diff(**over: object) -> dict:
    d = {"e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": 11, "u": 12, "b": [["100.00", "1.0"]], "a": []}
    d.update(over)
    return {"stream": "btcusdt@depth@100ms", "data": {k: v for k, v in d.items() if v is not _DEL}}


_DEL = object()
LONG = 2048

MALFORMED = [
    (b"1723161254000000000 {not json", binance.R_BAD_JSON),
    (b"1723161254000000000 [1, 2]", binance.R_NOT_OBJECT),
    (b"no-timestamp-here", binance.R_BAD_LINE),
    (b"17231612x4 {}", binance.R_BAD_TIMESTAMP),
    (b"1723161254000000000 " + b"x" * LONG, binance.R_LINE_TOO_LONG),
    (_line(1, {"stream": "btcusdt@kline_1m", "data": {}}), binance.R_UNKNOWN_STREAM),
    (_line(1, {"foo": 1}), binance.R_UNKNOWN_STREAM),
    (_line(1, {"stream": "dogeusdt@trade", "data": _trade(s="DOGEUSDT")["data"]}), binance.R_UNKNOWN_SYMBOL),
    (_line(1, {"stream": "btcusdt@trade", "data": _trade(s="ETHUSDT")["data"]}), binance.R_SYMBOL_MISMATCH),
    (_line(1, {"stream": "btcusdt@trade"}), binance.R_MISSING_FIELD),
    # trades
    (_line(1, _trade(p=_DEL)), binance.R_MISSING_FIELD),
    (_line(1, _trade(t=_DEL)), binance.R_MISSING_FIELD),
    (_line(1, _trade(p="-61837.63")), binance.R_BAD_PRICE),
    (_line(1, _trade(p="abc")), binance.R_BAD_PRICE),
    (_line(1, _trade(p=61837.63)), binance.R_BAD_PRICE),
    (_line(1, _trade(p="1e5")), binance.R_BAD_PRICE),
    (_line(1, _trade(p="0.00000000")), binance.R_BAD_PRICE),
    (_line(1, _trade(p="61837.635")), binance.R_OFF_GRID),
    (_line(1, _trade(q="0.000000001")), binance.R_OFF_GRID),
    (_line(1, _trade(q="-1.0")), binance.R_BAD_QTY),
    (_line(1, _trade(q="0")), binance.R_BAD_QTY),
    (_line(1, _trade(q=["1"])), binance.R_BAD_QTY),
    (_line(1, _trade(t=-5)), binance.R_BAD_FIELD),
    (_line(1, _trade(t="5")), binance.R_BAD_FIELD),
    (_line(1, _trade(m="yes")), binance.R_BAD_FIELD),
    (_line(1, _trade(T="later")), binance.R_BAD_FIELD),
    # bookTicker
    (_line(1, _bbo(u=_DEL)), binance.R_MISSING_FIELD),
    (_line(1, _bbo(A=_DEL)), binance.R_MISSING_FIELD),
    (_line(1, _bbo(b="nan")), binance.R_BAD_PRICE),
    (_line(1, _bbo(B="-2")), binance.R_BAD_QTY),
    (_line(1, _bbo(a="100.001")), binance.R_OFF_GRID),
    (_line(1, _bbo(b="100.02")), binance.R_CROSSED_BBO),
    # diff depth
    (_line(1, _diff(U=_DEL)), binance.R_MISSING_FIELD),
    (_line(1, _diff(b=_DEL)), binance.R_MISSING_FIELD),
    (_line(1, _diff(U=13, u=12)), binance.R_BAD_IDS),
    (_line(1, _diff(b=[["100.00"]])), binance.R_BAD_LEVEL),
    (_line(1, _diff(b="100.00")), binance.R_BAD_LEVEL),
    (_line(1, _diff(a=[["-1.00", "1.0"]])), binance.R_BAD_PRICE),
    (_line(1, _diff(a=[["100.00", "x"]])), binance.R_BAD_QTY),
    (_line(1, _diff(a=[["100.005", "1"]])), binance.R_OFF_GRID),
    # snapshots
    (_line(1, {"lastUpdateId": "10", "bids": [], "asks": []}), binance.R_BAD_FIELD),
    (_line(1, {"lastUpdateId": 10, "bids": []}), binance.R_MISSING_FIELD),
    (_line(1, {"lastUpdateId": 10, "bids": [["101.00", "1"]], "asks": [["100.00", "1"]]}), binance.R_CROSSED_BOOK),
    (_line(1, {"lastUpdateId": 10, "bids": [["100.00", "0"]], "asks": []}), binance.R_BAD_QTY),
]


@pytest.mark.parametrize(("line", "reason"), MALFORMED, ids=[r for _, r in MALFORMED])
def test_malformed_is_rejected_with_reason(line, reason, caplog):
    n = Normalizer(max_line_bytes=1024, default_symbol="BTCUSDT")
    with caplog.at_level(logging.WARNING, logger="services.feed.binance"):
        out = n.feed_line(line)
    assert out == []
    assert n.counters.rejected == {reason: 1}
    assert n.counters.lines == 1 and n.counters.settled() == 1
    assert any(reason in r.getMessage() for r in caplog.records)


def test_malformed_never_stops_the_feed():
    """Every malformed line between good ones: the good ones still come out, all lines accounted."""
    good = [_line(1, _trade(t=100 + i)) for i in range(len(MALFORMED) + 1)]
    mixed = [x for pair in zip(good, [m for m, _ in MALFORMED], strict=False) for x in pair] + [good[-1]]
    n = Normalizer(max_line_bytes=1024, default_symbol="BTCUSDT")
    out = [item for line in mixed for item in n.feed_line(line)]
    assert [b.trade_id for _, b in out] == [100 + i for i in range(len(good))]
    assert sum(n.counters.rejected.values()) == len(MALFORMED)
    assert n.counters.settled() == n.counters.lines == len(mixed)


def _synced(n: Normalizer) -> None:
    n.feed_line(_line(1, {"lastUpdateId": 10, "bids": [["100.00", "1"]], "asks": [["101.00", "1"]]}))
    assert n.feed_line(_line(2, _diff(U=11, u=12)))  # bridges 10 + 1


def test_gap_is_declared_and_resync_waits_for_a_snapshot():
    n = Normalizer(default_symbol="BTCUSDT")
    _synced(n)
    out = n.feed_line(_line(3, _diff(U=14, u=15)))  # 13 is missing
    assert [type(b) for _, b in out] == [GapDeclared]
    gap = out[0][1]
    assert (gap.source, gap.from_seq, gap.to_seq, gap.reason) == ("depth:BTCUSDT", 13, 13, "depth_gap")
    assert n.counters.rejected == {"depth_gap": 1}
    assert n.feed_line(_line(4, _diff(U=16, u=17))) == []  # buffered: awaiting a snapshot
    assert n.needs_snapshot() == ["BTCUSDT"]
    snap = {"lastUpdateId": 16, "bids": [["100.00", "2"]], "asks": [["101.00", "1"]]}
    out = n.feed_line(_line(5, snap))
    assert [type(b) for _, b in out] == [BookSnapshot, BookDelta]
    assert n.counters.settled() == n.counters.lines


def test_crossed_book_after_a_diff_is_rejected():
    n = Normalizer(default_symbol="BTCUSDT")
    _synced(n)
    out = n.feed_line(_line(3, _diff(U=13, u=13, b=[["102.00", "1"]])))  # bid above the ask
    assert [type(b).__name__ for _, b in out] == ["GapDeclared"]
    assert out[0][1].reason == "crossed_book"
    assert n.counters.rejected == {"crossed_book": 1}


def test_stale_diffs_are_dropped_not_rejected():
    n = Normalizer(default_symbol="BTCUSDT")
    n.feed_line(_line(1, _diff(U=5, u=8)))  # before the snapshot, older than it
    n.feed_line(_line(2, {"lastUpdateId": 10, "bids": [["100.00", "1"]], "asks": [["101.00", "1"]]}))
    n.feed_line(_line(3, _diff(U=9, u=10)))  # after it, but already contained
    assert n.counters.dropped == {"stale_diff": 2}
    assert n.counters.rejected == {}
    n.feed_line(_line(4, _diff(U=20, u=21)))  # buffered... and the input ends
    n.finish()
    assert n.counters.rejected == {"depth_gap": 1}
    n2 = Normalizer(default_symbol="BTCUSDT")
    n2.feed_line(_line(4, _diff(U=20, u=21)))
    n2.finish()
    assert n2.counters.dropped == {"unsynced_at_end": 1}
    assert n2.counters.settled() == n2.counters.lines == 1


def test_depth20_partial_is_dropped_and_counted_while_the_diff_book_is_synced():
    diff = first_line(BTC, "depth@100ms")
    ts, msg = _split(diff)
    d = msg["data"]
    n = Normalizer()
    n.feed_line(diff)
    n.feed_line(_line(ts + 1, {"lastUpdateId": d["U"] - 1, "bids": [["1.00", "1.0"]], "asks": [["999999.00", "1.0"]]}))
    partial = {
        "stream": "btcusdt@depth20@100ms",
        "data": {"lastUpdateId": d["u"] + 1, "bids": [["100.01", "0.5"]], "asks": [["100.02", "0.25"]]},
    }
    assert n.feed_line(_line(ts + 2, partial)) == []
    assert n.counters.dropped == {binance.D_PARTIAL_SYNCED: 1}
    assert n.counters.accepted == {"BookSnapshot": 1, "BookDelta": 1}
    # A malformed partial is still a reject with its reason, not a silent drop.
    partial["data"]["bids"] = [["100.05", "0.5"]]
    assert n.feed_line(_line(ts + 3, partial)) == []
    assert n.counters.rejected == {binance.R_CROSSED_BOOK: 1}
