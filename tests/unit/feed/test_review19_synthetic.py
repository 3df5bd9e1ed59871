"""Review of stop 19 (compiled synthetic market): cases the stop's own tests miss.

* encoded(limit) whose next kernel call fails at its first step: items() raises there
  (the source reads one item ahead); encoded() must not hand back a stale row as `ahead`.
* synth_run given a level array too small for one step must say so (ERR_*), not return
  nothing forever (the wrapper's _calls would then spin without end).
* a tick so large that the book's prices leave int64: refused, as the Python generator
  failed (it raised in pack_pairs), not wrapped silently into a different book.
"""

from __future__ import annotations

import itertools

import pytest

from common.hotpath import synth as K
from common.units import SymbolSpec
from services.feed.synthetic import SyntheticMarket

pytestmark = pytest.mark.timeout(60)

# one level a side, three ticks from zero: seed 2 empties the bid side (test_synthetic_kernel's case)
_EMPTYING = SymbolSpec("XUSDT", price_scale=2, qty_scale=8, tick=2 * 10**6, step=1000, base="X", quote="USDT")


def _items_before_the_error(batch: int) -> list:
    got = []
    with pytest.raises(ValueError, match="emptied a side"):
        for item in SyntheticMarket(2, "XUSDT", 1, _EMPTYING, batch=batch).items():
            got.append(item)
    return got


def test_encoded_up_to_a_call_whose_first_step_fails_gives_no_stale_ahead():
    # batch=1: every kernel call is one step, so the failing step is the first of its call and
    # that call returns 0 events (with ST_ERR set). encoded(W), W the items before the failure,
    # then took self._ev[0] -- the previous call's row, an item already given -- as `ahead`,
    # moved made()/now_ns back by it and returned without the error items() raises there.
    want = _items_before_the_error(batch=1)
    w = len(want)
    m = SyntheticMarket(2, "XUSDT", 1, _EMPTYING, batch=1)
    try:
        list(m.encoded(w))
    except ValueError:
        return  # as items() (and a source reading one item ahead) does
    assert m.ahead is None, f"ahead is a stale row: {m.ahead!r} (item {want.index(m.ahead)} again)"
    assert sum(m.made().values()) == w
    assert m.now_ns == want[-1][0]


def test_a_level_array_too_small_for_one_step_is_an_error_not_an_endless_nothing():
    m = SyntheticMarket(1, levels=20, batch=1)
    m._lv = m._lv[:10].copy()  # a snapshot of 20 levels a side needs 40+ rows
    m._draw()
    ne, _nl, _steps = m._run()
    assert ne > 0 or m._st[K.ST_ERR] != 0, "no event, no error: _calls() would call again forever"


def test_a_tick_whose_prices_leave_int64_is_refused():
    # tick 10**17: the asks' gaps ((1 + up to 150) ticks) pass 2**63; the Python generator
    # raised (pack_pairs: argument out of range), the kernel wrapped them into a 4-level book.
    spec = SymbolSpec("XUSDT", price_scale=2, qty_scale=8, tick=10**17, step=1000, base="X", quote="USDT")
    with pytest.raises((ValueError, RuntimeError)):
        list(itertools.islice(SyntheticMarket(1, "XUSDT", 20, spec).items(), 100))
