"""Pacing: loops of a background build look at the requests in flight every EVERY items, and
nowhere else cost anything."""

from __future__ import annotations

import threading

from shared.pacing import EVERY, REQUESTS, Activity, paced, pacing


class Counted(Activity):
    """An activity that records each look at it; busy for its first `busy` looks."""

    def __init__(self, busy: int = 0) -> None:  # no requests of its own: pacing only reads in_flight
        self.looks, self.busy = 0, busy

    @property  # type: ignore[override]
    def in_flight(self) -> int:
        self.looks += 1
        return 1 if self.looks <= self.busy else 0


def test_outside_a_pacing_block_paced_is_the_iterable_itself():
    items = [1, 2, 3]
    assert paced(items) is items


def test_a_paced_loop_looks_at_the_requests_every_few_hundred_items():
    activity = Counted()
    with pacing(activity):
        assert list(paced(range(EVERY * 3 + 1))) == list(range(EVERY * 3 + 1))
    assert activity.looks == 4  # items 0, EVERY, 2 EVERY, 3 EVERY
    assert paced([1]) == [1]  # the block is over


def test_it_waits_while_requests_are_in_flight_and_then_goes_on():
    activity = Counted(busy=3)
    with pacing(activity, max_pause_s=5.0):
        assert list(paced(range(10))) == list(range(10))
    assert activity.looks == 4  # busy three times (waiting), then free


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
