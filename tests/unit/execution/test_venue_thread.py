"""The live execution shell's venue thread: order, isolation of failures, idle work, a clean stop."""

from __future__ import annotations

import threading
import time

from services.execution.live import Unsent, VenueThread


def wait_until(pred, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.005)
    return pred()


def test_tasks_run_in_submission_order_and_their_answers_reach_drain():
    idle_runs = []
    w = VenueThread("t", lambda: idle_runs.append(1), idle_s=0.01)
    try:
        for i in range(50):
            w.submit(lambda i=i: w.emit([i]))
        got: list[int] = []
        assert wait_until(lambda: (got.extend(w.drain()), len(got) == 50)[1])
        assert got == list(range(50))
        assert wait_until(lambda: len(idle_runs) >= 3)  # idle work runs when there is nothing to do
    finally:
        assert w.stop(5.0)


def test_a_slow_task_does_not_block_the_caller_and_a_failing_one_does_not_stop_the_thread():
    release = threading.Event()
    w = VenueThread("t", lambda: None, idle_s=0.01)
    try:
        w.submit(lambda: release.wait(5.0))
        t0 = time.monotonic()
        w.submit(lambda: 1 / 0)
        w.submit(lambda: w.emit(["after"]))
        assert time.monotonic() - t0 < 0.5  # submitting never waits for the venue
        assert w.pending() >= 1 and w.drain() == []  # queued behind the slow one, in order
        release.set()
        got: list[str] = []
        assert wait_until(lambda: (got.extend(w.drain()), got == ["after"])[1])
        assert w.errors == 1
    finally:
        assert w.stop(5.0)


def test_stop_finishes_what_was_queued_first():
    w = VenueThread("t", lambda: None, idle_s=0.01)
    for i in range(5):
        w.submit(lambda i=i: (time.sleep(0.01), w.emit([i])))
    assert w.stop(5.0)
    assert w.drain() == [0, 1, 2, 3, 4]


def test_idle_work_runs_under_a_backlog_of_tasks():
    """The user-data stream (fills) is polled in the idle work: a queue that never empties
    (requotes arriving faster than the venue answers) must not hold it back. 100 tasks of
    5 ms each keep the queue busy for about 0.5 s; with idle_s = 0.02 the idle work must
    run many times before the last task is done, not only after it."""
    idle_at: list[float] = []
    done_at: list[float] = []
    w = VenueThread("t", lambda: idle_at.append(time.monotonic()), idle_s=0.02)
    try:
        gate = threading.Event()
        w.submit(lambda: gate.wait(5.0))  # hold the thread until the whole backlog is queued
        for _ in range(100):
            w.submit(lambda: (time.sleep(0.005), done_at.append(time.monotonic())))
        idle_at.clear()
        gate.set()
        assert wait_until(lambda: len(done_at) == 100)
        during = [t for t in idle_at if t < done_at[-1]]
        assert len(during) >= 5, f"idle work ran {len(during)} times during a ~0.5 s backlog"
    finally:
        assert w.stop(5.0)


def test_unsent_elides_a_submit_cancelled_before_it_begins_and_times_its_wait():
    u = Unsent(max_wait_ms=10_000)
    assert u.queued("a", "BTCUSDT") and u.queued("b", "BTCUSDT") and u.queued("c", "ETHUSDT")
    assert not u.queued("a", "BTCUSDT")  # a second copy of a waiting submit is dropped
    assert len(u) == 3
    assert u.cancel("a") and u.cancel("a")  # waiting: elided (twice is still no request)
    assert not u.cancel("zz")  # never queued here (sent already, or another order): cancel it at the venue
    u.cancel_symbol("ETHUSDT")
    time.sleep(0.02)
    verdict, waited_ms = u.begin("a")
    assert verdict == Unsent.ELIDED and waited_ms >= 20
    assert u.begin("b")[0] == Unsent.SEND
    assert not u.cancel("b")  # begun: the cancel goes to the venue, after the submit
    assert u.begin("c")[0] == Unsent.ELIDED  # a cancel-all on its symbol came first
    assert len(u) == 0
    # Reported here: never sent afterwards, even from a second copy queued later (going live
    # can queue one submit twice), and a cancel of it needs no request.
    assert not u.queued("a", "BTCUSDT")
    assert u.begin("a") == (Unsent.REPORTED, 0)
    assert u.cancel("a")


def test_unsent_rejects_a_submit_that_waited_too_long_unless_the_limit_is_off():
    u = Unsent(max_wait_ms=10)
    u.queued("slow", "BTCUSDT")
    u.queued("quick", "BTCUSDT")
    time.sleep(0.03)
    verdict, waited_ms = u.begin("slow")
    assert verdict == Unsent.STALE and waited_ms >= 30
    assert u.begin("slow")[0] == Unsent.REPORTED  # a second copy is not sent either
    off = Unsent(max_wait_ms=0)
    off.queued("x", "BTCUSDT")
    time.sleep(0.02)
    assert off.begin("x")[0] == Unsent.SEND


def test_the_reported_set_stays_bounded():
    u = Unsent(max_wait_ms=0)
    for i in range(Unsent.KEEP_REPORTED + 50):
        u.queued(f"o{i}", "BTCUSDT")
        u.cancel(f"o{i}")
        assert u.begin(f"o{i}")[0] == Unsent.ELIDED
    assert len(u._reported) == Unsent.KEEP_REPORTED
    assert u.queued("o0", "BTCUSDT")  # the oldest were forgotten
