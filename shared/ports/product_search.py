"""Port: lexical product search over the catalog."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from shared.domain.catalog import Catalog
from shared.domain.search import Hits, SearchFilters


class ProductSearch(ABC):
    """Finds catalog products matching a free-text query."""

    @abstractmethod
    def __init__(self, catalog: Catalog, previous: ProductSearch | None = None) -> None:
        """Index `catalog`; `previous`, the index of an earlier version, may save work."""

    @abstractmethod
    def search(self, query: str, filters: SearchFilters, limit: int, include: Sequence[int] = ()) -> Hits:
        """Return the `limit` best matching products, most relevant first.

        Args:
            query: free text; case and plural forms do not matter.
            filters: hard filters every hit must pass.
            limit: how many of the best hits.
            include: positions in `catalog.products` that join the hits beyond `limit` when they
                match the query and pass the filters (the shopper's own products).

        Returns:
            Positions in `catalog.products` with relevance > 0, by decreasing relevance
            (ties in catalog order).
        """
