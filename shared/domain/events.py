"""What shoppers do, as validated events: every signal of the original design plus searches."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

MAX_CLOCK_SKEW = timedelta(minutes=5)
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)  # older is a client bug (profiles count time from 1970)

Id = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@\-]+$")]
Label = Annotated[str, Field(min_length=1, max_length=80)]


class EventType(StrEnum):
    SEARCH = "search"
    PURCHASE = "purchase"
    ADD_TO_CART = "add_to_cart"
    QUANTITY_INCREASE = "quantity_increase"
    SAVE_FOR_LATER = "save_for_later"
    REMOVE_FROM_CART = "remove_from_cart"
    CLICK_PRODUCT = "click_product"
    VIEW_DETAILS = "view_details"
    TIME_ON_PRODUCT = "time_on_product"
    DISPLAYED_BUT_SCROLLED = "displayed_but_scrolled"
    VIEWED_NEVER_BOUGHT = "viewed_never_bought"
    RETURNED = "returned"


class PurchaseKind(StrEnum):
    FIRST_TIME = "first_time"
    REPEAT = "repeat"
    BULK_PURCHASE = "bulk_purchase"
    SUBSCRIPTION = "subscription"


def as_utc(value: datetime) -> datetime:
    """Naive times are taken as UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _aware_utc(value: datetime) -> datetime:
    # The future beyond clock skew is a client bug.
    try:
        value = as_utc(value)
    except OverflowError:  # e.g. 0001-01-01 with a positive offset: before the first UTC instant, so too early
        value = datetime.min.replace(tzinfo=UTC)
    if value > datetime.now(UTC) + MAX_CLOCK_SKEW:
        raise ValueError("timestamp is in the future")
    if value < EARLIEST:
        raise ValueError("timestamp is before 2000-01-01")
    return value


Timestamp = Annotated[datetime, AfterValidator(_aware_utc)]  # when something happened
UtcTime = Annotated[datetime, AfterValidator(as_utc)]  # any time, future ones included


WeatherCondition = Literal["clear", "clouds", "rain", "snow", "storm", "fog", "wind"]


class Weather(BaseModel):
    """The weather where the shopper is, as the client (or a weather provider) knows it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    condition: WeatherCondition
    temperature: float | None = Field(default=None, ge=-60, le=60, allow_inf_nan=False)  # degrees Celsius


class EventContext(BaseModel):
    """Where the event happened. Known keys are typed; other keys are kept as given."""

    model_config = ConfigDict(extra="allow", frozen=True)

    search_query: str | None = Field(default=None, max_length=200)
    position: int | None = Field(default=None, ge=0, le=10_000)
    time_on_page: float | None = Field(default=None, ge=0, le=86_400)
    page: str | None = Field(default=None, max_length=200)
    results_shown: list[Id] | None = Field(default=None, max_length=200)
    # The search answer this event follows from (its `search_id`): links clicks, cart adds and
    # purchases to the impressions of that search in the warehouse.
    search_id: Id | None = None
    weather: Weather | None = None  # on orders: the context engine learns what sells in which weather


class Interaction(BaseModel):
    """One tracked event. `event_id` makes delivery idempotent: an id is applied once."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: Id = Field(default_factory=lambda: uuid.uuid4().hex)
    event_type: EventType
    user_id: Id
    session_id: Id | None = None
    timestamp: Timestamp = Field(default_factory=lambda: datetime.now(UTC))
    product_id: Id | None = None
    quantity: int = Field(default=1, ge=1, le=1000)
    price: float | None = Field(default=None, ge=0, le=100_000)
    purchase_kind: PurchaseKind | None = None
    # Product facts for products the catalog does not know (the catalog wins when it does).
    product_category: Label | None = None
    product_brand: Label | None = None
    product_attributes: list[Label] | None = Field(default=None, max_length=30)
    context: EventContext = Field(default_factory=EventContext)

    @model_validator(mode="after")
    def _required_by_type(self) -> Interaction:
        if self.event_type is EventType.SEARCH:
            if not self.context.search_query:
                raise ValueError("a search event needs context.search_query")
        elif self.product_id is None:
            raise ValueError(f"a {self.event_type.value} event needs product_id")
        if self.event_type is EventType.TIME_ON_PRODUCT and self.context.time_on_page is None:
            raise ValueError("a time_on_product event needs context.time_on_page (seconds)")
        if self.purchase_kind is not None and self.event_type is not EventType.PURCHASE:
            raise ValueError("purchase_kind is only allowed on purchase events")
        return self

    @property
    def epoch_seconds(self) -> float:
        return self.timestamp.timestamp()
