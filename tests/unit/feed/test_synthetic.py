"""The synthetic market: deterministic, deep, never crossed, with trades, regimes and informed bursts."""

from __future__ import annotations

import itertools
import math

import pytest

from common.events import BookDelta, BookSnapshot, Trade, encode, unpack_levels
from common.units import BUILTIN
from services.feed.sources import paced
from services.feed.synthetic import START_NS, SyntheticMarket

pytestmark = pytest.mark.timeout(60)
N = 30_000


def _events(seed: int, n: int = N, levels: int = 20) -> list:
    return list(itertools.islice(SyntheticMarket(seed, levels=levels).items(), n))


@pytest.fixture(scope="module")
def run():
    return _events(11)


def test_same_seed_same_bytes_different_seed_differs():
    a = b"".join(encode(b) + ns.to_bytes(8, "little") for ns, b in _events(3, 5000))
    b = b"".join(encode(b) + ns.to_bytes(8, "little") for ns, b in _events(3, 5000))
    c = b"".join(encode(b) + ns.to_bytes(8, "little") for ns, b in _events(4, 5000))
    assert a == b
    assert a != c


def test_pacing_does_not_change_events():
    fast = _events(5, 300)
    slow = list(paced(iter(_events(5, 300)), rate=20_000))
    assert [encode(b) for _, b in fast] == [encode(b) for _, b in slow]


def _replay(events):
    """Rebuild the book from the events; yield (event, bids, asks) after each."""
    bids: dict[int, int] = {}
    asks: dict[int, int] = {}
    last = None
    for ns, body in events:
        if isinstance(body, BookSnapshot):
            bids = dict(map(tuple, unpack_levels(body.bids).tolist()))
            asks = dict(map(tuple, unpack_levels(body.asks).tolist()))
            last = body.update_id
        elif isinstance(body, BookDelta):
            assert body.first_id == last + 1, "update ids continue"
            last = body.last_id
            for side, buf in ((bids, body.bids), (asks, body.asks)):
                for p, q in unpack_levels(buf).tolist():
                    if q:
                        side[p] = q
                    else:
                        assert p in side, "a removal names a level that exists"
                        del side[p]
        yield ns, body, bids, asks


def test_book_is_deep_realistic_and_never_crossed(run):
    spec = BUILTIN["BTCUSDT"]
    assert isinstance(run[0][1], BookSnapshot) and run[0][0] == START_NS
    prev_ns = 0
    trades = 0
    for ns, body, bids, asks in _replay(run):
        assert ns >= prev_ns
        prev_ns = ns
        if isinstance(body, Trade):
            # a trade happens at the touch, for no more than its queue
            if body.buyer_maker:
                assert body.price == max(bids) and body.qty <= bids[body.price]
            else:
                assert body.price == min(asks) and body.qty <= asks[body.price]
            trades += 1
            continue
        assert len(bids) >= 20 and len(asks) >= 20
        assert max(bids) < min(asks), "never crossed"
    # queues: a few tenths of a BTC at the touch, growing with depth, on the step grid
    snap = run[0][1]
    bq = unpack_levels(snap.bids)[:, 1]
    assert 10_000_000 <= bq[0] <= 100_000_000
    assert bq[10:].mean() > bq[:3].mean()
    assert all(q % spec.step == 0 for q in bq.tolist())
    assert all(p % spec.tick == 0 for p in unpack_levels(snap.asks)[:, 0].tolist())
    assert trades > N // 10


def test_trade_arrivals_are_poisson_like(run):
    times = [ns for ns, b in run if isinstance(b, Trade)]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False) if b > a]
    mean = sum(gaps) / len(gaps)
    var = sum((g - mean) ** 2 for g in gaps) / len(gaps)
    cv = math.sqrt(var) / mean
    assert 0.8 < cv < 2.5  # exponential inter-arrivals (cv 1), mixed over regimes


def test_regimes_change_the_volatility(run):
    mids = [(max(bids) + min(asks)) for _, b, bids, asks in _replay(run) if isinstance(b, BookDelta)]
    window = 1000
    moves = [
        sum(abs(b - a) for a, b in zip(mids[i : i + window], mids[i + 1 : i + window], strict=False))
        for i in range(0, len(mids) - window, window)
    ]
    assert max(moves) > 4 * max(1, min(moves)), moves  # calm and volatile stretches differ by far
    m = SyntheticMarket(11)
    list(itertools.islice(m.items(), N))
    assert m.regime_changes >= 5


def test_informed_bursts_are_visible_in_the_trades(run):
    sides = [b.buyer_maker for _, b in run if isinstance(b, Trade)]
    longest = run_len = 1
    for a, b in zip(sides, sides[1:], strict=False):
        run_len = run_len + 1 if a == b else 1
        longest = max(longest, run_len)
    chance = math.log2(len(sides))  # the expected longest run of fair coin flips
    assert longest >= 2 * chance + 5, (longest, chance)
    # and the flow is informed: during the longest one-sided run the price moves its way
    trades = [b for _, b in run if isinstance(b, Trade)]
    i = 0
    best = (0, 0)
    while i < len(trades):
        j = i
        while j + 1 < len(trades) and trades[j + 1].buyer_maker == trades[i].buyer_maker:
            j += 1
        if j - i > best[1] - best[0]:
            best = (i, j)
        i = j + 1
    lo, hi = best
    move = trades[hi].price - trades[lo].price
    assert (move < 0) if trades[lo].buyer_maker else (move > 0)


@pytest.mark.parametrize("symbols", [["BTCUSDT"], ["BTCUSDT", "ETHUSDT"]])
def test_source_counts_read_one_item_ahead_whatever_the_symbol_count(symbols):
    """The source holds the next item of every market before it yields one, so after n items
    each market has made exactly the steps of its own first items up to one past its share."""
    import dataclasses

    from common import config
    from services.feed.sources import SyntheticSource

    feed = dataclasses.replace(config.from_dict({}).feed, symbols=symbols, seed=11)
    src = SyntheticSource(feed, BUILTIN)
    got = list(itertools.islice(src.items(), 2233))
    for i, sym in enumerate(symbols):
        own = [body for _, body in got if body.symbol == sym]
        twin = SyntheticMarket(feed.seed + i, sym, feed.levels, BUILTIN[sym])
        mine = list(itertools.islice(twin.items(), len(own) + 1))  # + the head held back
        assert [encode(b) for _, b in mine[: len(own)]] == [encode(b) for b in own]
        m = src.markets[i]  # now_ns moves on every step: any step more or less shows
        assert (m.now_ns, m.regime_changes, m.bursts) == (twin.now_ns, twin.regime_changes, twin.bursts)
