"""A fully pure-Python twin of common/hotpath/kernels.py.

``kernel.py_func`` is pure only at the top level (it calls the compiled
helpers). Loading the module source again with ``numba.njit`` replaced by
the identity gives every kernel, helpers included, as plain Python, which
is what a replay without numba would run.
"""

from __future__ import annotations

import importlib.util
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


def call_strict(fn, *args):
    """Call with every numpy warning (e.g. int64 overflow) as an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fn(*args)
