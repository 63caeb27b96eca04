"""Search requests, filters and hits: the vocabulary shared by base search and re-ranking."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.domain.catalog import Product
from shared.domain.events import Id, Label


class SearchFilters(BaseModel):
    """Hard filters: a product must match all that are given."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    category: Label | None = None
    department: Label | None = None
    brand: Label | None = None
    attributes: tuple[Label, ...] = Field(default=(), max_length=20)
    min_price: float | None = Field(default=None, ge=0)
    max_price: float | None = Field(default=None, ge=0)

    @field_validator("category", "department", "brand", mode="after")
    @classmethod
    def _lower(cls, value: str | None) -> str | None:
        return value.strip().lower() if value else value

    @field_validator("attributes", mode="after")
    @classmethod
    def _lower_all(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(v.strip().lower() for v in value)

    @model_validator(mode="after")
    def _price_range(self) -> SearchFilters:
        if self.min_price is not None and self.max_price is not None and self.min_price > self.max_price:
            raise ValueError("min_price is greater than max_price")
        return self

    def accepts(self, product: Product) -> bool:
        return (
            (self.category is None or product.category.lower() == self.category)
            and (self.department is None or product.department.lower() == self.department)
            and (self.brand is None or (product.brand or "").lower() == self.brand)
            and all(a in product.attributes for a in self.attributes)
            and (self.min_price is None or (product.price is not None and product.price >= self.min_price))
            and (self.max_price is None or (product.price is not None and product.price <= self.max_price))
        )


class RecentView(BaseModel):
    """A signal of this session the client sends along, so the very next search reflects it even
    before the profile store has it. With the tracked event's id it is never counted twice."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    product_id: Id
    event_id: Id | None = None
    event_type: Literal["view_details", "click_product", "add_to_cart"] = "view_details"


class SearchContext(BaseModel):
    """Known keys are typed; other keys are kept as given."""

    model_config = ConfigDict(extra="allow", frozen=True)

    personalization: bool = True  # false: this shopper opted out, serve plain results
    recent_views: tuple[RecentView, ...] = Field(default=(), max_length=50)
    cart: tuple[Id, ...] = Field(default=(), max_length=100)  # product ids in the cart: "goes well with" them


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    query: str = Field(min_length=1, max_length=200)
    user_id: Id | None = None
    session_id: Id | None = None
    filters: SearchFilters = Field(default_factory=SearchFilters)
    limit: int = Field(default=20, ge=1, le=100)
    context: SearchContext = Field(default_factory=SearchContext)

    @field_validator("query", mode="after")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("query is blank")
        return value.strip()


@dataclass(frozen=True, slots=True)
class Hits:
    """Base search results as arrays: positions in `catalog.products`, most relevant first."""

    rows: np.ndarray  # int64
    relevance: np.ndarray  # float64, decreasing, > 0

    def __len__(self) -> int:
        return len(self.rows)

    @classmethod
    def empty(cls) -> Hits:
        return cls(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64))
