"""The engine's market run: quiet market events through every core in one kernel call.

`Engine.run` hands its input here in chunks (`Engine.run_raw`: in msgpack
batches, see `Input.raw_batches`; `Engine.run_rows`: in row batches, see
`Input.row_batches`). `MarketRun.chunk` encodes a chunk's market events as
int64 rows (`chunk_raw` scans a batch's bytes as they are, `chunk_rows`
takes a row batch's rows as they are) and lets `common.hotpath.market_run`
apply them to every core's arrays (the strategy's state and book, risk's and
the router's ladders, each simulated venue's ladder and the queue ahead of
our resting orders) until an event that needs Python: then the engine's own per-event path
(`Engine._one`) takes that event, exactly as it would have without this
module, and the kernel goes on after it. After each kernel call the
counters it kept (clock, seq, Lamport time, events per type, tops, rows
rejected, venue counters) are written back into the cores and the
observers, so every core's state, and so every state hash, is what
`apply()` event by event gives (tests/unit/backtest/test_fastpath.py
runs both ways on the capture and the synthetic market and compares
reports, equity curves and hashes).

It runs only where it covers the whole configuration, and says why not
otherwise (`MarketRun.build` returns the reason): one strategy instance on
one symbol, risk, the router and execution with simulated venues only and
no feed latency, risk's market-data dead man's switch off (the backtest
turns it off), and observers that can take counts (`market_run`) instead
of events (`keep_events` needs every event).
"""

from __future__ import annotations

import array
import itertools
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import msgspec
import numpy as np

from common import events as E
from common.hotpath import dtypes as D
from common.hotpath import market_run as K
from common.hotpath.kernels import FV_LEVELS
from common.hotpath.rowbatch import RowBatch
from services.execution.core import ExecutionCore
from services.execution.simexchange import Resting
from services.risk.core import DAY_NS, RiskCore
from services.router.core import RouterCore
from services.strategy.core import StrategyCore

if TYPE_CHECKING:
    from services.backtest.engine import Engine

CHUNK = 512
NEVER = 2**63 - 1
I64_MIN = -(2**63)
_KIND_TYPE = {K.RK_DELTA: E.BookDelta, K.RK_SNAPSHOT: E.BookSnapshot, K.RK_TRADE: E.Trade, K.RK_BBO: E.BestBidOffer}
_ENC = msgspec.msgpack.Encoder()
_UNSCANNED = (-1, None)  # scans as RK_OTHER (a time below 0)
_UNENCODABLE = (OverflowError, TypeError, ValueError)


def _check_schema() -> None:
    """scan_items reads the four market bodies by position: their tags and field counts."""
    bodies = {E.BookSnapshot: K.TAG_SNAPSHOT, E.BookDelta: K.TAG_DELTA, E.Trade: K.TAG_TRADE, E.BestBidOffer: K.TAG_BBO}
    have = tuple(sorted((bodies[t], len(t.__struct_fields__)) for t in bodies))
    named = tuple(sorted((t.__struct_config__.tag, len(t.__struct_fields__)) for t in bodies))
    if have != K.FIELDS or named != K.FIELDS:
        raise RuntimeError(f"common.events' market bodies {named} no longer match scan_items' {K.FIELDS}")


_check_schema()


def _encodes(item: tuple[int, E._Body]) -> bool:
    try:
        _ENC.encode(item)
    except _UNENCODABLE:
        return False
    return True


def _int64s(n: int) -> tuple[array.array[int], np.ndarray]:
    """n zeroed int64s: an array.array and a numpy view of the same memory."""
    buf = array.array("q", bytes(8 * n))
    return buf, np.frombuffer(buf, dtype=np.int64)


class MarketRun:
    def __init__(self, engine: Engine, strategy: StrategyCore) -> None:
        self.engine = engine
        self.strategy = strategy
        (self.symbol,) = strategy.books
        self.sb = strategy.books[self.symbol]
        self.risk: RiskCore = engine.cores["risk"]  # type: ignore[assignment]
        self.router: RouterCore = engine.cores["router"]  # type: ignore[assignment]
        self.execution: ExecutionCore = engine.cores["execution"]  # type: ignore[assignment]
        self.sims = list(self.execution.venues.values())
        spec = self.execution.symbols[self.symbol]
        # The kernel's int64 arrays are views of array.array buffers: Python reads and writes
        # their items through the array.array (several times cheaper than numpy's scalar
        # __setitem__, and _load / _store do ~50 of them per kernel call).
        nv = len(self.sims)
        self._vc, self.vcfg = _int64s(nv * K.VC_COLS)
        self.vcfg = self.vcfg.reshape(nv, K.VC_COLS)
        for v, name in enumerate(self.execution.venues):
            vc = self.execution.venue_cfg[name]
            row = self.vcfg[v]
            row[K.VC_ADD] = vc.price_offset_ticks * spec.tick
            row[K.VC_PCT] = vc.size_pct
            row[K.VC_STEP] = spec.step
            row[K.VC_SAME] = 1 if vc.price_offset_ticks == 0 and vc.size_pct == 100 else 0
        self._grow_rest(4)
        self._sv, self.sv = _int64s(K.SV_LEN)
        sv = self._sv
        sv[K.SV_TOUCH] = 1 if engine.fill_model == "touch" else 0
        sv[K.SV_INTERVAL] = engine.interval_ns
        sv[K.SV_MAX_GAP] = engine.max_clock_gap_ns
        spec = self.risk.symbols.get(self.symbol)
        d = self.risk.cfg.pnl_scale - (spec.notional_scale() if spec else self.risk.cfg.pnl_scale)
        sv[K.SV_R_MUL] = 10**d if d >= 0 else 1
        sv[K.SV_R_DIV] = 1 if d >= 0 else 10 ** (-d)
        self.lv = np.zeros((64, D.LV_COLS), dtype=np.int64)
        self.vlv = np.zeros((64, D.LV_COLS), dtype=np.int64)
        self._sym = self.symbol.encode()
        self._evs = np.zeros((CHUNK, K.RK_COLS), dtype=np.int64)
        self._flat = np.zeros(CHUNK * 8, dtype=np.int64)
        self.ready = False  # every core has its book of the symbol (see _rows)
        # (eng.seq, SV_SHARED, _load's resting orders) after a kernel call that ran to its end:
        # the next call reuses its inputs and shared books if nothing is sequenced before it.
        self._handoff: tuple[int, int, list[list[Resting]]] | None = None
        self.applied = 0  # events the kernel applied (the rest went through Engine._one)
        self.clocks = 0  # clocks it stamped

    @classmethod
    def build(cls, engine: Engine) -> tuple[MarketRun | None, str]:
        """The market run for this engine, or None and the reason it cannot cover it."""
        cores = engine.cores
        strategies = [c for c in cores.values() if isinstance(c, StrategyCore)]
        if len(strategies) != 1 or len(strategies[0].books) != 1:
            return None, "it covers one strategy instance on one symbol"
        if set(cores) != {strategies[0].name, "risk", "router", "execution"}:
            return None, f"it covers strategy, risk, router and execution, not {sorted(cores)}"
        ex = cores["execution"]
        if not isinstance(ex, ExecutionCore) or ex.live is not None or not ex.venues:
            return None, "it covers simulated venues only"
        if any(sim.feed_latency_ns for sim in ex.venues.values()):
            return None, "it covers execution.feed_latency_ms = 0 only"
        if not isinstance(cores["risk"], RiskCore) or cores["risk"].cfg.deadman_market_data:
            return None, "risk's market-data dead man's switch is on"
        spec = ex.symbols.get(next(iter(strategies[0].books)))
        for vc in (ex.venue_cfg[name] for name in ex.venues):
            add = vc.price_offset_ticks * (spec.tick if spec else 1)
            if spec is None or spec.step < 1 or abs(add) > 2**60 or vc.size_pct > 2**30:
                return None, f"venue {vc.name}'s transform leaves the kernel's int64 range"
        if not isinstance(cores["router"], RouterCore):
            return None, "the router core is not the mesh's"
        if engine.events is not None:
            return None, "every event is kept (keep_events)"
        if not all(hasattr(o, "market_run") for o in engine.observers):
            return None, "an observer needs every event"
        return cls(engine, strategies[0]), ""

    # ------------------------------------------------------------ encoding
    def _ready(self) -> bool:
        """Every core already has its book of the symbol (each makes it at the first book event)."""
        sym = self.symbol
        if sym not in self.risk.books or sym not in self.router.books:
            return False
        return all(sym in sim._books for sim in self.sims)

    def _encode(self, chunk: list[tuple[int, E._Body]]) -> tuple[np.ndarray, np.ndarray]:
        """The chunk as the kernel's rows: msgpack-encoded by msgspec, scanned by a kernel
        (K.scan_items), so no Python runs per item. The arrays are reused chunk to chunk."""
        try:
            buf = _ENC.encode(chunk)
        except _UNENCODABLE:
            # An int beyond msgpack's 64 bits (even in an id the kernel never reads), or a
            # value msgspec has no encoding for: that item is Engine._one's, as per event.
            buf = _ENC.encode([item if _encodes(item) else _UNSCANNED for item in chunk])
        return self._scan(buf, len(chunk))

    def _scan(self, buf: bytes, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows for n items msgpack-encoded in buf (an array of (event_ns, body))."""
        if n > self._evs.shape[0]:
            self._evs = np.zeros((max(n, 2 * self._evs.shape[0]), K.RK_COLS), dtype=np.int64)
        need = len(buf) // 8 + 2
        if need > self._flat.shape[0]:
            self._flat = np.zeros(max(need, 2 * self._flat.shape[0]), dtype=np.int64)
        self._room(K.scan_items(buf, self._sym, self._evs, self._flat))
        return self._evs, self._flat

    def _room(self, rows: int) -> None:
        """Level rows for a book event of that many rows."""
        if rows > len(self.lv):
            self.lv = np.zeros((max(rows, 2 * len(self.lv)), D.LV_COLS), dtype=np.int64)
            self.vlv = np.zeros_like(self.lv)

    # ------------------------------------------------------------ one chunk
    def chunk(self, chunk: list[tuple[int, E._Body]]) -> None:
        evs, flat = self._encode(chunk)
        self._rows(evs, flat, len(chunk), chunk)

    def chunk_raw(self, buf: bytes, decode: Callable[[bytes], list[tuple[int, E._Body]]]) -> int:
        """A batch already msgpack-encoded (Input.raw_batches); returns its item count.
        Its items are decoded only if some event of it goes through Python."""
        n = int(K._mp_len(buf, 0)[0])
        evs, flat = self._scan(buf, n)
        self._rows(evs, flat, n, _Lazy(buf, decode))
        return n

    def chunk_rows(self, batch: RowBatch) -> int:
        """A row batch (Input.row_batches): its rows as they are; returns its item count. Its
        items are made only if some event of it goes through Python."""
        evs = batch.rows
        if batch.symbol != self.symbol:  # another symbol's events: every one is Python's, as scanned
            evs = evs.copy()
            evs[:, K.RK_KIND] = K.RK_OTHER
        self._room(batch.most)
        self._rows(evs, batch.flat, batch.n, batch)  # (a batch makes item i when asked for it)
        return batch.n

    def _rows(self, evs: np.ndarray, flat: np.ndarray, n: int, chunk: _Items) -> None:
        eng = self.engine
        i = 0
        clocked = -1
        while i < n:
            if not self.ready or evs[i, K.RK_KIND] == K.RK_OTHER:
                eng._one(*chunk[i])
                i += 1
                # Until every core has its book of the symbol, every event goes through
                # Engine._one; asked after each, so where the kernel starts does not depend
                # on how the input was cut into chunks.
                if not self.ready:
                    self.ready = eng.seq > 0 and self._ready()
                continue
            handoff = self._handoff
            if handoff is not None and handoff[0] == eng.seq:
                # Nothing sequenced since the last call ran to its end: every input _load
                # would write is what that call left (the cores change only on a sequenced
                # event; what the kernel moved, _store wrote back), but for the venues' outputs.
                _, mask, rested = handoff
                self._sv[K.SV_SHARE_IN] = mask
                for v in range(len(self.sims)):
                    self._vc[v * K.VC_COLS + K.VC_MARKET] = self._vc[v * K.VC_COLS + K.VC_BAD] = 0
            else:
                rested = self._load()
                self._sv[K.SV_SHARE_IN] = 0
            sym = self.symbol
            j = K.market_run(
                evs, flat, i, n, self.sv, self.sb.state, self.sb.book, self.sb.params, self.lv, self.vlv,
                self.risk.books[sym].book, self.router.books[sym].book, tuple(s._books[sym].book for s in self.sims),
                self.vcfg,
                self.rest,
            )  # fmt: skip
            self._store(rested, j - i)
            stop = self._sv[K.SV_STOP]
            # Handed on only to a call before which no event is sequenced (see SV_SHARE_IN):
            # every change to a core, its books included, comes from one.
            self._handoff = (eng.seq, self._sv[K.SV_SHARED], rested) if stop == K.STOP_END else None
            if stop == K.STOP_ACT:
                self._act(chunk[j - 1], self._sv[K.SV_ACT])
            elif stop == K.STOP_CLOCK and j > clocked:
                # The clocks due before event j, as Engine._one sequences them; then the
                # kernel takes event j itself (once: should it stop there again, _one does).
                eng._clocks_before(int(evs[j, K.RK_TS]))
                clocked = j
            elif stop != K.STOP_END:
                eng._one(*chunk[j])
                j += 1
            i = j

    def unshare(self) -> None:
        """Hand no shared books or inputs to the next kernel call: between runs a core may
        change with no event sequenced (its state loaded, a tool's write)."""
        self._handoff = None

    def _grow_rest(self, cap: int) -> None:
        self.rest_cap = cap
        self._rs, rest = _int64s(len(self.sims) * cap * K.RS_COLS)
        self.rest = rest.reshape(len(self.sims), cap, K.RS_COLS)

    def _load(self) -> list[list[Resting]]:
        """The run's inputs: clocks, what each venue has in flight and at rest on the symbol."""
        eng, sv, risk, sym = self.engine, self._sv, self.risk, self.symbol
        # The strategy's fair-value sums the last call kept: dropped whenever Python may have
        # had the strategy's book (an event sequenced, or a state loaded between runs, which
        # can leave its update count where it was: see unshare).
        sv[K.SV_FV + FV_LEVELS] = 0
        sv[K.SV_CLOCK] = eng.clock_ns
        sv[K.SV_NEXT_CLOCK] = eng.next_clock
        day = risk.day
        sv[K.SV_DAY_END] = (day + 1) * DAY_NS if day >= 0 else 0
        sv[K.SV_CLOCK_DUE] = self._clock_due()
        strategy = self.strategy
        held = strategy.backoff.get(sym)
        # (an end beyond int64 holds for every time the kernel sees: it takes events <= 2**62)
        sv[K.SV_HELD_BID] = min(held[E.BUY][0], NEVER) if held and E.BUY in held else I64_MIN
        sv[K.SV_HELD_ASK] = min(held[E.SELL][0], NEVER) if held and E.SELL in held else I64_MIN
        sv[K.SV_NONE_LIVE] = 0 if strategy.live[sym] else 1
        tops = risk.tops.get(sym)
        sv[K.SV_TOPS] = sv[K.SV_TOPS + 1] = 0
        if tops:
            bid, ask = tops
            if 0 <= bid <= K.BIG and 0 <= ask <= K.BIG:  # as scan_items admits (_total_pnl refuses BIG)
                sv[K.SV_TOPS], sv[K.SV_TOPS + 1] = bid, ask
            else:  # a best bid/offer beyond int64's comfort: its clocks are Python's
                sv[K.SV_CLOCK_DUE] = I64_MIN
        self._load_pnl()
        rested = [[r for r in sim._resting.values() if r.symbol == sym] for sim in self.sims]
        most = max(len(mine) for mine in rested)
        if most > self.rest_cap:
            self._grow_rest(2 * most)
        vc, rs, cap = self._vc, self._rs, self.rest_cap
        for v, sim in enumerate(self.sims):
            row = v * K.VC_COLS
            inflight = sim._inflight
            vc[row + K.VC_DUE] = inflight[0][0] if inflight else NEVER
            vc[row + K.VC_MARKET] = vc[row + K.VC_BAD] = 0
            mine = rested[v]
            vc[row + K.VC_NREST] = len(mine)
            at = v * cap * K.RS_COLS
            for r in mine:
                rs[at + K.RS_SIDE] = D.SIDE_BID if r.side == E.BUY else D.SIDE_ASK
                rs[at + K.RS_PX] = r.price
                rs[at + K.RS_QA] = r.queue_ahead
                at += K.RS_COLS
        return rested

    def _clock_due(self) -> int:
        """The first clock time the kernel must leave to Python: a TWAP slice due, or (should
        risk's dead man's switch watch anything but market data it does not act on) every clock."""
        if any(not key.startswith("md:") for key in self.risk.last_seen):
            return I64_MIN
        due = NEVER
        for p in self.router.parents.values():
            pending = p["pending"]
            if pending and pending[0][0] < due:
                due = pending[0][0]
        return due

    def _load_pnl(self) -> None:
        """What risk's PnL check at a clock reads: the symbol's position, the rest of the book."""
        risk, sv, sym = self.risk, self._sv, self.symbol
        other = 0
        pos = real = cost = equity = 0
        for s, p in risk.account.positions.items():
            if s == sym:
                pos, real, cost, equity = p.position, p.net_realized(), p.cost, p.equity()
            else:
                other += risk._to_money(risk.native_pnl(s, p), s)
        kill_at = risk.kill_base + risk.cfg.max_loss
        vals = (pos, real, cost, equity, other, kill_at, risk.day_base, risk.day_peak, risk.cfg.drawdown_base)
        lim = K.PNL_LIM
        if min(vals) < -lim or max(vals) > lim:  # every clock is Python's (its ints are unbounded)
            sv[K.SV_CLOCK_DUE] = I64_MIN
            return
        sv[K.SV_R_POS], sv[K.SV_R_REAL], sv[K.SV_R_COST], sv[K.SV_R_EQUITY] = pos, real, cost, equity
        sv[K.SV_R_OTHER] = other
        sv[K.SV_R_KILL_AT] = I64_MIN if risk.kill else kill_at  # I64_MIN: below any total, already set
        sv[K.SV_R_DAY_BASE] = risk.day_base
        sv[K.SV_R_PEAK] = risk.day_peak
        sv[K.SV_R_DD_BASE] = risk.cfg.drawdown_base
        sv[K.SV_R_DD_BPS] = -1 if risk.breaker else risk.cfg.max_drawdown_bps

    def _store(self, rested: list[list[Resting]], done: int) -> None:
        """Write what the kernel did to `done` events back into the engine, cores and observers."""
        sv, eng, sym = self._sv, self.engine, self.symbol
        clocks = sv[K.SV_N_CLOCKS]
        if done == 0 and clocks == 0:
            return
        self.applied += done
        clock = sv[K.SV_CLOCK]
        eng.seq += done + clocks
        eng.lamport += done + clocks
        eng._src["feed"] += done
        eng.clock_ns = clock
        counts = {t: sv[K.SV_N_KIND + k] for k, t in _KIND_TYPE.items() if sv[K.SV_N_KIND + k]}
        if clocks:
            self.clocks += clocks
            eng._src["sequencer"] += clocks
            eng.info.clocks += clocks
            eng.next_clock = sv[K.SV_NEXT_CLOCK]
            self.risk.day_peak = sv[K.SV_R_PEAK]
            counts[E.Clock] = clocks
        for obs in eng.observers:
            obs.market_run(counts, clock)  # type: ignore[attr-defined]
        if sv[K.SV_N_HELD]:
            self.strategy.count_held_back(sv[K.SV_N_HELD])
        risk, router = self.risk, self.router
        if clock > risk.now_ns:
            risk.now_ns = clock
        if sv[K.SV_TOPS_MOVED]:
            risk.tops[sym] = [sv[K.SV_TOPS], sv[K.SV_TOPS + 1]]
        if sv[K.SV_N_KIND + K.RK_TRADE]:
            risk._seen(f"md:{sym}", sv[K.SV_TRADE_NS])
        if sv[K.SV_RISK_BAD]:
            risk._count("book_rows_rejected", sv[K.SV_RISK_BAD])
        if clock > router.now_ns:
            router.now_ns = clock
        if sv[K.SV_BBO + 4]:
            router.bbo[sym] = sv[K.SV_BBO : K.SV_BBO + 4].tolist()
        if sv[K.SV_ROUTER_BAD]:
            router._count("book_rows_rejected", sv[K.SV_ROUTER_BAD])
        vc, rs, cap = self._vc, self._rs, self.rest_cap
        for v, sim in enumerate(self.sims):
            if clock > sim.now_ns:
                sim.now_ns = clock
            row = v * K.VC_COLS
            m = vc[row + K.VC_MARKET]
            if m:
                sim.counters["market"] += m
                sim._next_no += m
            bad = vc[row + K.VC_BAD]
            if bad:
                sim.counters["book_rows_rejected"] = sim.counters.get("book_rows_rejected", 0) + bad
            at = v * cap * K.RS_COLS + K.RS_QA
            for r in rested[v]:
                r.queue_ahead = rs[at]
                at += K.RS_COLS

    def _act(self, item: tuple[int, E._Body], act: int) -> None:
        """The strategy acted on the last event applied: its orders, as StrategyCore.apply makes them."""
        eng = self.engine
        event_ns, body = item
        ev = E.Sequenced(
            E.CODEC_VERSION, eng.seq, 1, eng.lamport, "feed", eng._src["feed"], "", event_ns, eng.clock_ns, body
        )
        outs = self.strategy._act(ev, self.symbol, self.sb, act)
        if outs:
            name = self.strategy.name
            eng.info.outputs[name] += len(outs)
            for o in outs:
                eng._pending.append((name, o.key, o.event_ns, o.body))
            eng._drain()


class _Lazy:
    """A raw batch's items, decoded on first use (a batch the kernel takes whole never is)."""

    __slots__ = ("buf", "decode", "items")

    def __init__(self, buf: bytes, decode: Callable[[bytes], list[tuple[int, E._Body]]]) -> None:
        self.buf = buf
        self.decode = decode
        self.items: list[tuple[int, E._Body]] | None = None

    def __getitem__(self, i: int) -> tuple[int, E._Body]:
        if self.items is None:
            self.items = self.decode(self.buf)
        return self.items[i]


_Items = list[tuple[int, E._Body]] | _Lazy | RowBatch


def run_raw(
    market: MarketRun, batches: Iterable[bytes], decode: Callable[[bytes], list[tuple[int, E._Body]]], progress: object
) -> int:
    """Feed msgpack-encoded batches through the market run; returns how many items they held."""
    n = 0
    market.unshare()
    for buf in batches:
        n += market.chunk_raw(buf, decode)
        if progress is not None:
            progress.update(n)  # type: ignore[attr-defined]
    return n


def run_rows(market: MarketRun, batches: Iterable[RowBatch], progress: object) -> int:
    """Feed row batches through the market run; returns how many items they held."""
    n = 0
    market.unshare()
    for batch in batches:
        n += market.chunk_rows(batch)
        if progress is not None:
            progress.update(n)  # type: ignore[attr-defined]
    return n


def run(market: MarketRun, items: Iterable[tuple[int, E._Body]], progress: object) -> int:
    """Feed `items` through the market run in chunks; returns how many there were."""
    it = iter(items)
    n = 0
    market.unshare()
    while True:
        chunk = list(itertools.islice(it, CHUNK))
        if not chunk:
            return n
        market.chunk(chunk)
        n += len(chunk)
        if progress is not None:
            progress.update(n)  # type: ignore[attr-defined]
