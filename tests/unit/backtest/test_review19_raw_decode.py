"""Review of stop 19: a raw batch must decode to the items the item path gives.

The market run decodes a raw batch (inputs.decode_batch, a typed msgspec decoder) as soon
as one of its items goes through Engine._one. The typed decoder also checks the bodies'
constraints (Trade.price is Pos), which the item path's objects never meet: on a symbol
whose tick is above its start price the synthetic market trades at prices <= 0, the item
path hands those Trades to the engine, and the raw path raised msgspec.ValidationError.
"""

from __future__ import annotations

import itertools

import msgspec
import pytest

from common.units import SymbolSpec
from services.backtest.inputs import decode_batch
from services.feed.synthetic import SyntheticMarket

pytestmark = pytest.mark.timeout(60)

# test_synthetic_kernel.py's own case: a tick above the start price puts bids at negative prices
_SPEC = SymbolSpec("XUSDT", price_scale=2, qty_scale=8, tick=10**7, step=1000, base="X", quote="USDT")


def test_raw_batches_decode_to_the_items_on_a_tick_above_the_start_price():
    try:
        m = SyntheticMarket(9, "XUSDT", 3, _SPEC)
    except ValueError:
        return  # such a symbol refused: then neither path runs it
    want = list(itertools.islice(SyntheticMarket(9, "XUSDT", 3, _SPEC).items(), 3000))
    assert any(type(b).__name__ == "Trade" and b.price <= 0 for _, b in want)  # the case at issue
    got = [item for buf in m.encoded(3000) for item in decode_batch(buf)]
    enc = msgspec.msgpack.encode
    assert enc(got) == enc(want)
