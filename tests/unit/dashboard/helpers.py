"""Sequenced-event builders for the dashboard tests (no sockets)."""

from __future__ import annotations

from common import events as E
from common.dashboard_config import DashboardConfig
from common.metrics import Metrics
from common.units import BUILTIN
from services.dashboard.state import DashboardState

T0 = 1_800_000_000_000_000_000
MS = 1_000_000


class Stream:
    def __init__(self) -> None:
        self.seq = 0

    def ev(
        self, body: E._Body, t: int, source: str = "test", key: str = "", event_ns: int | None = None
    ) -> E.Sequenced:
        self.seq += 1
        return E.Sequenced(
            E.CODEC_VERSION, self.seq, 1, self.seq, source, self.seq, key, t if event_ns is None else event_ns, t, body
        )


def new_state(**settings: object) -> DashboardState:
    return DashboardState(DashboardConfig(**settings), BUILTIN)  # type: ignore[arg-type]


def levels(base: int, n: int, step: int) -> bytes:
    return E.pack_levels([(base + i * step, 1000 * (i + 1)) for i in range(n)])


def heartbeat(service: str, state: str, last_seq: int, **counters: int) -> E.Heartbeat:
    return E.Heartbeat(service, state, last_seq, dict(counters))


def heartbeat_with_latency(service: str, stage: str, values: list[int], last_seq: int = 0) -> E.Heartbeat:
    m = Metrics()
    for v in values:
        m.record(stage, v)
    return E.Heartbeat(service, "live", last_seq, {"events": 1, **m.snapshot()})
