"""Review 21: the synthetic market's random stream read from PCG64's raw outputs.

`SyntheticMarket._draw` now takes `bit_generator.random_raw` and splits each
64-bit output into its low, then high 32 bits. The claim: that is the very
stream numpy's `integers(0, 2**32, dtype=uint64)` gave, block after block,
with numbers left over from the last block and with a need larger than a
block (several blocks in one draw); and so the market's items are the ones
the old draw made.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from common.hotpath import synth as K
from services.feed import synthetic as S
from services.feed.synthetic import SyntheticMarket

pytestmark = pytest.mark.timeout(120)


def _old_draw(self: SyntheticMarket) -> None:
    """The draw before the change (integers(0, 2**32, dtype=uint64) blocks)."""
    st = self._st
    left = self._rnd[st[K.ST_RI] : st[K.ST_RN]]
    parts = [left]
    n = len(left)
    while n < max(self._need, S._RANDOM_BLOCK):
        parts.append(self._gen.integers(0, 1 << 32, size=S._RANDOM_BLOCK, dtype=np.uint64).astype(np.int64))
        n += S._RANDOM_BLOCK
    self._rnd = np.concatenate(parts)
    st[K.ST_RI] = 0
    st[K.ST_RN] = n


def test_the_block_is_even() -> None:
    # _draw counts _RANDOM_BLOCK numbers a block but draws _RANDOM_BLOCK // 2 64-bit outputs
    assert S._RANDOM_BLOCK % 2 == 0 and S._RANDOM_BLOCK > 0


@pytest.mark.parametrize("seed", [0, 1, 12345, 2**63 + 7])
def test_the_draws_are_numpy_s_uint32_integers(seed: int) -> None:
    m = SyntheticMarket(seed)
    ref = np.random.Generator(np.random.PCG64(seed))
    want = np.zeros(0, dtype=np.int64)
    taken = 0
    # consume some, all, or none of what is held; then need more than a block at once
    for left, need in ((0, m._need), (1_000, m._need), (0, 3 * S._RANDOM_BLOCK + 5), (4_095, m._need), (7, 1)):
        m._need = need
        st = m._st
        st[K.ST_RI] = st[K.ST_RN] - left if st[K.ST_RN] >= left else 0
        taken += int(st[K.ST_RI])
        m._draw()
        assert len(m._rnd) == st[K.ST_RN]  # (the kernel reads up to ST_RN: never past the array)
        got = m._rnd[: st[K.ST_RN]]
        assert len(got) == st[K.ST_RN] and len(got) >= max(need, S._RANDOM_BLOCK)
        while len(want) < taken + len(got):
            block = ref.integers(0, 1 << 32, size=S._RANDOM_BLOCK, dtype=np.uint64).astype(np.int64)
            want = np.concatenate([want, block])
        assert np.array_equal(got, want[taken : taken + len(got)])


def test_the_market_s_items_are_the_old_draw_s(monkeypatch: pytest.MonkeyPatch) -> None:
    new = list(itertools.islice(SyntheticMarket(7, levels=30).items(), 20_000))
    monkeypatch.setattr(SyntheticMarket, "_draw", _old_draw)
    old = list(itertools.islice(SyntheticMarket(7, levels=30).items(), 20_000))
    assert new == old
