"""Use case: turn order and interaction events into graph memory, and answer from it."""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from shared.domain.catalog import Catalog
from shared.domain.events import EventType, Interaction
from shared.domain.memory import (
    STRONG_SIGNAL,
    Fact,
    OrderLine,
    OrderRecord,
    SignalRecord,
    UsualItem,
    about,
    due_items,
    reconcile,
    user_facts,
    usual_items,
)
from shared.domain.pipeline import EventBatch, interaction_strength
from shared.domain.rules import Rules
from shared.ports.graph_memory import GraphMemory, ProductInfo
from shared.services.pipeline import Screen, keep_all
from shared.services.privacy import UserPrivacy

log = logging.getLogger(__name__)


def orders_in(events: list[Interaction]) -> list[OrderRecord]:
    """Purchase events grouped into orders by context.order_id (a purchase without one is its own order)."""
    grouped: dict[tuple[str, str], list[Interaction]] = defaultdict(list)
    for event in events:
        if event.event_type is EventType.PURCHASE:
            order_id = str(getattr(event.context, "order_id", None) or event.event_id)
            grouped[(event.user_id, order_id)].append(event)
    orders = []
    for (user_id, order_id), lines in grouped.items():
        total = getattr(lines[0].context, "order_total", None)
        orders.append(
            OrderRecord(
                order_id=order_id,
                user_id=user_id,
                placed_at=min(e.timestamp for e in lines),
                lines=tuple(OrderLine(e.product_id or "", e.quantity, e.price) for e in lines),
                total=float(total) if isinstance(total, int | float) else None,
            )
        )
    return orders


def strong_signals(events: list[Interaction], rules: Rules) -> list[SignalRecord]:
    """Non-purchase product signals strong enough to state a preference (cart adds, returns)."""
    signals = []
    for event in events:
        if event.event_type in (EventType.PURCHASE, EventType.SEARCH) or event.product_id is None:
            continue
        weight = interaction_strength(event, rules)
        if weight is not None and abs(weight) >= STRONG_SIGNAL:
            signals.append(
                SignalRecord(
                    event.event_id, event.user_id, event.product_id, event.event_type.value, weight, event.timestamp
                )
            )
    return signals


class PersonalizationDisabled(Exception):
    """The shopper turned personalization off: nothing new is remembered about them."""


class GraphMemoryService:
    def __init__(
        self,
        graph: GraphMemory,
        catalog: Callable[[], Catalog],  # the version served now
        rules: Rules,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        privacy: Callable[[str], UserPrivacy] | None = None,
        screen: Screen = keep_all,
    ) -> None:
        self.graph = graph
        self.catalog = catalog
        self.rules = rules
        self.clock = clock
        self.privacy = privacy  # the shopper's settings: nothing is remembered with personalization off
        self.screen = screen  # drops late events of deleted shoppers, so a redelivery undoes no erasure

    def product_info(self, product_id: str, event: Interaction | None = None) -> ProductInfo:
        product = self.catalog().get(product_id)
        if product is not None:
            return ProductInfo(product_id, product.name, product.brand, product.category, tuple(product.attributes))
        if event is None:
            return ProductInfo(product_id, product_id)
        attributes = tuple(event.product_attributes or ())
        return ProductInfo(product_id, product_id, event.product_brand, event.product_category, attributes)

    def ingest(self, batch: EventBatch) -> dict[str, int]:
        """Record the batch's orders and strong signals, then re-derive the facts they touch."""
        kept = self.screen(batch)
        events = list(kept.events) if kept is not None else []
        by_product = {e.product_id: e for e in events if e.product_id}
        orders = orders_in(events)
        touched: dict[str, set[str]] = defaultdict(set)  # user -> products whose facts may change
        for order in orders:
            touched[order.user_id].update(line.product_id for line in order.lines)
        bought = sorted({line.product_id for order in orders for line in order.lines})
        products = [self.product_info(pid, by_product.get(pid)) for pid in bought]
        new_lines = self.graph.record_orders(orders, products) if orders else 0
        for signal in strong_signals(events, self.rules):
            self.graph.record_signal(signal, self.product_info(signal.product_id, by_product.get(signal.product_id)))
            touched[signal.user_id].add(signal.product_id)
        changed = self.refresh(touched)
        return {"users": len(touched), "new_order_lines": new_lines, "facts_written": changed}

    def refresh(self, touched: dict[str, set[str]]) -> int:
        """Re-derive the facts of these users' products from the stored history; write the
        difference in one transaction (a product's facts depend only on its own purchases)."""
        insert: list[Fact] = []
        update: list[Fact] = []
        histories = self.graph.histories(touched)  # the batch's shoppers at once, where the engine can
        stored_facts = self.graph.facts_about(touched)
        for user_id, products in sorted(touched.items()):
            orders, signals = histories.get(user_id, ([], []))
            stored = about(stored_facts.get(user_id, []), products)
            changes = reconcile(stored, user_facts(user_id, orders, signals, products), self.clock())
            insert += changes.insert
            update += changes.update
        if insert or update:
            self.graph.write_facts(insert, update)
        return len(insert) + len(update)

    def add_note(self, user_id: str, text: str, source: str, at: datetime) -> None:
        """Remember a free-text note (a review, a chat) through the graph's LLM extraction.

        Raises:
            PersonalizationDisabled: the shopper turned personalization off.
            TextMemoryUnavailable: no LLM is configured (nothing is faked instead).
        """
        if self.privacy is not None and not self.privacy(user_id).settings.personalization_enabled:
            raise PersonalizationDisabled("personalization is off for this user: nothing is remembered")
        self.graph.add_text(user_id, text, source, at)

    # -- answers ---------------------------------------------------------------------------------
    def shopper_memory(self, user_id: str, at: datetime) -> dict[str, Any]:
        """What the shopper usually buys, what is due for reorder and the facts that hold, as of `at`."""
        return {
            "user_id": user_id,
            "at": at.isoformat(),
            "usual": [dataclasses.asdict(i) for i in self.usual(user_id, at)],
            "due_for_reorder": [dataclasses.asdict(i) for i in self.due_for_reorder(user_id, at)],
            "facts": [
                {"fact": f.describe(), "name": f.name, "attributes": f.attributes, "valid_at": f.valid_at.isoformat(),
                 "invalid_at": f.invalid_at and f.invalid_at.isoformat()}
                for f in self.facts_as_of(user_id, at)
            ],
        }  # fmt: skip

    def usual(self, user_id: str, at: datetime | None = None, limit: int = 20) -> list[UsualItem]:
        at = at or self.clock()
        return usual_items(self.graph.facts(user_id, at), at, limit)

    def due_for_reorder(self, user_id: str, at: datetime | None = None, min_confidence: float = 0.0) -> list[UsualItem]:
        at = at or self.clock()
        return due_items(self.graph.facts(user_id, at), at, min_confidence)

    def facts_as_of(self, user_id: str, at: datetime) -> list[Fact]:
        return sorted(
            (f for f in self.graph.facts(user_id, at) if f.holds_at(at)), key=lambda f: (f.name, f.target, f.valid_at)
        )

    def bought_with(self, product_id: str, limit: int = 10) -> list[tuple[str, int]]:
        return self.graph.bought_with(product_id, limit)

    def forget(self, user_id: str) -> int:
        return self.graph.delete_user(user_id)
