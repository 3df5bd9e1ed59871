"""common.units: exact decimal parsing, formatting, increments, the symbol table."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.units import (
    BUILTIN,
    INT64_MAX,
    MAX_DECIMAL_LEN,
    SymbolSpec,
    SymbolTable,
    UnitError,
    format_fixed,
    load_symbols,
    parse_decimal,
    scale_of_increment,
)
from tests.shared_data import SHARED_DATA

EXCHANGE_INFO = SHARED_DATA / "cryptofeed-binance" / "BINANCE.0"
INT64_MIN = -(1 << 63)


# ---------------------------------------------------------------- parse_decimal: good input
@pytest.mark.parametrize(
    ("text", "scale", "expected"),
    [
        ("61837.63000000", 2, 6183763),  # the float trap: 61837.63 * 100 == 6183762.999...
        ("61837.63", 2, 6183763),
        ("0.01000000", 2, 1),
        ("0.00001000", 8, 1000),
        ("1", 8, 100_000_000),
        ("1.5", 1, 15),
        ("1.5", 3, 1500),
        ("0", 0, 0),
        ("0", 8, 0),
        ("0.0", 2, 0),
        ("0.00000000", 0, 0),
        ("000123.4500", 2, 12345),
        ("0.1", 18, 10**17),
        ("12", 0, 12),
        ("12.000", 0, 12),
    ],
)
def test_parse_exact(text: str, scale: int, expected: int) -> None:
    got = parse_decimal(text, scale)
    assert got == expected
    assert type(got) is int
    # Same answer through bytes, and it agrees with exact Decimal arithmetic.
    assert parse_decimal(text.encode(), scale) == expected
    assert Decimal(text) * (10**scale) == got


@pytest.mark.parametrize(
    ("text", "scale", "expected"), [("0.29000000", 2, 29), ("4.35", 2, 435), ("1.15000000", 2, 115)]
)
def test_parse_where_float_would_be_wrong(text: str, scale: int, expected: int) -> None:
    # Guard that these cases are meaningful: the naive float route truncates them wrongly.
    assert int(float(text) * 10**scale) != expected
    assert parse_decimal(text, scale) == expected


@pytest.mark.parametrize(
    ("text", "scale"),
    [
        ("0.001", 2),
        ("61837.635", 2),
        ("1.5", 0),
        ("0.0000000001", 8),
        ("1.000000001", 8),
        ("0.10000000000000000001", 18),
    ],
)
def test_precision_beyond_scale_rejected(text: str, scale: int) -> None:
    with pytest.raises(UnitError, match="precision"):
        parse_decimal(text, scale)


def test_trailing_zero_after_nonzero_extra_still_rejected() -> None:
    # "1.0010" at scale 2: extra digits are "10", not all zeros.
    with pytest.raises(UnitError):
        parse_decimal("1.0010", 2)


# ---------------------------------------------------------------- parse_decimal: int64 bounds
def test_int64_max_accepted_and_one_more_rejected() -> None:
    assert parse_decimal(str(INT64_MAX), 0) == INT64_MAX
    assert parse_decimal("92233720368547758.07", 2) == INT64_MAX
    with pytest.raises(UnitError, match="overflow"):
        parse_decimal(str(INT64_MAX + 1), 0)
    with pytest.raises(UnitError, match="overflow"):
        parse_decimal("92233720368547758.08", 2)
    with pytest.raises(UnitError, match="overflow"):
        parse_decimal("9" * 40, 0)
    # The scale multiplies: a small-looking number overflows at a large scale.
    with pytest.raises(UnitError, match="overflow"):
        parse_decimal("10", 18)
    assert parse_decimal("9", 18) == 9 * 10**18


def test_negative_overflow_rejected() -> None:
    with pytest.raises(UnitError, match="overflow"):
        parse_decimal("-" + str(INT64_MAX + 2), 0, allow_negative=True)
    assert parse_decimal("-" + str(INT64_MAX), 0, allow_negative=True) == -INT64_MAX


def test_int64_min_is_a_valid_int64() -> None:
    assert parse_decimal(str(INT64_MIN), 0, allow_negative=True) == INT64_MIN


# ---------------------------------------------------------------- parse_decimal: malformed
MALFORMED = [
    "",
    ".",
    "1.",
    ".5",
    "1e5",
    "1E5",
    "1e-5",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "Infinity",
    " 1",
    "1 ",
    "\t1",
    "1\n",
    "+1",
    "--1",
    "-",
    "-.5",
    "1.2.3",
    "1..2",
    "١",  # Arabic-Indic digit one: str.isdigit() is True for it
    "١٢.٥",
    "²",  # superscript two: isdigit() True, int() refuses it
    "１",  # fullwidth digit one
    "1_000",
    "0x10",
    "1,5",
    "1.-5",
    "1.+5",
    "abc",
]


@pytest.mark.parametrize("text", MALFORMED)
def test_malformed_rejected(text: str) -> None:
    with pytest.raises(UnitError):
        parse_decimal(text, 2, allow_negative=True)


@pytest.mark.parametrize("raw", [b"", b".", b"1e5", b" 1", b"\xd9\xa1", b"\xff", b"1.2.3", b"+1"])
def test_malformed_bytes_rejected(raw: bytes) -> None:
    with pytest.raises(UnitError):
        parse_decimal(raw, 2, allow_negative=True)


@pytest.mark.parametrize("value", [None, 1, 1.5, Decimal("1"), ["1"], bytearray(b"1")])
def test_non_string_rejected(value: object) -> None:
    with pytest.raises(UnitError):
        parse_decimal(value, 2)  # type: ignore[arg-type]


def test_bytes_input_parses_like_str() -> None:
    assert parse_decimal(b"61837.63000000", 2) == 6183763
    assert parse_decimal(b"-1.5", 1, allow_negative=True) == -15


def test_length_limit() -> None:
    at_limit = "0." + "0" * (MAX_DECIMAL_LEN - 2)
    assert len(at_limit) == MAX_DECIMAL_LEN
    assert parse_decimal(at_limit, 2) == 0
    over = at_limit + "0"
    with pytest.raises(UnitError, match="length"):
        parse_decimal(over, 2)
    with pytest.raises(UnitError, match="length"):
        parse_decimal("1" * 10_000, 0)
    with pytest.raises(UnitError, match="length"):
        parse_decimal(b"1" * 10_000, 0)


@pytest.mark.parametrize("scale", [-1, 19, 100])
def test_scale_out_of_range(scale: int) -> None:
    with pytest.raises(UnitError, match="scale"):
        parse_decimal("1", scale)


def test_negative_only_when_allowed() -> None:
    with pytest.raises(UnitError, match="negative"):
        parse_decimal("-1.5", 1)
    with pytest.raises(UnitError, match="negative"):
        parse_decimal("-0", 0)
    assert parse_decimal("-1.5", 1, allow_negative=True) == -15
    assert parse_decimal("-0.0", 2, allow_negative=True) == 0


def test_unit_error_is_value_error() -> None:
    # Callers that catch ValueError (config, feed parsing) still catch it.
    assert issubclass(UnitError, ValueError)


# ---------------------------------------------------------------- property: agrees with Decimal
@settings(max_examples=300, deadline=None)
@given(
    whole=st.integers(min_value=0, max_value=10**9),
    frac=st.text(alphabet="0123456789", max_size=8),
    pad=st.integers(min_value=0, max_value=6),
    scale=st.integers(min_value=0, max_value=10),
    neg=st.booleans(),
)
def test_parse_matches_decimal(whole: int, frac: str, pad: int, scale: int, neg: bool) -> None:
    text = ("-" if neg else "") + str(whole) + ("." + frac + "0" * pad if frac else "")
    exact = Decimal(text) * (10**scale)
    if exact != exact.to_integral_value():
        with pytest.raises(UnitError):
            parse_decimal(text, scale, allow_negative=True)
    elif abs(exact) > INT64_MAX:
        with pytest.raises(UnitError):
            parse_decimal(text, scale, allow_negative=True)
    else:
        assert parse_decimal(text, scale, allow_negative=True) == int(exact)


# ---------------------------------------------------------------- format_fixed
@pytest.mark.parametrize(
    ("value", "scale", "text"),
    [
        (6183763, 2, "61837.63"),
        (1, 8, "0.00000001"),
        (0, 0, "0"),
        (0, 2, "0.00"),
        (5, 0, "5"),
        (-5, 2, "-0.05"),
        (-123456, 3, "-123.456"),
        (100, 2, "1.00"),
        (INT64_MAX, 18, "9.223372036854775807"),
    ],
)
def test_format_fixed(value: int, scale: int, text: str) -> None:
    assert format_fixed(value, scale) == text


@settings(max_examples=400, deadline=None)
@given(value=st.integers(min_value=-INT64_MAX, max_value=INT64_MAX), scale=st.integers(min_value=0, max_value=18))
def test_format_parse_round_trip(value: int, scale: int) -> None:
    text = format_fixed(value, scale)
    assert parse_decimal(text, scale, allow_negative=True) == value
    # And the text is the exact decimal value, not an approximation.
    assert Decimal(text) == Decimal(value).scaleb(-scale)


# ---------------------------------------------------------------- scale_of_increment
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.01", (2, 1)),
        ("0.01000000", (2, 1)),
        ("0.5", (1, 5)),
        ("0.05000000", (2, 5)),
        ("10.00", (0, 10)),
        ("10", (0, 10)),
        ("1.00000000", (0, 1)),
        ("0.00000100", (6, 1)),
        ("0.00001000", (5, 1)),
        ("0.00000001", (8, 1)),
        ("0.25", (2, 25)),
        ("100.00000000", (0, 100)),
    ],
)
def test_scale_of_increment(text: str, expected: tuple[int, int]) -> None:
    assert scale_of_increment(text) == expected


@pytest.mark.parametrize(
    "text", ["0", "0.0", "0.00000000", "", "abc", "-1", "-0.01", "1e-8", ".5", "0.0000000000000000001"]
)
def test_scale_of_increment_rejects(text: str) -> None:
    with pytest.raises(UnitError):
        scale_of_increment(text)


# ---------------------------------------------------------------- SymbolSpec / SymbolTable
def test_symbol_spec_helpers() -> None:
    spec = BUILTIN["BTCUSDT"]
    assert spec.price("61837.63000000") == 6183763
    assert spec.qty("0.00123000") == 123000
    assert spec.fmt_price(6183763) == "61837.63"
    assert spec.fmt_qty(123000) == "0.00123000"
    assert spec.notional_scale() == spec.price_scale + spec.qty_scale
    with pytest.raises(UnitError):
        spec.price("61837.631")


def test_symbol_table_lookup() -> None:
    table = SymbolTable([SymbolSpec("abcxyz", 2, 3, 1, 1)])
    assert "ABCXYZ" in table and "abcxyz" in table
    assert 5 not in table
    assert "NOPE" not in table
    assert table.symbols() == ["ABCXYZ"]
    assert len(table) == 1
    assert table["AbcXyz"].symbol == "abcxyz"
    with pytest.raises(KeyError, match="NOPE"):
        table["NOPE"]


def test_load_symbols_default_is_builtin() -> None:
    assert load_symbols("") is BUILTIN
    assert {"BTCUSDT", "ETHUSDT"} <= set(BUILTIN.symbols())


def test_from_exchange_info_minimal_dict_and_text() -> None:
    info = {
        "symbols": [
            {
                "symbol": "AAABBB",
                "baseAsset": "AAA",
                "quoteAsset": "BBB",
                "filters": [
                    {"filterType": "PRICE_FILTER", "tickSize": "0.00500000"},
                    {"filterType": "LOT_SIZE", "stepSize": "10.00000000"},
                ],
            },
            {"symbol": "NOFILTERS", "filters": []},
            {"symbol": "NOLOT", "filters": [{"filterType": "PRICE_FILTER", "tickSize": "0.01"}]},
        ]
    }
    for src in (info, json.dumps(info)):
        table = SymbolTable.from_exchange_info(src)
        assert table.symbols() == ["AAABBB"]
        spec = table["AAABBB"]
        assert (spec.price_scale, spec.tick, spec.qty_scale, spec.step) == (3, 5, 0, 10)
        assert (spec.base, spec.quote) == ("AAA", "BBB")


def _load_real_exchange_info() -> dict:
    if not EXCHANGE_INFO.exists():
        pytest.skip(f"real exchangeInfo capture {EXCHANGE_INFO} is absent")
    with EXCHANGE_INFO.open(encoding="utf-8") as fh:
        line = fh.readline()
    return json.loads(line[line.index("{") :])


@pytest.fixture(scope="module")
def real_info() -> dict:
    return _load_real_exchange_info()


@pytest.fixture(scope="module")
def real_table(real_info: dict) -> SymbolTable:
    return SymbolTable.from_exchange_info(real_info)


def _filters(info: dict, symbol: str) -> dict[str, dict]:
    (sym,) = [s for s in info["symbols"] if s["symbol"] == symbol]
    return {f["filterType"]: f for f in sym["filters"]}


@pytest.mark.parametrize(
    ("symbol", "price_scale", "tick", "qty_scale", "step"),
    [
        ("BTCUSDT", 2, 1, 5, 1),  # tick 0.01000000, step 0.00001000
        ("ETHBTC", 6, 1, 4, 1),  # tick 0.00000100, step 0.00010000
        ("NKNUSDT", 4, 1, 0, 1),  # tick 0.00010000, step 1.00000000
    ],
)
def test_real_exchange_info_known_symbols(
    real_info: dict, real_table: SymbolTable, symbol: str, price_scale: int, tick: int, qty_scale: int, step: int
) -> None:
    spec = real_table[symbol]
    assert (spec.price_scale, spec.tick, spec.qty_scale, spec.step) == (price_scale, tick, qty_scale, step)
    f = _filters(real_info, symbol)
    # tick/step, rendered back at their scale, equal the exchange's filter values exactly.
    assert Decimal(format_fixed(spec.tick, spec.price_scale)) == Decimal(f["PRICE_FILTER"]["tickSize"])
    assert Decimal(format_fixed(spec.step, spec.qty_scale)) == Decimal(f["LOT_SIZE"]["stepSize"])
    # The exchange's own min price / min qty land exactly on the grid.
    assert spec.price(f["PRICE_FILTER"]["minPrice"]) % spec.tick == 0
    assert spec.qty(f["LOT_SIZE"]["minQty"]) % spec.step == 0


def test_real_exchange_info_every_symbol(real_info: dict, real_table: SymbolTable) -> None:
    with_filters = [
        s
        for s in real_info["symbols"]
        if {"PRICE_FILTER", "LOT_SIZE"} <= {f["filterType"] for f in s.get("filters", [])}
    ]
    assert len(with_filters) > 1000  # the capture really is the full list
    assert len(real_table) == len(with_filters)
    for s in with_filters:
        spec = real_table[s["symbol"]]
        f = {x["filterType"]: x for x in s["filters"]}
        assert isinstance(spec.tick, int) and spec.tick > 0, s["symbol"]
        assert isinstance(spec.step, int) and spec.step > 0, s["symbol"]
        assert 0 <= spec.price_scale <= 18 and 0 <= spec.qty_scale <= 18
        assert Decimal(spec.tick).scaleb(-spec.price_scale) == Decimal(f["PRICE_FILTER"]["tickSize"]), s["symbol"]
        assert Decimal(spec.step).scaleb(-spec.qty_scale) == Decimal(f["LOT_SIZE"]["stepSize"]), s["symbol"]
        assert (spec.base, spec.quote) == (s["baseAsset"], s["quoteAsset"])


def test_load_symbols_from_file(tmp_path: Path, real_info: dict) -> None:
    path = tmp_path / "exchangeInfo.json"
    path.write_text(json.dumps(real_info), encoding="utf-8")
    table = load_symbols(str(path))
    assert table["BTCUSDT"].tick == 1 and table["BTCUSDT"].price_scale == 2
