"""Search requests, filters and hits: the vocabulary shared by base search and re-ranking."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

import numpy as np
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.domain.catalog import Product
from shared.domain.context import Moment
from shared.domain.events import Id, Label, Weather


class SearchFilters(BaseModel):
    """Hard filters: a product must match all that are given."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    category: Label | None = None
    department: Label | None = None
    brand: Label | None = None
    attributes: tuple[Label, ...] = Field(default=(), max_length=20)
    min_price: float | None = Field(default=None, ge=0)
    max_price: float | None = Field(default=None, ge=0)
    include_out_of_stock: bool = False  # out-of-stock products are left out unless asked for

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
            (product.in_stock or self.include_out_of_stock)
            and (self.category is None or product.category.lower() == self.category)
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


MAX_CONTEXT_EXTRA_BYTES = 2_048


class SearchContext(BaseModel):
    """Known keys are typed; other keys are kept as given, up to MAX_CONTEXT_EXTRA_BYTES of JSON."""

    model_config = ConfigDict(extra="allow", frozen=True)

    personalization: bool = True  # false: this shopper opted out, serve plain results
    recent_views: tuple[RecentView, ...] = Field(default=(), max_length=50)
    cart: tuple[Id, ...] = Field(default=(), max_length=100)  # product ids in the cart: "goes well with" them
    # The shopper's wall clock with its UTC offset ("2026-12-05T08:30:00-05:00"); default: now in the
    # store's time zone (rules.context.timezone).
    local_time: AwareDatetime | None = None
    weather: Weather | None = None  # where the shopper is, when the client knows it

    @model_validator(mode="after")
    def _bounded_extra(self) -> SearchContext:
        extra = self.model_extra or {}
        size = len(json.dumps(extra, default=str)) if extra else 0
        if size > MAX_CONTEXT_EXTRA_BYTES:
            raise ValueError(
                f"context's other keys ({', '.join(sorted(extra)[:5])}) take {size} bytes of JSON; "
                f"at most {MAX_CONTEXT_EXTRA_BYTES}"
            )
        return self

    def moment(self, now: datetime, timezone: str) -> Moment:
        """The shopper's moment: their local time when given, else `now` in the store's time zone."""
        local = self.local_time or now.astimezone(ZoneInfo(timezone))
        return Moment.at(local, self.weather)


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


MAX_RANK_ITEMS = 1_000


class RankItem(BaseModel):
    """One of the store's own results: its id, the store's score if it has one, and, for a product
    the catalog does not hold, its facts (the catalog's row wins for a product it holds)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    product_id: Id
    score: float | None = Field(default=None, ge=0, allow_inf_nan=False)  # higher is more relevant
    name: str | None = Field(default=None, min_length=1, max_length=300)
    brand: str | None = Field(default=None, max_length=80)
    category: Label | None = None
    department: Label | None = None
    attributes: tuple[Label, ...] = Field(default=(), max_length=50)
    price: float | None = Field(default=None, ge=0, le=100_000)
    size: float | None = Field(default=None, gt=0)
    unit: str | None = Field(default=None, max_length=20)
    in_stock: bool | None = None  # the catalog's stock wins for a product it holds

    @field_validator("name", "brand", "category", "department", mode="after")
    @classmethod
    def _strip(cls, value: str | None) -> str | None:
        return (value or "").strip() or None

    @field_validator("attributes", mode="after")
    @classmethod
    def _lower_all(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(sorted({v.strip().lower() for v in value}))

    def product(self) -> Product:
        """The item as a product from its own facts; a fact it lacks gives it no facet (as a
        catalog product without a brand has no brand facet)."""
        return Product.model_construct(
            id=self.product_id,
            name=self.name or self.product_id,
            category=self.category or "",
            department=self.department or "",
            brand=self.brand,
            attributes=self.attributes,
            price=self.price,
            size=self.size,
            unit=self.unit,
            in_stock=self.in_stock is not False,
        )


class RankRequest(BaseModel):
    """The store's own results for a shopper, to be re-ordered for them (every item the filters
    accept; none dropped for being unknown)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: Id | None = None
    session_id: Id | None = None
    items: tuple[RankItem, ...] = Field(max_length=MAX_RANK_ITEMS)
    # The items these refuse are left out of the answer (listed in filtered_out); by default only
    # what is out of stock.
    filters: SearchFilters = Field(default_factory=SearchFilters)
    context: SearchContext = Field(default_factory=SearchContext)

    def conflicts(self) -> list[tuple[str, str]]:
        """(field, message) for what each item's schema cannot say: a product given twice, or a
        score for some items but not all (the base order would be undefined)."""
        found = []
        seen: set[str] = set()
        for i, item in enumerate(self.items):
            if item.product_id in seen:
                found.append((f"items.{i}.product_id", f"duplicate product id {item.product_id!r}"))
            seen.add(item.product_id)
        scored = [item.score is not None for item in self.items]
        if any(scored) and not all(scored):
            first = scored.index(False)
            found.append((f"items.{first}.score", "give a score for every item or for none"))
        return found


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
