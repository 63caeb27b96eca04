"""What the SQLite adapters share: opening a file in WAL mode while other processes race to."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def open_shared(path: Path, schema: str, busy_timeout_s: float) -> sqlite3.Connection:
    """A connection to a SQLite file several processes share: autocommit (transactions are the
    caller's BEGIN), WAL so readers never wait for a writer, usable from any thread (behind the
    caller's lock), and `schema` applied."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
    retry_while_locked(lambda: db.execute("PRAGMA journal_mode=WAL"), busy_timeout_s)
    db.executescript(schema)
    return db


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
