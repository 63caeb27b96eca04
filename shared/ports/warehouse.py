"""Port: the analytics warehouse (BigQuery in production)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from shared.config import Settings


class WarehouseUnavailable(RuntimeError):
    """The warehouse could not be reached or was busy; the write may be retried as is."""


class Warehouse(ABC):
    """Holds the event tables of shared.domain.pipeline; writes are idempotent on each table's key
    (event_id; an impression's search_id and position)."""

    @classmethod
    @abstractmethod
    def from_settings(cls, settings: Settings) -> Warehouse:
        """Build the warehouse from configuration (tables are created on first use)."""

    @abstractmethod
    def insert(self, rows: Mapping[str, list[dict[str, Any]]]) -> int:
        """Insert rows per table, skipping keys (event ids) the table already has.

        Returns:
            How many rows were new, over all tables.

        Raises:
            WarehouseUnavailable: nothing or part was written; calling again with the same rows is safe.
        """

    @abstractmethod
    def replace_table(
        self, name: str, columns: Sequence[tuple[str, str]], chunks: Iterable[list[dict[str, Any]]]
    ) -> int:
        """Replace table `name` (columns as (name, BigQuery type)) with the rows of `chunks`, written
        chunk by chunk so the caller never holds them all (a job's output computed in Python).

        Returns:
            How many rows the table holds.
        """

    @abstractmethod
    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run one BigQuery-dialect statement with @named parameters; rows as dicts."""

    @abstractmethod
    def user_rows(self, user_id: str, limit: int = 10_000) -> dict[str, list[dict[str, Any]]]:
        """The user's rows in every table that has a `user_id` column (event tables and job
        outputs), at most `limit` per table, values JSON-able; tables without any are left out."""

    @abstractmethod
    def delete_users(self, user_ids: Collection[str]) -> dict[str, int]:
        """Delete these users' rows from every table that has a `user_id` column (partitioned
        ones included). Idempotent.

        Returns:
            Rows deleted per table (tables where none were are left out).

        Raises:
            WarehouseUnavailable: part may be deleted; calling again is safe.
        """

    @abstractmethod
    def delete_events_before(self, cutoff: datetime, user_ids: Collection[str] | None = None) -> int:
        """Delete event-table rows (shared.domain.pipeline.EVENT_TABLES) whose event_timestamp is
        before `cutoff`: everyone's, or only these users' when `user_ids` is given.

        Returns:
            How many rows were deleted over all event tables.
        """

    @abstractmethod
    def close(self) -> None:
        """Release connections."""

    def health(self) -> dict:
        return {"status": "healthy", "kind": type(self).__name__}
