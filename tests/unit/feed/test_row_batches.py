"""Row batches: the synthetic market's events as the market run's own rows.

`synth.synth_rows` writes, from the generator's event rows, what `scan_items`
makes of the same events' msgpack (`synth_msgpack`): the same kinds, times,
trade fields and level pairs (only where the pairs sit in `flat` and RK_D, the
event's id here, may differ). `RowBatch.items()` makes the very items the
generator's `items()` gives, and a limit leaves the market in the state the
msgpack batches leave it in. A batch refuses a buffer that is not one.
"""

from __future__ import annotations

import itertools

import msgspec
import numpy as np
import pytest

from common.hotpath import market_run as MR
from common.hotpath import rowbatch
from common.hotpath import synth as K
from common.hotpath.rowbatch import RowBatch
from common.units import BUILTIN
from services.backtest.inputs import decode_batch
from services.feed.synthetic import SyntheticMarket

pytestmark = pytest.mark.timeout(120)
_enc = msgspec.msgpack.encode


def _scanned(buf: bytes, symbol: str) -> tuple[np.ndarray, np.ndarray, int]:
    n = int(MR._mp_len(buf, 0)[0])
    evs = np.zeros((n, MR.RK_COLS), dtype=np.int64)
    flat = np.zeros(len(buf) // 8 + 2, dtype=np.int64)
    most = MR.scan_items(buf, symbol.encode(), evs, flat)
    return evs, flat, most


@pytest.mark.parametrize(("seed", "symbol", "levels"), [(3, "BTCUSDT", 20), (11, "ETHUSDT", 5), (7, "BTCUSDT", 1)])
def test_rows_are_what_the_scan_makes_of_the_msgpack(seed: int, symbol: str, levels: int) -> None:
    a = SyntheticMarket(seed, symbol, levels, BUILTIN[symbol])
    b = SyntheticMarket(seed, symbol, levels, BUILTIN[symbol])
    kinds: set[int] = set()
    for words, buf in zip(a.row_batches(12_000), b.encoded(12_000), strict=True):
        rb = RowBatch(words)
        evs, flat, most = _scanned(buf, symbol)
        assert rb.symbol == symbol and rb.n == len(evs) and rb.most == most
        for i in range(rb.n):
            got, want = rb.rows[i], evs[i]
            kinds.add(int(got[MR.RK_KIND]))
            assert (got[MR.RK_KIND], got[MR.RK_TS]) == (want[MR.RK_KIND], want[MR.RK_TS]), i
            if got[MR.RK_KIND] == MR.RK_TRADE:
                assert (got[MR.RK_A : MR.RK_D] == want[MR.RK_A : MR.RK_D]).all(), i
                continue
            nb, na = got[MR.RK_NB], got[MR.RK_NA]
            assert (nb, na) == (want[MR.RK_NB], want[MR.RK_NA]), i
            g, w = got[MR.RK_OFF], want[MR.RK_OFF]
            assert (rb.flat[g : g + 2 * (nb + na)] == flat[w : w + 2 * (nb + na)]).all(), i
    assert kinds == {MR.RK_SNAPSHOT, MR.RK_DELTA, MR.RK_TRADE}


@pytest.mark.parametrize("limit", [1, 2, 1023, 1024, 1025, 7_777])
def test_items_and_the_state_after_a_limit_are_the_msgpack_batches(limit: int) -> None:
    a, b = SyntheticMarket(5), SyntheticMarket(5)
    got = [it for w in a.row_batches(limit) for it in RowBatch(w).items()]
    want = [it for buf in b.encoded(limit) for it in decode_batch(buf)]
    assert len(got) == limit
    assert [(t, type(x), _enc(x)) for t, x in got] == [(t, type(x), _enc(x)) for t, x in want]
    assert got == list(itertools.islice(SyntheticMarket(5).items(), limit))
    assert a.ahead == b.ahead and a.made() == b.made()
    assert (a.now_ns, a.regime_changes, a.bursts) == (b.now_ns, b.regime_changes, b.bursts)


def _events(n: int) -> tuple[np.ndarray, np.ndarray]:
    m = SyntheticMarket(9)
    ne, nl = next(m._calls())
    assert ne >= n
    return m._ev[:n].copy(), m._lv[:nl].copy()


@pytest.mark.parametrize("fn", [K.synth_rows, K.synth_rows.py_func], ids=["compiled", "python"])
def test_the_twin_agrees_and_out_of_range_values_are_refused(fn) -> None:
    ev, lv = _events(300)
    want_rows = np.zeros((300, MR.RK_COLS), dtype=np.int64)
    want_flat = np.zeros(2 * len(lv), dtype=np.int64)
    want_most = K.synth_rows(ev, lv, 300, want_rows, want_flat)
    rows, flat = np.zeros_like(want_rows), np.zeros_like(want_flat)
    assert fn(ev, lv, 300, rows, flat) == want_most > 0
    assert (rows == want_rows).all() and (flat == want_flat).all()
    trade = int(np.flatnonzero(ev[:, K.EV_KIND] == K.K_TRADE)[0])
    for col, bad in ((K.EV_TS, -1), (K.EV_TS, MR.BIG + 1), (K.EV_PX, MR.BIG + 1), (K.EV_QTY, -1)):
        broken = ev.copy()
        broken[trade, col] = bad
        assert fn(broken, lv, 300, rows, flat) == -1, (col, bad)
    broken = ev.copy()
    broken[trade, K.EV_PX] = MR.BIG  # the bound itself is admitted, as the scan admits it
    assert fn(broken, lv, 300, rows, flat) == want_most


def test_a_batch_checks_its_head() -> None:
    words, rows, flat = rowbatch.allocate(b"BTCUSDT", 2, 4)
    rows[:, MR.RK_KIND] = MR.RK_TRADE
    rb = RowBatch(words)
    assert (rb.symbol, rb.n, len(rb.flat)) == ("BTCUSDT", 2, 4)
    assert rb.rows.base is not None  # read in place, not copied
    with pytest.raises(ValueError, match="not a row batch"):
        RowBatch(words[1:])
    with pytest.raises(ValueError, match="does not match"):
        RowBatch(words[:-1])
    bad = words.copy()
    bad[1] = -1
    with pytest.raises(ValueError, match="does not match"):
        RowBatch(bad)
    other = words.copy()
    other[5 + 1 + MR.RK_KIND] = MR.RK_BBO  # row 0's kind (head, one symbol word, then rows)
    with pytest.raises(ValueError, match="row 0 .* is not one the market run reads"):
        RowBatch(other)


def _book_batch(nb: int, na: int, nflat: int, most: int, off: int = 0) -> np.ndarray:
    words, rows, _ = rowbatch.allocate(b"BTCUSDT", 2, nflat)
    rows[0, MR.RK_KIND] = MR.RK_TRADE
    rows[1, MR.RK_KIND] = MR.RK_DELTA
    rows[1, MR.RK_OFF], rows[1, MR.RK_NB], rows[1, MR.RK_NA] = off, nb, na
    words[rowbatch.MOST] = most
    return words


def test_a_batch_whose_pairs_the_kernel_would_read_or_write_out_of_bounds_is_refused() -> None:
    assert RowBatch(_book_batch(2, 1, 6, 3)).most == 3  # exactly fits
    with pytest.raises(ValueError, match="row 1"):
        RowBatch(_book_batch(2, 1, 6, 3, off=2))  # pairs past flat's end
    with pytest.raises(ValueError, match="row 1"):
        RowBatch(_book_batch(2, 2, 8, 3))  # more rows than `most` sizes the level arrays for
    with pytest.raises(ValueError, match="row 1"):
        RowBatch(_book_batch(-1, 1, 6, 3))
    with pytest.raises(ValueError, match="row 1"):
        RowBatch(_book_batch(1, 1, 6, 3, off=-2))
    with pytest.raises(ValueError, match="largest book event"):
        RowBatch(_book_batch(1, 1, 6, 4))  # most beyond what flat could hold


def test_a_read_only_or_strided_array_is_copied_to_the_kernel_s_flavour() -> None:
    import numba

    words = next(SyntheticMarket(4).row_batches(100))
    want = numba.typeof(RowBatch(words).rows)
    ro = np.frombuffer(words.tobytes(), dtype=np.int64)
    assert not ro.flags.writeable
    assert numba.typeof(RowBatch(ro).rows) == want
    strided = np.repeat(words, 2)[::2]
    assert numba.typeof(RowBatch(strided).rows) == want
    assert RowBatch(strided).items() == RowBatch(words).items()


def test_parse_reads_a_writable_buffer_in_place_and_copies_a_read_only_one() -> None:
    words, _, _ = rowbatch.allocate(b"ETHUSDT", 1, 0)
    buf = bytearray(words.tobytes())
    rb = RowBatch.parse(memoryview(buf))
    rb.rows[0, MR.RK_TS] = 42
    assert np.frombuffer(buf, dtype=np.int64)[5 + 1 + MR.RK_TS] == 42
    ro = RowBatch.parse(words.tobytes())  # bytes: read-only, so copied (numba wants one flavour)
    assert ro.rows.flags.writeable and ro.symbol == "ETHUSDT"


def test_a_market_that_breaks_its_bounds_raises_rather_than_send_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(K, "synth_rows", lambda *a: -1)
    with pytest.raises(RuntimeError, match="outside \\[0, 2\\*\\*62\\]"):
        next(SyntheticMarket(1).row_batches(10))
