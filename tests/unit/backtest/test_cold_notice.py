"""A backtest on an empty numba cache says so before its minute-long compile; a warm one says nothing."""

from __future__ import annotations

from pathlib import Path

import numba
import pytest

from common.hotpath import _numba_cache
from services.backtest import engine


def test_has_compiled_finds_a_kernels_index_and_nothing_else(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(numba.config, "CACHE_DIR", str(tmp_path))
    assert not _numba_cache.has_compiled("market_run._run")
    sub = tmp_path / "hotpath_0123"
    sub.mkdir()
    (sub / "market_run._run-708.py311.1.nbc").write_bytes(b"")  # machine code without its index
    (sub / "market_run._run_other-9.py311.nbi").write_bytes(b"")  # another kernel's index
    assert not _numba_cache.has_compiled("market_run._run")
    (sub / "market_run._run-708.py311.nbi").write_bytes(b"")
    assert _numba_cache.has_compiled("market_run._run")


@pytest.mark.parametrize("cold", [True, False])
def test_warm_up_announces_a_compile_only_on_a_cold_cache(
    cold: bool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(engine, "_warm", False)
    monkeypatch.setattr(_numba_cache, "has_compiled", lambda stem: not cold)
    engine.warm_up()
    err = capsys.readouterr().err
    assert ("compiling the backtest's numba kernels" in err) is cold
