"""Review of stop 20's input reuse (fastpath._rows, `_rested`): at every kernel call that
reuses the previous call's inputs, a fresh `_load` must write exactly the same sv / vcfg /
rest values. The check runs `_load` on the side at each reuse, compares, and then restores
what the reuse gave, so the run itself is unchanged. (Not compared: the strategy's kept
fair-value sums, sv[SV_FV:], which a load drops and a reuse keeps: a cache, not an input,
see tests/unit/hotpath/test_fair_kept.py.)"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from common import config
from common.hotpath import market_run as K
from common.units import BUILTIN
from services.backtest import fastpath
from services.backtest.inputs import SyntheticInput
from services.backtest.run import run_backtest
from tests.unit.backtest.test_fastpath import _Items, mixed, synthetic
from tests.unit.backtest.test_fastpath_adversarial import refused_and_stepping

TRADING = {"risk": {"max_consecutive_losses": 1_000_000}}


def _checking(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    seen: dict[str, Any] = {"reused": 0, "loaded": 0, "diffs": [], "mr": None}
    loaded = [False]
    inner_load = fastpath.MarketRun._load
    inner_run = K.market_run

    def load(self: fastpath.MarketRun):  # type: ignore[no-untyped-def]
        seen["mr"] = self
        loaded[0] = True
        seen["loaded"] += 1
        return inner_load(self)

    def run(*a: Any) -> int:
        mr = seen["mr"]
        if not loaded[0] and mr is not None:
            seen["reused"] += 1
            sv, vc, rest = a[4], a[13], a[14]
            keep = (sv.copy(), vc.copy(), rest.copy())
            cap = mr.rest_cap
            inner_load(mr)  # what a fresh load would write
            sv[K.SV_FV :] = keep[0][K.SV_FV :]
            assert mr.rest_cap == cap  # (no grow: the same arrays)
            for name, old, new in (("sv", keep[0], sv), ("vcfg", keep[1], vc), ("rest", keep[2], rest)):
                if not np.array_equal(old, new):
                    idx = np.argwhere(old != new).tolist()
                    seen["diffs"].append((name, idx[:4], old[tuple(idx[0])], new[tuple(idx[0])]))
            sv[:], vc[:], rest[:] = keep
        loaded[0] = False
        return inner_run(*a)

    monkeypatch.setattr(fastpath.MarketRun, "_load", load)
    monkeypatch.setattr(K, "market_run", run)
    return seen


@pytest.mark.parametrize(
    "case",
    ["trading-queue", "trading-touch", "mixed", "held-back", "raw-batches"],
)
def test_reused_inputs_equal_a_fresh_load(monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    seen = _checking(monkeypatch)
    if case.startswith("trading"):
        cfg, inp, fm = config.from_dict(TRADING), _Items(synthetic(12_000, seed=11)), case.split("-")[1]
    elif case == "mixed":
        cfg, inp, fm = config.from_dict(TRADING), _Items(mixed(8_000)), "queue"
    elif case == "held-back":
        over, items = refused_and_stepping(40)
        cfg, inp, fm = config.from_dict(over), _Items(items), "queue"
    else:
        cfg = config.from_dict(TRADING)
        inp, fm = SyntheticInput(12_000, 11, BUILTIN, cfg.feed), "queue"
    run_backtest(cfg, inp, fm, market_run=True)
    print(case, {k: seen[k] for k in ("reused", "loaded")})
    assert seen["diffs"] == [], seen["diffs"][:5]


def test_a_top_of_exactly_big_left_by_the_last_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """The scan admits prices up to BIG inclusive, and so does _load for risk's tops (the
    review found _load admitting them only below BIG, so a reused call's sv differed from a
    fresh load: tops BIG and clock due NEVER, against tops 0 and clock due I64_MIN; the run
    matched only because _total_pnl refuses >= BIG itself). A best bid/offer at BIG as a
    chunk's last item, then a reused call: the same inputs, and the same run as per event."""
    from common import events as E
    from tests.unit.backtest.test_fastpath_adversarial import MID, MS, QUIET, SYM, compare, filler, prefix

    seen = _checking(monkeypatch)
    items = prefix(n=2 * fastpath.CHUNK - 2)
    t = items[-1][0] + MS
    items.append((t, E.BestBidOffer(SYM, 1, MID, 5, K.BIG, 5)))  # the second chunk's last item
    items += filler(t + MS, 300)  # crosses clocks
    compare(QUIET, items, "queue", min_applied=500)
    assert seen["reused"] > 0
    assert seen["diffs"] == [], seen["diffs"][:5]
