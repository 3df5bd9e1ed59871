"""The feed's fast paths give exactly what the checked paths give.

The capture parser memoizes validated price/qty strings per symbol spec and
parses the common decimal shape without parse_decimal; the packer skips
numpy; the synthetic market (its plain-Python form, now the compiled
generator's oracle) skips sorting when a side is already full. Each
test here compares a fast path with the slow one it stands in for (or with
Decimal), on edge cases and on random input, so a wrong shortcut fails here.
"""

from __future__ import annotations

import itertools
import random
from decimal import Decimal, InvalidOperation

import msgspec
import numpy as np
import pytest

from common.events import BookDelta, pack_levels, pack_pairs
from common.units import INT64_MAX, SymbolSpec, SymbolTable, UnitError, parse_decimal
from services.feed import binance
from services.feed.binance import Normalizer, Reject
from tests.unit.feed.synthetic_oracle import SyntheticMarket

pytestmark = pytest.mark.timeout(60)

EDGE = [
    "", ".", "0", "00", "0.", ".0", "1.", ".5", "0.0", "000123.4500", "0001", "61837.63000000",
    "61837.63000001", "61837.630000010", "1.123456789", "1.1234567891234567891", "0.00000000",
    "-1.5", "-0", "+1.5", "1e5", "1E5", "1.5e-3", "inf", "nan", " 1.5", "1.5 ", "1_000.5", "1,5",
    "1..5", "1.5.0", "١٢٣.٤", "²", "0x10", "9223372036854775807", "9223372036854775808",
    "92233720368547758.07", "92233720368547758.08", "1" * 64, "1" * 65, "0." + "0" * 62, "12345678901234567890",
]  # fmt: skip


def _decimal_ref(text: str, scale: int) -> int | None:
    """The exact value at `scale` of a plain decimal string, by Decimal; None if not exactly representable."""
    if not text or len(text) > 64 or not all(c in "0123456789." for c in text) or text.count(".") > 1:
        return None
    if text.startswith(".") or text.endswith("."):
        return None
    try:
        v = Decimal(text) * (10**scale)
    except InvalidOperation:
        return None
    return int(v) if v == v.to_integral_value() and int(v) <= INT64_MAX else None


def _random_strings(rng: random.Random, n: int) -> list[str]:
    alphabet = "0123456789" * 4 + ".-+eE _"
    out = []
    for _ in range(n):
        if rng.random() < 0.5:  # the market-data shape, with a random number of fraction digits
            out.append(f"{rng.randrange(10 ** rng.randrange(1, 12))}.{rng.randrange(10**9):0{rng.randrange(0, 12)}d}")
        else:
            out.append("".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 24))))
    return out


@pytest.mark.parametrize("scale", [0, 2, 8, 18])
def test_plain_decimal_is_parse_decimal_or_defers(scale):
    for text in EDGE + _random_strings(random.Random(scale), 20_000):
        fast = binance._plain_decimal(text, scale)
        try:
            slow = parse_decimal(text, scale)
        except UnitError:
            slow = None
        if fast is not None:
            assert fast == slow, (text, scale)
        assert slow == _decimal_ref(text, scale), (text, scale)  # parse_decimal itself is exact


@pytest.mark.parametrize("text", ["61837.63000000", "0.00001000", "1", "0001.50", "25.42618900", "0.0"])
def test_plain_decimal_takes_the_common_shapes(text):
    # Not deferring is the point of the fast path: these must not fall through to parse_decimal.
    assert binance._plain_decimal(text, 8) == parse_decimal(text, 8)


def test_decimal_rejects_as_before():
    """_decimal's verdicts (value, reason) on edge cases, cold and from its memo."""
    for scale, reason in ((2, binance.R_BAD_PRICE), (8, binance.R_BAD_QTY)):
        for text in [*EDGE, 5, 1.5, None, ["1"], True]:
            verdicts = []
            for _ in range(2):  # the second call may come from the memo
                try:
                    verdicts.append(binance._decimal(text, scale, reason))
                except Reject as rej:
                    verdicts.append(rej.reason)
            assert verdicts[0] == verdicts[1], text
            try:
                expect = parse_decimal(text, scale)  # type: ignore[arg-type]
            except UnitError:
                assert verdicts[0] in (reason, binance.R_OFF_GRID), (text, verdicts)
            else:
                assert verdicts[0] == expect, text


def _verdict(fn, *args):
    try:
        return fn(*args)
    except Reject as rej:
        return ("reject", rej.reason)


def test_levels_memo_keeps_every_check():
    spec = SymbolSpec("FASTUSDT", price_scale=2, qty_scale=8, tick=1, step=1000)
    good = [["61837.63000000", "1.54698000"], ["61837.64000000", "0.00000000"]]
    assert binance._levels(spec, good, True) == [(6183763, 154698000), (6183764, 0)]
    assert binance._levels(spec, good, True) == [(6183763, 154698000), (6183764, 0)]  # from the memo
    # A memoized zero qty is still refused where zero is not allowed.
    assert _verdict(binance._levels, spec, good, False) == ("reject", binance.R_BAD_QTY)
    assert _verdict(binance._memo_qty, spec, binance._memo(spec)[1], "0.00000000", False) == (
        "reject",
        binance.R_BAD_QTY,
    )
    # Memoized strings in the wrong container are still malformed levels.
    for bad in (("61837.63000000", "1.54698000"), {"61837.63000000": 1, "1.54698000": 2}, ["61837.63000000"]):
        assert _verdict(binance._levels, spec, [bad], True) == ("reject", binance.R_BAD_LEVEL), bad
    # Order of checks: the first bad level decides, its price before its qty.
    assert _verdict(binance._levels, spec, [good[0], ["-1", "x"]], True) == ("reject", binance.R_BAD_PRICE)
    assert _verdict(binance._levels, spec, [good[0], ["61837.63000000", 1]], True) == ("reject", binance.R_BAD_QTY)
    assert _verdict(binance._levels, spec, [good[0], [["1"], "1"]], True) == ("reject", binance.R_BAD_PRICE)


def test_memo_is_per_spec():
    fine = SymbolSpec("MEMOUSDT", price_scale=2, qty_scale=8, tick=1, step=1000)
    coarse = SymbolSpec("MEMOUSDT", price_scale=2, qty_scale=8, tick=100, step=1000)  # same name, other tick
    assert binance._levels(fine, [["100.01", "1"]], True) == [(10001, 100000000)]
    assert _verdict(binance._levels, coarse, [["100.01", "1"]], True) == ("reject", binance.R_OFF_GRID)


def test_bbo_zero_price_does_not_leak_into_trades():
    table = SymbolTable([SymbolSpec("ZEROUSDT", price_scale=2, qty_scale=8, tick=1, step=1000)])
    nz = Normalizer(table)

    def line(stream, data):
        return b"1723161254087891268 " + msgspec.json.encode({"stream": f"zerousdt@{stream}", "data": data})

    bbo = {"u": 1, "s": "ZEROUSDT", "b": "0.00000000", "B": "0.00000000", "a": "5.00000000", "A": "1.00000000"}
    (item,) = nz.feed_line(line("bookTicker", bbo))
    assert (item[1].bid_px, item[1].bid_qty, item[1].ask_px) == (0, 0, 500)
    trade = {"e": "trade", "E": 1, "s": "ZEROUSDT", "t": 1, "p": "0.00000000", "q": "1.0", "T": 1, "m": True}
    assert nz.feed_line(line("trade", trade)) == []
    trade.update(p="5.00000000", q="0.00000000")
    assert nz.feed_line(line("trade", trade)) == []
    assert nz.counters.rejected == {binance.R_BAD_PRICE: 1, binance.R_BAD_QTY: 1}


def test_pack_pairs_is_pack_levels():
    rng = random.Random(7)
    lo, hi = -INT64_MAX - 1, INT64_MAX
    cases = [[], [(0, 0)], [(lo, hi)], [(hi, lo), (1, -1)]]
    cases += [[(rng.randint(lo, hi), rng.randint(0, 10**12)) for _ in range(rng.randrange(1, 60))] for _ in range(200)]
    for levels in cases:
        assert pack_pairs(levels) == pack_levels(levels)
        assert pack_pairs(levels) == np.array(levels, dtype="<i8").reshape(-1, 2).tobytes()


class _SortingMarket(SyntheticMarket):
    """The synthetic market as it was before the fast paths: a sort per side per event, a fresh buffer."""

    def _u32(self) -> int:
        if not self._buf:
            self._buf = self._gen.integers(0, 1 << 32, size=4096, dtype=np.uint64).tolist()[::-1]
        return self._buf.pop()

    def _below(self, n: int) -> int:
        return (self._u32() * n) >> 32

    def _refill(self, cb, ca):
        for side, changed, sign in ((self.bids, cb, -1), (self.asks, ca, 1)):
            prices = sorted(side, reverse=(sign < 0))
            for px in prices[self.levels :]:
                self._set(side, changed, px, 0)
            prices = prices[: self.levels]
            self._extend(side, changed, sign, prices[-1] if prices else self._restart_far(sign))

    def _delta(self, cb, ca):
        if not cb and not ca:
            return None
        self.update_id += 1
        bids, asks = sorted(cb.items(), reverse=True), sorted(ca.items())
        return BookDelta(self.symbol, self.update_id, self.update_id, pack_levels(bids), pack_levels(asks))


@pytest.mark.parametrize(("seed", "levels"), [(3, 20), (7, 1), (11, 2), (5, 5)])
def test_synthetic_fast_paths_give_the_same_events(seed, levels):
    fast, slow = SyntheticMarket(seed, "BTCUSDT", levels), _SortingMarket(seed, "BTCUSDT", levels)
    n = 30_000
    enc = msgspec.msgpack.encode
    for (tf, bf), (ts, bs) in zip(itertools.islice(fast.items(), n), itertools.islice(slow.items(), n), strict=True):
        assert tf == ts and enc(bf) == enc(bs)
    assert (fast.bids, fast.asks, fast.bursts) == (slow.bids, slow.asks, slow.bursts)
