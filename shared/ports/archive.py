"""Port: the event archive's object store (Cloud Storage in production)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from shared.config import Settings


class ArchiveUnavailable(RuntimeError):
    """The object store failed; the operation may be retried."""


@dataclass(frozen=True)
class StoredObject:
    name: str
    size: int
    created: float  # epoch seconds


class Archive(ABC):
    """A flat namespace of immutable objects with create-if-absent (the archiver's only lock)."""

    @classmethod
    @abstractmethod
    def from_settings(cls, settings: Settings) -> Archive:
        """Build the archive from configuration."""

    @abstractmethod
    def prepare(self) -> None:
        """Create the bucket or folder if missing (Terraform creates the bucket in production)."""

    @abstractmethod
    def put(self, name: str, data: bytes, if_absent: bool = False) -> bool:
        """Write an object whole. With `if_absent`, only if no object has that name.

        Returns:
            False when `if_absent` and the object already existed (nothing written), else True.
        """

    @abstractmethod
    def get(self, name: str) -> bytes | None:
        """The object's bytes, or None when there is none."""

    @abstractmethod
    def list(self, prefix: str) -> list[StoredObject]:
        """Objects whose name starts with `prefix`, sorted by name."""

    @abstractmethod
    def delete(self, name: str) -> None:
        """Remove the object; a missing object is not an error."""

    def health(self) -> dict:
        return {"status": "healthy", "kind": type(self).__name__}
