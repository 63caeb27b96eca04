"""Session-wide emulators for the contract and end-to-end suites (started once, stopped by PID)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.adapters.warehouse.duckdb import DuckDbWarehouse
from shared.config import Settings
from shared.emulators import BigQueryEmulator, Emulator, GcsEmulator, PubSubEmulator, SpannerEmulator
from shared.ports.warehouse import Warehouse


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


def new_warehouse(request: pytest.FixtureRequest, tmp_path: Path, kind: str, prefix: str = "test") -> Warehouse:
    """An empty warehouse of `kind`: a DuckDB file, or a fresh dataset on the BigQuery emulator (the
    same SQL as BigQuery takes it, on bqemulator)."""
    if kind == "duckdb":
        return DuckDbWarehouse(tmp_path / "warehouse.duckdb")
    emulator = request.getfixturevalue("bigquery_emulator")
    from shared.adapters.warehouse.bigquery import BigQueryWarehouse

    dataset = f"{prefix}_{uuid.uuid4().hex[:10]}"
    return BigQueryWarehouse.from_settings(
        Settings(bigquery_endpoint=emulator.url, warehouse_project=emulator.project, warehouse_dataset=dataset)
    )
