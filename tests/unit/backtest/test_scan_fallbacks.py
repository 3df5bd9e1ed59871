"""Review of the market run's msgpack scan (MarketRun._encode + market_run.scan_items)
against the Python encoder it replaced (f20dbf9's MarketRun._encode):

* an item msgspec cannot encode for another reason than an int beyond 64 bits (here a
  numpy int in a field no core checks the type of) raised out of the run: the old encoder
  read the fields in Python and ran it, and so does the per-event path;
* an int beyond 64 bits in a field the kernel never reads (a trade's id, a delta's ids)
  sends the whole item to Engine._one: the old encoder gave it a kernel row (only time,
  price and quantities decide). Kept (rare input, slower only): the run agrees.
"""

from __future__ import annotations

import types

import numpy as np

from common import config
from common import events as E
from common.hotpath import market_run as K
from services.backtest import fastpath
from services.backtest.run import run_backtest
from tests.unit.backtest.test_fastpath import _Items, synthetic

SYM = "BTCUSDT"


def _fake_run():
    """What MarketRun._encode, _scan and _room read of their instance, for SYM."""
    f = types.SimpleNamespace()
    f._evs = np.zeros((fastpath.CHUNK, K.RK_COLS), dtype=np.int64)
    f._flat = np.zeros(fastpath.CHUNK * 8, dtype=np.int64)
    f._sym = SYM.encode()
    f._scan = lambda buf, n: fastpath.MarketRun._scan(f, buf, n)
    f._room = lambda rows: fastpath.MarketRun._room(f, rows)
    f.lv = np.zeros((64, 3), dtype=np.int64)
    f.vlv = f.lv.copy()
    return f


def test_an_item_msgspec_cannot_encode_goes_to_python_instead_of_raising():
    items = synthetic(3_000)
    k = next(i for i, (_, b) in enumerate(items) if i > 1_500 and type(b) is E.Trade)
    t, b = items[k]
    items[k] = (t, E.Trade(b.symbol, np.int64(b.trade_id), b.price, b.qty, b.buyer_maker))
    cfg = config.from_dict({})
    slow = run_backtest(cfg, _Items(items), "touch", market_run=False)
    fast = run_backtest(cfg, _Items(items), "touch", market_run=True)  # TypeError from msgspec
    assert slow.engine.hashes() == fast.engine.hashes()


def test_the_encoder_on_its_own_leaves_an_unencodable_item_to_python():
    lv = E.pack_levels([(6_000_000, 5_000)])
    chunk = [
        (10, E.Trade(SYM, np.int64(7), 6_000_000, 5, True)),
        (11, E.BookDelta(SYM, 1, 2, lv, b"")),
    ]
    evs, _ = fastpath.MarketRun._encode(_fake_run(), chunk)
    assert evs[1, K.RK_KIND] == K.RK_DELTA


def test_an_id_beyond_64_bits_goes_to_python_and_the_run_agrees():
    """Such an item is left to Engine._one (the old encoder gave it a kernel row): slower on
    such input, the same results."""
    lv = E.pack_levels([(6_000_000, 5_000)])
    chunk = [
        (10, E.Trade(SYM, 2**64, 6_000_000, 5, True)),
        (11, E.BookDelta(SYM, 2**70, 2**70, lv, b"")),
        (12, E.Trade(SYM, 1, 6_000_000, 5, True)),
    ]
    evs, _ = fastpath.MarketRun._encode(_fake_run(), chunk)
    assert evs[:3, K.RK_KIND].tolist() == [K.RK_OTHER, K.RK_OTHER, K.RK_TRADE]
    items = synthetic(3_000)
    k = next(i for i, (_, b) in enumerate(items) if i > 1_500 and type(b) is E.Trade)
    t, b = items[k]
    items[k] = (t, E.Trade(b.symbol, 2**64 + b.trade_id, b.price, b.qty, b.buyer_maker))
    cfg = config.from_dict({})
    slow = run_backtest(cfg, _Items(items), "touch", market_run=False)
    fast = run_backtest(cfg, _Items(items), "touch", market_run=True)
    assert slow.engine.hashes() == fast.engine.hashes()


def test_the_scan_refuses_a_market_body_schema_it_does_not_read(monkeypatch) -> None:
    fastpath._check_schema()  # the events module as it is: accepted
    moved = tuple((tag, n + 1 if tag == K.TAG_TRADE else n) for tag, n in K.FIELDS)  # a field added to Trade
    monkeypatch.setattr(K, "FIELDS", moved)
    try:
        fastpath._check_schema()
    except RuntimeError as exc:
        assert "no longer match" in str(exc)
    else:
        raise AssertionError("a changed schema was accepted")
