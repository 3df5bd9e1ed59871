"""numba's on-disk cache for the hot path lives in a directory named after a digest of the
package's sources (common.hotpath._numba_cache), so a change to any of them, not only to
the file a kernel is defined in, compiles afresh."""

from __future__ import annotations

import os
import shutil
import time

import numba
import pytest

from common.hotpath import _numba_cache, kernels, new_book


@pytest.mark.skipif(bool(os.environ.get("NUMBA_CACHE_DIR")), reason="the environment chose the cache directory")
def test_the_kernels_cache_in_the_directory_named_after_the_sources() -> None:
    want = _numba_cache.HERE / "__pycache__" / f"numba-{_numba_cache.source_digest()}"
    assert numba.config.CACHE_DIR == str(want)
    kernels.best_px(new_book(64), 0)  # loaded from there, or compiled and saved there
    assert any(p.suffix == ".nbi" and "best_px" in p.name for p in want.rglob("*.nbi"))


def test_any_change_to_any_source_file_changes_the_digest(tmp_path) -> None:
    for p in _numba_cache.HERE.glob("*.py"):
        shutil.copy(p, tmp_path / p.name)
    base = _numba_cache.source_digest(tmp_path)
    assert base == _numba_cache.source_digest()
    dtypes = tmp_path / "dtypes.py"
    text = dtypes.read_bytes()
    dtypes.write_bytes(text.replace(b"BK_BLOCK = 64", b"BK_BLOCK = 32"))  # a constant only
    assert _numba_cache.source_digest(tmp_path) != base
    dtypes.write_bytes(text)
    assert _numba_cache.source_digest(tmp_path) == base
    (tmp_path / "venue.py").rename(tmp_path / "venue2.py")
    assert _numba_cache.source_digest(tmp_path) != base


def test_other_digests_caches_are_removed_once_stale(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setattr(numba.config, "CACHE_DIR", numba.config.CACHE_DIR)  # restored after
    (tmp_path / "a.py").write_text("x = 1\n")
    cache = tmp_path / "__pycache__"
    stale, recent = cache / "numba-0000", cache / "numba-1111"
    for d in (stale, recent):
        d.mkdir(parents=True)
        (d / "k.nbi").write_bytes(b"")
    old = time.time() - _numba_cache.STALE_S - 60
    os.utime(stale, (old, old))
    here = _numba_cache.use_digest_cache(tmp_path)
    assert here == cache / f"numba-{_numba_cache.source_digest(tmp_path)}"
    assert numba.config.CACHE_DIR == str(here)
    assert not stale.exists() and recent.exists()
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "mine"))
    assert _numba_cache.use_digest_cache(tmp_path) is None


def test_the_highest_set_bit_agrees_in_every_form() -> None:
    """kernels._hibit as plain Python, as compiled (the count-leading-zeros intrinsic) and
    as the fallback without it, on the values a block bitmap can hold."""
    import numpy as np
    from numba import njit

    from common.hotpath.kernels import _hibit, _hibit_halving

    compiled = njit(lambda x: _hibit(x))
    halving = njit(_hibit_halving)
    rng = np.random.default_rng(3)
    values = [0, 1, 2, 3, -1, -(2**63), 2**63 - 1, *(2**k for k in range(63)), *(-(2**k) for k in range(63))]
    values += [int(v) for v in rng.integers(-(2**63), 2**63 - 1, 2_000, dtype=np.int64)]
    for v in values:
        want = -1 if v == 0 else 63 if v < 0 else v.bit_length() - 1
        x = np.int64(v)
        assert _hibit(x) == _hibit_halving(x) == compiled(x) == halving(x) == want, v
