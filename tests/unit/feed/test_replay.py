"""The Binance path on the real captures: books rebuilt from the events match bookTicker."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from common.events import BestBidOffer, BookDelta, Trade, unpack_levels
from services.feed.binance import Normalizer
from services.feed.replay import Pacer, read_lines, replay_items
from tests.support.books import EventBook

from .conftest import capture

pytestmark = pytest.mark.timeout(60)
REPO = Path(__file__).resolve().parents[3]


def _replay_check(files: list[str]) -> dict[str, int]:
    paths = [capture(f) for f in files]
    n = Normalizer()
    book = EventBook()
    checked = mismatches = crossed = 0
    trade_ids: list[int] = []
    # bookTicker is real time and the diffs come every 100 ms, so the ticker for
    # update id u arrives before the diff ending at u: keep recent tickers by id
    # and compare when the book's last applied id reaches theirs.
    tickers: dict[int, BestBidOffer] = {}
    for _, body in replay_items(paths, n):
        book.on(body)
        if isinstance(body, BookDelta) and book.bids and book.asks:
            bb, _, ba, _ = book.touch()
            crossed += bb >= ba
            bbo = tickers.pop(book.last_id, None)
            if bbo is not None:
                checked += 1
                if book.touch() != (bbo.bid_px, bbo.bid_qty, bbo.ask_px, bbo.ask_qty):
                    mismatches += 1
                own = n.book(bbo.symbol)  # the normalizer's own book agrees too
                assert own.best_bid() + own.best_ask() == (book.touch()[:2] + book.touch()[2:])
            if len(tickers) > 5000:
                tickers = {u: t for u, t in tickers.items() if u > book.last_id}
        elif isinstance(body, BestBidOffer):
            if body.update_id == book.last_id:  # a ticker after its diff (rare here) counts too
                checked += 1
                mismatches += book.touch() != (body.bid_px, body.bid_qty, body.ask_px, body.ask_qty)
            elif body.update_id > book.last_id:
                tickers[body.update_id] = body
        elif isinstance(body, Trade):
            trade_ids.append(body.trade_id)
    c = n.counters
    assert c.settled() == c.lines
    gaps_in_trades = sum(1 for a, b in zip(trade_ids, trade_ids[1:], strict=False) if b != a + 1)
    return {
        "checked": checked,
        "mismatches": mismatches,
        "crossed": crossed,
        "trades": len(trade_ids),
        "trade_id_gaps": gaps_in_trades,
        "gaps": c.events.get("GapDeclared", 0),
        "rejected": sum(c.rejected.values()),
        "deltas": c.accepted["BookDelta"],
    }


@pytest.mark.parametrize("sym", ["btcusdt", "ethusdt"])
def test_rebuilt_book_equals_book_ticker_across_two_files(sym):
    r = _replay_check([f"{sym}_20240808.gz", f"{sym}_20240809.gz"])
    assert r["checked"] > 1000, r
    assert r["mismatches"] == 0, r
    assert r["crossed"] == 0 and r["gaps"] == 0 and r["rejected"] == 0, r
    assert r["deltas"] > 6000, r  # the 0809 diffs continue the 0808 book: one session
    assert r["trades"] == {"btcusdt": 9_757 + 10_147, "ethusdt": 14_515}[sym], r
    assert r["trade_id_gaps"] == 0, r  # trade ids continuous across the file boundary


def test_the_book_check_can_fail():
    """Corrupt one diff quantity: the comparison must notice."""
    n = Normalizer()
    book = EventBook()
    mismatches = 0
    corrupted = False
    tickers: dict[int, BestBidOffer] = {}
    for _, body in replay_items([capture("btcusdt_20240808.gz")], n):
        if isinstance(body, BookDelta) and not corrupted and len(unpack_levels(body.bids)):
            lv = unpack_levels(body.bids).copy()
            lv[:, 1] += 1000  # one atom-lot more on every bid level of this diff
            body = BookDelta(body.symbol, body.first_id, body.last_id, lv.tobytes(), body.asks)
            corrupted = True
        book.on(body)
        if isinstance(body, BestBidOffer):
            tickers[body.update_id] = body
        elif isinstance(body, BookDelta) and book.last_id in tickers:
            bbo = tickers.pop(book.last_id)
            mismatches += book.touch() != (bbo.bid_px, bbo.bid_qty, bbo.ask_px, bbo.ask_qty)
    assert mismatches > 0


def test_2023_capture_in_microseconds():
    n = Normalizer()
    items = list(replay_items([capture("btcusdt_20230405.dat.gz")], n))
    trades = [(ns, b) for ns, b in items if isinstance(b, Trade)]
    bbos = [(ns, b) for ns, b in items if isinstance(b, BestBidOffer)]
    assert len(trades) == 3144 and len(bbos) == 8015
    # the local us timestamps became ns: within a few seconds of the exchange's trade times
    assert abs(bbos[0][0] - trades[0][0]) < 5_000_000_000
    assert n.counters.dropped == {"unsynced_at_end": 3929}  # no snapshot in that file: no book
    assert n.counters.settled() == n.counters.lines == 15088


def test_over_long_line_is_skipped_without_loading_it(tmp_path):
    src = gzip.open(capture("btcusdt_20240808.gz"), "rb").readlines()[:30]
    f = tmp_path / "cap.txt"
    f.write_bytes(b"".join(src[:5]) + b"1723161254000000000 " + b"[" * 300_000 + b"\n" + b"".join(src[5:]))
    lines = list(read_lines(f, 100_000))
    assert len(lines) == 31
    n = Normalizer(max_line_bytes=100_000)
    list(replay_items([f], n))
    assert n.counters.rejected == {"line_too_long": 1}
    assert n.counters.settled() == n.counters.lines == 31


def test_pacing_follows_capture_time_without_changing_events():
    clock = [0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        clock[0] += int(s * 1e9)

    path = capture("btcusdt_20240808.gz")
    lines = list(read_lines(path, 1 << 20))[:200]
    first, last = int(lines[0].split(b" ")[0]), int(lines[-1].split(b" ")[0])
    tmp = [lines]
    paced = Pacer(10.0, clock=lambda: clock[0], sleep=sleep)
    n1, n2 = Normalizer(), Normalizer()
    a = [x for line in tmp[0] for x in (paced.wait_until(int(line.split(b" ")[0])) or n1.feed_line(line))]
    b = [x for line in tmp[0] for x in n2.feed_line(line)]
    assert a == b
    assert abs(clock[0] - (last - first) / 10) < 150_000_000  # 10x: a tenth of the capture's span


def test_dry_run_json_accounts_for_every_line():
    f = capture("btcusdt_20240808.gz")
    proc = subprocess.run(
        [sys.executable, "-m", "services.feed", "--source", "replay", "--file", str(f), "--dry-run", "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["lines"] == 41_249
    total = sum(result["accepted"].values()) + sum(result["dropped"].values()) + sum(result["rejected"].values())
    assert total == result["lines"]
    assert result["dropped"]["stale_diff"] >= 1  # the diffs before the snapshot line
    assert result["accepted"]["BookSnapshot"] == 1
    assert result["accepted"]["Trade"] == 9757 and result["accepted"]["BestBidOffer"] == 28040
    assert result["rejected"] == {}
