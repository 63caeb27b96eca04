"""Port: lexical product search over the catalog."""

from __future__ import annotations

from abc import ABC, abstractmethod

from shared.domain.catalog import Catalog
from shared.domain.search import Hits, SearchFilters


class ProductSearch(ABC):
    """Finds catalog products matching a free-text query."""

    @abstractmethod
    def __init__(self, catalog: Catalog) -> None:
        """Index `catalog`."""

    @abstractmethod
    def search(self, query: str, filters: SearchFilters, limit: int) -> Hits:
        """Return at most `limit` matching products, most relevant first.

        Args:
            query: free text; case and plural forms do not matter.
            filters: hard filters every hit must pass.
            limit: how many hits at most.

        Returns:
            Positions in `catalog.products` with relevance > 0, by decreasing relevance
            (ties in catalog order).
        """
