"""Port: graph memory (Graphiti's model): entities, temporal relationships, episodes."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from shared.config import Settings
from shared.domain.memory import Fact, OrderRecord, SignalRecord


class GraphUnavailable(RuntimeError):
    """The graph backend failed; the write may be retried as is."""


class TextMemoryUnavailable(RuntimeError):
    """Free-text memory needs a configured LLM; none is."""


@dataclass(frozen=True)
class ProductInfo:
    """What the graph records about a product entity (from the catalog, else from the order line)."""

    product_id: str
    name: str
    brand: str | None = None
    category: str | None = None
    attributes: tuple[str, ...] = ()


class GraphMemory(ABC):
    """Stores orders and strong signals as episodes and the facts derived from them.

    Every write is idempotent: ids are uuid5 of what they describe.
    """

    @classmethod
    @abstractmethod
    def from_settings(cls, settings: Settings) -> GraphMemory:
        """Build the adapter from configuration (schema created on first use)."""

    @abstractmethod
    def record_orders(self, orders: list[OrderRecord], products: Iterable[ProductInfo]) -> int:
        """Upsert the orders' episodes, their user/product/brand/category/attribute entities and
        mentions, in one transaction. Each basket counts once in `bought_with` however its lines
        arrive (stored counts add only newly recorded lines: shared.domain.memory.new_lines).

        Returns:
            How many order lines were new (0 for a redelivered batch).
        """

    @abstractmethod
    def record_signal(self, signal: SignalRecord, product: ProductInfo) -> bool:
        """Upsert a strong-signal episode; False when it was recorded before."""

    @abstractmethod
    def history(
        self, user_id: str, products: Collection[str] | None = None
    ) -> tuple[list[OrderRecord], list[SignalRecord]]:
        """The user's recorded orders and strong signals; with `products`, at least those that
        involve one of them (an adapter may return more: a product's facts are derived from its
        own purchases and signals only, shared.domain.memory.user_facts)."""

    @abstractmethod
    def facts(self, user_id: str, at: datetime | None = None, products: Collection[str] | None = None) -> list[Fact]:
        """Every stored fact about the user (current, invalidated and retracted); with `at` only
        those that hold at that time, with `products` only those about these product ids
        (both filtered in the backend: histories grow long)."""

    def histories(
        self, touched: Mapping[str, Collection[str]]
    ) -> dict[str, tuple[list[OrderRecord], list[SignalRecord]]]:
        """`history(user, products)` for each shopper of a batch (user -> their touched products);
        an engine that can read them all at once does."""
        return {user: self.history(user, products) for user, products in touched.items()}

    def facts_about(self, touched: Mapping[str, Collection[str]]) -> dict[str, list[Fact]]:
        """`facts(user, products=...)` for each shopper of a batch; an engine that can, at once."""
        return {user: self.facts(user, products=products) for user, products in touched.items()}

    @abstractmethod
    def write_facts(self, insert: list[Fact], update: list[Fact]) -> None:
        """Insert new facts and overwrite changed ones (same uuid), in one transaction."""

    @abstractmethod
    def bought_with(self, product_id: str, limit: int = 10) -> list[tuple[str, int]]:
        """(product id, orders containing both) most frequent first."""

    @abstractmethod
    def delete_user(self, user_id: str) -> int:
        """Erase the user: entity, facts, episodes, orders (and their bought_with counts).

        Returns:
            How many records were removed (0 when nothing was left).
        """

    def add_text(self, user_id: str, text: str, source: str, at: datetime) -> None:
        """Free text (a review, a chat note) into memory through an LLM's extraction.

        Raises:
            TextMemoryUnavailable: no LLM is configured (never a faked extraction).
        """
        raise TextMemoryUnavailable(
            "free-text memory needs an LLM: set LEAFLOAF_GRAPH_LLM=gemini and GOOGLE_API_KEY "
            "(graphiti-core's google-genai extra) and use the graphiti adapter"
        )

    @abstractmethod
    def close(self) -> None:
        """Release the backend."""

    def health(self) -> dict:
        return {"status": "healthy", "kind": type(self).__name__}
