"""Strategy hot path: numba kernels over preallocated int64 arrays.

Plain-Python helpers (allocation, params) live here; the per-event kernels
live in ``common.hotpath.kernels`` and the layouts in
``common.hotpath.dtypes``. Typical use, one kernel call per event::

    from common.hotpath import default_params, new_book, new_state, kernels
    params = default_params(half_spread=12)
    state, book = new_state(), new_book()
    act = kernels.on_book_delta(state, book, params, rows, 0, n_rows, ts)
    if act == dtypes.ACT_QUOTE:
        bid_px = state[dtypes.S_Q_BID_PX]  # ... S_Q_BID_QTY, S_Q_ASK_PX, ...
"""

from __future__ import annotations

import numpy as np

from common.hotpath import _numba_cache, dtypes
from common.hotpath.dtypes import (
    BK_BLOCK,
    BOOK_CAP,
    BPS_ONE,
    N_PARAMS,
    NEVER,
    NO_PRICE,
    PARAM_DEFAULTS,
    PARAM_INDEX,
    S_FAIR,
    S_LAST_QUOTE_FAIR,
    S_MULT_BPS,
    S_RING_DIST,
    S_SINCE_QUOTE,
    STATE_LEN,
    VPIN_CAP,
)

# Before any kernel module is imported (importing one runs this file first): their
# cache=True decorators pick the directory then.
_numba_cache.use_digest_cache()

__all__ = [
    "dtypes",
    "default_params",
    "check_params",
    "new_state",
    "new_book",
    "book_levels",
    "book_state",
    "book_load",
    "book_restore",
    "new_levels",
]

# inclusive [lo, hi] of every param; the kernels rely on these for overflow
_LIMITS = {
    dtypes.P_TICK: (1, 1 << 32),
    dtypes.P_LOT: (1, 1 << 40),
    dtypes.P_ORDER_QTY: (0, 1 << 50),
    dtypes.P_MAX_INV: (0, 1 << 43),
    dtypes.P_HALF_SPREAD: (0, 1 << 32),
    dtypes.P_GAMMA_PPM: (0, 1_000_000_000),
    dtypes.P_WARMUP: (0, 1 << 40),
    dtypes.P_COOLDOWN: (0, 1 << 40),
    dtypes.P_REQUOTE_PX: (0, 1 << 40),
    dtypes.P_VPIN_WINDOW: (1, VPIN_CAP),
    dtypes.P_TOXIC_BPS: (0, 10_001),
    dtypes.P_MIN_TRADES: (0, VPIN_CAP + 1),
    dtypes.P_MP_LEVELS: (1, dtypes.MP_LEVELS_MAX),
    dtypes.P_EMA_ALPHA_PPM: (1, 1_000_000),
    dtypes.P_MULT_VPIN_BPS: (0, 1_000_000),
    dtypes.P_MULT_VOL_BPS: (0, 1_000_000),
    dtypes.P_MULT_VOL_REF: (1, 1 << 32),
    dtypes.P_MULT_MAX_BPS: (BPS_ONE, 1_000_000),
    dtypes.P_SPOT: (0, 1),
    dtypes.P_MODEL: (dtypes.MODEL_MM, dtypes.MODEL_AS),
    dtypes.P_AS_GAMMA_PPM: (1, 1_000_000_000),
    dtypes.P_AS_HORIZON_NS: (1, 1 << 50),
    dtypes.P_AS_KAPPA_PPM: (1, 1 << 32),
}


def check_params(params: np.ndarray) -> None:
    """Raise ValueError naming the first param outside its safe range."""
    if params.dtype != np.int64 or params.shape != (N_PARAMS,):
        raise ValueError(f"params must be int64[{N_PARAMS}]")
    names = {v: k for k, v in PARAM_INDEX.items()}
    for idx, (lo, hi) in _LIMITS.items():
        v = int(params[idx])
        if not lo <= v <= hi:
            raise ValueError(f"param {names[idx]}={v} outside [{lo}, {hi}]")


def default_params(**overrides: int) -> np.ndarray:
    """int64 params array with the documented defaults (dtypes.PARAM_DEFAULTS),
    keys named like the P_ constants without the prefix, lower-case
    (e.g. ``half_spread=12, model=dtypes.MODEL_AS``). Unknown keys raise."""
    p = np.zeros(N_PARAMS, dtype=np.int64)
    for idx, v in PARAM_DEFAULTS.items():
        p[idx] = v
    for key, v in overrides.items():
        if key not in PARAM_INDEX:
            raise ValueError(f"unknown param {key!r}")
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"param {key!r} must be an integer, got {v!r}")
        p[PARAM_INDEX[key]] = int(v)
    check_params(p)
    return p


def new_state() -> np.ndarray:
    """Fresh strategy state (int64[STATE_LEN]), nothing seen yet."""
    s = np.zeros(STATE_LEN, dtype=np.int64)
    s[S_FAIR] = NO_PRICE
    s[S_LAST_QUOTE_FAIR] = NO_PRICE
    s[S_SINCE_QUOTE] = NEVER
    s[S_MULT_BPS] = BPS_ONE
    s[S_RING_DIST : S_RING_DIST + VPIN_CAP] = -1
    return s


def new_book(slots: int = BOOK_CAP, tick: int = 1) -> np.ndarray:
    """Empty book: a ladder of `slots` price slots a side (rounded up to a
    multiple of 64), each `tick` pipettes apart (see dtypes for the layout)."""
    if slots < 1 or tick < 1:
        raise ValueError(f"book slots and tick must be >= 1, got {slots}, {tick}")
    w = -(-slots // BK_BLOCK) * BK_BLOCK
    book = np.zeros(dtypes.book_len(w), dtype=np.int64)
    book[dtypes.BK_SLOTS] = w
    book[dtypes.BK_TICK] = tick
    book[dtypes.BK_BEST : dtypes.BK_BEST + 2] = -1
    book[dtypes.BK_LOW : dtypes.BK_LOW + 2] = w
    return book


def _side_slots(book: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """(slots holding a level, best first; their quantities), scanning only [low, best]."""
    w = int(book[dtypes.BK_SLOTS])
    q = book[dtypes.BK_Q + side * w : dtypes.BK_Q + (side + 1) * w]
    best, low = int(book[dtypes.BK_BEST + side]), int(book[dtypes.BK_LOW + side])
    if best < 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    idx = np.flatnonzero(q[low : best + 1])[::-1] + low
    return idx, q[idx]


def book_levels(book: np.ndarray, side: int, n: int | None = None) -> list[tuple[int, int]]:
    """One side of a kernel book as (px, qty) pairs, best first (all, or the best n)."""
    if n is not None:
        if n <= 0:
            return []
        # Imported here: the rest of this module (layouts, params) is used where no kernel runs.
        from common.hotpath.kernels import book_top_into

        out = np.empty(2 * n, dtype=np.int64)
        k = int(book_top_into(book, side, n, out))
        flat = out[: 2 * k].tolist()
        return list(zip(flat[::2], flat[1::2], strict=True))
    idx, qty = _side_slots(book, side)
    keys = int(book[dtypes.BK_KEY0 + side]) + idx * int(book[dtypes.BK_TICK])
    px = keys if side == dtypes.SIDE_BID else -keys
    return list(zip(px.tolist(), qty.tolist(), strict=True))


def book_state(book: np.ndarray) -> list[bytes]:
    """A book as plain data for state hashes and snapshots: the header, then per
    side its occupied (slot, qty) pairs, best first -- not the ladder's mostly empty
    slots (block bitmaps follow from the pairs). Deterministic, but not canonical:
    the header holds history (the window's place, the low bound), so two books with
    the same levels can differ, as they can in what they keep next."""
    out = [book[: dtypes.BK_HDR_LEN].tobytes()]
    for side in (dtypes.SIDE_BID, dtypes.SIDE_ASK):
        idx, qty = _side_slots(book, side)
        out.append(np.stack([idx, qty], axis=1).astype(np.int64).tobytes())
    return out


def book_load(book: np.ndarray, data: list[bytes]) -> None:
    """Inverse of book_state into `book`, whose slot count and tick must match.
    ValueError, leaving `book` unchanged, for another geometry or inconsistent data."""
    if len(data) != 3 or any(len(x) % 16 for x in data[1:]) or len(data[0]) != 8 * dtypes.BK_HDR_LEN:
        raise ValueError("not a kernel book of this layout (header + two sides of (slot, qty) pairs)")
    hdr = np.frombuffer(data[0], dtype=np.int64)
    sides = [np.frombuffer(data[1 + side], dtype=np.int64).reshape(-1, 2) for side in (0, 1)]
    book_restore(book, hdr, [(x[:, 0], x[:, 1]) for x in sides])


def book_restore(book: np.ndarray, hdr: np.ndarray, sides: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """Set `book` to header `hdr` with, per side, levels (slots, quantities): the exact book
    a state was taken of (header included, so its hash is the same). Checked first: the
    geometry matches, slots are in the window and distinct, quantities in 1..QTY_MAX (as
    every row is clamped: the fair value's sums rely on it), and the header's count, best
    and low bound agree with them; ValueError leaves `book` unchanged."""
    hdr = np.asarray(hdr, dtype=np.int64)
    w, tick = int(book[dtypes.BK_SLOTS]), int(book[dtypes.BK_TICK])
    if hdr.shape != (dtypes.BK_HDR_LEN,) or int(hdr[dtypes.BK_SLOTS]) != w or int(hdr[dtypes.BK_TICK]) != tick:
        got = f"{int(hdr[dtypes.BK_SLOTS])} slots, tick {int(hdr[dtypes.BK_TICK])}" if hdr.shape[0] > 1 else "?"
        raise ValueError(f"book of {got}; this one has {w} slots, tick {tick}")
    for side, (idx, qty) in enumerate(sides):
        n, best, low = (int(hdr[f + side]) for f in (dtypes.BK_N, dtypes.BK_BEST, dtypes.BK_LOW))
        ok = len(idx) == len(qty) == n and (qty > 0).all() and (qty <= dtypes.QTY_MAX).all()
        ok = ok and len(np.unique(idx)) == n
        # 0 <= low: a slide and a clear read and write [low, best] of this side only
        if n:
            ok = ok and 0 <= low <= int(idx.min()) and int(idx.max()) == best < w
        else:
            ok = ok and best == -1 and 0 <= low <= w
        if not ok:
            raise ValueError(f"kernel book side {side}: levels disagree with the header (n={n}, best={best})")
    book[:] = 0
    book[: dtypes.BK_HDR_LEN] = hdr
    for side, (idx, qty) in enumerate(sides):
        book[dtypes.BK_Q + side * w + idx] = qty
        blocks = dtypes.BK_Q + 2 * w + side * (w // BK_BLOCK)
        np.bitwise_or.at(book, blocks + idx // BK_BLOCK, np.left_shift(np.int64(1), idx % BK_BLOCK))


def new_levels(n: int) -> np.ndarray:
    """Reusable level-row buffer, int64[n, 3] of (side, px, qty)."""
    return np.zeros((n, dtypes.LV_COLS), dtype=np.int64)
