"""Firestore transactions aborted by contention are retried by google.api_core's Retry, with a pause."""

from __future__ import annotations

import pytest
from google.api_core import exceptions

from shared.adapters.profile_store.firestore import contention_retry


def attempts(errors: list[Exception]):
    calls = []

    def run() -> str:
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return "committed"

    return run, calls


def exhausted() -> ValueError:
    """What the client raises when its own attempts at a transaction were all aborted."""
    try:
        raise exceptions.Aborted("contention")
    except exceptions.Aborted as exc:
        try:
            raise ValueError("Failed to commit transaction in 5 attempts.") from exc
        except ValueError as error:
            return error


def test_aborted_transactions_run_again_until_they_commit():
    run, calls = attempts([exceptions.Aborted("contention"), exhausted()])
    assert contention_retry(timeout_s=5)(run)() == "committed" and len(calls) == 3


def test_other_errors_are_raised_at_once_and_contention_only_until_the_timeout():
    run, calls = attempts([ValueError("not a transaction error"), exceptions.Aborted("never")])
    with pytest.raises(ValueError, match="not a transaction error"):
        contention_retry(timeout_s=5)(run)()
    assert len(calls) == 1
    run, calls = attempts([exceptions.Aborted("contention") for _ in range(10_000)])
    with pytest.raises(exceptions.RetryError) as raised:
        contention_retry(timeout_s=0.2)(run)()
    assert isinstance(raised.value.cause, exceptions.Aborted) and 2 < len(calls) < 10_000
