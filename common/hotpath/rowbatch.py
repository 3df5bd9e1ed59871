"""Row batches: market events handed to the backtest's market run as its int64 rows.

A backtest on the synthetic market used to carry its events as msgpack: the
generator's kernel wrote the bytes (`synth.synth_msgpack`, about 50 ns an
event) and the market run scanned them back into its rows (`scan_items`,
about 60 ns). The generator can write those rows itself (`synth.synth_rows`),
so neither runs. A batch is one int64 array (native byte order), which the
backtest's read-ahead child hands over whole (services.backtest.prefetch: in
a shared-memory slot, or as one pipe message) and the engine reads in place:

* words ``[0:HEAD]``: TAG (HEAD_BYTES, the first word's bytes, let a pipe's
  reader tell a batch from its other messages), n (events), nflat (level
  values), most (level rows of the largest book event), the symbol's length
  in bytes;
* the symbol's UTF-8, zero-padded to whole words;
* rows: n * RK_COLS words, ``common.hotpath.market_run``'s evs layout, with
  RK_D holding a book event's update id and a trade's id (the run reads RK_D
  of a best bid/offer only, and the generator makes none);
* flat: nflat words, the book events' (price, qty) pairs, which rows' RK_OFF
  index.

`RowBatch.items()` makes the (event_ns, body) items back, equal to the ones
the generator's own `items()` gives; that needs a delta's first and last ids
to be equal (RK_D holds one), as they are in the synthetic market.

The market run reads and writes through a batch's rows without bounds checks
(compiled code), so a batch is checked when it is made (`check_rows`): every
row's kind, and every book event's pairs inside flat and within `most` rows.
"""

from __future__ import annotations

import functools

import numpy as np

from common.events import BookDelta, BookSnapshot, Trade, _Body
from common.hotpath import market_run as K
from common.hotpath.kernels import kernel

HEAD = 5
TAG = ord("R")  # word 0
HEAD_BYTES = np.array([TAG], dtype=np.int64).tobytes()  # a batch's first 8 bytes (b"R\0..." here)
_W = 8  # bytes a word
_PAIR = 16  # bytes a (price, qty) pair
MOST = 3  # the word the producer writes last


def _sym_words(symbol_len: int) -> int:
    return (symbol_len + _W - 1) // _W


def allocate(symbol: bytes, n: int, nflat: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A batch's words for n events and nflat level values, its head and symbol written:
    (words, rows view, flat view). The producer writes rows and flat, then words[MOST]."""
    s = _sym_words(len(symbol))
    words = np.zeros(HEAD + s + n * K.RK_COLS + nflat, dtype=np.int64)
    words[0], words[1], words[2], words[4] = TAG, n, nflat, len(symbol)
    words[HEAD : HEAD + s].view(np.uint8)[: len(symbol)] = np.frombuffer(symbol, dtype=np.uint8)
    at = HEAD + s
    return words, words[at : at + n * K.RK_COLS].reshape(n, K.RK_COLS), words[at + n * K.RK_COLS :]


@kernel
def check_rows(rows, nflat, most):
    """-1 if every row is a delta, snapshot or trade whose level pairs lie in flat[0:nflat]
    and number at most `most` rows; else the first row that is not."""
    for i in range(rows.shape[0]):
        k = rows[i, K.RK_KIND]
        if k == K.RK_TRADE:
            continue
        if k != K.RK_DELTA and k != K.RK_SNAPSHOT:
            return i
        off = rows[i, K.RK_OFF]
        nb = rows[i, K.RK_NB]
        na = rows[i, K.RK_NA]
        if off < 0 or nb < 0 or na < 0 or nb + na > most or off > nflat - 2 * (nb + na):
            return i
    return -1


class RowBatch:
    """One batch, read in place from its words (an int64 array: copied once unless it is
    writable, aligned and contiguous, as numba compiles once per array flavour)."""

    __slots__ = ("words", "symbol", "n", "most", "rows", "flat")

    def __init__(self, words: np.ndarray) -> None:
        f = words.flags
        if words.dtype != np.int64 or words.ndim != 1 or not (f.writeable and f.aligned and f.c_contiguous):
            words = np.ascontiguousarray(words, dtype=np.int64).copy()
        head = words[:HEAD].tolist()
        if len(head) < HEAD or head[0] != TAG:
            raise ValueError(f"not a row batch: {len(words)} words, the first {head[0] if head else None}")
        _, n, nflat, most, ls = head
        s = _sym_words(ls)
        if n < 0 or nflat < 0 or ls < 0 or len(words) != HEAD + s + n * K.RK_COLS + nflat:
            raise ValueError(f"a row batch's head ({n}, {nflat}, {most}, {ls}) does not match its {len(words)} words")
        self.words = words
        self.symbol = _symbol(words[HEAD : HEAD + s].tobytes(), ls)
        self.n = n
        self.most = most
        at = HEAD + s
        end = at + n * K.RK_COLS
        self.rows = words[at:end].reshape(n, K.RK_COLS)
        self.flat = words[end:]
        if most < 0 or most > nflat // 2:
            raise ValueError(f"a row batch's largest book event ({most} rows) does not fit its {nflat} level values")
        bad = check_rows(self.rows, nflat, most)
        if bad >= 0:
            raise ValueError(f"a row batch's row {bad} ({self.rows[bad].tolist()}) is not one the market run reads")

    @classmethod
    def parse(cls, buf: bytes | bytearray | memoryview) -> RowBatch:
        """A batch from a received buffer, read in place where it can be (see __init__)."""
        return cls(np.frombuffer(buf, dtype=np.int64))

    def items(self) -> list[tuple[int, _Body]]:
        """The batch's (event_ns, body) items."""
        fb = self.flat.astype("<i8", copy=False).tobytes()  # (the events' pairs are little-endian)
        return [self._item(row, fb, 0) for row in self.rows.tolist()]

    def __getitem__(self, i: int) -> tuple[int, _Body]:
        """Item i alone (what the market run asks for: the items Python must take are few,
        and making all of a batch's cost about 0.5 us each)."""
        row = self.rows[i].tolist()
        if row[0] == K.RK_TRADE:
            return self._item(row, b"", 0)
        off = row[2]
        pairs = self.flat[off : off + 2 * (row[3] + row[4])]
        return self._item(row, pairs.astype("<i8", copy=False).tobytes(), off)

    def _item(self, row: list[int], fb: bytes, base: int) -> tuple[int, _Body]:
        """The item of one row; fb holds flat's words from word `base` on, as bytes."""
        kind, ts, a, b, c, ident = row
        sym = self.symbol
        if kind == K.RK_TRADE:
            return ts, Trade(sym, ident, a, b, c != 0)
        lo = (a - base) * _W
        mid = lo + b * _PAIR
        bids, asks = fb[lo:mid], fb[mid : mid + c * _PAIR]
        if kind == K.RK_DELTA:
            return ts, BookDelta(sym, ident, ident, bids, asks)
        return ts, BookSnapshot(sym, ident, bids, asks)  # (check_rows admitted no other kind)


@functools.lru_cache(maxsize=64)
def _symbol(words: bytes, length: int) -> str:
    """A batch's symbol (cached: every batch of a run names the same one)."""
    return words[:length].decode()
