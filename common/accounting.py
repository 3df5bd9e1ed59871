"""Positions and PnL in exact integers: no floats anywhere, no rounded averages.

Units, per symbol (see `common.units`):

* position: signed base-asset atoms (qty scale), long > 0, short < 0;
* every money amount (cost, PnL, fees, volume): quote-currency units at the
  symbol's notional scale, price_scale + qty_scale, i.e. exactly price * qty.

Cost basis is kept as the total signed cost of the open position (`cost`,
positive for a long: what was paid; negative for a short: what was received),
never as a rounded average price, so the average entry is exactly
cost / position and a position that goes back to flat realizes exactly
proceeds - cost. A partial close releases cost pro rata; that one division
rounds the partial's realized PnL toward -infinity (never in our favour) and
the remainder stays in the open cost, so the total realized over a whole round
trip is still exact.

Fees come with the fill (positive = paid, negative = rebate); `fee()` computes
them from integer basis points and never rounds in the payer's favour: a fee
(we pay) is rounded up, a rebate (the venue pays) is floored, i.e. its
magnitude is rounded up too (-0.01 units -> -1).

Round trips: one opens when the position leaves flat and closes when it returns
to flat. A fill that crosses through zero closes the current trip and opens a
new one with the remainder; that fill's fee is split pro rata between the two
trips (the closing trip's share rounded up). A trip's PnL is its realized PnL
net of every fee paid by its fills; > 0 counts as a win, < 0 a loss, 0 flat.
Only the last `keep_trips` trip PnLs are kept (counts and sums cover all).

Equity = realized - fees + unrealized, where unrealized marks the position at
the last mark price (every fill marks at its own price; `mark()` marks at any
price). Peak equity and max drawdown (peak - equity, >= 0) are tracked on it,
starting from a peak of 0.

Plain data in and out: `state()` is ints, strs, lists and dicts only, and
`load_state(state())` restores an identical object.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from common.events import BUY, SELL

BPS = 10_000


def fee(price: int, qty: int, bps: int) -> int:
    """Fee on a price*qty notional at integer `bps`, in notional-scale units.

    Positive bps (a fee we pay): ceil(price*qty*bps/10000). Negative bps (a
    rebate the venue pays): floor(price*qty*bps/10000), so its magnitude is
    rounded up. Either way the rounding never favours the one who pays.
    """
    n = price * qty * bps
    if bps >= 0:
        return -((-n) // BPS)
    return n // BPS


def _ceil_div(a: int, b: int) -> int:
    return -((-a) // b)


@dataclass(frozen=True, slots=True)
class FillEffect:
    """What one fill did to its symbol's account."""

    realized: int  # gross realized PnL of this fill (before fees)
    position: int  # position after the fill
    closed_trips: tuple[int, ...]  # PnL (net of fees) of each round trip this fill closed (0 or 1 entries)


@dataclass(slots=True)
class Position:
    """One symbol's account. Mutated only through `fill()` and `mark()`."""

    symbol: str
    keep_trips: int = 256
    position: int = 0
    cost: int = 0  # signed total cost of the open position (notional scale)
    realized: int = 0  # gross realized PnL
    fees: int = 0  # total fees, positive = paid
    volume: int = 0  # total traded notional
    fills: int = 0
    buy_qty: int = 0
    sell_qty: int = 0
    mark_price: int = 0
    peak: int = 0
    max_drawdown: int = 0
    min_position: int = 0
    max_position: int = 0
    trip_pnl: int = 0  # running PnL (net of fees) of the open round trip
    trips: int = 0
    wins: int = 0
    losses: int = 0
    trips_total: int = 0  # sum of closed trips' PnL
    recent_trips: list[int] = field(default_factory=list)

    # ------------------------------------------------------------ derived
    def net_realized(self) -> int:
        return self.realized - self.fees

    def unrealized(self, price: int | None = None) -> int:
        px = self.mark_price if price is None else price
        return self.position * px - self.cost

    def equity(self) -> int:
        return self.net_realized() + self.unrealized()

    def avg_price_num_den(self) -> tuple[int, int]:
        """Exact average entry price as a fraction (cost, |position|) in price units; (0, 0) when flat."""
        if self.position == 0:
            return 0, 0
        return abs(self.cost), abs(self.position)

    def drawdown(self) -> int:
        return self.peak - self.equity()

    # ------------------------------------------------------------ updates
    def fill(self, side: int, price: int, qty: int, fee_paid: int = 0) -> FillEffect:
        if side not in (BUY, SELL):
            raise ValueError(f"side must be BUY or SELL, got {side!r}")
        if price <= 0 or qty <= 0:
            raise ValueError(f"fill needs price > 0 and qty > 0, got price={price} qty={qty}")
        signed = qty if side == BUY else -qty
        self.fills += 1
        self.volume += price * qty
        self.fees += fee_paid
        if side == BUY:
            self.buy_qty += qty
        else:
            self.sell_qty += qty

        realized = 0
        closed: list[int] = []
        pos = self.position
        if pos == 0 or (pos > 0) == (signed > 0):
            # opening or adding: cost grows exactly
            self.position = pos + signed
            self.cost += signed * price
            self.trip_pnl -= fee_paid
        else:
            held = abs(pos)
            close_qty = min(qty, held)
            if close_qty == held:
                released = self.cost
            elif pos > 0:
                # long: release more cost (rounded up) -> realized rounded down
                released = _ceil_div(self.cost * close_qty, held)
            else:
                # short: cost < 0; release less received (magnitude rounded down)
                released = -((-self.cost * close_qty) // held)
            if pos > 0:
                realized = price * close_qty - released
            else:
                realized = -released - price * close_qty
            self.cost -= released
            self.position = pos + (close_qty if signed > 0 else -close_qty)
            self.realized += realized
            open_qty = qty - close_qty
            fee_close = fee_paid if open_qty == 0 else _ceil_div(fee_paid * close_qty, qty)
            self.trip_pnl += realized - fee_close
            if self.position == 0:
                closed.append(self._close_trip())
            if open_qty:
                # crossed through zero: the rest opens a new position and trip
                self.position = open_qty if signed > 0 else -open_qty
                self.cost = self.position * price
                self.trip_pnl = -(fee_paid - fee_close)

        self.min_position = min(self.min_position, self.position)
        self.max_position = max(self.max_position, self.position)
        self.mark(price)
        return FillEffect(realized, self.position, tuple(closed))

    def mark(self, price: int) -> int:
        """Mark the position at `price`; update peak and drawdown; return equity."""
        self.mark_price = price
        eq = self.equity()
        if eq > self.peak:
            self.peak = eq
        dd = self.peak - eq
        if dd > self.max_drawdown:
            self.max_drawdown = dd
        return eq

    def _close_trip(self) -> int:
        pnl = self.trip_pnl
        self.trip_pnl = 0
        self.trips += 1
        self.trips_total += pnl
        if pnl > 0:
            self.wins += 1
        elif pnl < 0:
            self.losses += 1
        self.recent_trips.append(pnl)
        if len(self.recent_trips) > self.keep_trips:
            del self.recent_trips[: len(self.recent_trips) - self.keep_trips]
        return pnl

    # ------------------------------------------------------------ state
    _FIELDS = (
        "position", "cost", "realized", "fees", "volume", "fills", "buy_qty", "sell_qty", "mark_price",
        "peak", "max_drawdown", "min_position", "max_position", "trip_pnl", "trips", "wins", "losses",
        "trips_total", "keep_trips",
    )  # fmt: skip

    def state(self) -> dict[str, object]:
        st: dict[str, object] = {name: getattr(self, name) for name in self._FIELDS}
        st["symbol"] = self.symbol
        st["recent_trips"] = list(self.recent_trips)
        return st

    @classmethod
    def from_state(cls, st: dict[str, object]) -> Position:
        p = cls(symbol=str(st["symbol"]))
        for name in cls._FIELDS:
            setattr(p, name, int(st[name]))  # type: ignore[call-overload]
        p.recent_trips = [int(x) for x in st["recent_trips"]]  # type: ignore[attr-defined]
        return p


class Account:
    """Positions by symbol. Symbols keep their own scales, so nothing is summed across them."""

    def __init__(self, keep_trips: int = 256) -> None:
        self.keep_trips = keep_trips
        self.positions: dict[str, Position] = {}

    def get(self, symbol: str) -> Position:
        pos = self.positions.get(symbol)
        if pos is None:
            pos = self.positions[symbol] = Position(symbol, keep_trips=self.keep_trips)
        return pos

    def fill(self, symbol: str, side: int, price: int, qty: int, fee_paid: int = 0) -> FillEffect:
        return self.get(symbol).fill(side, price, qty, fee_paid)

    def on_fill(self, body: object) -> FillEffect:
        """Apply an `events.OrderFill` (anything with symbol/side/price/qty/fee)."""
        return self.fill(body.symbol, body.side, body.price, body.qty, body.fee)  # type: ignore[attr-defined]

    def mark(self, symbol: str, price: int) -> int:
        return self.get(symbol).mark(price)

    def state(self) -> dict[str, object]:
        return {"keep_trips": self.keep_trips, "positions": {s: p.state() for s, p in sorted(self.positions.items())}}

    def load_state(self, st: dict[str, object]) -> None:
        self.keep_trips = int(st["keep_trips"])  # type: ignore[call-overload]
        positions = st["positions"]
        assert isinstance(positions, dict)
        self.positions = {str(s): Position.from_state(p) for s, p in sorted(positions.items())}
