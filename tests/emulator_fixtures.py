"""Session-wide emulators for the contract and end-to-end suites (started once, stopped by PID)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.emulators import BigQueryEmulator, Emulator, GcsEmulator, PubSubEmulator, SpannerEmulator


def serve(emulator: Emulator, set_environment: bool = True) -> Iterator[Emulator]:
    """Run the emulator for the session; client libraries find it through its environment."""
    with emulator, pytest.MonkeyPatch.context() as patch:
        for name, value in emulator.environment().items() if set_environment else ():
            patch.setenv(name, value)
        yield emulator


@pytest.fixture(scope="session")
def pubsub_emulator() -> Iterator[Emulator]:
    yield from serve(PubSubEmulator())


@pytest.fixture(scope="session")
def bigquery_emulator() -> Iterator[Emulator]:
    yield from serve(BigQueryEmulator(), set_environment=False)  # tests pass its endpoint explicitly


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[Emulator]:
    yield from serve(GcsEmulator())


@pytest.fixture(scope="session")
def spanner_emulator() -> Iterator[Emulator]:
    yield from serve(SpannerEmulator())
