"""The market run's input scan (common.hotpath.market_run.scan_items): a chunk of items,
msgpack-encoded as the wire encodes them, becomes the kernel's rows exactly as a plain
Python reading of each body's fields makes them (`expected` below, the encoder the
scan replaced), on real, synthetic and odd input.
"""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from common import events as E
from common.hotpath import market_run as K
from services.backtest.fastpath import _ENC
from tests.unit.backtest.test_fastpath import FILES, mixed, synthetic

SYM = "BTCUSDT"
BIG = K.BIG


def expected(chunk, sym: str):
    """(rows, flat, most) as the engine's Python encoder made them (f20dbf9's
    MarketRun._encode), but for two inputs it never met: with the run not ready, every
    item is RK_OTHER (it matched a body whose symbol was ""), and a time that is not an
    int is RK_OTHER. (A trade's buyer_maker is always a bool here: the scan also leaves
    any other value to Python, where the old encoder took its truth.)"""
    rows, flat, most = [], [], 0
    other = [K.RK_OTHER, 0, 0, 0, 0, 0]
    for ns, b in chunk:
        t = type(b)
        row = other
        if sym and isinstance(ns, int) and 0 <= ns <= BIG:
            if t is E.Trade and b.symbol == sym and 0 <= b.price <= BIG and 0 <= b.qty <= BIG:
                row = [K.RK_TRADE, ns, b.price, b.qty, 1 if b.buyer_maker else 0, 0]
            elif t in (E.BookDelta, E.BookSnapshot) and b.symbol == sym:
                if not (len(b.bids) % 16 or len(b.asks) % 16):
                    kind = K.RK_DELTA if t is E.BookDelta else K.RK_SNAPSHOT
                    nb, na = len(b.bids) >> 4, len(b.asks) >> 4
                    row = [kind, ns, len(flat), nb, na, 0]
                    flat += np.frombuffer(b.bids + b.asks, dtype="<i8").tolist()
                    most = max(most, nb + na)
            elif t is E.BestBidOffer and b.symbol == sym:
                vals = (b.bid_px, b.bid_qty, b.ask_px, b.ask_qty)
                if all(0 <= v <= BIG for v in vals):
                    row = [K.RK_BBO, ns, *vals]
        rows.append(row)
    return rows, flat, most


def scanned(chunk, sym: str, kernel=K.scan_items):
    buf = _ENC.encode(chunk)
    evs = np.full((len(chunk), K.RK_COLS), -7, dtype=np.int64)  # garbage: every cell must be written
    flat = np.zeros(len(buf) // 8 + 2, dtype=np.int64)
    most = kernel(buf, sym.encode(), evs, flat)
    return evs, flat, most


def check(chunk, sym: str = SYM, kernel=K.scan_items) -> None:
    rows, flat, most = expected(chunk, sym)
    evs, got_flat, got_most = scanned(chunk, sym, kernel)
    assert evs.tolist() == rows
    assert got_flat[: len(flat)].tolist() == flat
    assert got_most == most


def _chunks(items, size=512):
    for i in range(0, len(items), size):
        yield items[i : i + size]


def test_synthetic_and_mixed_input() -> None:
    for items in (synthetic(6_000), mixed(6_000)):
        for chunk in _chunks(items):
            check(chunk)
    kinds = {int(k) for k in scanned(mixed(2_000), SYM)[0][:, K.RK_KIND]}
    assert kinds == {K.RK_DELTA, K.RK_SNAPSHOT, K.RK_TRADE, K.RK_BBO, K.RK_OTHER}


def test_the_real_capture() -> None:
    from common import config
    from common.units import BUILTIN
    from services.backtest.inputs import CaptureInput

    if not FILES[0].exists():
        pytest.skip(f"capture not present: {FILES[0]}")
    items = list(CaptureInput([str(FILES[0])], BUILTIN, config.from_dict({}).feed).items())[:30_000]
    for chunk in _chunks(items):
        check(chunk)


def _odd_items():
    """Every way an item can fall outside what the kernel takes, with good ones between."""
    lv = E.pack_levels([(6_000_000, 5_000), (5_999_999, 7_000)])
    asks = E.pack_levels([(6_000_001, 1_000)])
    good = [
        (10, E.BookDelta(SYM, 1, 2, lv, asks)),
        (11, E.BookSnapshot(SYM, 3, lv, b"")),
        (12, E.Trade(SYM, 4, 6_000_000, 1_000, False)),
        (13, E.BestBidOffer(SYM, 5, 5_999_999, 1, 6_000_001, 2)),
    ]
    odd = [
        (14, E.Trade("ETHUSDT", 1, 300_000, 1, True)),  # another symbol
        (15, E.Trade("BTCUSD", 1, 300_000, 1, True)),  # a prefix of it
        (16, E.Trade("BTCUSDTX", 1, 300_000, 1, True)),
        (17, E.Trade("", 1, 300_000, 1, True)),
        (17, E.Trade("XTCUSDT", 1, 300_000, 1, True)),  # same length, first or last byte differs
        (17, E.Trade("BTCUSDX", 1, 300_000, 1, True)),
        (18, E.BookDelta(SYM, 1, 2, lv[:-3], asks)),  # a torn pair
        (19, E.BookSnapshot(SYM, 1, lv, asks[:9])),
        (-1, E.Trade(SYM, 1, 6_000_000, 1, True)),  # times outside [0, BIG]
        (BIG + 1, E.Trade(SYM, 1, 6_000_000, 1, True)),
        (2**63 - 1, E.Trade(SYM, 1, 6_000_000, 1, True)),
        (2**64 - 1, E.Trade(SYM, 1, 6_000_000, 1, True)),  # msgpack's uint64: beyond int64
        (20, E.Trade(SYM, 1, BIG + 1, 1, True)),  # prices / quantities outside it
        (21, E.Trade(SYM, 1, 6_000_000, -5, True)),
        (22, E.Trade(SYM, 2**64 - 1, 6_000_000, 5, True)),  # a huge id: still a trade
        (23, E.BestBidOffer(SYM, 5, 5_999_999, -1, 6_000_001, 2)),
        (24, E.BestBidOffer(SYM, 5, 5_999_999, 1, 6_000_001, 2**40 + BIG)),
        (25, E.BookDelta(SYM, 2**64 - 1, 2**63, b"", b"")),  # empty, huge ids
        (26, E.OrderFill("sim-a", "c1", SYM, 1, 6_000_000, 5, 0, -3, 1, "t1")),  # not market data
        (27, E.Clock(5)),
        (28, E.OperatorCommand("kill", "x" * 300, "op")),  # a str 16 inside a body to skip
        (29, E.BookDelta(SYM, 1, 2, lv * 20, b"")),  # a bin 16 (> 255 bytes)
        (30, E.Trade(SYM, -(2**40), 6_000_000, 1, True)),  # a negative int 64 in a field skipped
        (31, E.Trade(SYM, -100, 6_000_000, 1, True)),  # int 8
        (32, E.Trade(SYM, -1000, 6_000_000, 1, True)),  # int 16
        (33, E.Trade(SYM, -100_000, 6_000_000, 1, True)),  # int 32
    ]
    out = []
    for i, item in enumerate(odd):
        out.append(good[i % 4])
        out.append(item)
    return out + good


def test_odd_items_are_left_to_python_and_good_ones_between_them_are_not() -> None:
    items = _odd_items()
    check(items)
    evs = scanned(items, SYM)[0]
    odd_kinds = evs[1::2][:-2, K.RK_KIND].tolist()
    assert odd_kinds.count(K.RK_OTHER) == 19  # the rest: huge ids, a bin 16, negative ids
    assert evs[-4:, K.RK_KIND].tolist() == [K.RK_DELTA, K.RK_SNAPSHOT, K.RK_TRADE, K.RK_BBO]


def test_a_run_not_ready_leaves_every_event_to_python() -> None:
    check(_odd_items(), sym="")
    assert set(scanned(synthetic(500), "")[0][:, K.RK_KIND].tolist()) == {K.RK_OTHER}


def test_the_skip_walks_every_msgpack_kind() -> None:
    values = [
        None, True, False, 0, 127, -32, -33, 255, 2**16, 2**32, 2**63, -(2**63), 1.5,
        "", "a" * 31, "b" * 200, "c" * 70_000, b"", b"x" * 300, b"y" * 70_000,
        [], list(range(20)), list(range(70_000)), {}, {str(i): i for i in range(20)},
        {"k": {"n": [1, {"m": b"z"}]}}, msgspec.msgpack.Ext(1, b"a"), msgspec.msgpack.Ext(2, b"ab"),
        msgspec.msgpack.Ext(3, b"abcd"), msgspec.msgpack.Ext(4, b"a" * 8), msgspec.msgpack.Ext(5, b"a" * 16),
        msgspec.msgpack.Ext(6, b"a" * 3), msgspec.msgpack.Ext(7, b"a" * 300), msgspec.msgpack.Ext(8, b"a" * 70_000),
    ]  # fmt: skip
    for v in values:
        buf = msgspec.msgpack.encode([v, 7])
        _, p = K._mp_len(buf, 0)
        end = K._mp_skip(buf, p)
        assert buf[end] == 7 and end == len(buf) - 1, v
        assert K._mp_skip.py_func(buf, p) == end


def test_the_pure_python_twin_scans_alike() -> None:
    """scan_items as plain Python (its helpers too): what a run without numba computes."""
    from tests.unit.hotpath._twin import pure_market_run

    twin = pure_market_run().scan_items
    check(_odd_items(), kernel=twin)
    check(mixed(1_500)[:512], kernel=twin)
