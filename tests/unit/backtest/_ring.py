"""Test helper: count the read-ahead batches the parent took from the shared-memory ring."""

from __future__ import annotations

from typing import Any

import pytest

from services.backtest import prefetch


def count_takes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that gets each ring batch's size in bytes as the parent takes it from its slot
    (the batches not in it came through the pipe)."""
    taken: list[int] = []
    take = prefetch._Ring.take

    def counting(self: prefetch._Ring, payload: Any) -> Any:
        out = take(self, payload)
        taken.append(len(out))
        return out

    monkeypatch.setattr(prefetch._Ring, "take", counting)
    return taken
