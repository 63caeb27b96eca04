"""Bus messages, warehouse rows and archive names: pure functions of the events."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from shared.domain.catalog import Catalog
from shared.domain.events import Interaction
from shared.domain.pipeline import (
    EVENT_TABLES,
    RAW_EVENTS,
    EventBatch,
    PoisonMessage,
    archive_name,
    decode_message,
    decode_pubsub_envelope,
    staged_batch_id,
    staged_count,
    staged_name,
    table_ddl,
    warehouse_rows,
)
from tests.conftest import SMALL_CATALOG

NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)


def events() -> list[Interaction]:
    return [
        Interaction(event_type="search", user_id="u1", context={"search_query": "milk", "results_shown": ["oat-milk"]}),
        Interaction(event_type="click_product", user_id="u1", product_id="oat-milk", context={"position": 2}),
        Interaction(event_type="time_on_product", user_id="u1", product_id="oat-milk", context={"time_on_page": 35}),
        Interaction(event_type="add_to_cart", user_id="u2", product_id="whole-milk", quantity=2, price=5.0),
        Interaction(
            event_type="purchase",
            user_id="u2",
            product_id="whole-milk",
            quantity=2,
            purchase_kind="bulk_purchase",
            context={"order_id": "o-1"},
        ),
        Interaction(event_type="returned", user_id="u2", product_id="unknown-sku", product_category="bakery"),
    ]


def test_a_batch_round_trips_through_a_message_and_keeps_its_id():
    batch = EventBatch(tuple(events()))
    data, attributes = batch.encode()
    again = decode_message(data, attributes)
    assert again == batch and again.batch_id == batch.batch_id == attributes["batch_id"]
    assert attributes["events"] == "6"


def test_the_batch_id_depends_on_the_events_and_their_order():
    first, second = events()[:2]
    assert EventBatch((first, second)).batch_id != EventBatch((second, first)).batch_id
    assert EventBatch((first,)).batch_id == EventBatch((first,)).batch_id


@pytest.mark.parametrize(
    ("data", "attributes", "reason"),
    [
        (b"{}", {"schema": "other"}, "attribute schema"),
        (b"not json", {"schema": "leafloaf.events.v1"}, "line 1"),
        (b"", {"schema": "leafloaf.events.v1"}, "no events"),
        (b'{"event_type": "click_product", "user_id": "u"}', {"schema": "leafloaf.events.v1"}, "line 1"),
        (b"\xff\xfe", {"schema": "leafloaf.events.v1"}, "utf-8"),
    ],
)
def test_malformed_messages_are_poison(data, attributes, reason):
    with pytest.raises(PoisonMessage, match=reason):
        decode_message(data, attributes)


@pytest.mark.parametrize(
    "envelope",
    [None, [], "text", {"message": "x"}, {"message": {"data": "***"}}, {"subscription": "s"}],
)
def test_malformed_envelopes_are_poison(envelope):
    with pytest.raises(PoisonMessage):
        decode_pubsub_envelope(envelope)


def test_an_envelope_gives_the_message_id_and_batch():
    batch = EventBatch(tuple(events()[:1]))
    data, attributes = batch.encode()
    envelope = {"message": {"data": base64.b64encode(data).decode(), "attributes": attributes, "messageId": "7"}}
    assert decode_pubsub_envelope(envelope) == ("7", batch)


def test_every_event_has_a_raw_row_and_one_row_in_its_kind_table(rules):
    rows = warehouse_rows(events(), Catalog(SMALL_CATALOG), rules, NOW)
    assert len(rows["raw_user_actions"]) == 6
    counts = {name: len(table_rows) for name, table_rows in rows.items()}
    assert counts == {
        "raw_user_actions": 6,
        "search_events": 1,
        "product_interaction_events": 2,
        "cart_events": 1,
        "order_events": 2,
        "search_impressions": 0,  # no event carries a search_id
        "search_outcome_events": 0,
    }
    for table in EVENT_TABLES:  # rows carry exactly the table's columns; required ones are set
        for row in rows[table.name]:
            assert list(row) == [c.name for c in table.columns]
            assert all(row[c.name] is not None for c in table.columns if c.mode == "REQUIRED"), row


def test_rows_carry_catalog_facts_strength_and_json_text(rules):
    rows = warehouse_rows(events(), Catalog(SMALL_CATALOG), rules, NOW)
    raw = {r["event_type"]: r for r in rows["raw_user_actions"]}
    assert raw["click_product"]["product_category"] == "milk"
    assert json.loads(raw["click_product"]["product_attributes"]) == ["dairy-free", "plant-based", "vegan"]
    assert raw["click_product"]["interaction_strength"] == 0.2 and raw["click_product"]["result_position"] == 2
    assert raw["time_on_product"]["interaction_strength"] == 0.25  # the 30 s dwell bucket
    assert raw["purchase"]["interaction_strength"] == 1.2  # bulk purchase
    assert raw["search"]["interaction_strength"] is None
    assert json.loads(raw["search"]["search_results_shown"]) == ["oat-milk"]
    assert raw["returned"]["product_category"] == "bakery"  # unknown product: the event's own facts
    assert json.loads(raw["returned"]["raw_event_data"])["product_id"] == "unknown-sku"
    order = {r["event_type"]: r for r in rows["order_events"]}
    assert order["purchase"]["order_id"] == "o-1" and order["purchase"]["purchase_kind"] == "bulk_purchase"


def test_table_ddl_partitions_and_clusters_as_designed():
    ddl = table_ddl(RAW_EVENTS, "ds")
    assert ddl.startswith("CREATE TABLE IF NOT EXISTS ds.raw_user_actions (event_id STRING NOT NULL")
    assert ddl.endswith("PARTITION BY DATE(event_timestamp) CLUSTER BY user_id, event_type")


def test_archive_and_staging_names():
    assert archive_name(datetime(2026, 11, 23, 9, 5, 7, tzinfo=UTC), 0) == "events/20261123_090507_0_events.jsonl"
    batch = EventBatch(tuple(events()))
    name = staged_name(batch)
    assert staged_count(name) == 6 and staged_batch_id(name) == batch.batch_id
