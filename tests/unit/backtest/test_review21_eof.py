"""Review 21: an EOFError the input itself raises in the read-ahead child.

A gzip capture cut short raises EOFError ("Compressed file ended before the
end-of-stream marker was reached") from inside the input's items(). Read
inline, the items before it are given and then the EOFError raises; read
ahead, the parent must give the same items and raise the same error (the
prefetch module's contract: "An exception in the child is re-raised in the
parent after the items read before it"), not swallow it as if the parent had
stopped reading.
"""

from __future__ import annotations

import gzip
import hashlib
import multiprocessing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from common import config
from common.units import BUILTIN
from services.backtest.inputs import Input, SyntheticInput
from services.backtest.prefetch import Prefetched, available
from services.feed.replay import read_lines

pytestmark = [pytest.mark.timeout(60), pytest.mark.skipif(not available(), reason="prefetching needs fork")]
LINES = 5_000


class _CutGzip(Input):
    """One synthetic item per line of a gzip file that was cut short."""

    name = "cut-gzip"

    def __init__(self, path: Path) -> None:
        self.path = path

    def items(self) -> Iterator[Any]:
        synth = SyntheticInput(10 * LINES, 3, BUILTIN, config.from_dict({}).feed).items()
        for _line in read_lines(self.path, 1 << 20):
            yield next(synth)

    def accounting(self) -> dict[str, Any]:
        return {}


def _cut(tmp_path: Path) -> Path:
    text = b"".join(b"%d %s\n" % (i, hashlib.sha256(b"%d" % i).hexdigest().encode()) for i in range(LINES))
    data = gzip.compress(text)
    path = tmp_path / "cut.gz"
    path.write_bytes(data[: len(data) // 2])
    return path


def test_an_eof_error_of_the_input_arrives_after_the_items_before_it(tmp_path: Path) -> None:
    path = _cut(tmp_path)
    want: list[Any] = []
    with pytest.raises(EOFError):
        for item in _CutGzip(path).items():
            want.append(item)
    assert 0 < len(want) < LINES
    got: list[Any] = []
    with pytest.raises(EOFError):
        for item in Prefetched(_CutGzip(path), batch=1000).items():  # the last batch partial
            got.append(item)
    assert got == want
    assert not multiprocessing.active_children()
