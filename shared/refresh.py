"""Newer versions picked up in the background: no request waits on the store that holds them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class BackgroundRefresh:
    """Runs `load` in a background thread when `period_s` has passed since the last start, one load at
    a time; `lock` is held while loading, so a caller that installs a version itself can hold it too."""

    def __init__(
        self, load: Callable[[], None], period_s: float, clock: Callable[[], float] = time.monotonic, name: str = ""
    ) -> None:
        self.load = load
        self.period_s = period_s
        self.clock = clock
        self.name = name
        self.lock = threading.Lock()
        self._started = float("-inf")
        self._again = False  # a load was asked for while one ran: run once more after it

    def due(self) -> None:
        """Start a load in the background if the period has passed and none is running; never waits."""
        if self.clock() - self._started < self.period_s or not self.lock.acquire(blocking=False):
            return
        self._started = self.clock()
        threading.Thread(target=self._run, name=self.name, daemon=True).start()

    def soon(self) -> None:
        """Start a load in the background now, whatever the period; after the running one if any
        (which may have looked at the store before what the caller just wrote)."""
        self._again = True
        self._started = float("-inf")
        self.due()

    def now(self) -> None:
        """Load in this thread (after a load in progress)."""
        with self.lock:
            self.load()

    def _run(self) -> None:
        try:
            self._again = False
            self.load()
            while self._again:
                self._again = False
                self.load()
        finally:
            self.lock.release()
        if self._again:  # asked for between the last load and the release
            self.soon()
