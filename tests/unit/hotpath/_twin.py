"""A fully pure-Python twin of common/hotpath/kernels.py.

``kernel.py_func`` is pure only at the top level (it calls the compiled
helpers). Loading the module source again with ``numba.njit`` replaced by
the identity gives every kernel, helpers included, as plain Python, which
is what a replay without numba would run.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from types import ModuleType

import numba

import common.hotpath.kernels as compiled

_PURE: ModuleType | None = None


def _identity(*args, **kwargs):
    if args and callable(args[0]) and len(args) == 1 and not kwargs:
        return args[0]
    return lambda f: f


def pure() -> ModuleType:
    global _PURE
    if _PURE is None:
        spec = importlib.util.spec_from_file_location("hotpath_pure_kernels", compiled.__file__)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        saved = numba.njit
        numba.njit = _identity
        try:
            spec.loader.exec_module(mod)
        finally:
            numba.njit = saved
        _PURE = mod
    return _PURE


_ON_PURE: dict[str, ModuleType] = {}


def _on_pure_kernels(module: ModuleType) -> ModuleType:
    """A hot-path module as plain Python: loaded again with the pure kernels module standing
    in for common.hotpath.kernels, so its `kernel` decorator and the kernels it calls are the
    twins."""
    name = module.__name__
    if name not in _ON_PURE:
        spec = importlib.util.spec_from_file_location(f"pure_{name.replace('.', '_')}", module.__file__)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        saved = sys.modules["common.hotpath.kernels"]
        sys.modules["common.hotpath.kernels"] = pure()
        try:
            spec.loader.exec_module(mod)
        finally:
            sys.modules["common.hotpath.kernels"] = saved
        _ON_PURE[name] = mod
    return _ON_PURE[name]


def pure_venue() -> ModuleType:
    """common/hotpath/venue.py as plain Python."""
    import common.hotpath.venue as venue

    return _on_pure_kernels(venue)


def pure_market_run() -> ModuleType:
    """common/hotpath/market_run.py as plain Python."""
    import common.hotpath.market_run as market_run

    return _on_pure_kernels(market_run)


def call_strict(fn, *args):
    """Call with every numpy warning (e.g. int64 overflow) as an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fn(*args)


def check_ladder(book) -> None:
    """The kernel book's invariants (dtypes' layout), after any kernel call: per side,
    the level count, block bitmaps, best slot and low bound agree with the slots, no
    quantity is negative, and a non-empty side's best sits in the top half of its window."""
    import numpy as np

    from common.hotpath import dtypes as D

    w = int(book[D.BK_SLOTS])
    assert w % D.BK_BLOCK == 0 and book.shape == (D.book_len(w),)
    for side in (D.SIDE_BID, D.SIDE_ASK):
        q = book[D.BK_Q + side * w : D.BK_Q + (side + 1) * w]
        held = np.flatnonzero(q)
        assert (q >= 0).all()
        assert book[D.BK_N + side] == len(held)
        blocks = book[D.BK_Q + 2 * w + side * (w // D.BK_BLOCK) :][: w // D.BK_BLOCK]
        held_bits = (q.reshape(-1, D.BK_BLOCK) != 0).astype(np.uint64) << np.arange(D.BK_BLOCK, dtype=np.uint64)
        assert np.array_equal(blocks.view(np.uint64), np.bitwise_or.reduce(held_bits, axis=1))
        if len(held):
            assert book[D.BK_BEST + side] == held[-1] and book[D.BK_LOW + side] <= held[0]
            assert held[-1] >= w // 2
        else:
            assert book[D.BK_BEST + side] == -1
