"""Integer money: prices in pipettes, quantities in base-asset atoms.

A `Price` is an int: the decimal price times 10**price_scale. A `Qty` is an int:
the decimal quantity times 10**qty_scale. The scales belong to the symbol and
come from the exchange's tick size and step size, so every price on the tick
grid and every quantity on the lot grid is an exact integer.

Decimal strings are parsed digit by digit; nothing here ever goes through
float, so "61837.63000000" is 6183763 at scale 2, not 6183762.999.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

Price = int
Qty = int

# A decimal string longer than this is rejected before any work is done: it is
# either hostile or broken, and an unbounded int parse is a cheap DoS.
MAX_DECIMAL_LEN = 64
INT64_MAX = (1 << 63) - 1


class UnitError(ValueError):
    """A decimal string that cannot be an exact integer at the given scale."""


def parse_decimal(text: str | bytes, scale: int, *, allow_negative: bool = False) -> int:
    """Parse a plain decimal string exactly into an integer of 10**-scale units.

    Trailing zeros past the scale are accepted ("0.01000000" at scale 2);
    a non-zero digit past the scale is an error, because rounding it away
    would silently change money. Exponents, signs other than a leading '-',
    blanks, 'nan'/'inf' and empty parts are all rejected.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError as exc:
            raise UnitError(f"non-ascii decimal {text[:20]!r}") from exc
    if not isinstance(text, str):
        raise UnitError(f"decimal must be a string, got {type(text).__name__}")
    if not text or len(text) > MAX_DECIMAL_LEN:
        raise UnitError(f"decimal length {len(text)} out of range: {text[:20]!r}")
    if scale < 0 or scale > 18:
        raise UnitError(f"scale {scale} out of range 0..18")
    negative = text[0] == "-"
    body = text[1:] if negative else text
    if negative and not allow_negative:
        raise UnitError(f"negative value {text!r}")
    whole, dot, frac = body.partition(".")
    if not whole or not whole.isdigit() or not whole.isascii():
        raise UnitError(f"malformed decimal {text!r}")
    if dot and (not frac or not frac.isdigit() or not frac.isascii()):
        raise UnitError(f"malformed decimal {text!r}")
    kept, extra = frac[:scale], frac[scale:]
    if extra.strip("0"):
        raise UnitError(f"{text!r} has more precision than scale {scale}")
    value = int(whole) * 10**scale + (int(kept.ljust(scale, "0")) if scale else 0)
    if negative:
        value = -value
    if not -INT64_MAX - 1 <= value <= INT64_MAX:
        raise UnitError(f"{text!r} overflows int64 at scale {scale}")
    return value


ASSET_SCALE = 8  # venue balances and base-asset commissions (OrderFill.fee_base): 10**-8 of the asset


def rescale_ceil(value: int, from_scale: int, to_scale: int) -> int:
    """`value` in units of 10**-from_scale -> units of 10**-to_scale, rounded up (exact when
    to_scale >= from_scale). What we pay, or what a holding must be reduced by, never
    rounds in our favour."""
    if to_scale >= from_scale:
        return value * 10 ** (to_scale - from_scale)
    return -((-value) // 10 ** (from_scale - to_scale))


def format_fixed(value: int, scale: int) -> str:
    """Render an integer of 10**-scale units as a decimal string (exact)."""
    sign = "-" if value < 0 else ""
    digits = str(abs(value)).rjust(scale + 1, "0")
    if scale == 0:
        return sign + digits
    return f"{sign}{digits[:-scale]}.{digits[-scale:]}"


def scale_of_increment(text: str) -> tuple[int, int]:
    """Scale and integer increment of an exchange filter value such as "0.01000000".

    The scale is the number of decimals up to the last non-zero digit, so the
    increment becomes a small integer: "0.01" -> (2, 1), "0.5" -> (1, 5),
    "10.00" -> (0, 10).
    """
    whole, _, frac = text.partition(".")
    frac = frac.rstrip("0")
    scale = len(frac)
    inc = parse_decimal(f"{whole}.{frac}" if frac else whole, scale)
    if inc <= 0:
        raise UnitError(f"increment {text!r} must be positive")
    return scale, inc


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    """Static facts about one instrument, all integers."""

    symbol: str
    price_scale: int
    qty_scale: int
    tick: int  # price increment, in pipettes
    step: int  # quantity increment, in atoms
    base: str = ""
    quote: str = ""

    def price(self, text: str | bytes) -> Price:
        return parse_decimal(text, self.price_scale)

    def qty(self, text: str | bytes) -> Qty:
        return parse_decimal(text, self.qty_scale)

    def fmt_price(self, px: int) -> str:
        return format_fixed(px, self.price_scale)

    def fmt_qty(self, qty: int) -> str:
        return format_fixed(qty, self.qty_scale)

    def notional_scale(self) -> int:
        """Scale of price*qty products (quote-currency units)."""
        return self.price_scale + self.qty_scale


class SymbolTable:
    """Symbol name -> SymbolSpec, loadable from a Binance exchangeInfo response."""

    def __init__(self, specs: Iterable[SymbolSpec] = ()) -> None:
        self._specs: dict[str, SymbolSpec] = {}
        for spec in specs:
            self.add(spec)

    def add(self, spec: SymbolSpec) -> None:
        self._specs[spec.symbol.upper()] = spec

    # Symbols are stored upper-case; the stream's names already are, so each lookup tries
    # the name as given first and upper-cases only on a miss (a per-event saving).
    def __getitem__(self, symbol: str) -> SymbolSpec:
        spec = self.get(symbol)
        if spec is None:
            raise KeyError(f"unknown symbol {symbol!r}; known: {sorted(self._specs)[:10]}")
        return spec

    def __contains__(self, symbol: object) -> bool:
        return self.get(symbol) is not None

    def get(self, symbol: object) -> SymbolSpec | None:
        """The symbol's spec, or None if unknown (or not a string)."""
        if not isinstance(symbol, str):
            return None
        spec = self._specs.get(symbol)
        return spec if spec is not None else self._specs.get(symbol.upper())

    def __len__(self) -> int:
        return len(self._specs)

    def symbols(self) -> list[str]:
        return sorted(self._specs)

    @classmethod
    def from_exchange_info(cls, info: Mapping[str, Any] | str) -> SymbolTable:
        """Build from the JSON of GET /api/v3/exchangeInfo (dict or text)."""
        if isinstance(info, str):
            info = json.loads(info)
        table = cls()
        for sym in info["symbols"]:
            filters = {f["filterType"]: f for f in sym.get("filters", [])}
            if "PRICE_FILTER" not in filters or "LOT_SIZE" not in filters:
                continue
            price_scale, tick = scale_of_increment(filters["PRICE_FILTER"]["tickSize"])
            qty_scale, step = scale_of_increment(filters["LOT_SIZE"]["stepSize"])
            table.add(
                SymbolSpec(
                    symbol=sym["symbol"],
                    price_scale=price_scale,
                    qty_scale=qty_scale,
                    tick=tick,
                    step=step,
                    base=sym.get("baseAsset", ""),
                    quote=sym.get("quoteAsset", ""),
                )
            )
        return table


# Built-in specs so the mesh runs with no network. BTCUSDT/ETHUSDT use the
# scales of Binance spot in 2024 (tick 0.01, step 0.00001 / 0.0001); the
# captures in shared/data carry 8-decimal strings with trailing zeros, which
# parse exactly at these scales.
BUILTIN = SymbolTable(
    [
        SymbolSpec("BTCUSDT", price_scale=2, qty_scale=8, tick=1, step=1000, base="BTC", quote="USDT"),
        SymbolSpec("ETHUSDT", price_scale=2, qty_scale=8, tick=1, step=10000, base="ETH", quote="USDT"),
    ]
)


def load_symbols(exchange_info_path: str = "") -> SymbolTable:
    """The configured symbol table: an exchangeInfo JSON file, else the built-in one."""
    if not exchange_info_path:
        return BUILTIN
    with open(exchange_info_path, encoding="utf-8") as fh:
        return SymbolTable.from_exchange_info(fh.read())
