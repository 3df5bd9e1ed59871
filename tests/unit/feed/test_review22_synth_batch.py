"""Review of e5533c3 (larger synthetic batches): the generator's random-number low-water
mark, the feed's batch, several symbols, and the item held ahead at a limit."""

from __future__ import annotations

import itertools

import pytest

from common.config import FeedConfig, MeshConfig
from common.hotpath.rowbatch import RowBatch
from common.units import BUILTIN
from services.backtest.inputs import SYNTH_BATCH, SyntheticInput
from services.feed.sources import SyntheticSource
from services.feed.synthetic import BATCH, SyntheticMarket

pytestmark = pytest.mark.timeout(120)


def _calls_until(m: SyntheticMarket, want: int) -> int:
    """Events the market's kernel calls make, until `want` or a stall: three calls in a row
    that make nothing with the random numbers held (items() would then loop forever)."""
    made, idle = 0, 0
    calls = m._calls()
    while made < want:
        ne, _nl = next(calls)
        made += ne
        idle = idle + 1 if ne == 0 else 0
        if idle >= 3:
            return made
    return made


@pytest.mark.parametrize(("levels", "batch"), [(3000, BATCH + 1), (9000, SYNTH_BATCH)])
def test_a_large_batch_with_many_levels_does_not_stall(levels: int, batch: int) -> None:
    """BUG: with batch > BATCH the call draws only below self._low = 8 * batch, but a step needs
    need_random(levels) = 32 + 4 * levels; once the numbers held fall between the two, no
    draw is made and every kernel call returns nothing: items() never yields again. The
    feed's batch (self._low = need) makes the same events."""
    feed = SyntheticMarket(1, "BTCUSDT", levels)
    assert _calls_until(feed, 5000) >= 5000  # the feed's batch size: fine
    big = SyntheticMarket(1, "BTCUSDT", levels, batch=batch)
    assert _calls_until(big, 5000) >= 5000, f"stalled: need {big._need} > low {big._low}"


def test_the_feed_service_keeps_the_feed_batch() -> None:
    """The live feed service's source (services.feed.service.open_source) stays at BATCH;
    only the backtest's synthetic input asks for SYNTH_BATCH."""
    import dataclasses

    from services.feed.service import open_source

    cfg = MeshConfig()
    cfg = dataclasses.replace(cfg, feed=dataclasses.replace(cfg.feed, symbols=("BTCUSDT", "ETHUSDT")))
    src = open_source(cfg)
    assert isinstance(src, SyntheticSource)
    assert [m.batch for m in src.markets] == [BATCH, BATCH]
    assert [m._low for m in src.markets] == [m._need for m in src.markets]
    inp = SyntheticInput(10, 3, BUILTIN, FeedConfig(symbols=("BTCUSDT", "ETHUSDT")))
    assert [m.batch for m in inp.source.markets] == [SYNTH_BATCH, SYNTH_BATCH]


def test_several_symbols_merge_to_the_feed_s_items() -> None:
    """Two symbols, merged item by item: the backtest's input gives the feed's items."""
    feed = FeedConfig(symbols=("BTCUSDT", "ETHUSDT"), seed=5)
    n = 2 * SYNTH_BATCH + 333
    want = list(itertools.islice(SyntheticSource(feed).items(), n))
    inp = SyntheticInput(n, 5, BUILTIN, feed)
    assert inp.row_batches() is None and inp.raw_batches() is None  # merged: items only
    assert list(inp.items()) == want
    assert inp.accounting()["accepted"] == _accepted(want)


def _accepted(items: list) -> dict[str, int]:
    out: dict[str, int] = {}
    for _, body in items:
        out[type(body).__name__] = out.get(type(body).__name__, 0) + 1
    return out


@pytest.mark.parametrize("extra", [-1, 0, 1, 2])
def test_the_item_held_ahead_at_a_batch_edge(extra: int) -> None:
    """A limit at (or one either side of) a SYNTH_BATCH boundary: the batches hold the feed's
    first n items, the one held ahead is item n, and the counts are of n items."""
    n = SYNTH_BATCH + 1 + extra
    want = list(itertools.islice(SyntheticMarket(2, "BTCUSDT", 20).items(), n + 1))
    inp = SyntheticInput(n, 2, BUILTIN, FeedConfig(symbols=("BTCUSDT",)))
    got = [it for b in inp.row_batches() for it in b.items()]
    assert got == want[:n]
    assert inp.source._heads[0] == want[n]
    assert inp.accounting()["accepted"] == _accepted(want[:n])
    inp2 = SyntheticInput(n, 2, BUILTIN, FeedConfig(symbols=("BTCUSDT",)))
    raw = list(inp2.raw_batches())
    from services.backtest.inputs import decode_batch

    assert [it for b in raw for it in decode_batch(b)] == want[:n]
    assert inp2.source._heads[0] == want[n]


def test_row_batches_round_trip_through_rowbatch() -> None:
    """(RowBatch words of a 4096-event batch parse as they are.)"""
    inp = SyntheticInput(SYNTH_BATCH + 5, 4, BUILTIN, FeedConfig(symbols=("BTCUSDT",), levels=3))
    want = list(itertools.islice(SyntheticMarket(4, "BTCUSDT", 3).items(), SYNTH_BATCH + 5))
    words = list(inp.source.row_batches(SYNTH_BATCH + 5))
    assert [it for w in words for it in RowBatch(w).items()] == want
