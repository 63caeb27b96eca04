"""The one retry of the SQLite adapters: opening a file in WAL mode while other processes race to."""

from __future__ import annotations

import sqlite3

import pytest

from shared.adapters.sqlite_retry import retry_while_locked


def failing(times: int, message: str = "database is locked"):
    calls = []

    def run() -> str:
        calls.append(1)
        if len(calls) <= times:
            raise sqlite3.OperationalError(message)
        return "done"

    return run, calls


def test_a_locked_file_is_tried_again_until_it_opens():
    run, calls = failing(2)
    assert retry_while_locked(run, timeout_s=5, pause_s=0) == "done" and len(calls) == 3


def test_other_errors_and_a_lock_past_the_timeout_are_raised():
    run, calls = failing(1, "no such table: profiles")
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        retry_while_locked(run, timeout_s=5, pause_s=0)
    assert len(calls) == 1
    run, calls = failing(1_000_000)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        retry_while_locked(run, timeout_s=0.05, pause_s=0.01)
    assert 1 < len(calls) < 100
