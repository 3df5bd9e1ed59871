"""Shared helpers for the StrategyCore tests: a sequenced-event builder, a
core factory and the real-capture pipeline (feed normalizer -> Sequenced).

No sockets: the tests drive the pure core exactly as the shell, the verifier
and the backtester do (one `apply` per sequenced event, seq 1, 2, ...).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import msgspec

from common import events as E
from common.config import StrategyConfig
from common.core import Output, state_hash
from common.units import BUILTIN, SymbolSpec, SymbolTable
from services.strategy.core import StrategyCore
from tests.shared_data import BINANCE_SPOT

EPOCH = 1
T0 = 1_723_161_253_000_000_000
DT = 100_000_000  # 100 ms between events

# BTCUSDT (tick 1, step 1000) from the built-in table, plus a coarse-grid
# test symbol so tick rounding is visible (tick 10 pipettes, lot 1000 atoms).
TEST = SymbolSpec("TESTUSDT", price_scale=2, qty_scale=8, tick=10, step=1000)
SYMBOLS = SymbolTable([BUILTIN["BTCUSDT"], BUILTIN["ETHUSDT"], TEST])

DATA = Path(os.environ.get("ATOMIC_MESH_DATA", str(BINANCE_SPOT)))
CAPTURE = DATA / "btcusdt_20240808.gz"


def make_core(model: str = "mm", symbol: str = "BTCUSDT", **overrides: object) -> StrategyCore:
    cfg = StrategyConfig(model=model, symbols=(symbol,), **overrides)  # type: ignore[arg-type]
    return StrategyCore(cfg, SYMBOLS)


class Feed:
    """Builds Sequenced events: seq 1, 2, ... epoch 1, event_ns increasing."""

    def __init__(self, symbol: str = "BTCUSDT", seq: int = 0, ts: int = T0) -> None:
        self.symbol = symbol
        self.seq = seq
        self.ts = ts

    def wrap(self, body: E._Body) -> E.Sequenced:
        self.seq += 1
        self.ts += DT
        return E.Sequenced(E.CODEC_VERSION, self.seq, EPOCH, self.seq, "test", self.seq, "", self.ts, self.ts, body)

    # market data
    def snapshot(self, bids: Sequence[tuple[int, int]], asks: Sequence[tuple[int, int]]) -> E.Sequenced:
        return self.wrap(
            E.BookSnapshot(self.symbol, self.seq + 1, E.pack_levels(list(bids)), E.pack_levels(list(asks)))
        )

    def delta(self, bids: Sequence[tuple[int, int]] = (), asks: Sequence[tuple[int, int]] = ()) -> E.Sequenced:
        b = E.pack_levels(list(bids)) if bids else b""
        a = E.pack_levels(list(asks)) if asks else b""
        return self.wrap(E.BookDelta(self.symbol, self.seq + 1, self.seq + 1, b, a))

    def trade(self, px: int, qty: int, buyer_maker: bool) -> E.Sequenced:
        return self.wrap(E.Trade(self.symbol, self.seq + 1, px, qty, buyer_maker))

    # order flow
    def fill(
        self, order_id: str, side: int, px: int, qty: int, leaves: int = 0, child: int = 1, fee_base: int = 0
    ) -> E.Sequenced:
        return self.wrap(
            E.OrderFill(
                "sim",
                f"{order_id}.{child}",
                self.symbol,
                side,
                px,
                qty,
                leaves,
                0,
                E.MAKER,
                f"t{self.seq + 1}",
                fee_base,
            )  # fmt: skip
        )

    def cancelled(self, order_id: str, leaves: int, child: int = 1) -> E.Sequenced:
        return self.wrap(E.OrderCancelled("sim", f"{order_id}.{child}", self.symbol, leaves, "canceled"))

    def expired(self, order_id: str, leaves: int, child: int = 1) -> E.Sequenced:
        return self.wrap(E.OrderExpired("sim", f"{order_id}.{child}", self.symbol, leaves))

    def rejected(self, order_id: str, child: int = 1) -> E.Sequenced:
        return self.wrap(E.OrderRejected("sim", f"{order_id}.{child}", self.symbol, "post_only_would_cross"))

    def risk_rejected(self, order_id: str) -> E.Sequenced:
        return self.wrap(E.RiskRejected(order_id, self.symbol, "max_position", "test", self.seq))

    def approved(self, intent: E.OrderIntent) -> E.Sequenced:
        return self.wrap(
            E.RiskApproved(
                intent.order_id, self.symbol, intent.side, intent.price, intent.qty, intent.tif, True, self.seq
            )
        )

    def clock(self) -> E.Sequenced:
        return self.wrap(E.Clock(self.seq))


def intents(outs: Iterable[Output]) -> list[E.OrderIntent]:
    return [o.body for o in outs if isinstance(o.body, E.OrderIntent)]


def by_side(outs: Iterable[Output]) -> dict[int, E.OrderIntent]:
    d: dict[int, E.OrderIntent] = {}
    for i in intents(outs):
        assert i.side not in d, f"two intents for side {i.side} from one event"
        d[i.side] = i
    return d


def core_hash(core: StrategyCore) -> int:
    return state_hash(core.state())


def roundtrip(state: object) -> object:
    """What a snapshot file gives back: the state through plain msgpack."""
    return msgspec.msgpack.decode(msgspec.msgpack.encode(state))


# ------------------------------------------------------------------ real capture
def capture_events(path: Path = CAPTURE, max_lines: int | None = None) -> list[E.Sequenced]:
    """The capture through the feed's own Normalizer, as Sequenced events seq 1..N."""
    from services.feed.binance import Normalizer
    from services.feed.replay import read_lines, symbol_from_name

    norm = Normalizer(BUILTIN, default_symbol=symbol_from_name(path))
    items: list[tuple[int, E._Body]] = []
    for n, line in enumerate(read_lines(path, norm.max_line_bytes)):
        if max_lines is not None and n >= max_lines:
            break
        assert isinstance(line, bytes)
        items.extend(norm.feed_line(line))
    items.extend(norm.finish())
    out = []
    for seq, (ns, body) in enumerate(items, start=1):
        out.append(E.Sequenced(E.CODEC_VERSION, seq, EPOCH, seq, "feed", seq, f"feed:{seq}", ns, ns, body))
    return out


def run_capture(model: str, evs: Sequence[E.Sequenced]) -> tuple[list[Output], int]:
    core = make_core(model)
    outs: list[Output] = []
    for ev in evs:
        outs.extend(core.apply(ev))
    return outs, core_hash(core)


# ------------------------------------------------------------------ closed-loop session
def random_session(
    model: str, seed: int, n: int = 400, **overrides: object
) -> tuple[list[E.Sequenced], list[list[Output]]]:
    """A seeded closed-loop session: a random-walk book (deltas, one snapshot
    in the middle), one-sided trade bursts (toxic spells), and a toy exchange
    that fills (partly or fully), cancels, expires, rejects or risk-rejects
    the core's own orders. Returns the events and the core's outputs per event,
    so the same events can be replayed into another core."""
    import random

    rng = random.Random(seed)
    cfg: dict[str, object] = dict(
        spot=False, vpin_window=12, min_trades=6, toxic_bps=7000, max_inventory=400_000, gamma_ppm=500_000
    )
    cfg.update(overrides)
    core = make_core(model, **cfg)
    feed = Feed()
    evs: list[E.Sequenced] = []
    outs: list[list[Output]] = []

    def push(ev: E.Sequenced) -> None:
        evs.append(ev)
        outs.append(core.apply(ev))

    def levels(mid: int) -> tuple[dict[int, int], dict[int, int]]:
        bids = {mid - 1 - 3 * i: rng.randrange(1, 50) * 10_000 for i in range(6)}
        asks = {mid + 1 + 3 * i: rng.randrange(1, 50) * 10_000 for i in range(6)}
        return bids, asks

    mid = 6_000_000
    bids, asks = levels(mid)
    push(feed.snapshot(sorted(bids.items(), reverse=True), sorted(asks.items())))
    buy_bias = 0.5
    for step in range(n):
        u = rng.random()
        if step == n // 2:  # a fresh snapshot mid-session
            bids, asks = levels(mid)
            push(feed.snapshot(sorted(bids.items(), reverse=True), sorted(asks.items())))
        elif u < 0.45:
            mid += rng.randrange(-6, 7)
            nb, na = levels(mid)
            db = [(p, 0) for p in bids if p not in nb] + list(nb.items())
            da = [(p, 0) for p in asks if p not in na] + list(na.items())
            bids, asks = nb, na
            push(feed.delta(db, da))
        elif u < 0.75:
            if rng.random() < 0.04:
                buy_bias = rng.choice([0.02, 0.5, 0.5, 0.98])
            buy = rng.random() < buy_bias
            push(feed.trade(mid + (1 if buy else -1), rng.randrange(1, 30) * 1000, not buy))
        elif u < 0.9 and core.orders:
            oid = rng.choice(sorted(core.orders))
            o = core.orders[oid]
            qty = o.remaining if rng.random() < 0.5 else rng.randrange(1, max(2, o.remaining))
            push(feed.fill(oid, o.side, o.price, qty, max(0, o.remaining - qty)))
        elif core.orders:
            oid = rng.choice(sorted(core.orders))
            rem = core.orders[oid].remaining
            kind = rng.randrange(4)
            if kind == 0:
                push(feed.cancelled(oid, rem))
            elif kind == 1:
                push(feed.expired(oid, rem))
            elif kind == 2:
                push(feed.rejected(oid))
            else:
                push(feed.risk_rejected(oid))
        else:
            push(feed.clock())
    return evs, outs
