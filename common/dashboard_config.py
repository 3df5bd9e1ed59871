"""The dashboard's settings: the `[dashboard]` section of the mesh config.

`--host` / `--port` on the command line override host and port.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def _range(lo: float | None = None, hi: float | None = None) -> dict[str, Any]:
    return {"lo": lo, "hi": hi}  # the metadata shape common.config checks


@dataclass(frozen=True)
class DashboardConfig:
    host: str = "127.0.0.1"  # loopback only unless --allow-remote
    port: int = field(default=3000, metadata=_range(1, 65535))
    push_interval_ms: int = field(default=250, metadata=_range(50, 10_000))  # websocket updates (4/s)
    backfill: int = field(default=5000, metadata=_range(0))  # events before the head to start from
    replay_max: int = field(default=50_000, metadata=_range(0))  # replay this far to make the inspector exact
    events_kept: int = field(default=200, metadata=_range(10, 10_000))  # event stream panel
    orders_kept: int = field(default=50, metadata=_range(1, 10_000))  # orders table rows
    down_after_ms: int = field(
        default=3000, metadata=_range(100)
    )  # no heartbeat for this long (sequencer clock) = down
    latency_window_s: int = field(default=10, metadata=_range(1, 3600))  # percentiles over this much sequencer time
    book_depth: int = field(default=20, metadata=_range(1, 1000))

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("host must not be empty")


def settings_of(cfg: object) -> DashboardConfig:
    """The `[dashboard]` section of a MeshConfig when it has one, else the defaults."""
    found = getattr(cfg, "dashboard", None)
    return found if found is not None else DashboardConfig()  # type: ignore[no-any-return]
