"""Port: the versioned ranking artifacts the daily job publishes and serving instances load."""

from __future__ import annotations

from abc import ABC, abstractmethod


class ModelStore(ABC):
    """Ranking artifacts by version; one of them is current.

    Versions sort by name (the job names them by its window's end), so "newer" is a name
    comparison, and an instance never has to move back to an older version.
    """

    @abstractmethod
    def publish(self, version: str, data: bytes) -> None:
        """Store `data` as version `version` and make it current (readers never see half of it)."""

    @abstractmethod
    def current(self) -> tuple[str, bytes] | None:
        """The current version's name and bytes, or None before the first publication.

        Raises:
            ArchiveUnavailable: the store could not be read (the caller keeps what it serves).
        """
