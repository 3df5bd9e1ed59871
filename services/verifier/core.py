"""Replay: the stateful cores of the mesh driven in-process, no sockets.

`Replayer.apply(ev)` feeds one sequenced event to every core, exactly as the
live services do (each live service sees every event of the stream, in seq
order). At every seq that is a multiple of the hash interval it records each
core's state hash -- the same points at which the live shells publish theirs
-- and when a published `StateHash` arrives it compares the two.

The cores' outputs are discarded: what they emitted live is already in the
stream, and it is the stream that is being replayed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from common import events
from common.config import MeshConfig
from common.core import Core, state_hash
from common.units import load_symbols
from services.execution.core import ExecutionCore
from services.risk.core import RiskCore
from services.router.core import RouterCore
from services.strategy.core import StrategyCore


def build_cores(cfg: MeshConfig) -> dict[str, tuple[Core, int]]:
    """Every stateful service core with its hash interval, keyed by service name."""
    symbols = load_symbols(cfg.symbols.exchange_info)
    strategies = {sc.name: (StrategyCore(sc, symbols), sc.hash_every) for sc in cfg.strategy.all_instances()}
    return {
        **strategies,  # type: ignore[dict-item]
        "risk": (RiskCore(cfg.risk, symbols), cfg.risk.hash_every),
        "router": (RouterCore(cfg.router, symbols), cfg.router.hash_every),
        "execution": (ExecutionCore(cfg.execution, cfg.router, symbols), cfg.execution.hash_every),
    }


@dataclass
class Divergence:
    service: str
    seq: int
    expected: int
    published: int

    def as_dict(self) -> dict[str, object]:
        return {
            "service": self.service,
            "seq": self.seq,
            "expected": f"{self.expected:016x}",
            "published": f"{self.published:016x}",
        }


@dataclass
class Replayer:
    cores: dict[str, tuple[Core, int]]
    events: int = 0
    last_seq: int = 0
    checked: int = 0
    unverifiable: int = 0
    divergences: list[Divergence] = field(default_factory=list)
    # (service, seq) -> our hash, kept until the published one arrives.
    _ours: dict[tuple[str, int], int] = field(default_factory=dict)
    first_seq: int = 0

    def apply(self, ev: events.Sequenced) -> Divergence | None:
        if not self.first_seq:
            self.first_seq = ev.seq
        for name, (core, every) in self.cores.items():
            core.apply(ev)
            if ev.seq % every == 0:
                self._ours[(name, ev.seq)] = state_hash(core.state())
        self.events += 1
        self.last_seq = ev.seq
        body = ev.body
        if isinstance(body, events.StateHash) and body.service in self.cores:
            ours = self._ours.pop((body.service, body.covers_seq), None)
            if ours is None:
                # Published for a point before this replay started (we began mid-stream).
                self.unverifiable += 1
                return None
            self.checked += 1
            if ours != body.hash:
                d = Divergence(body.service, body.covers_seq, ours, body.hash)
                self.divergences.append(d)
                return d
        if len(self._ours) > 10_000:  # hashes nobody published (service down): forget the oldest
            for key in sorted(self._ours, key=lambda k: k[1])[:5_000]:
                del self._ours[key]
        return None

    def state(self) -> dict[str, object]:
        """Everything a restart needs: each core's state and the hashes still waiting for their publication."""
        return {
            "cores": {name: core.state() for name, (core, _every) in sorted(self.cores.items())},
            "ours": [[name, seq, h] for (name, seq), h in sorted(self._ours.items())],
            "counts": [self.events, self.last_seq, self.checked, self.unverifiable, self.first_seq],
        }

    def load_state(self, st: dict[str, Any]) -> None:
        for name, core_state in st["cores"].items():
            if name in self.cores:
                self.cores[name][0].load_state(core_state)
        self._ours = {(str(name), int(seq)): int(h) for name, seq, h in st["ours"]}
        self.events, self.last_seq, self.checked, self.unverifiable, self.first_seq = (int(x) for x in st["counts"])

    def hashes(self) -> dict[str, str]:
        return {name: f"{state_hash(core.state()):016x}" for name, (core, _every) in sorted(self.cores.items())}
