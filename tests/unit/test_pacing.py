"""Pacing: loops of a background build look at the requests in flight every EVERY items, and
nowhere else cost anything."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from shared.pacing import EVERY, REQUESTS, Activity, paced, pacing, quick_switches


class Counted(Activity):
    """An activity that records each look at it; busy for its first `busy` looks."""

    def __init__(self, busy: int = 0) -> None:  # no requests of its own: pacing only reads in_flight
        self.looks, self.busy = 0, busy
        self.waits: list[float] = []

    def wait_idle(self, timeout_s: float) -> None:
        self.waits.append(timeout_s)

    @property  # type: ignore[override]
    def in_flight(self) -> int:
        self.looks += 1
        return 1 if self.looks <= self.busy else 0


def test_outside_a_pacing_block_paced_is_the_iterable_itself():
    items = [1, 2, 3]
    assert paced(items) is items


def test_a_paced_loop_looks_at_the_requests_every_EVERY_items():
    activity = Counted()
    with pacing(activity):
        assert list(paced(range(EVERY * 3 + 1))) == list(range(EVERY * 3 + 1))
    assert activity.looks == 4  # items 0, EVERY, 2 EVERY, 3 EVERY
    assert paced([1]) == [1]  # the block is over


def test_it_waits_for_the_requests_in_flight_at_most_its_pause_and_then_goes_on():
    activity = Counted(busy=2)
    with pacing(activity, max_pause_s=0.5):
        assert list(paced(range(EVERY * 3))) == list(range(EVERY * 3))
    assert activity.looks == 3 and activity.waits == [0.5, 0.5]  # busy at two looks: a wait at each


def test_only_the_pacing_thread_is_paced():
    seen: list[object] = []
    with pacing(Counted()):
        thread = threading.Thread(target=lambda: seen.append(paced(seen)))
        thread.start()
        thread.join()
    assert seen[0] is seen


def test_serving_counts_requests_in_flight():
    with REQUESTS.serving(), REQUESTS.serving():
        assert REQUESTS.in_flight == 2
    assert REQUESTS.in_flight == 0


def test_waiting_for_idle_returns_when_the_last_request_ends():
    activity = Activity()
    ended: list[float] = []

    def request() -> None:
        with activity.serving():
            time.sleep(0.05)
        ended.append(time.monotonic())

    thread = threading.Thread(target=request)
    with activity.serving():  # a request of this thread's, so the other one is not yet the last
        thread.start()
    activity.wait_idle(timeout_s=5.0)
    assert ended and activity.in_flight == 0  # it waited for the other request, not the timeout
    thread.join()


def test_waiting_for_idle_gives_up_after_its_timeout():
    activity = Activity()
    with activity.serving():
        started = time.monotonic()
        activity.wait_idle(timeout_s=0.05)
        assert time.monotonic() - started >= 0.05 and activity.in_flight == 1


def test_quick_switches_hold_while_any_block_is_open_and_then_restore_the_interval():
    before = sys.getswitchinterval()
    inner_open, outer_may_close, inner_done = threading.Event(), threading.Event(), threading.Event()
    seen: list[float] = []

    def other_thread() -> None:  # a block of another thread that outlives the first one
        with quick_switches():
            inner_open.set()
            outer_may_close.wait(5)
            seen.append(sys.getswitchinterval())
        inner_done.set()

    with quick_switches():
        seen.append(sys.getswitchinterval())
        thread = threading.Thread(target=other_thread)
        thread.start()
        inner_open.wait(5)
    outer_may_close.set()  # the first block has closed; the other is still open
    inner_done.wait(5)
    thread.join()
    assert seen == [pytest.approx(min(before, 0.0001))] * 2
    assert sys.getswitchinterval() == before
