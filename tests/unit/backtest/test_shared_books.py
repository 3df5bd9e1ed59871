"""The market run's shared books (common/hotpath/market_run.py, SV_SHARED): a book event is
applied once to the strategy's ladder and to no other that is the same bytes; those are
copies of it again when the kernel returns.

The per-event path never shares, so the same input both ways must give the same report,
fills and every core's state hash (risk's, the router's and each venue's hold their books);
these tests also check that the sharing really happened, where it must not (a venue that
sees the market shifted), and that a call is handed the last call's shared books only when
nothing was sequenced between them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from common import config
from common import events as E
from common.hotpath import dtypes as D
from common.hotpath import market_run as K
from common.hotpath import new_book
from tests.unit.backtest.test_fastpath import assert_same, both_ways, synthetic

SHARED_A = K.SH_RISK | K.SH_ROUTER | K.SH_VENUE  # risk, router, sim-a (venue 0)
SIM_B = K.SH_VENUE << 1  # shifted by a tick and scaled: never the same bytes
TRADING = {"risk": {"max_consecutive_losses": 1_000_000}}  # the breaker would stop the orders early


def _recording(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    inner = K.market_run

    def wrapped(*a: Any) -> int:
        sv, vcfg = a[4], a[13]
        share_in = int(sv[K.SV_SHARE_IN])
        nrest = vcfg[:, K.VC_NREST].tolist()
        j = inner(*a)
        calls.append({"in": share_in, "shared": int(sv[K.SV_SHARED]), "done": int(sv[K.SV_DONE]),
                      "stop": int(sv[K.SV_STOP]), "nrest": nrest})  # fmt: skip
        return j

    monkeypatch.setattr(K, "market_run", wrapped)
    return calls


@pytest.mark.parametrize("fill_model", ["queue", "touch"])
def test_shared_books_give_the_per_event_run(monkeypatch: pytest.MonkeyPatch, fill_model: str) -> None:
    calls = _recording(monkeypatch)
    slow, fast = both_ways(config.from_dict(TRADING), synthetic(40_000, seed=11), fill_model)
    assert fast.report["fills"] > 20
    assert_same(slow, fast)
    shared = sum(c["done"] for c in calls if c["shared"] & SHARED_A == SHARED_A)
    # (the short runs between a trading strategy's orders end before _share_at: unshared)
    assert shared > 0.4 * fast.report["events"], (shared, len(calls))
    assert not any(c["shared"] & SIM_B for c in calls)


@pytest.mark.parametrize("fill_model", ["queue", "touch"])
def test_orders_resting_on_a_shared_venue(monkeypatch: pytest.MonkeyPatch, fill_model: str) -> None:
    """One venue, sim-a, so every order rests on a venue whose book is shared: its queue ahead
    (queue model) and the touch check (touch model) then read the strategy's book."""
    calls = _recording(monkeypatch)
    cfg = config.from_dict(TRADING | {"router": {"venues": [{"name": "sim-a", "fee_bps": 10}]}})
    slow, fast = both_ways(cfg, synthetic(40_000, seed=11), fill_model)
    assert fast.report["fills"] > 20
    assert_same(slow, fast)
    resting = [c for c in calls if c["nrest"][0] > 0 and c["shared"] & K.SH_VENUE]
    assert resting, "no kernel call shared the book of a venue holding our orders"


def test_a_call_is_handed_shared_books_only_when_nothing_ran_between(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _recording(monkeypatch)
    slow, fast = both_ways(config.from_dict({}), synthetic(20_000, seed=4), "queue")
    assert_same(slow, fast)
    handed = [c for c in calls if c["in"]]
    assert handed, "no call was handed its books shared"
    for before, after in zip(calls, calls[1:], strict=False):
        if after["in"]:
            assert before["stop"] == K.STOP_END and after["in"] == before["shared"]
        if before["stop"] != K.STOP_END:  # Python ran between them
            assert after["in"] == 0


def test_a_shared_venue_is_read_through_the_strategys_book() -> None:
    """Mid-run a shared venue's own ladder is stale: the touch model's check must read the
    strategy's. Here only the strategy's book has an ask at the resting buy's price."""
    px = 1_000
    master = new_book(1024)
    rows = np.array([[D.SIDE_BID, px - 5, 3], [D.SIDE_ASK, px, 2]], dtype=np.int64)
    K.book_apply_rows(master, rows, 0, 2, 1)
    stale = new_book(1024)
    far = np.array([[D.SIDE_BID, px - 5, 3], [D.SIDE_ASK, px + 50, 2]], dtype=np.int64)
    K.book_apply_rows(stale, far, 0, 2, 1)
    evs = np.zeros((1, K.RK_COLS), dtype=np.int64)
    evs[0, K.RK_KIND] = K.RK_DELTA
    evs[0, K.RK_NB] = 1  # one bid row, far from the order: the delta itself reaches nothing
    flat = np.array([px - 6, 1], dtype=np.int64)
    vcfg = np.zeros((1, K.VC_COLS), dtype=np.int64)
    vcfg[0, K.VC_SAME] = 1
    vcfg[0, K.VC_DUE] = 2**63 - 1
    vcfg[0, K.VC_NREST] = 1
    rest = np.zeros((1, 1, K.RS_COLS), dtype=np.int64)
    rest[0, 0, K.RS_SIDE] = D.SIDE_BID
    rest[0, 0, K.RS_PX] = px
    for stops in (K._venue_stops, K._venue_stops.py_func):
        assert stops(evs, 0, flat, 0, vcfg, rest, (stale,), 1, master, K.SH_VENUE) == 1
        assert stops(evs, 0, flat, 0, vcfg, rest, (stale,), 1, master, 0) == 0


def test_the_queue_ahead_of_an_order_on_a_shared_venue(monkeypatch: pytest.MonkeyPatch) -> None:
    """An order resting on sim-a, the only venue, behind 5,000,000 at its level; the level
    then drops to 1,000 in a run that shares sim-a's book, and a 1,500 print reaches it:
    500 fill only if the queue ahead was read from the book the run applied the drop to."""
    from tests.unit.backtest.test_fastpath_adversarial import MID, MS, QUIET, SYM, compare, filler, inject, prefix

    calls = _recording(monkeypatch)
    items = prefix()
    t = items[-1][0] + MS
    items.append((t, inject("BUY", MID - 10, 2_000, "q1")))
    items += filler(t + MS, 200)  # (the run compares the books some tens of events in: _share_at)
    t = items[-1][0] + MS
    items.append((t, E.BookDelta(SYM, 9_000, 9_000, E.pack_levels([(MID - 10, 1_000)]), b"")))
    items += filler(t + MS, 20)
    items.append((items[-1][0] + MS, E.Trade(SYM, 77, MID - 10, 1_500, True)))
    over = QUIET | {"router": {"venues": [{"name": "sim-a", "fee_bps": 10}]}}
    slow, _ = compare(over, items, "queue", min_applied=200)
    assert [(f.qty, f.price) for f in slow.stats.fills] == [(500, MID - 10)]
    assert any(c["nrest"] == [1] and c["shared"] & K.SH_VENUE for c in calls)


def test_an_event_through_python_between_two_calls_reloads_their_inputs() -> None:
    """A chunk that ran to its end, then an order injected as the next chunk's first event
    (through Python): the next kernel call must see the order (fastpath reuses the last
    call's inputs only when nothing was sequenced in between), so the print that reaches it
    goes to the simulated exchange, exactly as per event."""
    from services.backtest import fastpath
    from tests.unit.backtest.test_fastpath_adversarial import MID, MS, QUIET, SYM, compare, filler, inject, prefix

    items = prefix(n=2 * fastpath.CHUNK - 1)  # the snapshot and fillers fill two chunks exactly
    t = items[-1][0] + MS
    items.append((t, inject("BUY", MID - 10, 2_000, "r1")))  # the third chunk's first item
    items.append((t + MS, E.BookDelta(SYM, 9_000, 9_000, E.pack_levels([(MID - 10, 1_000)]), b"")))
    items += filler(t + 2 * MS, 30)
    items.append((items[-1][0] + MS, E.Trade(SYM, 78, MID - 10, 1_500, True)))
    items += filler(items[-1][0] + MS, 30)
    slow, _ = compare(QUIET, items, "queue", min_applied=1_000)
    assert [(f.qty, f.price) for f in slow.stats.fills] == [(500, MID - 10)]


def test_a_venue_past_sh_venues_is_never_shared() -> None:
    for shared in (K._venue_shared, K._venue_shared.py_func):
        assert shared(K.SH_VENUE << 3, 3) == 1 and shared(K.SH_VENUE << 3, 2) == 0
        assert shared(K.SH_RISK | K.SH_ROUTER, 0) == 0
        assert shared(-1, K.SH_VENUES - 1) == 1
        assert shared(-1, K.SH_VENUES) == 0 and shared(-1, 70) == 0  # (a shift past 63 is undefined)
