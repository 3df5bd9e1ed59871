"""The feed's per-message fast paths give exactly what the checked way gives.

`parse_levels` (a diff's raw level bytes -> int64, in numba) must, for any bytes,
either return the very numbers the checked `_levels` returns for the same JSON, or
-1 ("not mine"). `Normalizer._fast_diff`, `_fast_bbo` and `_fast_trade` must turn
every message they take into the same events, counters and books as the checked
way, and take Binance's own messages (not quietly defer on them).
"""

from __future__ import annotations

import json
import random

import msgspec
import numpy as np
import pytest

from common import events
from common.hotpath.levels_json import parse_levels, scratch
from common.units import BUILTIN, SymbolSpec
from services.feed import binance
from services.feed.binance import Normalizer, Reject
from services.feed.replay import read_lines
from tests.shared_data import BINANCE_SPOT
from tests.unit.feed.test_fast_paths import EDGE

pytestmark = pytest.mark.timeout(120)

SPECS = [
    BUILTIN["BTCUSDT"],
    SymbolSpec("T5", price_scale=4, qty_scale=3, tick=5, step=1, base="T", quote="USDT"),
    SymbolSpec("T0", price_scale=0, qty_scale=0, tick=1, step=1, base="T", quote="USDT"),
]
NUMBERS = [s for s in EDGE if s] + ["61837.63000000", "0.00000000", "1.54698000", "0.5", "100", "0.0005"]
NUMBERS += ["1.0001", "7.0003", "61837.6301", "0.0010", "25"]  # off T5's tick of 5 at scale 4, and on it


def _checked(spec: SymbolSpec, raw: bytes, allow_zero: bool) -> list[int] | None:
    """The checked way's numbers for these bytes, flat; None where it rejects (or the JSON is bad)."""
    try:
        levels = binance._levels(spec, msgspec.json.decode(raw), allow_zero)
    except (Reject, msgspec.DecodeError):
        return None
    return [v for pair in levels for v in pair]


def _fast(fn, spec: SymbolSpec, raw: bytes, allow_zero: bool, out: np.ndarray) -> list[int] | None:
    n = fn(raw, out, spec.price_scale, spec.qty_scale, spec.tick, allow_zero)
    return None if n < 0 else out[: 2 * n].tolist()


def _random_raw(rng: random.Random) -> bytes:
    levels = [[rng.choice(NUMBERS), rng.choice(NUMBERS)] for _ in range(rng.randrange(0, 5))]
    raw = json.dumps(levels, separators=(",", ":"))
    r = rng.random()
    if r < 0.1 and raw:  # a byte changed, dropped or added somewhere
        i = rng.randrange(len(raw))
        raw = raw[:i] + rng.choice(['"', ",", "[", "]", " ", "1", ".", "", "\\u0031"]) + raw[i + 1 :]
    elif r < 0.15:
        raw = json.dumps(levels)  # with blanks after the separators
    return raw.encode()


@pytest.mark.parametrize("which", ["compiled", "python"])
def test_parse_levels_gives_the_checked_numbers_or_defers(which):
    fn = parse_levels if which == "compiled" else parse_levels.py_func
    rng = random.Random(11)
    out = scratch(64)
    taken = 0
    for k in range(3000 if which == "compiled" else 600):
        spec = SPECS[k % len(SPECS)]
        raw = _random_raw(rng)
        allow_zero = bool(k & 1)
        fast = _fast(fn, spec, raw, allow_zero, out)
        if fast is not None:
            taken += 1
            assert fast == _checked(spec, raw, allow_zero), raw
    assert taken > (300 if which == "compiled" else 60)  # it takes the plain shapes, not only defers


def test_parse_levels_takes_binance_shapes_and_defers_on_the_rest():
    spec, out = BUILTIN["BTCUSDT"], scratch(2)
    ok = b'[["61837.63000000","1.54698000"],["61839.85000000","0.00000000"]]'
    assert _fast(parse_levels, spec, ok, True, out) == [6183763, 154698000, 6183985, 0]
    assert _fast(parse_levels, spec, b"[]", True, out) == []
    for bad, why in [
        (ok, "a zero qty where none is allowed"),
        (b'[["61837.631","1"]]', "finer than the tick"),
        (b'[["0.00","1"]]', "price zero"),
        (b'[ ["61837.63","1"]]', "a blank"),
        (b'[["61837.63","1"]],', "bytes after the array"),
        (b'[["61837.63","-1"]]', "a sign"),
        (b'[["6.1e4","1"]]', "an exponent"),
        (b'[["61837.63","1"],]', "a trailing comma"),
        (b'[["61837.63","1","2"]]', "three fields"),
        (b'[[61837.63,"1"]]', "a number, not a string"),
        (b'[["1' + b"0" * 18 + b'","1"]]', "more than 18 digits"),
        (b'[["1","1"],["2","2"],["3","3"]]', "more levels than the output holds"),
    ]:
        allow_zero = why != "a zero qty where none is allowed"
        assert _fast(parse_levels, spec, bad, allow_zero, out) is None, why


FAST = ("_fast_diff", "_fast_bbo", "_fast_trade")
KIND = {b"@depth@": "_fast_diff", b'@depth"': "_fast_diff", b"@bookTicker": "_fast_bbo", b"@trade": "_fast_trade"}


def _normalizer(fast: bool) -> tuple[Normalizer, dict[str, int]]:
    """A normalizer with the fast paths on or off, counting what each fast path took, and
    (under "<name>:raised") the messages it rejected itself, through the checked helpers."""
    n = Normalizer(BUILTIN, max_line_bytes=1 << 22, default_symbol="BTCUSDT")
    n.fast_paths = fast
    taken = dict.fromkeys(FAST, 0)
    for name in FAST:
        original = getattr(n, name)

        def counting(*args, _original=original, _name=name):
            try:
                ok = _original(*args)
            except Reject:
                taken[_name + ":raised"] = taken.get(_name + ":raised", 0) + 1
                raise
            taken[_name] += ok
            return ok

        setattr(n, name, counting)
    return n, taken


def _run(path, fast: bool):
    n, taken = _normalizer(fast)
    n.default_symbol = path.name.split("_", 1)[0].upper()
    items = []
    lines = dict.fromkeys(FAST, 0)
    for line in read_lines(path, n.max_line_bytes):
        for mark, name in KIND.items():
            if mark in line[:80]:
                lines[name] += 1
        items += [(t, events.encode(b)) for t, b in n.feed_line(line)]
    books = {s: (sync.book.dump(), sync.last_id) for s, sync in n.syncs.items()}
    return items, n.counters.as_dict(), books, taken, lines


def test_fast_and_checked_ways_agree_on_every_real_capture():
    paths = sorted(BINANCE_SPOT.glob("*usdt_*.gz")) if BINANCE_SPOT.is_dir() else []
    if not paths:
        pytest.skip(f"no captures in {BINANCE_SPOT}")
    for path in paths:
        fast_items, fast_counts, fast_books, taken, lines = _run(path, fast=True)
        slow_items, slow_counts, slow_books, none, _ = _run(path, fast=False)
        assert not any(none.values())
        assert fast_items == slow_items, path.name
        assert fast_counts == slow_counts, path.name
        assert fast_books == slow_books, path.name
        for name in FAST:  # every message of these kinds that Binance sent went the fast way
            assert taken[name] == lines[name] > 0, (path.name, name, taken[name], lines[name])


GONE = object()  # a change that removes the field (None sends JSON null)


def _changed(base: dict, changes: dict) -> bytes:
    m = json.loads(json.dumps(base))
    for k, v in changes.items():
        if v is GONE:
            m["data"].pop(k, None)
        else:
            m["data"][k] = v
    return json.dumps(m, separators=(",", ":")).encode()


def _mutations(line: bytes, next_id: int) -> list[bytes]:
    """Variants of a real diff line, each carrying the next update ids (so it is applied,
    not dropped as stale) unless the variant is about the ids."""
    ts, _, payload = line.partition(b" ")
    base = json.loads(payload)
    base["data"]["U"] = base["data"]["u"] = next_id
    variants = []
    for changes in [
        {}, {"U": -1}, {"U": next_id + 1}, {"u": True}, {"U": 1.5}, {"U": next_id + 5, "u": next_id + 5},
        {"e": "trade"}, {"s": "ETHUSDT"}, {"s": 5}, {"E": -5}, {"E": 0}, {"E": GONE}, {"E": None}, {"e": GONE},
        {"e": None}, {"s": GONE}, {"s": None}, {"b": GONE}, {"b": None}, {"U": None}, {"a": "x"},
        {"b": [["61737.631", "1"]]}, {"b": [["0", "1"]]}, {"b": [["61737.63", "0"], ["61737.62", "1e3"]]},
        {"a": [["1.00", "1.000000001"]]}, {"a": [["99999999999.99", "1"]]}, {"b": [], "a": []},
        {"b": [["99999.00", "1"]]},
    ]:  # fmt: skip
        variants.append(_changed(base, changes))
    for stream in ("ethusdt@depth@100ms", "btcusdt@depth20@100ms", "xyz@depth", "btcusdt@depth"):
        variants.append(json.dumps(dict(base, stream=stream), separators=(",", ":")).encode())
    variants.append(json.dumps(base).encode())  # blanks everywhere
    variants.append(json.dumps(base, separators=(",", ":")).encode().replace(b'"b":[', b'"b":[ ', 1))
    return [ts + b" " + v + b"\n" for v in variants]


def _variants(line: bytes, data_changes: list[dict], streams: list[str]) -> list[bytes]:
    ts, _, payload = line.partition(b" ")
    base = json.loads(payload)
    out = [_changed(base, changes) for changes in data_changes]
    out += [json.dumps(dict(base, stream=st), separators=(",", ":")).encode() for st in streams]
    out.append(json.dumps(base).encode())  # blanks everywhere
    return [ts + b" " + v + b"\n" for v in out]


BBO_CHANGES = [
    {}, {"u": -1}, {"u": True}, {"u": GONE}, {"u": None}, {"b": "0.00000000"}, {"a": "0.00000000", "A": "0.00000000"},
    {"b": "61837.631"}, {"b": 61837.63}, {"B": "-1"}, {"B": "1.23456789"}, {"b": "61001.01000000"},
    {"a": "1.00000000"}, {"E": -5}, {"E": 0, "T": -1}, {"E": 0, "T": GONE}, {"E": GONE, "T": 1723161255209},
    {"E": None, "T": None}, {"E": None, "T": 1723161255209}, {"E": 1723161255210, "T": -1}, {"s": "ETHUSDT"},
    {"s": 5}, {"s": GONE}, {"s": None}, {"A": GONE}, {"A": None},
]  # fmt: skip
TRADE_CHANGES = [
    {}, {"t": -1}, {"t": "5"}, {"p": "0.00000000"}, {"q": "0.00000000"}, {"q": "1.000000001"}, {"m": 1},
    {"m": GONE}, {"m": None}, {"e": "aggTrade"}, {"e": GONE}, {"e": None}, {"T": -1}, {"T": 0, "E": -1},
    {"T": GONE, "E": GONE}, {"T": None, "E": None}, {"T": None, "E": 1723161255210}, {"q": None},
    {"T": 0, "E": 1723161255210}, {"s": "ETHUSDT"}, {"p": "61001.01000000", "q": "0.87654321"}, {"p": "1e3"},
]  # fmt: skip


def _agree_after_warmup(lines: list[bytes], variants: list[bytes]) -> tuple[set, dict[str, int]]:
    """Each variant sent after the same lines to a fast and a checked normalizer: the same
    events, counters and books. Returns the distinct outcomes (events made, rejections) and
    what the fast paths did with the variants (taken, rejected themselves)."""
    outcomes = set()
    did: dict[str, int] = {}
    for variant in variants:
        results = []
        for fast in (True, False):
            n, taken = _normalizer(fast)
            for ln in lines:
                n.feed_line(ln)
            before = dict(taken)
            items = [(t, events.encode(b)) for t, b in n.feed_line(variant)]
            results.append((items, n.counters.as_dict(), {s: sy.book.dump() for s, sy in n.syncs.items()}))
            if fast:
                for k, v in taken.items():
                    did[k] = did.get(k, 0) + v - before.get(k, 0)
        assert results[0] == results[1], variant[:300]
        outcomes.add((len(results[0][0]), tuple(sorted(results[0][1]["rejected"].items()))))
    return outcomes, did


def _capture_head() -> list[bytes]:
    path = BINANCE_SPOT / "btcusdt_20240808.gz"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return list(read_lines(path, 1 << 22))[:400]


def test_fast_and_checked_ways_agree_on_broken_bbos_and_trades():
    lines = _capture_head()
    bbo = next(ln for ln in lines if b"@bookTicker" in ln[:80])
    trade = next(ln for ln in lines if b"@trade" in ln[:80])
    streams = ["ethusdt@{}", "btcusdt@{}@x", "@{}", "btcusdt@{}x"]
    got, did = _agree_after_warmup(lines, _variants(bbo, BBO_CHANGES, [st.format("bookTicker") for st in streams]))
    assert len(got) >= 6
    # the fast way itself took some and rejected some (through the checked helpers)
    assert did["_fast_bbo"] >= 5 and did.get("_fast_bbo:raised", 0) >= 2, did
    got, did = _agree_after_warmup(lines, _variants(trade, TRADE_CHANGES, [st.format("trade") for st in streams]))
    assert len(got) >= 5
    assert did["_fast_trade"] >= 4 and did.get("_fast_trade:raised", 0) >= 2, did


def test_fast_and_checked_ways_agree_on_broken_diffs():
    """Mutations of a real diff (each field wrong in turn, bad levels, other streams), each sent
    to a book synced from the capture: both ways accept and reject the same lines for the same
    reasons, with the same events and the same books."""
    lines = _capture_head()
    probe = Normalizer(BUILTIN, max_line_bytes=1 << 22, default_symbol="BTCUSDT")
    for ln in lines:
        probe.feed_line(ln)
    sync = probe.syncs["BTCUSDT"]
    assert sync.state == binance.SYNCED
    diff = [ln for ln in lines if b"@depth@" in ln[:80]][-1]
    got, did = _agree_after_warmup(lines, _mutations(diff, sync.last_id + 1))
    assert len(got) >= 8 and did["_fast_diff"] >= 5, did
