"""on_book_kept (the market run's book update, with the fair value's side sums kept
between updates) against _on_book, the live strategy's: the same state, book and action
after every event, on books changed a level or two at a time, as the synthetic market's
are, and on everything that must make it sum afresh."""

from __future__ import annotations

import numpy as np
import pytest

from common.hotpath import default_params, new_book, new_state
from common.hotpath import dtypes as D
from common.hotpath import kernels as K
from tests.unit.hotpath._twin import pure

BID, ASK = D.SIDE_BID, D.SIDE_ASK


class Market:
    """A book the test keeps itself, to draw rows that make sense against it (and some
    that do not): each draw is one event's rows."""

    def __init__(self, rng: np.random.Generator, tick: int, gap: int, top: int = 5) -> None:
        self.rng, self.tick, self.gap, self.top = rng, tick, gap, top  # top: the levels summed
        self.mid = 1_000_000 * tick
        self.side: list[dict[int, int]] = [{}, {}]

    def qty(self) -> int:
        return int(self.rng.integers(1, 5_000))

    def snapshot(self, depth: int) -> list[tuple[int, int, int]]:
        t, g = self.tick, self.gap
        self.side = [
            {self.mid - (k + 1) * g * t: self.qty() for k in range(depth)},
            {self.mid + (k + 1) * g * t: self.qty() for k in range(depth)},
        ]
        return [(s, px, q) for s in (BID, ASK) for px, q in self.side[s].items()]

    def ranked(self, s: int) -> list[int]:
        return sorted(self.side[s], reverse=(s == BID))

    def row(self, s: int, px: int, q: int) -> tuple[int, int, int]:
        if q == 0:
            self.side[s].pop(px, None)
        elif px > 0:
            self.side[s][px] = q
        return (s, px, q)

    def one(self, s: int, kind: int) -> tuple[int, int, int]:
        r, t = self.rng, self.tick
        levels = self.ranked(s)
        sign = -1 if s == BID else 1  # from the best outward
        if not levels or kind == 0:  # a new level beyond every other one
            far = levels[-1] if levels else self.mid
            return self.row(s, far + sign * int(r.integers(1, 4)) * t, self.qty())
        k = int(r.integers(0, len(levels)))
        top = self.top
        deep = levels[min(len(levels) - 1, top + k % max(1, len(levels) - top))]
        if kind == 1:  # a change below the summed levels (most of the synthetic market's)
            return self.row(s, deep, self.qty())
        if kind == 2:  # a removal below them
            return self.row(s, deep, 0)
        if kind == 3:  # a change of one of the top levels
            return self.row(s, levels[k % min(top, len(levels))], self.qty())
        if kind == 4:  # the best goes
            return self.row(s, levels[0], 0)
        if kind == 5:  # a better level, inside the spread
            return self.row(s, levels[0] - sign * t, self.qty())
        if kind == 6:  # between two of the top levels (they are `gap` ticks apart)
            return self.row(s, levels[min(2, len(levels) - 1)] + sign * t, self.qty())
        if kind == 7:  # far beyond the best: the window must move
            return self.row(s, levels[0] - sign * 3_000 * t, self.qty())
        if kind == 8:  # far below the best: dropped, or the window moves under it
            return self.row(s, levels[-1] + sign * 3_000 * t, self.qty())
        # a row the book rejects
        return ((7, levels[0], 1), (s, 0, 1), (s, levels[0] + (1 if t > 1 else 0), -1))[k % 3]

    def event(self) -> tuple[int, list[tuple[int, int, int]]]:
        r = self.rng
        x = r.random()
        if x < 0.01:
            return 1, self.snapshot(int(r.integers(1, 30)))
        if x < 0.04:  # a diff of many rows
            return 0, [self.one(int(r.integers(0, 2)), int(r.integers(0, 10))) for _ in range(int(r.integers(5, 12)))]
        if x < 0.05:  # a side emptied
            s = int(r.integers(0, 2))
            return 0, [self.row(s, px, 0) for px in self.ranked(s)][: K.FV_KEEP_ROWS]
        rows = []
        for _ in range(int(r.integers(0, K.FV_KEEP_ROWS + 1))):
            s = int(r.integers(0, 2))
            rows.append(self.one(s, 1 if r.random() < 0.75 else int(r.integers(0, 10))))
        return 0, rows


def rows_of(rows: list[tuple[int, int, int]], lv: np.ndarray, at: int) -> int:
    for j, row in enumerate(rows):
        lv[at + j] = row
    return len(rows)


def run_pair(seed: int, slots: int, levels: int, tick: int, gap: int, plain_every: int, n: int = 600) -> int:
    """Events through _on_book on one copy and on_book_kept on another (with, every
    plain_every-th event, _on_book on that one too, as Python applies an event the market run
    stops before); both compared after each. Returns how often the sums were reused."""
    rng = np.random.default_rng(seed)
    p = default_params(tick=tick, mp_levels=levels, warmup=3, cooldown=0, requote_px=0)
    m = Market(rng, tick, gap, levels)
    s1, b1 = new_state(), new_book(slots, tick)
    s2, b2 = new_state(), new_book(slots, tick)
    fv = np.zeros(3 + K.FV_LEN, dtype=np.int64)  # at an offset, as in the market run's sv
    lv = np.zeros((256, D.LV_COLS), dtype=np.int64)
    reused = 0
    snap, rows = 1, m.snapshot(levels + 15)
    for i in range(n):
        k = rows_of(rows, lv, 3)
        a1 = K._on_book(s1, b1, p, lv, 3, k, 1_000 * i, snap)
        if plain_every and i % plain_every == 0:
            a2 = K._on_book(s2, b2, p, lv, 3, k, 1_000 * i, snap)
        else:
            before = fv[3 + K.FV_SUM : 3 + K.FV_SUM + 2].copy(), int(fv[3 + K.FV_AT])
            a2 = K.on_book_kept(s2, b2, p, fv, 3, lv, 3, k, 1_000 * i, snap)
            kept = before[1] == s2[D.S_N_BOOK] - 1 and (fv[3 + K.FV_SUM : 3 + K.FV_SUM + 2] == before[0]).all()
            reused += int(kept and k > 0)
        assert a1 == a2, f"event {i}"
        np.testing.assert_array_equal(s1, s2, err_msg=f"state after event {i}")
        np.testing.assert_array_equal(b1, b2, err_msg=f"book after event {i}")
        snap, rows = m.event()
    return reused


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize(
    ("slots", "levels", "tick", "gap"), [(1024, 5, 1, 3), (64, 5, 5, 2), (256, 1, 1, 1), (4096, 20, 2, 7)]
)
def test_same_as_on_book(seed, slots, levels, tick, gap):
    reused = run_pair(seed, slots, levels, tick, gap, plain_every=0)
    assert reused > 10  # the sums were kept, not summed afresh every time


@pytest.mark.parametrize("seed", range(6))
def test_same_when_python_applies_some_events(seed):
    """An event applied by _on_book alone (the cores, in Python) moves S_N_BOOK past the
    kept sums' FV_AT: the next update sums afresh."""
    run_pair(100 + seed, 1024, 5, 1, 3, plain_every=7)


def _levels(b: np.ndarray, side: int) -> list[tuple[int, int]]:
    from common.hotpath import book_levels

    return book_levels(b, side)


def test_kept_sums_are_what_the_fair_value_reads():
    """Poisoned kept sums show in the fair value after a change below the top five, and not
    after one inside it, nor after an update the market run did not make: the reuse is real
    and bounded."""
    p = default_params(tick=1, mp_levels=5)
    m = Market(np.random.default_rng(7), 1, 3)
    s, b = new_state(), new_book(1024)
    fv = np.zeros(K.FV_LEN, dtype=np.int64)
    lv = np.zeros((256, D.LV_COLS), dtype=np.int64)
    K.on_book_kept(s, b, p, fv, 0, lv, 0, rows_of(m.snapshot(20), lv, 0), 1, 1)
    fair0 = int(s[D.S_FAIR])

    def delta(rows, poison: bool) -> int:
        if poison:
            fv[K.FV_SUM + BID] *= 50
        K.on_book_kept(s, b, p, fv, 0, lv, 0, rows_of(rows, lv, 0), 2, 0)
        return int(s[D.S_FAIR])

    px, q = _levels(b, BID)[10]
    assert delta([(BID, px, q + 1)], poison=True) > fair0  # bid sum x50: fair moves toward the ask
    assert delta([(BID, _levels(b, BID)[0][0], 77)], poison=False) != 0
    expect = K.microprice(b, 5)
    assert int(s[D.S_FAIR]) == expect  # a top row: summed afresh
    fv[K.FV_SUM + BID] *= 50
    lv[0] = (BID, px, q + 2)
    K._on_book(s, b, p, lv, 0, 1, 3, 0)  # Python's update, not the market run's
    px2, q2 = _levels(b, BID)[12]
    assert delta([(BID, px2, q2 + 1)], poison=False) == K.microprice(b, 5)


@pytest.mark.parametrize("seed", range(3))
def test_pure_python_twin(seed):
    """The kept path as plain Python (what a replay without numba runs) gives what the compiled one does."""
    P = pure()
    rng = np.random.default_rng(seed)
    p = default_params(tick=1, mp_levels=5)
    m = Market(rng, 1, 3)
    arrays = [(new_state(), new_book(256), np.zeros(K.FV_LEN, dtype=np.int64)) for _ in range(2)]
    lv = np.zeros((256, D.LV_COLS), dtype=np.int64)
    snap, rows = 1, m.snapshot(20)
    for i in range(150):
        k = rows_of(rows, lv, 0)
        acts = [
            f(s, b, p, fv, 0, lv, 0, k, i, snap)
            for f, (s, b, fv) in zip((K.on_book_kept, P.on_book_kept), arrays, strict=True)
        ]
        assert acts[0] == acts[1]
        for x, y in zip(arrays[0], arrays[1], strict=True):
            np.testing.assert_array_equal(x, y)
        snap, rows = m.event()
