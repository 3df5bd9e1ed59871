"""Binance depth levels, straight from their JSON bytes to int64 pairs (the feed's fast path).

A depth message's level arrays are most of its bytes: ``[["61837.63000000","0.12000000"],...]``.
Decoding them into Python strings and lists and then parsing each string cost
the feed about 80% of a diff's time. ``parse_levels`` reads the array's raw
bytes (msgspec.Raw) once, in numba, into exact integers at the symbol's
scales.

It accepts only the exact shape Binance sends, and returns -1 for anything
else: whitespace, escapes, signs, exponents, a string that is not
``digits[.digits]``, more than 18 significant digits, more than
MAX_DECIMAL_LEN characters, a fraction finer than the scale unless the extra
digits are zeros, a price that is not positive or not on the tick grid, a
zero quantity where none is allowed, more pairs than ``out`` holds. -1 means
"not mine": the caller then parses the message the checked way, which
accepts or rejects it with its own reasons. So for every input this either
gives exactly the checked way's numbers or defers to it (a property test
holds it to that, compiled and as plain Python).
"""

from __future__ import annotations

import numpy as np

from common.hotpath.kernels import kernel
from common.units import MAX_DECIMAL_LEN

_QUOTE, _COMMA, _DOT, _OPEN, _CLOSE, _ZERO, _NINE = 34, 44, 46, 91, 93, 48, 57
_MAX_DIGITS = 18  # 10**18 < 2**63: any 18 digits fit an int64


@kernel
def _pow10(n):
    p = 1
    for _ in range(n):
        p *= 10
    return p


@kernel
def _number(buf, i, end, scale):
    """The quoted decimal at buf[i] as an int at `scale`, and the index after it; (-1, i) if
    it is not ``"digits[.digits]"`` within the limits above."""
    if i >= end or buf[i] != _QUOTE:
        return -1, i
    start = i
    i += 1
    v = 0
    digits = 0
    while i < end and _ZERO <= buf[i] <= _NINE:
        v = v * 10 + (buf[i] - _ZERO)
        digits += 1
        if digits > _MAX_DIGITS:
            return -1, i
        i += 1
    if digits == 0:
        return -1, i
    kept = 0
    if i < end and buf[i] == _DOT:
        i += 1
        nf = 0
        while i < end and _ZERO <= buf[i] <= _NINE:
            d = buf[i] - _ZERO
            if nf < scale:
                v = v * 10 + d
                kept += 1
                digits += 1
                if digits > _MAX_DIGITS:
                    return -1, i
            elif d != 0:
                return -1, i  # finer than the scale: the checked way says off grid
            nf += 1
            i += 1
        if nf == 0:
            return -1, i
    if i >= end or buf[i] != _QUOTE or i - start - 1 > MAX_DECIMAL_LEN:
        return -1, i
    if digits + scale - kept > _MAX_DIGITS:
        return -1, i
    return v * _pow10(scale - kept), i + 1


@kernel
def parse_levels(buf, out, price_scale, qty_scale, tick, allow_zero):
    """Pairs of ``[["price","qty"],...]`` (bytes) into out[0:2n] as price, qty, ...; returns n,
    or -1 when the bytes are not exactly that shape or a level would not pass the
    checked way (see the module docstring)."""
    end = len(buf)
    if end < 2 or buf[0] != _OPEN:
        return -1
    i = 1
    n = 0
    if buf[i] == _CLOSE:
        return 0 if i + 1 == end else -1
    while True:
        if i >= end or buf[i] != _OPEN:
            return -1
        px, i = _number(buf, i + 1, end, price_scale)
        if px <= 0 or px % tick != 0:
            return -1
        if i >= end or buf[i] != _COMMA:
            return -1
        qty, i = _number(buf, i + 1, end, qty_scale)
        if qty < 0 or (qty == 0 and not allow_zero):
            return -1
        if i >= end or buf[i] != _CLOSE:
            return -1
        if 2 * n + 1 >= len(out):
            return -1
        out[2 * n] = px
        out[2 * n + 1] = qty
        n += 1
        i += 1
        if i >= end:
            return -1
        if buf[i] == _CLOSE:
            return n if i + 1 == end else -1
        if buf[i] != _COMMA:
            return -1
        i += 1


def scratch(n: int = 8192) -> np.ndarray:
    """An output array for parse_levels (2 int64 per level)."""
    return np.empty(2 * n, np.int64)
