"""What a backtest reports, computed from the sequenced stream it produced.

`Stats` observes every sequenced event (it is not a core: it decides
nothing) and keeps integers only: counts by event type, risk and venue
rejections by reason, and its own `common.accounting.Account` over the
OrderFill events (exactly the execution core's fills), from which come
realized PnL, fees, volume, round trips, wins, drawdown and inventory.

Definitions (all money in the quote currency, exact, from integers):

* realized_pnl -- realized PnL net of every fee paid (what the seed calls
  realized PnL: with its 2 bps default fee its run "loses $272.82");
  gross_pnl is before fees, fees are positive when paid.
* round trip -- common.accounting's: flat -> non-flat -> flat per symbol; its
  PnL is net of its fills' fees. win_rate = wins / round trips;
  avg_trade_pnl = sum of trip PnLs / trips (floored to the money unit).
* sharpe -- mean / sample stdev of the round-trip PnLs, per round trip, not
  annualised. The one float of the report, computed here only; null in JSON
  and "n/a" in text when there are fewer than 2 trips or the stdev is 0
  (never a capped 999.999).
* max_drawdown -- the largest drop from a peak of equity (net realized PnL +
  open position marked at its symbol's last fill price, summed over symbols),
  sampled at every fill, starting from a peak of 0.
* time_in_market -- the share of the run's data time (first to last event,
  sequencer clock) during which some position was not flat.
* unrealized_pnl -- the final open position marked at the final mid of the
  risk core's book (0 when flat).
* orders -- ChildOrders the router sent to the venues; intents are the
  strategy's OrderIntents (risk may reject some: rejected by reason).
"""

from __future__ import annotations

import collections
import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import events as E
from common.accounting import Account
from common.units import SymbolTable, format_fixed

TIMING_FIELDS = ("wall_s", "events_per_s", "sequenced_per_s")


@dataclass
class FillRow:
    seq: int
    event_ns: int
    recv_ns: int
    symbol: str
    side: int
    price: int
    qty: int
    fee: int
    liquidity: int
    realized: int  # net realized PnL, all symbols, money units
    position: int  # this symbol's position after the fill, atoms


@dataclass
class Stats:
    """An observer of the sequenced stream: integer statistics only."""

    symbols: SymbolTable
    money_scale: int = 10
    by_type: dict[type, int] = field(default_factory=dict)  # events seen per body type (see `counts`)
    risk_rejected: collections.Counter[str] = field(default_factory=collections.Counter)
    venue_rejected: collections.Counter[str] = field(default_factory=collections.Counter)
    cancel_all: collections.Counter[str] = field(default_factory=collections.Counter)
    liquidity: collections.Counter[str] = field(default_factory=collections.Counter)
    account: Account = field(default_factory=lambda: Account(keep_trips=0))
    trips: list[int] = field(default_factory=list)  # every round trip's PnL, money units
    fills: list[FillRow] = field(default_factory=list)
    peak: int = 0
    max_drawdown: int = 0
    open_since: int = -1  # recv_ns at which some position left flat (-1 = all flat)
    in_market_ns: int = 0
    last_ns: int = 0

    def money(self, native: int, symbol: str) -> int:
        """A symbol's notional-scale amount in money units (quote x 10**money_scale)."""
        d = self.money_scale - self.symbols[symbol].notional_scale()
        return native * 10**d if d >= 0 else native // 10 ** (-d)

    @property
    def counts(self) -> collections.Counter[str]:
        """Events seen by body type name (counted by type object: this runs on every event)."""
        return collections.Counter({t.__name__: n for t, n in self.by_type.items()})

    def __call__(self, ev: E.Sequenced) -> None:
        b = ev.body
        t = type(b)
        by_type = self.by_type
        by_type[t] = by_type.get(t, 0) + 1
        self.last_ns = ev.recv_ns
        if t is E.OrderFill:
            self._fill(ev, b)  # type: ignore[arg-type]
        elif t is E.RiskRejected:
            self.risk_rejected[b.reason] += 1  # type: ignore[union-attr]
        elif t is E.OrderRejected:
            self.venue_rejected[f"{b.venue}:{b.reason}"] += 1  # type: ignore[union-attr]
        elif t is E.CancelAll:
            self.cancel_all[f"{b.origin}:{b.reason.split(':')[0]}"] += 1  # type: ignore[union-attr]

    def market_run(self, counts: dict[type, int], last_recv_ns: int) -> None:
        """Market events the engine's market run applied (fastpath.py): counted as __call__
        counts them (none of them is a fill, a rejection or a CancelAll)."""
        by_type = self.by_type
        for t, n in counts.items():
            by_type[t] = by_type.get(t, 0) + n
        self.last_ns = last_recv_ns

    def _fill(self, ev: E.Sequenced, f: E.OrderFill) -> None:
        self.liquidity["maker" if f.liquidity == E.MAKER else "taker"] += 1
        was_flat = all(p.position == 0 for p in self.account.positions.values())
        effect = self.account.on_fill(f)
        for pnl in effect.closed_trips:
            self.trips.append(self.money(pnl, f.symbol))
        equity = sum(self.money(p.equity(), s) for s, p in self.account.positions.items())
        if equity > self.peak:
            self.peak = equity
        if self.peak - equity > self.max_drawdown:
            self.max_drawdown = self.peak - equity
        flat = all(p.position == 0 for p in self.account.positions.values())
        if was_flat and not flat:
            self.open_since = ev.recv_ns
        elif not was_flat and flat:
            self.in_market_ns += ev.recv_ns - self.open_since
            self.open_since = -1
        realized = sum(self.money(p.net_realized(), s) for s, p in self.account.positions.items())
        self.fills.append(
            FillRow(ev.seq, ev.event_ns, ev.recv_ns, f.symbol, f.side, f.price, f.qty, f.fee, f.liquidity, realized,
                    effect.position)
        )  # fmt: skip


# ---------------------------------------------------------------- money text
def fmt_money(units: int, scale: int) -> str:
    """Exact decimal text of money units, trailing zeros trimmed down to cents."""
    s = format_fixed(units, scale)
    if "." in s:
        whole, frac = s.split(".")
        frac = frac.rstrip("0").ljust(2, "0")
        s = f"{whole}.{frac}"
    return s


def fmt_pct(num: int, den: int) -> str:
    """num/den as a percentage with one decimal, floored, from integers."""
    if den <= 0:
        return "n/a"
    tenths = num * 1000 // den
    return f"{tenths // 10}.{tenths % 10}%"


def sharpe(trips: list[int]) -> float | None:
    """Mean / sample stdev of round-trip PnLs (float, report only); None when undefined."""
    if len(trips) < 2:
        return None
    n = len(trips)
    mean = sum(trips) / n
    var = sum((x - mean) ** 2 for x in trips) / (n - 1)
    if var <= 0:
        return None
    return mean / math.sqrt(var)


# ---------------------------------------------------------------- the report
def build(
    *, engine: Any, stats: Stats, inputs: Any, fill_model: str, label: str = "", extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Every field of the report as plain JSON data (money as exact decimal strings + integer units)."""
    info = engine.info
    sc = stats.money_scale
    m = lambda x: fmt_money(x, sc)  # noqa: E731
    positions = stats.account.positions
    gross = sum(stats.money(p.realized, s) for s, p in positions.items())
    fees = sum(stats.money(p.fees, s) for s, p in positions.items())
    volume = sum(stats.money(p.volume, s) for s, p in positions.items())
    realized = gross - fees
    trips = len(stats.trips)
    wins = sum(1 for x in stats.trips if x > 0)
    losses = sum(1 for x in stats.trips if x < 0)
    trips_total = sum(stats.trips)
    unrealized = 0
    tops = getattr(engine.risk, "tops", {})
    for s, p in positions.items():
        bid, ask = tops.get(s, (0, 0))
        if p.position and bid > 0 and ask > 0:
            unrealized += stats.money((p.position * (bid + ask) - 2 * p.cost) // 2, s)
        elif p.position:
            unrealized += stats.money(p.unrealized(), s)
    span = max(0, info.last_ns - info.first_ns)
    in_market = stats.in_market_ns + (info.last_ns - stats.open_since if stats.open_since >= 0 else 0)
    sh = sharpe(stats.trips)
    wall = info.wall_s
    inventory = {
        s: {
            "min": stats.symbols[s].fmt_qty(p.min_position),
            "max": stats.symbols[s].fmt_qty(p.max_position),
            "final": stats.symbols[s].fmt_qty(p.position),
        }
        for s, p in sorted(positions.items())
    }
    strat = engine.strategy
    rep: dict[str, Any] = {
        "label": label,
        "engine": "atomic-mesh cores in process (StrategyCore/RiskCore/RouterCore/ExecutionCore+SimExchange)",
        "strategy_model": engine.cfg.strategy.model,
        "fill_model": fill_model,
        "maker_fee_bps": engine.cfg.execution.maker_fee_bps,
        "venues": {v.name: {"taker_fee_bps": v.fee_bps} for v in engine.cfg.router.venues},
        "order_latency_ms": engine.cfg.execution.order_latency_ms,
        "feed_latency_ms": engine.cfg.execution.feed_latency_ms,
        "input": inputs.describe(),
        "events": info.inputs,
        "sequenced": info.sequenced,
        "clocks": info.clocks,
        "market_run": market_run_view(engine),
        "wall_s": round(wall, 3),
        "events_per_s": round(info.inputs / wall) if wall > 0 else None,
        "sequenced_per_s": round(info.sequenced / wall) if wall > 0 else None,
        "data_span_s": format_fixed(span // 1_000_000, 3),
        "intents": stats.counts["OrderIntent"],
        "cancel_intents": stats.counts["CancelIntent"],
        "cancel_all": dict(sorted(stats.cancel_all.items())),
        "risk_approved": stats.counts["RiskApproved"],
        "risk_rejected": dict(sorted(stats.risk_rejected.items())),
        "orders": stats.counts["ChildOrder"],
        "acks": stats.counts["OrderAck"],
        "venue_rejected": dict(sorted(stats.venue_rejected.items())),
        "cancelled": stats.counts["OrderCancelled"],
        "fills": stats.counts["OrderFill"],
        "fills_by_liquidity": dict(sorted(stats.liquidity.items())),
        "round_trips": trips,
        "wins": wins,
        "losses": losses,
        "volume": m(volume),
        "fees": m(fees),
        "gross_pnl": m(gross),
        "realized_pnl": m(realized),
        "unrealized_pnl": m(unrealized),
        "max_drawdown": m(stats.max_drawdown),
        "win_rate": round(wins / trips, 6) if trips else None,
        "win_rate_text": fmt_pct(wins, trips),
        "avg_trade_pnl": m(trips_total // trips) if trips else None,
        "sharpe": round(sh, 6) if sh is not None else None,
        "time_in_market": round(in_market / span, 6) if span else None,
        "time_in_market_text": fmt_pct(in_market, span),
        "inventory": inventory,
        "money_scale": sc,
        "units": {
            "realized_pnl": realized, "gross_pnl": gross, "fees": fees, "volume": volume,
            "max_drawdown": stats.max_drawdown, "unrealized_pnl": unrealized, "trips_total": trips_total,
        },  # fmt: skip
        "strategy_counters": dict(sorted(getattr(strat, "counters", {}).items())),
        "inputs": inputs.accounting(),
        "hashes": engine.hashes(),
    }
    if extra:
        rep.update(extra)
    return rep


def market_run_view(engine: Any) -> dict[str, Any]:
    """How much of the run the engine's market run kernel applied (services/backtest/fastpath.py)."""
    m = engine.market
    if m is None:
        return {"off": engine.why_per_event}
    return {"events": m.applied, "clocks": m.clocks}


def deterministic_view(rep: dict[str, Any]) -> dict[str, Any]:
    """The report without its timing fields (what two runs of the same input must agree on)."""
    return {k: v for k, v in rep.items() if k not in TIMING_FIELDS}


def to_json(rep: dict[str, Any]) -> str:
    return json.dumps(rep, sort_keys=True, separators=(",", ":"))


def _counts(d: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in d.items()) or "none"


def text(rep: dict[str, Any]) -> str:
    w = 66
    line = "=" * w
    rows: list[tuple[str, str]] = []

    def row(k: str, v: object) -> None:
        rows.append((k, str(v)))

    eps = rep["events_per_s"]
    row("Engine", "atomic-mesh cores, in-process sequencer")
    row("Strategy / fills", f"{rep['strategy_model']} / {rep['fill_model']} model")
    row("Fees", f"maker {rep['maker_fee_bps']} bps; taker " + ", ".join(
        f"{k} {v['taker_fee_bps']} bps" for k, v in rep["venues"].items()))
    row("Latency", f"order {rep['order_latency_ms']} ms, feed {rep['feed_latency_ms']} ms (event time)")
    row("Input", rep["input"])
    row("Events", f"{rep['events']:,} ({eps:,} evt/s)" if eps else f"{rep['events']:,}")
    row("Sequenced", f"{rep['sequenced']:,} (incl. {rep['clocks']:,} clocks)")
    mr = rep["market_run"]
    if "off" in mr:
        row("Market run", f"off: {mr['off']}")
    else:
        row("Market run", f"{mr['events']:,} events, {mr['clocks']:,} clocks in one kernel (the rest per event)")
    row("Wall time", f"{rep['wall_s']:.3f} s (data span {rep['data_span_s']} s)")
    rows.append(("", ""))
    row("Intents", f"{rep['intents']:,} (+{rep['cancel_intents']:,} cancels)")
    row("Risk rejected", _counts(rep["risk_rejected"]))
    row("Orders", f"{rep['orders']:,} (acks {rep['acks']:,}, cancelled {rep['cancelled']:,})")
    row("Venue rejected", _counts(rep["venue_rejected"]))
    row("Fills", f"{rep['fills']:,} ({_counts(rep['fills_by_liquidity'])})")
    row("Round trips", f"{rep['round_trips']:,} ({rep['wins']} won, {rep['losses']} lost)")
    row("Volume", f"$ {rep['volume']}")
    rows.append(("", ""))
    row("Realized PnL", f"$ {rep['realized_pnl']} (gross {rep['gross_pnl']}, fees {rep['fees']})")
    row("Unrealized", f"$ {rep['unrealized_pnl']} (final position at mid)")
    row("Max drawdown", f"$ {rep['max_drawdown']}")
    row("Win rate", rep["win_rate_text"])
    row("Avg trade PnL", f"$ {rep['avg_trade_pnl']}" if rep["avg_trade_pnl"] is not None else "n/a")
    row("Sharpe/trip", f"{rep['sharpe']:.3f}" if rep["sharpe"] is not None else "n/a")
    row("Time in market", rep["time_in_market_text"])
    for s, inv in rep["inventory"].items():
        row(f"Inventory {s}", f"min {inv['min']}, max {inv['max']}, final {inv['final']}")
    rows.append(("", ""))
    acc = rep["inputs"]
    row("Input lines", f"{acc['lines']:,} read, {acc.get('settled', 0):,} accounted for")
    row("Accepted", _counts(acc["accepted"]))
    row("Dropped", _counts(acc["dropped"]))
    row("Rejected", _counts(acc["rejected"]))
    title = "ATOMIC MESH (Python) -- BACKTEST REPORT" + (f" -- {rep['label']}" if rep.get("label") else "")
    out = [line, title, line]
    for k, v in rows:
        out.append(f"  {k:<18}: {v}" if k else "-" * w)
    out.append(line)
    return "\n".join(out)


# ---------------------------------------------------------------- files
def write_equity_csv(stats: Stats, path: str | Path) -> int:
    """One row per fill: seq, event time, net realized PnL (all symbols), the symbol's position."""
    sc = stats.money_scale
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["seq", "event_ns", "recv_ns", "symbol", "side", "price", "qty", "fee", "liquidity",
                    "realized_pnl", "position"])  # fmt: skip
        for r in stats.fills:
            spec = stats.symbols[r.symbol]
            w.writerow([
                r.seq, r.event_ns, r.recv_ns, r.symbol, "buy" if r.side == E.BUY else "sell",
                spec.fmt_price(r.price), spec.fmt_qty(r.qty), format_fixed(r.fee, spec.notional_scale()),
                "maker" if r.liquidity == E.MAKER else "taker", fmt_money(r.realized, sc), spec.fmt_qty(r.position),
            ])  # fmt: skip
    return len(stats.fills)


class PlotUnavailable(RuntimeError):
    pass


def plot(stats: Stats, path: str | Path, title: str = "") -> None:
    """Equity (net realized PnL) and position per fill, as a PNG. Needs matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise PlotUnavailable(
            f"--plot needs matplotlib, which is not installed ({exc}); `pip install matplotlib` or drop --plot"
        ) from None
    sc = stats.money_scale
    xs = [(r.recv_ns - stats.fills[0].recv_ns) / 1e9 for r in stats.fills] if stats.fills else []
    pnl = [r.realized / 10**sc for r in stats.fills]
    pos = [r.position / 10 ** stats.symbols[r.symbol].qty_scale for r in stats.fills]
    fig, (ax1, ax2) = plt.subplots(2, 1, sharex=True, figsize=(10, 6))
    ax1.step(xs, pnl, where="post")
    ax1.set_ylabel("net realized PnL (quote)")
    ax1.set_title(title or "backtest equity")
    ax2.step(xs, pos, where="post", color="tab:orange")
    ax2.set_ylabel("position (base)")
    ax2.set_xlabel("seconds of data time since the first fill")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
