"""What the SQLite adapters share: opening a file in WAL mode while other processes race to."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def retry_while_locked(run: Callable[[], T], timeout_s: float, pause_s: float = 0.02) -> T:
    """`run()`, again while SQLite says the file is locked, for up to `timeout_s`.

    Switching a file to WAL takes an exclusive lock without waiting on the busy handler, so
    processes opening one file at once fail there instead of queueing: they retry here."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return run()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(pause_s)
