"""The in-process loop: the mesh's own cores behind an in-process sequencer, no sockets.

`Engine.run(items)` takes market events `(event_ns, body)` in order and
does, in one process, what the live mesh does across processes:

* The cores are `services.verifier.core.build_cores(cfg)` -- the very
  StrategyCore, RiskCore, RouterCore and ExecutionCore (one SimExchange per
  router venue) the services and the verifier run. Nothing here decides,
  quotes or matches; there is no second implementation to drift.
* An in-process sequencer stamps every input and every core output with the
  next seq (epoch 1, gap-free from 1, a Lamport counter, source = the
  producer's name, the output's idempotency key) and delivers each sequenced
  event to every core in seq order, exactly as the PUB stream does. Cores
  are applied in pipeline order (strategy, risk, router, execution); the
  outputs of one event are sequenced in that order, before the next input
  (orders never wait behind market data, as in the live sequencer's drain
  priority), and whatever those outputs cause is sequenced next, until
  nothing is pending.
* Time. The sequencer's clock (`recv_ns`) is the data's own time: a market
  event is stamped at its event_ns, a core output at the event_ns its core
  gave it, and the clock never runs backwards (a stamp below the clock takes
  the clock: the live sequencer's receive time is monotonic too; captures
  mix the exchange's E/T times with the local receive time of REST
  snapshots and bookTicker lines). Every rule in risk, router and execution
  reads recv_ns; the strategy kernels read event_ns -- as live.
* A `Clock` event is sequenced at every multiple of
  `sequencer.clock_interval_ms` (100 ms) of data time that the clock passes,
  before the event that passes it, so TWAP slices, the daily reset and risk's
  PnL checks see time pass. A data gap longer than `MAX_CLOCK_GAP_NS` gets
  clocks for its first ten minutes and then one at its end (counted as
  `clock_gaps`), not millions of idle ticks.
* No heartbeats exist in a backtest, so risk's dead man's switch is switched
  off (`backtest_config`: no watched services, no market-data watch): it
  guards a live process against a silent peer, which one loop cannot have.
* Quiet market events and quiet clocks (no core answers them) go through
  `fastpath.MarketRun`: one numba call applies a run of them to every core's
  arrays and the counters are written back, so states and hashes are what
  `_one` (every event through every core's `apply`) gives; every other event
  goes through `_one`. `market_run=False` (the CLI's `--per-event`) runs
  everything through `_one`.
"""

from __future__ import annotations

import collections
import dataclasses
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from common import config as config_mod
from common import events as E
from common.config import MeshConfig
from common.core import Core, state_hash
from common.hotpath import _numba_cache
from common.hotpath.rowbatch import RowBatch
from services.backtest import fastpath
from services.execution.core import ExecutionCore
from services.execution.simexchange import FILL_MODELS, SimExchange
from services.verifier.core import build_cores

EPOCH = 1
FEED = "feed"
SEQUENCER = "sequencer"
MAX_CLOCK_GAP_NS = 600 * 10**9  # clocks for at most 10 min of a data gap, then one at its end

Observer = Callable[[E.Sequenced], None]


def backtest_config(cfg: MeshConfig) -> MeshConfig:
    """The mesh config as a backtest runs it: dead man's switch off (there are no heartbeats)."""
    return config_mod.replace(cfg, "risk", deadman_services=[], deadman_market_data=False)


def set_fill_model(core: ExecutionCore, fill_model: str) -> None:
    """Rebuild the execution core's sim venues with `fill_model` (same fees, latencies, names)."""
    if fill_model not in FILL_MODELS:
        raise ValueError(f"fill model must be one of {', '.join(FILL_MODELS)}, got {fill_model!r}")
    core.venues = {
        name: SimExchange(
            sim.venue, sim.symbols, sim.maker_fee_bps, sim.taker_fee_bps, sim.order_latency_ns,
            sim.feed_latency_ns, sim.cancel_latency_ns, fill_model=fill_model,
        )  # fmt: skip
        for name, sim in core.venues.items()
    }


_warm = False


def warm_up() -> None:
    """Load the numba kernels once per process (from numba's cache, or compile), outside any timing."""
    global _warm
    if _warm:
        return
    if not _numba_cache.has_compiled("market_run._run"):  # else a silent pause of a minute or two
        print("compiling the backtest's numba kernels into numba's cache (the first run after an install or a "
              "change to common/hotpath: about 90 s on 2 cores; later runs load them in about a second) ...",
              file=sys.stderr, flush=True)  # fmt: skip
    from common.units import BUILTIN
    from services.feed.synthetic import SyntheticMarket

    market = SyntheticMarket(1, "BTCUSDT", 20, BUILTIN["BTCUSDT"]).items()
    eng = Engine(config_mod.from_dict({}), fill_model="touch")
    eng.run(next(market) for _ in range(600))
    # The synthetic market's row batches too: a read-ahead child forked after this has the
    # generator's row kernel loaded already, instead of loading it inside the clock.
    rows = SyntheticMarket(1, "BTCUSDT", 20, BUILTIN["BTCUSDT"]).row_batches(600)
    Engine(config_mod.from_dict({}), fill_model="touch").run_rows(map(RowBatch, rows))
    _warm = True


class Progress:
    """A one-line progress bar on stderr, shown only on a TTY and only once a run passes 1 s."""

    def __init__(self, total: int | None, stream: Any = None, enabled: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.total = total
        self.t0 = time.perf_counter()
        self.last = self.t0
        self.shown = False

    def update(self, n: int) -> None:
        now = time.perf_counter()
        if not self.enabled or now - self.last < 0.2 or now - self.t0 < 1.0:
            return
        self.last = now
        self.shown = True
        rate = n / (now - self.t0)
        if self.total:
            frac = min(1.0, n / self.total)
            bar = "#" * int(frac * 30)
            msg = f"\r[{bar:<30}] {frac:6.1%} {n:,}/{self.total:,} events {rate:,.0f}/s"
        else:
            msg = f"\r{n:,} events {rate:,.0f}/s"
        self.stream.write(msg)
        self.stream.flush()

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


@dataclasses.dataclass
class RunInfo:
    inputs: int = 0  # market events sequenced
    sequenced: int = 0  # every event sequenced (inputs, outputs, clocks, the epoch)
    clocks: int = 0
    clock_gaps: int = 0
    outputs: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)  # by producer
    wall_s: float = 0.0
    first_ns: int = 0
    last_ns: int = 0


class Engine:
    """The mesh's cores, one in-process sequencer, one loop."""

    def __init__(
        self,
        cfg: MeshConfig,
        fill_model: str = "queue",
        observers: Iterable[Observer] = (),
        keep_events: bool = False,
        market_run: bool = True,
    ) -> None:
        self.cfg = backtest_config(cfg)
        self.fill_model = fill_model
        built = build_cores(self.cfg)
        self.cores: dict[str, Core] = {name: core for name, (core, _every) in built.items()}
        execution = self.cores["execution"]
        assert isinstance(execution, ExecutionCore)
        set_fill_model(execution, fill_model)
        self._apply = [(name, core.apply) for name, core in self.cores.items()]
        self.observers = list(observers)
        self.events: list[E.Sequenced] | None = [] if keep_events else None
        self.info = RunInfo()
        self.seq = 0
        self.lamport = 0
        self.clock_ns = 0
        self.interval_ns = self.cfg.sequencer.clock_interval_ms * 1_000_000
        self.max_clock_gap_ns = MAX_CLOCK_GAP_NS
        self.next_clock = 0
        self._src: dict[str, int] = collections.defaultdict(int)
        self._pending: collections.deque[tuple[str, str, int, E._Body]] = collections.deque()
        # Quiet market events through every core in one kernel call (fastpath.py), where it
        # covers the configuration; `why_per_event` says why not, or that it was switched off.
        self.market: fastpath.MarketRun | None = None
        self.why_per_event = "switched off (--per-event)"
        if market_run:
            self.market, self.why_per_event = fastpath.MarketRun.build(self)

    # ------------------------------------------------------------ the sequencer
    def _sequence(self, source: str, key: str, event_ns: int, body: E._Body) -> None:
        if event_ns > self.clock_ns:
            self.clock_ns = event_ns
        self.seq += 1
        self.lamport += 1
        src_seq = self._src[source] = self._src[source] + 1
        ev = E.Sequenced(
            E.CODEC_VERSION, self.seq, EPOCH, self.lamport, source, src_seq, key, event_ns, self.clock_ns, body
        )
        if self.events is not None:
            self.events.append(ev)
        for obs in self.observers:
            obs(ev)
        pending = self._pending
        for name, apply in self._apply:
            outs = apply(ev)
            if outs:
                self.info.outputs[name] += len(outs)
                for o in outs:
                    pending.append((name, o.key, o.event_ns, o.body))

    def _drain(self) -> None:
        pending = self._pending
        while pending:
            self._sequence(*pending.popleft())

    def _clock(self, t: int) -> None:
        own = self._src[SEQUENCER] + 1
        self._sequence(SEQUENCER, f"{SEQUENCER}:{EPOCH}:{own}", t, E.Clock(self.seq))
        self.info.clocks += 1
        self._drain()

    def _clocks_until(self, t: int) -> None:
        """Sequence the Clock events due at or before data time t."""
        iv = self.interval_ns
        if t < self.next_clock:
            return
        if t - self.next_clock > self.max_clock_gap_ns:
            stop = self.next_clock + self.max_clock_gap_ns
            while self.next_clock <= stop:
                self._clock(self.next_clock)
                self.next_clock += iv
            self.info.clock_gaps += 1
            self.next_clock = t // iv * iv
        while self.next_clock <= t:
            self._clock(self.next_clock)
            self.next_clock += iv

    def _clocks_before(self, event_ns: int) -> None:
        """The Clock events due before a market event at event_ns is sequenced."""
        t = event_ns if event_ns > self.clock_ns else self.clock_ns
        if t >= self.next_clock:
            self._clocks_until(t)

    def start(self, t: int) -> None:
        """The sequencer's epoch event, first of every run (as live)."""
        self.clock_ns = t
        self.next_clock = (t // self.interval_ns + 1) * self.interval_ns
        self.info.first_ns = t
        own = self._src[SEQUENCER] + 1
        self._sequence(SEQUENCER, f"{SEQUENCER}:{EPOCH}:{own}", t, E.SequencerEpoch(EPOCH, 1, {}))
        self._drain()

    # ------------------------------------------------------------ the loop
    def run(self, items: Iterable[tuple[int, E._Body]], progress: Progress | None = None) -> RunInfo:
        t0 = time.perf_counter()
        if self.market is not None:
            n = fastpath.run(self.market, items, progress)
        else:
            n = 0
            one = self._one
            for event_ns, body in items:
                one(event_ns, body)
                n += 1
                if progress is not None and not n & 1023:
                    progress.update(n)
        return self._ran(n, t0, progress)

    def run_raw(
        self,
        batches: Iterable[bytes],
        decode: Callable[[bytes], list[tuple[int, E._Body]]],
        progress: Progress | None = None,
    ) -> RunInfo:
        """As run(), over msgpack-encoded batches of items (Input.raw_batches): the
        market run scans them undecoded; without one, each batch is decoded and run per event."""
        if self.market is None:
            return self.run((item for buf in batches for item in decode(buf)), progress)
        t0 = time.perf_counter()
        return self._ran(fastpath.run_raw(self.market, batches, decode, progress), t0, progress)

    def run_rows(self, batches: Iterable[RowBatch], progress: Progress | None = None) -> RunInfo:
        """As run(), over row batches (Input.row_batches): the market run takes their rows
        as they are; without one, each batch's items are made and run per event."""
        if self.market is None:
            return self.run((item for b in batches for item in b.items()), progress)
        t0 = time.perf_counter()
        return self._ran(fastpath.run_rows(self.market, batches, progress), t0, progress)

    def _ran(self, n: int, t0: float, progress: Progress | None) -> RunInfo:
        self.info.inputs += n
        self.info.sequenced = self.seq
        self.info.last_ns = self.clock_ns
        self.info.wall_s += time.perf_counter() - t0
        if progress is not None:
            progress.close()
        return self.info

    def _one(self, event_ns: int, body: E._Body) -> None:
        """One market event through the sequencer and every core, and all it causes."""
        if self.seq == 0:
            self.start(event_ns)
        self._clocks_before(event_ns)
        self._sequence(FEED, "", event_ns, body)
        if self._pending:
            self._drain()

    # ------------------------------------------------------------ results
    def hashes(self) -> dict[str, str]:
        return {name: f"{state_hash(core.state()):016x}" for name, core in sorted(self.cores.items())}

    @property
    def execution(self) -> ExecutionCore:
        core = self.cores["execution"]
        assert isinstance(core, ExecutionCore)
        return core

    @property
    def strategy(self) -> Any:
        return self.cores[self.cfg.strategy.name]

    @property
    def risk(self) -> Any:
        return self.cores["risk"]
