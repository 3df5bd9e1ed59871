"""Review of c5addb0 at the engine: the market run's kept fair-value sums (sv[SV_FV]) are
checked against the strategy's S_N_BOOK only. fastpath.MarketRun.unshare() exists because
'between runs a core may change with no event sequenced (its state loaded, a tool's write)',
but it left sv[SV_FV] as it was: a strategy state loaded between two runs, with the same
count of book updates and another book, then ran on the first book's sums. Fixed in the
review: MarketRun._load (which unshare forces) drops them."""

from __future__ import annotations

import pytest

from common import config
from common import events as E
from common.hotpath import dtypes as D
from common.hotpath import kernels as KK
from common.hotpath import market_run as K
from services.backtest.engine import Engine
from tests.unit.backtest.test_fastpath import synthetic

pytestmark = pytest.mark.timeout(300)


def _heavier_bids(items: list[tuple[int, E._Body]]) -> list[tuple[int, E._Body]]:
    """The same stream with every bid quantity tripled: the same count of book updates, and
    a book whose bid side sums differ at every step."""
    out = []
    for t, b in items:
        if type(b) in (E.BookDelta, E.BookSnapshot) and b.bids:
            bids = E.pack_levels([(int(px), 3 * int(q)) for px, q in E.unpack_levels(b.bids)])
            if type(b) is E.BookDelta:
                b = E.BookDelta(b.symbol, b.first_id, b.last_id, bids, b.asks)
            else:
                b = E.BookSnapshot(b.symbol, b.update_id, bids, b.asks)
        out.append((t, b))
    return out


def test_a_strategy_state_loaded_between_runs() -> None:
    cfg = config.from_dict({})
    items = synthetic(3000, seed=3)
    head, tail = items[:2000], items[2000:]
    slow, fast = Engine(cfg, market_run=False), Engine(cfg, market_run=True)
    donor = Engine(cfg, market_run=False)
    for eng in (slow, fast):
        eng.start(items[0][0])
        eng.run(head)
    donor.start(items[0][0])
    donor.run(_heavier_bids(head))
    assert slow.hashes() == fast.hashes()
    assert fast.market is not None and fast.market.applied > 1000
    sym = fast.market.symbol
    n_book = int(fast.strategy.books[sym].state[D.S_N_BOOK])
    assert int(donor.strategy.books[sym].state[D.S_N_BOOK]) == n_book
    assert fast.market._sv[K.SV_FV + KK.FV_AT] == n_book  # the sums of fast's own book are kept
    state = donor.strategy.state()
    for eng in (slow, fast):
        eng.strategy.load_state(state)  # a tool's write between runs
    assert slow.hashes() == fast.hashes()
    for j in range(len(tail)):  # an event at a time: the state after each, not only at the end
        for eng in (slow, fast):
            eng.run(tail[j : j + 1])
        # BUG: the market run's first delta below the summed levels reuses the bid sum of the
        # book it had before the load (a third of this one's): another imbalance than the
        # per-event path's (the fair value, floored inside a one-tick spread, hides it; the
        # next top-level change sums afresh and the states meet again).
        assert slow.strategy.books[sym].state.tolist() == fast.strategy.books[sym].state.tolist(), j
        assert slow.hashes() == fast.hashes(), j
