"""The event pipeline's data: bus messages, warehouse tables and rows, archive object names.

Defined once here: the BigQuery and DuckDB adapters create these tables, the loader fills them,
and the Terraform test checks `infra/` against them.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from shared.domain.catalog import Catalog
from shared.domain.events import EventType, Interaction
from shared.domain.rules import Rules

TOPIC = "user-events"
DEAD_LETTER_TOPIC = "user-events-dead-letter"
MESSAGE_SCHEMA = "leafloaf.events.v1"


class PoisonMessage(ValueError):
    """A bus message no retry can fix (not our format, or invalid events): it is dead-lettered."""


@dataclass(frozen=True)
class EventBatch:
    """Events published together as one bus message; the id is derived from the events, so a
    batch re-published after an ambiguous failure carries the same id."""

    events: tuple[Interaction, ...]

    @property
    def batch_id(self) -> str:
        digest = hashlib.sha256("\n".join(e.event_id for e in self.events).encode()).hexdigest()
        return digest[:32]

    def encode(self) -> tuple[bytes, dict[str, str]]:
        """The message body (JSON lines, one event each) and its attributes."""
        data = "\n".join(e.model_dump_json() for e in self.events).encode()
        return data, {"schema": MESSAGE_SCHEMA, "batch_id": self.batch_id, "events": str(len(self.events))}


def decode_message(data: bytes, attributes: dict[str, str]) -> EventBatch:
    """Parse a bus message; anything malformed raises PoisonMessage naming what was wrong."""
    if attributes.get("schema") != MESSAGE_SCHEMA:
        raise PoisonMessage(f"attribute schema is {attributes.get('schema')!r}, expected {MESSAGE_SCHEMA!r}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PoisonMessage(f"the message is not utf-8 text: {exc.reason} at byte {exc.start}") from None
    events = []
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            events.append(Interaction.model_validate_json(line))
        except ValidationError as exc:
            raise PoisonMessage(f"line {number}: {exc.errors()[0]['msg']}") from None
    if not events:
        raise PoisonMessage("the message has no events")
    return EventBatch(tuple(events))


def decode_pubsub_envelope(envelope: Any) -> tuple[str, EventBatch]:
    """(message id, batch) from the data of a Pub/Sub CloudEvent (Eventarc's messagePublished)."""
    try:
        message = envelope["message"]
        data = base64.b64decode(message.get("data", ""), validate=True)
        attributes = dict(message.get("attributes") or {})
        message_id = str(message.get("messageId") or message.get("message_id") or "")
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise PoisonMessage(f"not a Pub/Sub message envelope: {exc}") from None
    return message_id, decode_message(data, attributes)


# -- warehouse tables --------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # BigQuery type: STRING, TIMESTAMP, INT64, FLOAT64, JSON
    mode: str = "NULLABLE"


@dataclass(frozen=True)
class Table:
    name: str
    description: str
    columns: tuple[Column, ...]
    partition_field: str = "event_timestamp"  # PARTITION BY DATE(event_timestamp)
    clustering: tuple[str, ...] = ("user_id",)
    key: tuple[str, ...] = ("event_id",)  # loads skip rows whose key the table has


def _columns(spec: str) -> tuple[Column, ...]:
    """'name TYPE [REQUIRED], ...' to columns: the schema reads like DDL."""
    columns = []
    for item in spec.split(","):
        name, type_, *mode = item.split()
        columns.append(Column(name, type_, "REQUIRED" if mode else "NULLABLE"))
    return tuple(columns)


_KEY = "event_id STRING REQUIRED, event_timestamp TIMESTAMP REQUIRED, user_id STRING REQUIRED, session_id STRING"
_LOADED = "ingested_at TIMESTAMP REQUIRED"  # when the loader wrote the row: the pipeline's lag

RAW_EVENTS = Table(
    "raw_user_actions",
    "Every tracked event, as received (one row per event id).",
    _columns(
        f"{_KEY}, event_type STRING REQUIRED, product_id STRING, product_category STRING, "
        "product_attributes JSON, interaction_strength FLOAT64, interaction_context JSON, search_query STRING, "
        f"search_results_shown JSON, result_position INT64, raw_event_data JSON, {_LOADED}"
    ),
    clustering=("user_id", "event_type"),
)
SEARCH_EVENTS = Table(
    "search_events",
    "Searches: the query and the products shown.",
    _columns(f"{_KEY}, search_query STRING REQUIRED, results_shown JSON, results_count INT64, {_LOADED}"),
)
PRODUCT_INTERACTION_EVENTS = Table(
    "product_interaction_events",
    "Clicks, views, dwell, scroll-pasts and never-bought views of a product.",
    _columns(
        f"{_KEY}, event_type STRING REQUIRED, product_id STRING REQUIRED, product_category STRING, "
        f"product_brand STRING, result_position INT64, time_on_page FLOAT64, interaction_strength FLOAT64, {_LOADED}"
    ),
)
CART_EVENTS = Table(
    "cart_events",
    "Cart changes: add, quantity increase, save for later, remove.",
    _columns(
        f"{_KEY}, event_type STRING REQUIRED, product_id STRING REQUIRED, quantity INT64, price FLOAT64, {_LOADED}"
    ),
)
ORDER_EVENTS = Table(
    "order_events",
    "Purchased and returned order lines.",
    _columns(
        f"{_KEY}, event_type STRING REQUIRED, order_id STRING, product_id STRING REQUIRED, product_category STRING, "
        f"quantity INT64, price FLOAT64, purchase_kind STRING, {_LOADED}"
    ),
)
# Attribution: what each search showed, and the events that followed from it (context.search_id).
# An impression is keyed by its search and place, so a search tracked twice is shown once.
SEARCH_IMPRESSIONS = Table(
    "search_impressions",
    "Products shown per search answer (search_id, position), from search events with a search_id.",
    _columns(
        f"{_KEY}, search_id STRING REQUIRED, position INT64 REQUIRED, product_id STRING REQUIRED, "
        f"search_query STRING, {_LOADED}"
    ),
    clustering=("user_id", "search_id"),
    key=("search_id", "position"),
)
SEARCH_OUTCOME_EVENTS = Table(
    "search_outcome_events",
    "Product events (clicks, cart adds, purchases, ...) that carry context.search_id.",
    _columns(
        f"{_KEY}, search_id STRING REQUIRED, event_type STRING REQUIRED, product_id STRING REQUIRED, "
        f"result_position INT64, quantity INT64, {_LOADED}"
    ),
    clustering=("user_id", "search_id"),
)
EVENT_TABLES = (
    RAW_EVENTS,
    SEARCH_EVENTS,
    PRODUCT_INTERACTION_EVENTS,
    CART_EVENTS,
    ORDER_EVENTS,
    SEARCH_IMPRESSIONS,
    SEARCH_OUTCOME_EVENTS,
)

_KIND_TABLE = {
    EventType.SEARCH: SEARCH_EVENTS,
    EventType.ADD_TO_CART: CART_EVENTS,
    EventType.QUANTITY_INCREASE: CART_EVENTS,
    EventType.SAVE_FOR_LATER: CART_EVENTS,
    EventType.REMOVE_FROM_CART: CART_EVENTS,
    EventType.PURCHASE: ORDER_EVENTS,
    EventType.RETURNED: ORDER_EVENTS,
}


def kind_table(event_type: EventType) -> Table:
    return _KIND_TABLE.get(event_type, PRODUCT_INTERACTION_EVENTS)


def interaction_strength(event: Interaction, rules: Rules) -> float | None:
    """The event's signal weight in the rules; purchases unspecified as to kind count as repeat."""
    if event.event_type is EventType.SEARCH:
        return None
    name = (event.purchase_kind or "repeat") if event.event_type is EventType.PURCHASE else event.event_type.value
    signal = rules.signals.get(str(name))
    return None if signal is None else signal.weight_for(event.context.time_on_page)


def warehouse_rows(
    events: tuple[Interaction, ...] | list[Interaction], catalog: Catalog, rules: Rules, ingested_at: datetime
) -> dict[str, list[dict[str, Any]]]:
    """Rows per table for the events: every event in raw_user_actions and in its kind's table; an
    event with context.search_id also in search_impressions (a search: one row per product shown)
    or search_outcome_events (any other event).

    JSON columns hold JSON text; timestamps are ISO 8601 strings (what BigQuery's insertAll takes).
    """
    rows: dict[str, list[dict[str, Any]]] = {table.name: [] for table in EVENT_TABLES}
    loaded = ingested_at.isoformat()
    impressions: set[tuple[str, int]] = set()  # in this batch: a MERGE would insert a duplicate source row twice
    for event in events:
        product = catalog.get(event.product_id or "")
        category = product.category if product else event.product_category
        context = event.context.model_dump(exclude_none=True, mode="json")
        strength = interaction_strength(event, rules)
        key = {
            "event_id": event.event_id,
            "event_timestamp": event.timestamp.isoformat(),
            "user_id": event.user_id,
            "session_id": event.session_id,
        }
        attributes = list(product.attributes) if product else event.product_attributes
        rows[RAW_EVENTS.name].append(
            key
            | {
                "event_type": event.event_type.value,
                "product_id": event.product_id,
                "product_category": category,
                "product_attributes": _json(attributes),
                "interaction_strength": strength,
                "interaction_context": _json(context),
                "search_query": event.context.search_query,
                "search_results_shown": _json(event.context.results_shown),
                "result_position": event.context.position,
                "raw_event_data": event.model_dump_json(),
                "ingested_at": loaded,
            }
        )
        table = kind_table(event.event_type)
        if table is SEARCH_EVENTS:
            shown = event.context.results_shown
            extra: dict[str, Any] = {
                "search_query": event.context.search_query,
                "results_shown": _json(shown),
                "results_count": None if shown is None else len(shown),
            }
        elif table is CART_EVENTS:
            extra = {"event_type": event.event_type.value, "product_id": event.product_id}
            extra |= {"quantity": event.quantity, "price": event.price}
        elif table is ORDER_EVENTS:
            extra = {"event_type": event.event_type.value, "order_id": context.get("order_id")}
            extra |= {"product_id": event.product_id, "product_category": category, "quantity": event.quantity}
            extra |= {"price": event.price, "purchase_kind": event.purchase_kind and event.purchase_kind.value}
        else:
            extra = {"event_type": event.event_type.value, "product_id": event.product_id}
            extra |= {"product_category": category, "product_brand": product.brand if product else event.product_brand}
            extra |= {"result_position": event.context.position, "time_on_page": event.context.time_on_page}
            extra |= {"interaction_strength": strength}
        rows[table.name].append(key | extra | {"ingested_at": loaded})
        search_id = event.context.search_id
        if search_id is None:
            continue
        if event.event_type is EventType.SEARCH:
            for position, product_id in enumerate(event.context.results_shown or ()):
                if (search_id, position) not in impressions:
                    impressions.add((search_id, position))
                    impression = {"search_id": search_id, "position": position, "product_id": product_id}
                    impression |= {"search_query": event.context.search_query, "ingested_at": loaded}
                    rows[SEARCH_IMPRESSIONS.name].append(key | impression)
        else:
            outcome: dict[str, Any] = {"search_id": search_id, "event_type": event.event_type.value}
            outcome |= {"product_id": event.product_id}
            quantity = event.quantity if table in (CART_EVENTS, ORDER_EVENTS) else None
            outcome |= {"result_position": event.context.position, "quantity": quantity, "ingested_at": loaded}
            rows[SEARCH_OUTCOME_EVENTS.name].append(key | outcome)
    return rows


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


# -- archive -----------------------------------------------------------------------------------

STAGING_PREFIX = "staging/"
FLUSHED_PREFIX = "flushed/"
ARCHIVE_PREFIX = "events/"


def staged_name(batch: EventBatch) -> str:
    return f"{STAGING_PREFIX}{batch.batch_id}_{len(batch.events)}.jsonl"


def staged_count(name: str) -> int:
    """Events in a staged object, from its name (no read needed)."""
    return int(name.rsplit("_", 1)[1].removesuffix(".jsonl"))


def staged_batch_id(name: str) -> str:
    return name.removeprefix(STAGING_PREFIX).rsplit("_", 1)[0]


def archive_name(flushed_at: datetime, number: int) -> str:
    """events/YYYYMMDD_HHMMSS_<n>_events.jsonl: n numbers the objects written in that second."""
    return f"{ARCHIVE_PREFIX}{flushed_at:%Y%m%d_%H%M%S}_{number}_events.jsonl"


def archive_lines(batch: EventBatch) -> bytes:
    return b"".join(e.model_dump_json().encode() + b"\n" for e in batch.events)


def table_ddl(table: Table, dataset: str) -> str:
    """BigQuery DDL for a table (the DuckDB warehouse runs it through sqlglot)."""
    columns = ", ".join(f"{c.name} {c.type}{' NOT NULL' if c.mode == 'REQUIRED' else ''}" for c in table.columns)
    key = ", ".join(table.key)
    return (
        f"CREATE TABLE IF NOT EXISTS {dataset}.{table.name} ({columns}, PRIMARY KEY ({key}) NOT ENFORCED) "
        f"PARTITION BY DATE({table.partition_field}) CLUSTER BY {', '.join(table.clustering)}"
    )


# The event functions subscribed to the topic; each one's subscription is named after it.
EVENT_FUNCTIONS = ("load_events_bigquery", "archive_events", "ingest_graph_memory")
