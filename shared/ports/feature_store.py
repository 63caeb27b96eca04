"""Port: the features the scheduled jobs learn, as the serving side reads them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from datetime import datetime
from typing import Any

Document = dict[str, Any]


class FeatureStore(ABC):
    """Versioned snapshots of per-shopper and per-product feature documents.

    A job run publishes a whole new version; serving instances switch to the newest version
    lazily (never on the request's time), never to an older one, and read single documents by id.
    """

    @abstractmethod
    def publish(self, version: str, sources: Iterable[tuple[str, Iterable[tuple[str, Document]]]]) -> dict[str, int]:
        """Write version `version` and make it current, unless a newer version is current: the
        served version never moves back (and of two publishers racing, the newer wins).

        Args:
            version: sortable name of the snapshot (e.g. the window's end).
            sources: (kind, documents) with kind "user", "product" or "store"; a key's documents from several
                sources are merged (later keys win), so each source can stream its own table.

        Returns:
            How many documents of each kind the version holds.
        """

    @abstractmethod
    def user(self, user_id: str) -> Document | None:
        """The shopper's features in the current version, or None."""

    @abstractmethod
    def product(self, product_id: str) -> Document | None:
        """The product's features in the current version, or None."""

    @abstractmethod
    def store(self, key: str) -> Document | None:
        """A store-wide document in the current version (e.g. "trending"), or None."""

    @abstractmethod
    def version(self) -> str | None:
        """The version being served, or None before the first publication."""

    @abstractmethod
    def built_at(self) -> datetime | None:
        """When the version being served was built, or None before the first publication."""

    @abstractmethod
    def discard_older(self) -> int:
        """Delete every stored version older than the current one (they may hold erased data).

        Returns:
            How many versions were deleted.
        """

    def health(self) -> dict:
        return {"status": "healthy", "kind": type(self).__name__, "version": self.version()}
