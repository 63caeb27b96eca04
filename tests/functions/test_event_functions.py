"""The Pub/Sub-triggered functions through functions-framework, with the CloudEvents Eventarc sends."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from cloudevents.conversion import to_binary
from functions_framework import create_app

from shared import bootstrap
from shared.config import Settings
from shared.domain.catalog import Catalog
from shared.domain.events import Interaction
from shared.domain.pipeline import EventBatch
from shared.ports.event_bus import pubsub_cloud_event
from tests.conftest import ROOT, SMALL_CATALOG

MAIN = str(ROOT / "main.py")


@pytest.fixture()
def services(tmp_path):
    settings = Settings(
        catalog_path=tmp_path / "none.jsonl",
        profile_store="memory",
        bus_path=tmp_path / "bus.sqlite3",
        publish_spool_path=tmp_path / "publish-spool.sqlite3",
        duckdb_path=tmp_path / "warehouse.duckdb",
        archive_path=tmp_path / "archive",
        archive_flush_events=3,
    )
    container = bootstrap.build(settings, catalog=Catalog(SMALL_CATALOG))
    bootstrap.install(container)
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
