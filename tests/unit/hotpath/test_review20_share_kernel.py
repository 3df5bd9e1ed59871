"""Review 20: market_run with shared books == market_run with sharing blocked, at the kernel.

Sharing is blocked in the reference by an unused header word (12) that book_same compares
and book_apply_rows never writes. Events: deltas and snapshots with rejected rows (qty < 0,
px <= 0), levels far enough to slide a 256-slot window both ways, trades, best bid/offer;
cut into calls, each handed the last call's SV_SHARED when it ended STOP_END (fastpath's
rule). Every counter the run writes, and every book, must agree.
"""

from __future__ import annotations

import numpy as np
import pytest

from common.hotpath import default_params, new_book, new_state
from common.hotpath import dtypes as D
from common.hotpath import market_run as K

I64_MAX = 2**63 - 1
BLOCK = 12  # an unused header word


def _events(n: int, seed: int):
    rng = np.random.default_rng(seed)
    evs = np.zeros((n, K.RK_COLS), dtype=np.int64)
    flat: list[int] = []
    mid = 100_000
    for i in range(n):
        evs[i, K.RK_TS] = 1_000 + i
        r = rng.random()
        if r < 0.1:
            evs[i, K.RK_KIND] = K.RK_TRADE
            evs[i, K.RK_A], evs[i, K.RK_B], evs[i, K.RK_C] = mid, 5, int(rng.integers(2))
            continue
        if r < 0.15:
            evs[i, K.RK_KIND] = K.RK_BBO
            evs[i, K.RK_A], evs[i, K.RK_B], evs[i, K.RK_C], evs[i, K.RK_D] = mid - 1, 3, mid + 1, 3
            continue
        if rng.random() < 0.03:
            mid += int(rng.choice([-300, 300, -90, 90]))  # beyond W/4 of 256 slots: slides
        snap = rng.random() < 0.05
        nb, na = int(rng.integers(0, 8)), int(rng.integers(0, 8))
        off = len(flat)
        for j in range(nb + na):
            bid = j < nb
            px = mid - int(rng.integers(1, 150)) if bid else mid + int(rng.integers(1, 150))
            qty = int(rng.integers(0, 4))
            u = rng.random()
            if u < 0.03:
                qty = -1  # rejected
            elif u < 0.05:
                px = -5  # rejected
            flat += [px, qty]
        evs[i, K.RK_KIND] = K.RK_SNAPSHOT if snap else K.RK_DELTA
        evs[i, K.RK_OFF], evs[i, K.RK_NB], evs[i, K.RK_NA] = off, nb, na
    return evs, np.array(flat + [0, 0], dtype=np.int64)


def _setup(block: bool):
    seed_rows = np.array(
        [(D.SIDE_BID, 100_000 - k, 5) for k in range(1, 40)] + [(D.SIDE_ASK, 100_000 + k, 5) for k in range(1, 40)],
        dtype=np.int64,
    )
    books = []
    for _ in range(5):
        b = new_book(256)
        K.book_apply_rows(b, seed_rows, 0, len(seed_rows), 1)
        books.append(b)
    book, rbook, obook, va, vb = books
    if block:
        for b in (rbook, obook, va):
            b[BLOCK] = 7
    vcfg = np.zeros((2, K.VC_COLS), dtype=np.int64)
    vcfg[0, K.VC_SAME] = 1
    vcfg[0, K.VC_PCT] = 100
    vcfg[0, K.VC_STEP] = 1
    vcfg[1, K.VC_ADD] = 3  # a shifted venue: its book is never shared
    vcfg[1, K.VC_PCT] = 50
    vcfg[1, K.VC_STEP] = 1
    vb_rows = seed_rows.copy()
    vb_rows[:, 1] += 3
    K.book_apply_rows(vb, vb_rows, 0, len(vb_rows), 1)
    vcfg[:, K.VC_DUE] = I64_MAX
    rest = np.zeros((2, 1, K.RS_COLS), dtype=np.int64)
    sv = np.zeros(K.SV_LEN, dtype=np.int64)
    sv[K.SV_NEXT_CLOCK] = I64_MAX
    sv[K.SV_DAY_END] = I64_MAX
    sv[K.SV_CLOCK_DUE] = I64_MAX
    sv[K.SV_INTERVAL] = 1
    sv[K.SV_MAX_GAP] = I64_MAX
    sv[K.SV_HELD_BID] = sv[K.SV_HELD_ASK] = K.I64_MIN
    state = new_state()
    params = default_params(warmup=10**9)
    lv = np.zeros((64, D.LV_COLS), dtype=np.int64)
    vlv = np.zeros_like(lv)
    return dict(sv=sv, state=state, book=book, params=params, lv=lv, vlv=vlv, rbook=rbook, obook=obook,
                vbooks=(va, vb), vcfg=vcfg, rest=rest)  # fmt: skip


def _drive(run, evs, flat, cut: int, block: bool):
    s = _setup(block)
    sv, vcfg = s["sv"], s["vcfg"]
    out = []
    shared_seen = 0
    last = (0, K.STOP_OTHER)
    i = 0
    n = evs.shape[0]
    while i < n:
        end = min(n, (i // cut + 1) * cut)
        sv[K.SV_SHARE_IN] = last[0] if last[1] == K.STOP_END else 0
        vcfg[:, K.VC_MARKET] = 0
        vcfg[:, K.VC_BAD] = 0
        j = run(evs, flat, i, end, sv, s["state"], s["book"], s["params"], s["lv"], s["vlv"], s["rbook"],
                s["obook"], s["vbooks"], vcfg, s["rest"])  # fmt: skip
        shared_seen |= int(sv[K.SV_SHARED])
        last = (int(sv[K.SV_SHARED]), int(sv[K.SV_STOP]))
        out.append((j, int(sv[K.SV_STOP]), sv[K.SV_DONE : K.SV_SHARED].tolist(), vcfg[:, 6:8].tolist()))
        assert j > i or sv[K.SV_STOP] != K.STOP_END
        i = j if j > i else i + 1
    books = [s["book"], s["rbook"], s["obook"], *s["vbooks"]]
    for b in books:
        b[BLOCK] = 0
    return out, [b.copy() for b in books], s["state"].copy(), shared_seen


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_shared_run_equals_unshared_run(seed: int) -> None:
    evs, flat = _events(4_000, seed)
    for cut in (50, 700):
        a = _drive(K.market_run, evs, flat, cut, block=False)
        b = _drive(K.market_run, evs, flat, cut, block=True)
        assert a[3] & (K.SH_RISK | K.SH_ROUTER | K.SH_VENUE) == K.SH_RISK | K.SH_ROUTER | K.SH_VENUE
        assert not a[3] & (K.SH_VENUE << 1) and b[3] == 0
        assert a[0] == b[0]
        for x, y in zip(a[1], b[1], strict=True):
            assert np.array_equal(x, y)
        assert np.array_equal(a[2], b[2])


def test_pure_twin_shared_run_equals_compiled() -> None:
    from tests.unit.hotpath._twin import pure_market_run

    evs, flat = _events(500, 9)
    a = _drive(pure_market_run().market_run, evs, flat, 60, block=False)
    b = _drive(K.market_run, evs, flat, 60, block=True)
    assert a[3] & K.SH_RISK
    assert a[0] == b[0]
    for x, y in zip(a[1], b[1], strict=True):
        assert np.array_equal(x, y)


def test_book_copy_onto_itself_keeps_the_book() -> None:
    s = _setup(False)
    b = s["book"]
    before = b.copy()
    K.book_copy(b, b)
    assert np.array_equal(b, before)
