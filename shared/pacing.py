"""Background builds that give way to requests: cooperative pacing under one interpreter lock.

A new catalog version is built in a background thread of the serving process. Threads of one
process take turns on the interpreter, so a build competing for it slows every request it
overlaps (measured: a search of 3 ms took 7 ms during a build, and its p99 tripled). So:
- the build's long loops iterate through `paced(...)`: in a thread that `pacing(...)` marks, every
  EVERY items it waits (blocked, up to `max_pause_s`) while requests are in flight (`serving()`,
  which each HTTP request and the benchmarks' searches enter); anywhere else `paced` returns its
  argument untouched: no cost outside a build;
- within `pacing` (and `quick_switches`, which an admin write enters) the interpreter's switch
  interval is 0.1 ms, so a request waiting for the interpreter between two looks gets it at once;
- `collections_deferred` keeps the collector out of the build (a pass over its large young
  containers stalled every request for 5-9 ms) and freezes the new version after it.
"""

from __future__ import annotations

import atexit
import gc
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")
EVERY = 20  # items between two looks at the requests in flight (a few microseconds to tens)

_local = threading.local()


class Activity:
    """How many requests this process is serving now."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.in_flight = 0
        self._idle = threading.Event()  # set while no request is in flight
        self._idle.set()

    @contextmanager
    def serving(self) -> Iterator[None]:
        with self._lock:
            self.in_flight += 1
            self._idle.clear()
        try:
            yield
        finally:
            with self._lock:
                self.in_flight -= 1
                if not self.in_flight:
                    self._idle.set()

    def wait_idle(self, timeout_s: float) -> None:
        """Until no request is in flight, at most `timeout_s` (blocked, not polling: a waiting
        thread takes no turn on the interpreter from the requests)."""
        self._idle.wait(timeout_s)


REQUESTS = Activity()  # the process's requests (functions.http.endpoint enters it)

# What `collections_deferred` freezes is collected at exit like the rest (extension libraries report
# the objects still alive then as leaks).
atexit.register(gc.unfreeze)


class _QuickSwitches:
    """The interpreter's switch interval at 0.1 ms while any thread is within `quick_switches()`
    (a count: the interval is the process's, and such blocks overlap in different threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self._saved = sys.getswitchinterval()

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if not self._holders:
                self._saved = sys.getswitchinterval()
                sys.setswitchinterval(min(self._saved, 0.0001))
            self._holders += 1
        try:
            yield
        finally:
            with self._lock:
                self._holders -= 1
                if not self._holders:
                    sys.setswitchinterval(self._saved)


# Work that must not delay the requests it overlaps (a build, an admin write): at the default 5 ms a
# request waiting for the interpreter waits up to 5 ms at each turn (measured: a search overlapping a
# 1,000-product write took 8-11 ms instead of 3).
quick_switches = _QuickSwitches()


@contextmanager
def pacing(activity: Activity = REQUESTS, max_pause_s: float = 0.05) -> Iterator[None]:
    """Within this block, this thread's `paced` loops give way to `activity`'s requests: they go on
    while none is in flight (or after `max_pause_s`, so that a build always ends)."""

    def pause() -> None:
        if activity.in_flight:
            activity.wait_idle(max_pause_s)

    _local.pause = pause
    try:
        with quick_switches():  # a request waiting for the interpreter between two looks gets it at once
            yield
    finally:
        _local.pause = None


def paced(items: Iterable[T]) -> Iterable[T]:
    """`items`, pausing every EVERY items for requests in flight when this thread is pacing."""
    pause = getattr(_local, "pause", None)
    return items if pause is None else _paced(items, pause)


def paced_steps(n: int, step: int) -> Iterator[slice]:
    """0..n in slices of `step`, paced: array work over a whole corpus or table done a step at a time,
    since one operation over all of it holds the interpreter for milliseconds."""
    return (slice(start, start + step) for start in paced(range(0, n, step)))


def _paced(items: Iterable[T], pause: Callable[[], None]) -> Iterator[T]:
    for i, item in enumerate(items):
        if i % EVERY == 0:
            pause()
        yield item


@contextmanager
def collections_deferred(activity: Activity = REQUESTS, max_wait_s: float = 1.0) -> Iterator[None]:
    """No collector pass within this block; after it, one pass over the young objects in a quiet moment
    (no request in flight, waiting at most `max_wait_s`), then all that is left is frozen out of later
    passes, as the heap of a starting instance is (bootstrap.settle_heap).

    A pass traverses every young container, and a build's are large: a young dict of 50,000 products
    made each pass of a build take 5-9 ms (measured), a stall for every request it overlapped.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        activity.wait_idle(max_wait_s)
        gc.collect(1)
        gc.freeze()
        if was_enabled:
            gc.enable()
