"""Where the real captured market data is: ../shared/data beside the repo (as CI lays it out),
else /work/shared/data, else $ATOMIC_MESH_SHARED_DATA. Tests skip when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]


def shared_data() -> Path:
    env = os.environ.get("ATOMIC_MESH_SHARED_DATA")
    for cand in ([Path(env)] if env else []) + [_REPO.parent / "shared" / "data", Path("/work/shared/data")]:
        if cand.is_dir():
            return cand
    return _REPO.parent / "shared" / "data"


SHARED_DATA = shared_data()
BINANCE_SPOT = SHARED_DATA / "binance-spot"
