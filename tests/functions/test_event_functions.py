"""The Pub/Sub-triggered functions through functions-framework, with the CloudEvents Eventarc sends."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from cloudevents.conversion import to_binary
from functions_framework import create_app

from shared import bootstrap
from shared.domain.events import Interaction
from shared.domain.pipeline import EventBatch
from shared.ports.event_bus import pubsub_cloud_event
from tests.conftest import ROOT, installed_services

MAIN = str(ROOT / "main.py")


@pytest.fixture()
def services(tmp_path):
    container = installed_services(tmp_path, archive_flush_events=3)
    yield container
    bootstrap.install(None)
    container.close()


def batch(n: int, start: int = 0) -> EventBatch:
    at = datetime(2026, 11, 20, 10, tzinfo=UTC)
    return EventBatch(
        tuple(
            Interaction(event_id=f"e{i}", event_type="add_to_cart", user_id="u1", product_id="oat-milk", timestamp=at)
            for i in range(start, start + n)
        )
    )


def deliver(target: str, data: bytes, attributes: dict, message_id: str = "1"):
    event = pubsub_cloud_event("p", "user-events", target, message_id, data, attributes, datetime.now(UTC))
    headers, body = to_binary(event)
    return create_app(target, MAIN).test_client().post("/", headers=headers, data=body)


def rows(services, table: str = "raw_user_actions") -> int:
    return services.warehouse.query(f"SELECT COUNT(*) AS n FROM {table}")[0]["n"]


def test_load_events_bigquery_writes_each_event_once(services):
    data, attributes = batch(4).encode()
    assert deliver("load_events_bigquery", data, attributes).status_code == 200
    assert deliver("load_events_bigquery", data, attributes, message_id="2").status_code == 200  # redelivered
    assert rows(services) == 4 and rows(services, "cart_events") == 4


def test_poison_is_acknowledged_and_dead_lettered(services, caplog):
    response = deliver("load_events_bigquery", b"not an event", {"schema": "leafloaf.events.v1"})
    assert response.status_code == 200
    [dead] = services.bus.dead_letters()
    assert dead["subscription"] == "load_events_bigquery" and "line 1" in dead["reason"]
    assert json.loads(dead["data"])["message"]["data"] == base64.b64encode(b"not an event").decode()
    assert "poison message dead-lettered" in caplog.text


def test_a_warehouse_that_is_down_makes_the_delivery_fail_for_a_retry(services, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    services.settings.duckdb_path = blocker / "warehouse.duckdb"
    services.__dict__.pop("warehouse", None)
    services.__dict__.pop("loader", None)
    data, attributes = batch(1).encode()
    assert deliver("load_events_bigquery", data, attributes).status_code == 500


def test_archive_events_flushes_by_count_once_per_event(services):
    first, second = batch(2), batch(2, start=2)
    for message in (first, second, first):
        data, attributes = message.encode()
        assert deliver("archive_events", data, attributes).status_code == 200
    assert services.archiver.archived_lines() == 4


def test_tracking_and_search_publish_to_the_bus(services):
    track = create_app("track_interaction", MAIN).test_client()
    track.post("/", json={"event_type": "purchase", "user_id": "u9", "product_id": "oat-milk", "quantity": 1})
    search = create_app("search_personalized", MAIN).test_client()
    search.post("/", json={"query": "milk", "user_id": "u9"})
    search.post("/", json={"query": "milk"})  # anonymous: nothing to attribute
    services.publisher.flush()
    published = []
    services.bus.deliver("archive_events", lambda event: published.append(event))
    events = [
        Interaction.model_validate_json(line)
        for event in published
        for line in base64.b64decode(event.get_data()["message"]["data"]).splitlines()
    ]
    assert [(e.event_type, e.user_id) for e in events] == [("purchase", "u9"), ("search", "u9")]
    assert events[0].purchase_kind == "first_time"  # the kind the profile counted
    assert events[1].context.search_query == "milk" and events[1].context.results_shown[0].endswith("milk")


def test_ingest_graph_memory_builds_the_shoppers_memory_once(services):
    at = datetime(2026, 11, 1, 10, tzinfo=UTC)
    events = [
        Interaction(
            event_id=f"o{k}:oat-milk", event_type="purchase", user_id="u7", product_id="oat-milk",
            timestamp=at + timedelta(days=7 * k), context={"order_id": f"o{k}"},
        )
        for k in range(3)
    ]  # fmt: skip
    data, attributes = EventBatch(tuple(events)).encode()
    for message_id in ("1", "2"):  # delivered twice
        assert deliver("ingest_graph_memory", data, attributes, message_id).status_code == 200
    [usual] = services.memory.usual("u7", at + timedelta(days=15))
    assert (usual.product_id, usual.frequency, usual.cycle_days) == ("oat-milk", 3, 7.0)


def test_confirm_order_applies_purchases_at_once_and_publishes_them(services):
    confirm = create_app("confirm_order", MAIN).test_client()
    body = {
        "order_id": "A-1",
        "user_id": "u8",
        "items": [{"product_id": "whole-milk", "quantity": 2, "price": 5.0}, {"product_id": "oat-yogurt"}],
        "totals": {"total": 12.0},
    }
    first = confirm.post("/", json=body)
    assert first.status_code == 200
    assert first.get_json() == {
        "order_id": "A-1",
        "status": "confirmed",
        "items": [
            {"product_id": "whole-milk", "quantity": 2, "purchase_kind": "first_time"},
            {"product_id": "oat-yogurt", "quantity": 1, "purchase_kind": "first_time"},
        ],
    }
    assert confirm.post("/", json=body).get_json()["status"] == "already_confirmed"
    live = create_app("get_live_preferences", MAIN).test_client().get("/users/u8/preferences/live").get_json()
    assert live["preferred_quantities"] == {"whole-milk": 2, "oat-yogurt": 1}
    services.publisher.flush()
    published = []
    services.bus.deliver("ingest_graph_memory", lambda event: published.append(event))
    lines = [
        Interaction.model_validate_json(line)
        for event in published
        for line in base64.b64decode(event.get_data()["message"]["data"]).splitlines()
    ]
    assert [(e.event_id, e.context.order_id) for e in lines] == [("A-1:whole-milk", "A-1"), ("A-1:oat-yogurt", "A-1")]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user_id": "u", "items": []}, "items"),
        ({"user_id": "u", "items": [{"product_id": "p", "quantity": 0}]}, "items.0.quantity"),
        ({"user_id": "u", "items": [{"product_id": "p"}, {"product_id": "p"}]}, "<body>"),
        ({"items": [{"product_id": "p"}]}, "user_id"),
        ({"user_id": "u", "items": [{"product_id": "p"}], "totals": {"total": -1}}, "totals.total"),
    ],
)
def test_confirm_order_rejects_bad_orders_with_the_field(services, body, field):
    response = create_app("confirm_order", MAIN).test_client().post("/", json=body)
    assert response.status_code == 400
    assert field in [f["field"] for f in response.get_json()["error"]["fields"]]


def test_shopper_memory_over_http_and_notes_need_an_llm(services):
    at = datetime(2026, 11, 1, 10, tzinfo=UTC)
    events = [
        Interaction(
            event_id=f"m{k}:oat-milk", event_type="purchase", user_id="u9", product_id="oat-milk", quantity=2,
            timestamp=at + timedelta(days=7 * k), context={"order_id": f"m{k}"},
        )
        for k in range(3)
    ]  # fmt: skip
    services.memory.ingest(EventBatch(tuple(events)))
    memory = create_app("get_shopper_memory", MAIN).test_client()
    body = memory.get("/users/u9/memory", query_string={"at": (at + timedelta(days=30)).isoformat()}).get_json()
    assert [(i["product_id"], i["quantity"], i["cycle_days"]) for i in body["usual"]] == [("oat-milk", 2, 7.0)]
    assert [i["product_id"] for i in body["due_for_reorder"]] == ["oat-milk"]
    assert {f["name"] for f in body["facts"]} == {"frequently_buys", "reorder_cycle"}
    assert memory.get("/users/u9/memory", query_string={"at": "yesterday"}).status_code == 400
    notes = create_app("add_memory_note", MAIN).test_client()
    refused = notes.post("/users/u9/memory/notes", json={"text": "Loves the oat milk", "source": "review"})
    assert refused.status_code == 501 and refused.get_json()["error"]["code"] == "llm_not_configured"
    assert notes.post("/users/u9/memory/notes", json={"text": ""}).status_code == 400
