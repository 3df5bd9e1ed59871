"""Where numba keeps the hot path's compiled code: a directory named after its sources.

numba's on-disk cache (``cache=True``) checks only the source file a function is
defined in. A kernel that inlines kernels from another file (the market run inlines
kernels.py's book code; every module here reads dtypes' constants) would keep loading
its old machine code after that other file changed: after a ``git pull`` or a bisect
over a warm ``__pycache__``, a market run still counting levels into block words that
the new kernels read as bitmaps. Naming the cache directory after a digest of every
source file of this package makes any change here a cold cache.

``NUMBA_CACHE_DIR``, when set, is the user's choice and is left alone. Directories of
other digests not written to for a day are removed, so edits do not pile up caches.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numba
import xxhash

HERE = Path(__file__).resolve().parent
STALE_S = 86_400  # another digest's cache unused this long is removed


def source_digest(directory: Path = HERE) -> str:
    """xxh3 of the names and bytes of the package's .py files, in name order."""
    h = xxhash.xxh3_64()
    for path in sorted(directory.glob("*.py")):
        h.update(path.name.encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


def use_digest_cache(directory: Path = HERE) -> Path | None:
    """Point numba's cache at ``__pycache__/numba-<digest>``; returns it (None if the
    environment chose a cache directory). Must run before any kernel is decorated."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return None
    root = directory / "__pycache__"
    here = root / f"numba-{source_digest(directory)}"
    numba.config.CACHE_DIR = str(here)
    _prune(root, here)
    return here


def has_compiled(stem: str) -> bool:
    """Whether numba's cache holds an index for the kernel `stem` ("module.function", e.g.
    "market_run._run"): False means its first call compiles it. (numba names an index
    ``<stem>-<line>.py<ver>.nbi``, under a folder per source directory.)"""
    root = Path(numba.config.CACHE_DIR or HERE / "__pycache__")
    try:
        return any(root.rglob(f"{stem}-*.nbi"))
    except OSError:
        return False


def _prune(root: Path, keep: Path) -> None:
    try:
        old = [d for d in root.glob("numba-*") if d != keep and time.time() - d.stat().st_mtime > STALE_S]
    except OSError:
        return
    for d in old:
        shutil.rmtree(d, ignore_errors=True)  # a cache is only ever a speed-up
