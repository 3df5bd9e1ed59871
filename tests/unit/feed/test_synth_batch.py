"""The synthetic market's batch size: a backtest's generator makes batches four times the
feed's (services.backtest.inputs.SYNTH_BATCH), drawing its random numbers in larger blocks
to fill them. The events must be the very ones the feed's batch size gives, and the batches
must really be that large (or the change buys nothing)."""

from __future__ import annotations

import itertools

import pytest

from common.config import FeedConfig
from common.hotpath.rowbatch import RowBatch
from common.units import BUILTIN
from services.backtest.inputs import SYNTH_BATCH, SYNTH_BATCH_LEVELS, SyntheticInput
from services.feed.synthetic import BATCH, SyntheticMarket

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize(("seed", "levels"), [(1, 20), (9, 3)])
@pytest.mark.parametrize("batch", [SYNTH_BATCH, 3 * BATCH + 1, 7])
def test_any_batch_size_gives_the_same_events(seed: int, levels: int, batch: int) -> None:
    n = 3 * SYNTH_BATCH + 17
    feed = list(itertools.islice(SyntheticMarket(seed, "BTCUSDT", levels).items(), n))
    other = SyntheticMarket(seed, "BTCUSDT", levels, batch=batch)
    assert list(itertools.islice(other.items(), n)) == feed
    rows = SyntheticMarket(seed, "BTCUSDT", levels, batch=batch).row_batches(n)
    assert [it for words in rows for it in RowBatch(words).items()] == feed


def test_a_backtest_s_batches_are_full() -> None:
    n = 5 * SYNTH_BATCH
    inp = SyntheticInput(n, 1, BUILTIN, FeedConfig(symbols=("BTCUSDT",)))
    sizes = [b.n for b in inp.row_batches()]
    assert sum(sizes) == n
    # each kernel call fills its batch (one step may add an event past it; the last batch is
    # cut by the limit)
    assert all(SYNTH_BATCH <= s <= SYNTH_BATCH + 1 for s in sizes[:-1]), sizes


def test_a_deep_book_keeps_the_feed_s_batch() -> None:
    # the generator's level buffer is (4 x levels + 8) x batch rows: 4096 events of a
    # 1,000-level book would be about 260 MB
    inp = SyntheticInput(3 * BATCH, 1, BUILTIN, FeedConfig(symbols=("BTCUSDT",), levels=SYNTH_BATCH_LEVELS + 1))
    assert inp.source.markets[0].batch == BATCH
    assert max(b.n for b in inp.row_batches()) <= BATCH + 1
