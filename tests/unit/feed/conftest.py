"""Shared helpers for the feed tests: the real Binance captures in ../shared/data."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from tests.shared_data import BINANCE_SPOT

DATA = BINANCE_SPOT


def capture(name: str) -> Path:
    path = DATA / name
    if not path.exists():
        pytest.skip(f"real Binance capture {path} is absent (shared/data not mounted)")
    return path


def first_line(name: str, stream_suffix: str) -> bytes:
    """The first raw line of a capture whose stream ends with `stream_suffix` ("" = the snapshot)."""
    with gzip.open(capture(name), "rb") as f:
        for line in f:
            if stream_suffix and f'@{stream_suffix}"'.encode() in line[:80]:
                return line
            if not stream_suffix and b'"stream"' not in line[:60]:
                return line
    raise AssertionError(f"no {stream_suffix or 'snapshot'} line in {name}")
