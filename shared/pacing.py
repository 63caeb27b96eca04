"""Background builds that give way to requests: cooperative pacing under one interpreter lock.

A new catalog version is built in a background thread of the serving process. Threads of one
process take turns on the interpreter, so a build competing for it slows every request it
overlaps (measured: a search of 3 ms took 7 ms during a build, and its p99 tripled). So the
build's long loops iterate through `paced(...)`: in a thread that `pacing(...)` marks, every few
hundred items it pauses while requests are in flight (`serving()`, which each HTTP request and the
benchmarks' searches enter), up to `max_pause_s` at a time so it always progresses. Anywhere
else `paced` returns its argument untouched: no cost outside a build.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")
EVERY = 500  # items between two looks at the requests in flight (about a quarter of a millisecond)

_local = threading.local()


class Activity:
    """How many requests this process is serving now."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.in_flight = 0

    @contextmanager
    def serving(self) -> Iterator[None]:
        with self._lock:
            self.in_flight += 1
        try:
            yield
        finally:
            with self._lock:
                self.in_flight -= 1


REQUESTS = Activity()  # the process's requests (functions.http.endpoint enters it)


@contextmanager
def pacing(activity: Activity = REQUESTS, max_pause_s: float = 0.005) -> Iterator[None]:
    """Within this block, this thread's `paced` loops give way to `activity`'s requests."""

    def pause() -> None:
        until = time.monotonic() + max_pause_s
        while activity.in_flight and time.monotonic() < until:
            time.sleep(0.0002)

    _local.pause = pause
    try:
        yield
    finally:
        _local.pause = None


def paced(items: Iterable[T]) -> Iterable[T]:
    """`items`, pausing every EVERY items for requests in flight when this thread is pacing."""
    pause = getattr(_local, "pause", None)
    return items if pause is None else _paced(items, pause)


def _paced(items: Iterable[T], pause: Callable[[], None]) -> Iterator[T]:
    for i, item in enumerate(items):
        if i % EVERY == 0:
            pause()
        yield item
