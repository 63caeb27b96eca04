"""A confirmed order, validated, and the purchase events it stands for."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.domain.events import EventContext, EventType, Id, Interaction, Label, Timestamp, Weather


class OrderItem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    product_id: Id
    quantity: int = Field(default=1, ge=1, le=1000)
    price: float | None = Field(default=None, ge=0, le=100_000)
    # Product facts for products the catalog does not know.
    name: str | None = Field(default=None, max_length=300)
    brand: Label | None = None
    category: Label | None = None
    attributes: list[Label] | None = Field(default=None, max_length=30)


class OrderTotals(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    subtotal: float | None = Field(default=None, ge=0)
    tax: float | None = Field(default=None, ge=0)
    delivery: float | None = Field(default=None, ge=0)
    discount: float | None = Field(default=None, ge=0)
    total: float | None = Field(default=None, ge=0)


class Order(BaseModel):
    """POST /api/orders/confirm. The same order id confirmed twice counts once."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    order_id: Id = Field(default_factory=lambda: uuid.uuid4().hex, max_length=64)
    user_id: Id
    session_id: Id | None = None
    items: list[OrderItem] = Field(min_length=1, max_length=500)
    totals: OrderTotals = Field(default_factory=OrderTotals)
    timestamp: Timestamp = Field(default_factory=lambda: datetime.now(UTC))
    weather: Weather | None = None  # where the shopper ordered: what sells in which weather is learnt from it

    @model_validator(mode="after")
    def _one_line_per_product(self) -> Order:
        seen = [item.product_id for item in self.items]
        duplicated = sorted({p for p in seen if seen.count(p) > 1})
        if duplicated:
            raise ValueError(f"one line per product; repeated: {', '.join(duplicated)}")
        return self

    def purchase_events(self) -> list[Interaction]:
        """One purchase event per line; ids derive from the order, so a re-sent order is a duplicate."""
        context = EventContext.model_validate(
            {"order_id": self.order_id, "order_total": self.totals.total, "weather": self.weather}
        )
        return [
            Interaction(
                event_id=f"{self.order_id}:{item.product_id}"[:128],
                event_type=EventType.PURCHASE,
                user_id=self.user_id,
                session_id=self.session_id,
                timestamp=self.timestamp,
                product_id=item.product_id,
                quantity=item.quantity,
                price=item.price,
                product_category=item.category,
                product_brand=item.brand,
                product_attributes=item.attributes,
                context=context,
            )
            for item in self.items
        ]
