"""Latency histograms and counters cheap enough to leave on in every service.

`Histogram` is log-linear (HDR-like) over integer nanoseconds: values below 64
have a bucket each; above that, every power of two is split into 32 equal
buckets, so a bucket is at most 1/32 (3.1 %) of its values wide and a
percentile reported from the buckets is within one bucket -- within ~3 % --
of the exact one. `record()` is a handful of integer operations on a
preallocated list (~0.3 us from Python on a loaded 2-core box, see
tests/unit/metrics); every value below 2**64 has a bucket (1920 in all);
the sum and the max are exact.

Heartbeats carry a histogram as plain ints, so it rides in
`Heartbeat.counters` (dict[str, int]) with no codec change:

    lat.<stage>.n        samples in the snapshot
    lat.<stage>.sum_ns   their sum
    lat.<stage>.max_ns   the largest (exact)
    lat.<stage>.p50_ns / p90_ns / p99_ns / p999_ns   for a human reading --tail
    lat.<stage>.b<i>     count of bucket i (only non-zero buckets)

`snapshot(reset=True)` is an interval histogram (what happened since the last
heartbeat): a reader merges the intervals it wants (`Histogram.merge`,
`merge_snapshots`) -- percentiles of merged buckets are exact to the bucket,
unlike averaging percentiles. `decode(counters)` reads them back.

A `Metrics` registry is one service's histograms (by stage) and counters;
`METRICS` is the process-wide one. Nothing here is thread-safe or reentrant
by design (one service loop per process): that is what keeps it cheap.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

SUB_BITS = 5
SUB = 1 << SUB_BITS  # buckets per power of two above the linear range
LINEAR = 2 * SUB  # values 0..63 have a bucket each
_SHIFT_BIAS = SUB_BITS + 1
N_BUCKETS = ((64 - _SHIFT_BIAS) << SUB_BITS) + 2 * SUB  # 1920: every value below 2**64 has a bucket

# The pipeline's stages (the seed's ten, with the sequencer's `sequencing` in
# place of its in-process `ring_enqueue`, plus tick_to_order).
STAGES = (
    "feed_recv",  # feed: socket/file read of one raw message -> bytes in hand
    "feed_normalize",  # feed: raw message -> normalized event(s)
    "sequencing",  # sequencer: ingest frame received -> published (per event)
    "strategy_compute",  # strategy: StrategyCore.apply of one market event
    "risk_check",  # risk: RiskCore.apply of one OrderIntent
    "order_submit",  # execution: venue submit call of one child order
    "order_to_ack",  # execution: submit -> venue ack (venue time or local clock)
    "order_to_fill",  # execution: submit -> first fill
    "event_processing",  # any core service: decode + core.apply + emit, per event
    "state_hash",  # any core service: canonical encode + xxh3 of the state
    "tick_to_order",  # market event recv_ns -> recv_ns of the intent it caused
)
PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p999", 99.9))
PREFIX = "lat."
INT64_MAX = (1 << 63) - 1


def bucket_of(v: int) -> int:
    """Bucket index of an integer value (values < 0 count as 0; v < 2**64)."""
    if v < 0:
        v = 0
    s = v.bit_length() - _SHIFT_BIAS
    return (s << SUB_BITS) + (v >> s) if s > 0 else v


def bucket_bounds(i: int) -> tuple[int, int]:
    """[lo, hi) of bucket i."""
    if i < LINEAR:
        return i, i + 1
    s = (i >> SUB_BITS) - 1
    m = SUB + (i & (SUB - 1))
    return m << s, (m + 1) << s


class Histogram:
    """Counts per bucket, the exact sum and the exact max. The sample count and
    the min are read from the buckets (`n`, `min`), so `record` stays minimal."""

    __slots__ = ("counts", "total", "max")

    def __init__(self) -> None:
        self.counts = [0] * N_BUCKETS
        self.total = 0
        self.max = 0

    def record(self, v: int) -> None:
        """Add one value (integer ns, 0 <= v < 2**64). `bucket_of` inlined: this is the hot call."""
        if v < 0:
            v = 0
        s = v.bit_length() - _SHIFT_BIAS
        self.counts[(s << SUB_BITS) + (v >> s) if s > 0 else v] += 1
        self.total += v
        if v > self.max:
            self.max = v

    @property
    def n(self) -> int:
        return sum(self.counts)

    @property
    def min(self) -> int:
        """Lower bound of the lowest occupied bucket (exact below 64)."""
        for i, c in enumerate(self.counts):
            if c:
                return bucket_bounds(i)[0]
        return 0

    def timer(self) -> StageTimer:
        return StageTimer(self)

    # ------------------------------------------------------------ reading
    def percentile(self, q: float) -> int:
        """The q-th percentile (0..100), nearest rank, reported as the middle of
        its bucket (clamped to the exact max). 0 when empty."""
        return self._percentiles((q,))[0]

    def _percentiles(self, qs: tuple[float, ...]) -> list[int]:
        n = self.n
        if n == 0:
            return [0] * len(qs)
        # nearest rank = ceil(q/100 * n), in integer arithmetic (q to 1/1000)
        ranks = [max(1, -(-round(q * 1000) * n // 100_000)) for q in qs]
        out: list[int] = [self.max] * len(qs)
        order = sorted(range(len(qs)), key=lambda k: ranks[k])
        j, seen = 0, 0
        for i, c in enumerate(self.counts):
            if not c:
                continue
            seen += c
            while j < len(order) and ranks[order[j]] <= seen:
                lo, hi = bucket_bounds(i)
                out[order[j]] = min(lo + (hi - lo - 1) // 2, self.max)
                j += 1
            if j == len(order):
                break
        return out

    def percentiles(self) -> dict[str, int]:
        values = self._percentiles(tuple(q for _, q in PERCENTILES))
        return dict(zip((name for name, _ in PERCENTILES), values, strict=True))

    def mean(self) -> int:
        n = self.n
        return self.total // n if n else 0

    def summary(self) -> dict[str, int]:
        out = {"n": self.n, "mean_ns": self.mean(), "max_ns": self.max}
        out.update({f"{k}_ns": v for k, v in self.percentiles().items()})
        return out

    # ------------------------------------------------------------ combining
    def merge(self, other: Histogram) -> Histogram:
        """Add other's samples into self (exact: buckets add)."""
        mine = self.counts
        for i, c in enumerate(other.counts):
            if c:
                mine[i] += c
        self.total += other.total
        if other.max > self.max:
            self.max = other.max
        return self

    def reset(self) -> None:
        self.counts = [0] * N_BUCKETS
        self.total = self.max = 0

    def copy(self) -> Histogram:
        h = Histogram()
        h.counts = list(self.counts)
        h.total, h.max = self.total, self.max
        return h

    # ------------------------------------------------------------ wire form
    def encode(self, stage: str, with_buckets: bool = True) -> dict[str, int]:
        """This histogram as heartbeat counters under `lat.<stage>.`."""
        p = f"{PREFIX}{stage}."
        # msgpack ints stop at 2**64: clamp (a second of real latencies is nowhere near)
        out = {p + "n": self.n, p + "sum_ns": min(self.total, INT64_MAX), p + "max_ns": min(self.max, INT64_MAX)}
        for name, v in self.percentiles().items():
            out[f"{p}{name}_ns"] = min(v, INT64_MAX)
        if with_buckets:
            for i, c in enumerate(self.counts):
                if c:
                    out[f"{p}b{i}"] = c
        return out

    @classmethod
    def from_buckets(cls, buckets: Mapping[int, int], total: int, vmax: int) -> Histogram:
        h = cls()
        for i, c in buckets.items():
            if 0 <= i < N_BUCKETS and c > 0:
                h.counts[i] += c
        h.total, h.max = total, vmax
        return h


class StageTimer:
    """`with timer:` records the block's duration (perf_counter_ns) into a histogram.

    Reusable (keep one per stage) but not reentrant: each `with` overwrites
    the start time. For the very hottest paths, take two perf_counter_ns()
    readings and call `hist.record(t1 - t0)` directly (one call instead of two).
    """

    __slots__ = ("hist", "t0")

    def __init__(self, hist: Histogram) -> None:
        self.hist = hist
        self.t0 = 0

    def __enter__(self) -> StageTimer:
        self.t0 = time.perf_counter_ns()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.hist.record(time.perf_counter_ns() - self.t0)


class Metrics:
    """One process's stage histograms and counters, snapshot into heartbeat counters."""

    def __init__(self, with_buckets: bool = True) -> None:
        self.stages: dict[str, Histogram] = {}
        self.timers: dict[str, StageTimer] = {}
        self.counters: dict[str, int] = {}
        self.with_buckets = with_buckets

    def stage(self, name: str) -> Histogram:
        h = self.stages.get(name)
        if h is None:
            h = self.stages[name] = Histogram()
            self.timers[name] = StageTimer(h)
        return h

    def timer(self, name: str) -> StageTimer:
        """The reusable `with` timer of a stage: `with METRICS.timer("risk_check"): ...`."""
        self.stage(name)
        return self.timers[name]

    def record(self, name: str, ns: int) -> None:
        self.stage(name).record(ns)

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def snapshot(self, reset: bool = True) -> dict[str, int]:
        """Counters (cumulative) + every stage's histogram (interval when reset=True)."""
        out = dict(self.counters)
        for name, h in self.stages.items():
            if h.n:
                out.update(h.encode(name, self.with_buckets))
                if reset:
                    h.reset()
        return out


METRICS = Metrics()


def decode(counters: Mapping[str, int]) -> dict[str, Histogram]:
    """The histograms in a heartbeat's counters, by stage.

    A stage with bucket keys decodes exactly; one with only the summary keys
    (an encoder that dropped buckets) decodes to a histogram whose samples sit
    at the reported percentiles, which keeps those percentiles right.
    """
    found: dict[str, dict[str, int]] = {}
    for key, value in counters.items():
        if not key.startswith(PREFIX):
            continue
        stage, _, field = key[len(PREFIX) :].rpartition(".")
        if stage:
            found.setdefault(stage, {})[field] = int(value)
    out: dict[str, Histogram] = {}
    for stage, f in found.items():
        n = f.get("n", 0)
        if n <= 0:
            continue
        buckets = {int(k[1:]): v for k, v in f.items() if k[:1] == "b" and k[1:].isdigit()}
        if buckets:
            out[stage] = Histogram.from_buckets(buckets, f.get("sum_ns", 0), f.get("max_ns", 0))
        else:
            out[stage] = _from_summary(f, n)
    return out


def _from_summary(f: Mapping[str, int], n: int) -> Histogram:
    h = Histogram()
    marks = [
        (50.0, f.get("p50_ns", 0)),
        (90.0, f.get("p90_ns", 0)),
        (99.0, f.get("p99_ns", 0)),
        (99.9, f.get("p999_ns", 0)),
    ]
    done, prev_q = 0, 0.0
    for q, v in marks:
        k = int(round(n * (q - prev_q) / 100))
        if k:
            h.counts[bucket_of(v)] += k
            done += k
        prev_q = q
    if n - done > 0:
        h.counts[bucket_of(f.get("max_ns", 0))] += n - done
    h.total, h.max = f.get("sum_ns", 0), f.get("max_ns", 0)
    return h


def merge_snapshots(snapshots: Iterable[Mapping[str, int]]) -> dict[str, Histogram]:
    """Merge the histograms of several heartbeat snapshots (intervals, or services), by stage."""
    out: dict[str, Histogram] = {}
    for snap in snapshots:
        for stage, h in decode(snap).items():
            if stage in out:
                out[stage].merge(h)
            else:
                out[stage] = h
    return out
