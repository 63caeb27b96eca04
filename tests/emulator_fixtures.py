"""Session-wide emulators for the contract and end-to-end suites (started once, stopped by PID)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.emulators import BigQueryEmulator, GcsEmulator, PubSubEmulator, SpannerEmulator


@pytest.fixture(scope="session")
def pubsub_emulator() -> Iterator[PubSubEmulator]:
    with PubSubEmulator() as emulator, pytest.MonkeyPatch.context() as patch:
        for name, value in emulator.environment().items():
            patch.setenv(name, value)
        yield emulator  # type: ignore[misc]


@pytest.fixture(scope="session")
def bigquery_emulator() -> Iterator[BigQueryEmulator]:
    with BigQueryEmulator() as emulator:
        yield emulator  # type: ignore[misc]


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[GcsEmulator]:
    with GcsEmulator() as emulator, pytest.MonkeyPatch.context() as patch:
        for name, value in emulator.environment().items():
            patch.setenv(name, value)
        yield emulator  # type: ignore[misc]


@pytest.fixture(scope="session")
def spanner_emulator() -> Iterator[SpannerEmulator]:
    with SpannerEmulator() as emulator, pytest.MonkeyPatch.context() as patch:
        for name, value in emulator.environment().items():
            patch.setenv(name, value)
        yield emulator  # type: ignore[misc]
