"""Port: the store's catalog, kept as numbered versions (every change makes the next one)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass

from shared.config import Settings
from shared.domain.catalog import CatalogChange, Product


class CatalogUnavailable(RuntimeError):
    """The catalog store failed; nothing was changed and the operation may be retried."""


@dataclass(frozen=True)
class CatalogVersion:
    version: int  # 1, 2, ...: a later change has a greater number
    products: list[Product]


@dataclass(frozen=True)
class CatalogDelta:
    """What changed from one version to a later one: products deleted, then products added or
    changed (apply in that order: a product deleted and added again is there)."""

    version: int  # the later version
    upserted: list[Product]
    deleted: list[str]


class CatalogStore(ABC):
    """The catalog's versions. A change is applied whole or not at all, on the newest version, and
    makes the next version; readers see a version whole, never half of one."""

    @classmethod
    @abstractmethod
    def from_settings(cls, settings: Settings) -> CatalogStore:
        """Build the store from configuration."""

    @abstractmethod
    def latest(self) -> int | None:
        """The newest version's number (a cheap call, made by every instance every refresh), or None
        when the store holds no catalog yet."""

    @abstractmethod
    def load(self) -> CatalogVersion | None:
        """The newest version whole, or None when there is none."""

    @abstractmethod
    def changes(self, since: int) -> CatalogDelta | None:
        """What changed after version `since` up to the newest version, or None when the store cannot
        say (the catalog was replaced since, or `since` is not one of its versions): load it whole.
        An instance that serves `since` applies the delta instead of reading every product again."""

    @abstractmethod
    def commit(self, change: CatalogChange) -> int:
        """Apply `change` to the newest version and return the new version's number.

        Raises:
            CatalogError: the change does not apply (a patch of a product that is not there);
                nothing changed.
            CatalogUnavailable: the store failed; nothing changed.
        """

    @abstractmethod
    def replace(self, products: Iterable[Product]) -> int:
        """Make `products` (validated, distinct ids) the whole catalog, as the next version."""

    def health(self) -> dict:
        return {"status": "healthy", "kind": type(self).__name__}

    def close(self) -> None:  # noqa: B027 (most stores hold nothing to close)
        """Release what the store holds open."""
