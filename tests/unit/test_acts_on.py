"""Risk's and the router's early return for body types they ignore matches what apply() handles.

Both cores return at once for a type outside their `_ACTS_ON` set (after market data),
to skip the dispatch chain. A type added to the chain but not to the set would be
silently ignored, and nothing else would notice: this reads the chain's `t is E.X`
tests from apply()'s source and holds the set to them.
"""

from __future__ import annotations

import inspect
import re

import pytest

from common import events as E
from services.risk import core as risk
from services.router import core as router

MARKET = {"BestBidOffer", "Trade", "BookDelta", "BookSnapshot"}


@pytest.mark.parametrize("mod, cls", [(risk, risk.RiskCore), (router, router.RouterCore)])
def test_the_early_return_set_is_the_dispatch_chain(mod, cls):
    src = inspect.getsource(cls.apply)
    tested = set(re.findall(r"\bt is E\.(\w+)", src))
    assert tested - MARKET == {t.__name__ for t in mod._ACTS_ON}
    assert all(isinstance(getattr(E, name), type) for name in tested)
