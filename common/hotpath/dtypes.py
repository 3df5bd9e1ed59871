"""Integer constants, array layouts and dtypes of the strategy hot path.

Everything here is a plain Python ``int`` (numba freezes module globals as
compile-time constants) or a numpy dtype. No floats, no behaviour.

Units used across the hot path
------------------------------
* price      : int64 pipettes = price * 10**price_scale (per symbol).
* quantity   : int64 base-asset atoms = qty * 10**qty_scale.
* time       : int64 nanoseconds, event time only (never the wall clock).
* bps        : ratio * 10_000 (1.0 == 10_000).
* ppm        : ratio * 1_000_000 (1.0 == 1_000_000).
* milli-pipettes (``VOL_SCALE``): volatility EMA, pipettes * 1_000.
* milli-pipettes^2 (``VAR_SCALE``): variance EMA, pipettes^2 * 1_000.
* Q30 (``Q30_ONE``): fixed point with 30 fractional bits, used only inside
  the deterministic ln() of the Avellaneda-Stoikov spread.

numba's on-disk cache is keyed on a digest of every file of this package
(``common.hotpath._numba_cache``), so changing a constant here recompiles the
kernels that read it.
"""

from __future__ import annotations

import numpy as np

# --------------------------------------------------------------------------
# generic
# --------------------------------------------------------------------------
INT = np.int64  # every hot-path array is int64
I64_SAT = 1 << 62  # saturation bound for intermediate sums / products
NO_PRICE = -1  # "no level / no value" sentinel for prices
BPS_ONE = 10_000
PPM_ONE = 1_000_000
VOL_SCALE = 1_000  # volatility EMA in milli-pipettes
VAR_SCALE = 1_000  # variance EMA in milli-pipettes^2
Q30_SHIFT = 30
Q30_ONE = 1 << Q30_SHIFT
LN2_Q30 = 744_261_118  # round(ln(2) * 2**30)
LN_SERIES_TERMS = 12  # atanh series terms in the Q30 ln (abs error < 2e-8)
VOL_DELTA_MAX = 1 << 30  # |d fair| clamp (pipettes) before the vol EMA
VAR_DELTA_MAX = 1 << 15  # |d fair| clamp (pipettes) before squaring
DT_MAX_NS = 1 << 40  # clamp of one inter-update gap (~18 min)
QTY_MAX = 1 << 50  # clamp of a single level / trade qty (atoms)
PX_MAX = 1 << 52  # a book row above this price is rejected (slot arithmetic stays in int64)
HORIZON_EVENTS_MAX = 1 << 20  # clamp of (A-S horizon / mean update gap)
AS_TERM_MAX = 1 << 40  # clamp of any A-S price term (pipettes)
Q_PPM_MAX = 1_000_000_000_000  # clamp of |inventory ratio| in ppm (1e6 x)
NEVER = 1 << 40  # "events since last quote" before the first quote

# sides (book side, quote side, fill side: BID = we buy, ASK = we sell)
SIDE_BID = 0
SIDE_ASK = 1

# action codes returned by the per-event entry points
ACT_NONE = 0
ACT_QUOTE = 1
ACT_CANCEL_ALL = 2

# quote models (P_MODEL)
MODEL_MM = 0  # seed-style: microprice +- half_spread*mult - inventory skew
MODEL_AS = 1  # Avellaneda-Stoikov, rolling-horizon form

# --------------------------------------------------------------------------
# book array: int64 1-D, a price-indexed ladder per side
#   header (BK_HDR_LEN slots), then side s's W quantity slots at
#   BK_Q + s*W + i, then side s's W // 64 block bitmaps at
#   BK_Q + 2*W + s*(W // 64) + (i >> 6).
#   A side's key of a price is px for bids, -px for asks, so on both sides a
#   better price has a higher key and a higher slot: slot i holds the level at
#   key book[BK_KEY0 + s] + i * tick (qty 0 = no level there). A block bitmap
#   has bit (i & 63) set iff slot i holds a level (bit 63 is the int64's sign),
#   so the walk to the next level below is one highest-set-bit per block, however
#   far apart the levels are.
#   book[BK_SLOTS] = W (a multiple of 64), book[BK_TICK] = pipettes per slot.
#   book[BK_BEST + s]: slot of the best level, -1 when the side is empty.
#   book[BK_N + s]: levels held; book[BK_LOW + s]: no level sits below this
#   slot (a bound, so a clear touches only [low, best]);
#   book[BK_DROPPED + s]: levels dropped for falling outside the window.
# --------------------------------------------------------------------------
MP_LEVELS_MAX = 64  # most levels the weighted microprice reads
BOOK_CAP = 1024  # default slots per side of new_book() (tests, tools)
BK_SLOTS = 0
BK_TICK = 1
BK_KEY0 = 2  # + side
BK_BEST = 4  # + side
BK_N = 6  # + side
BK_LOW = 8  # + side
BK_DROPPED = 10  # + side
BK_HDR_LEN = 16
BK_Q = BK_HDR_LEN
BK_BLOCK = 64  # slots per block bitmap


def book_len(slots: int = BOOK_CAP) -> int:
    return BK_Q + 2 * slots + 2 * (slots // BK_BLOCK)


# --------------------------------------------------------------------------
# level rows fed to on_book_snapshot / on_book_delta: int64 2-D (n, 3)
#   [side, px, qty]; qty == 0 in a delta removes the level.
# A call reads rows start .. start+n-1, so a decoder can reuse one buffer
# and a backtest can keep every event's rows in one array (no slicing).
# --------------------------------------------------------------------------
LV_SIDE = 0
LV_PX = 1
LV_QTY = 2
LV_COLS = 3

# --------------------------------------------------------------------------
# event array for run_events (backtest / benchmark driver): int64 (n, 5)
#   EV_KIND, EV_TS, then three kind-specific fields:
#   snapshot/delta: A = first row in the level array, B = row count
#   trade         : A = px, B = qty, C = buyer_is_maker (1 = aggressor SOLD)
#   fill          : A = side (SIDE_BID = our bid filled), B = px, C = qty
# --------------------------------------------------------------------------
EV_KIND = 0
EV_TS = 1
EV_A = 2
EV_B = 3
EV_C = 4
EV_COLS = 5
EVK_SNAPSHOT = 1
EVK_DELTA = 2
EVK_TRADE = 3
EVK_FILL = 4

# --------------------------------------------------------------------------
# params array: int64 1-D, length N_PARAMS. Defaults in PARAM_DEFAULTS.
# --------------------------------------------------------------------------
P_TICK = 0  # price grid, pipettes per tick
P_LOT = 1  # size grid, atoms per lot
P_ORDER_QTY = 2  # quote size, atoms
P_MAX_INV = 3  # max |position|, atoms
P_HALF_SPREAD = 4  # MM base half spread, pipettes
P_GAMMA_PPM = 5  # MM skew gamma, ppm (0.1 -> 100_000)
P_WARMUP = 6  # book updates held back before the first quote
P_COOLDOWN = 7  # book updates between two quotes
P_REQUOTE_PX = 8  # requote when |fair - fair at last quote| > this, pipettes
P_VPIN_WINDOW = 9  # trades in the VPIN ring (1 .. VPIN_CAP)
P_TOXIC_BPS = 10  # VPIN at/above this pulls every quote, bps
P_MIN_TRADES = 11  # trades in window before VPIN may trigger / kappa is fit
P_MP_LEVELS = 12  # levels in the weighted microprice (1 = top of book)
P_EMA_ALPHA_PPM = 13  # alpha of vol / variance / gap EMAs, ppm
P_MULT_VPIN_BPS = 14  # spread mult added at VPIN == 100 %, bps
P_MULT_VOL_BPS = 15  # spread mult added when vol == P_MULT_VOL_REF, bps
P_MULT_VOL_REF = 16  # reference vol for the above, pipettes per update
P_MULT_MAX_BPS = 17  # spread multiplier cap, bps (10_000 .. 30_000)
P_SPOT = 18  # 1 = spot: position never < 0, sells capped to holdings
P_MODEL = 19  # MODEL_MM or MODEL_AS
P_AS_GAMMA_PPM = 20  # A-S risk aversion, per pipette, ppm
P_AS_HORIZON_NS = 21  # A-S rolling horizon replacing T - t, ns
P_AS_KAPPA_PPM = 22  # A-S kappa before enough trades, per pipette, ppm
N_PARAMS = 23

PARAM_DEFAULTS = {
    P_TICK: 1,
    P_LOT: 1_000,
    P_ORDER_QTY: 100_000,
    P_MAX_INV: 20_000_000,
    P_HALF_SPREAD: 10,
    P_GAMMA_PPM: 100_000,
    P_WARMUP: 3,
    P_COOLDOWN: 2,
    P_REQUOTE_PX: 5,
    P_VPIN_WINDOW: 200,
    P_TOXIC_BPS: 8_000,
    P_MIN_TRADES: 50,
    P_MP_LEVELS: 5,
    P_EMA_ALPHA_PPM: 50_000,
    P_MULT_VPIN_BPS: 10_000,
    P_MULT_VOL_BPS: 10_000,
    P_MULT_VOL_REF: 10,
    P_MULT_MAX_BPS: 30_000,
    P_SPOT: 1,
    P_MODEL: MODEL_MM,
    P_AS_GAMMA_PPM: 1_000,
    P_AS_HORIZON_NS: 60_000_000_000,
    P_AS_KAPPA_PPM: 100_000,
}

# name -> index, for default_params(**overrides) (lower-case, no "P_")
PARAM_INDEX = {
    name[2:].lower(): value
    for name, value in dict(globals()).items()
    if name.startswith("P_") and isinstance(value, int)
}

# --------------------------------------------------------------------------
# strategy state array: int64 1-D, length STATE_LEN
# --------------------------------------------------------------------------
VPIN_CAP = 1024  # max VPIN window (ring capacity)
KAPPA_BINS = 64  # trade-distance histogram bins (ticks; last bin = ">= 63")

S_N_BOOK = 0  # book updates applied
S_N_TRADES = 1  # trades seen
S_SINCE_QUOTE = 2  # book updates since the last quote (NEVER at start)
S_HAVE_QUOTE = 3  # 1 while a quote is live
S_FAIR = 4  # fair value (weighted microprice), pipettes; NO_PRICE if none
S_LAST_QUOTE_FAIR = 5  # fair value when the live quote was made
S_IMB_BPS = 6  # book imbalance, bps, truncated toward zero
S_VOL = 7  # EMA |d fair| per update, milli-pipettes
S_VAR = 8  # EMA (d fair)^2 per update, milli-pipettes^2 (A-S model only; 0 under MM)
S_DT = 9  # EMA gap between book updates, ns (A-S model only; 0 under MM)
S_N_SAMPLES = 10  # fair-change samples taken (EMA seeding)
S_LAST_TS = 11  # ts of the previous book update, ns
S_VPIN_BPS = 12  # |buy - sell| / total over the ring, bps
S_BUY_VOL = 13  # aggressor-buy volume in the ring, atoms
S_SELL_VOL = 14  # aggressor-sell volume in the ring, atoms
S_RING_HEAD = 15  # next ring slot
S_RING_N = 16  # trades in the ring
S_K_N = 17  # trades counted in the distance histogram
S_K_SUM = 18  # sum of (2*d + 1) over those trades (d in ticks)
S_MULT_BPS = 19  # spread multiplier of the last quote attempt, bps (made at quote time)
S_TOXIC = 20  # 1 while VPIN >= threshold (quotes pulled)
S_POSITION = 21  # inventory, atoms
S_CLAMPED = 22  # atoms of sells beyond holdings, clamped (spot)
S_Q_BID_PX = 23  # output slot: last quote
S_Q_BID_QTY = 24
S_Q_ASK_PX = 25
S_Q_ASK_QTY = 26
S_LIVE_BID = 27  # unfilled qty of the live bid, atoms
S_LIVE_ASK = 28  # unfilled qty of the live ask, atoms
S_N_QUOTES = 29  # QUOTE actions returned
S_N_CANCELS = 30  # CANCEL_ALL actions returned
S_CENTER2 = 31  # last quote centre x2 (half-pipettes): fair - skew / r
S_WIDTH2 = 32  # last quote full width, pipettes (= 2 * half spread)
S_AS_KAPPA = 33  # last kappa used, ppm per pipette
S_AS_S2T = 34  # last sigma^2 * horizon, milli-pipettes^2
S_N_FILLS = 35
S_BOUGHT = 36  # atoms bought via fills
S_SOLD = 37  # atoms sold via fills (after clamping)
S_BAD_ROWS = 38  # level rows ignored (bad side / px <= 0 / qty < 0)
S_HDR_LEN = 48
S_RING_VOL = S_HDR_LEN  # VPIN_CAP signed trade volumes (+buy / -sell)
S_RING_DIST = S_RING_VOL + VPIN_CAP  # VPIN_CAP distance bins (-1 = none)
S_HIST = S_RING_DIST + VPIN_CAP  # KAPPA_BINS histogram counts
STATE_LEN = S_HIST + KAPPA_BINS

# --------------------------------------------------------------------------
# structured record dtypes for callers that keep events as records
# (aligned, int64 price / qty / ns). Kernels themselves take plain int64.
# --------------------------------------------------------------------------
TRADE_DTYPE = np.dtype(
    [("ts", "<i8"), ("px", "<i8"), ("qty", "<i8"), ("buyer_is_maker", "<i8")],
    align=True,
)
FILL_DTYPE = np.dtype([("ts", "<i8"), ("side", "<i8"), ("px", "<i8"), ("qty", "<i8")], align=True)
QUOTE_DTYPE = np.dtype(
    [("bid_px", "<i8"), ("bid_qty", "<i8"), ("ask_px", "<i8"), ("ask_qty", "<i8")],
    align=True,
)
