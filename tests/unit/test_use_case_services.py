"""Each entry point's use case is one service method: graph memory's answers and notes under the
shopper's privacy setting, and the pipeline services dropping late events of deleted shoppers
themselves (the event functions used to filter them)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared import bootstrap
from shared.domain.events import Interaction
from shared.domain.pipeline import EventBatch
from shared.domain.privacy import PrivacyUpdate
from shared.ports.graph_memory import TextMemoryUnavailable
from shared.services.memory import PersonalizationDisabled
from tests.conftest import installed_services

AT = datetime(2026, 11, 1, 10, tzinfo=UTC)


@pytest.fixture()
def services(tmp_path):
    container = installed_services(tmp_path, archive_flush_events=1)
    yield container
    bootstrap.install(None)
    container.close()


def purchases(user_id: str, weeks: int = 3) -> list[Interaction]:
    return [
        Interaction(
            event_id=f"{user_id}:m{k}", event_type="purchase", user_id=user_id, product_id="oat-milk", quantity=2,
            timestamp=AT + timedelta(days=7 * k), context={"order_id": f"{user_id}:m{k}"},
        )
        for k in range(weeks)
    ]  # fmt: skip


def test_shopper_memory_is_one_answer_of_the_service(services):
    services.memory.ingest(EventBatch(tuple(purchases("u9"))))
    answer = services.memory.shopper_memory("u9", AT + timedelta(days=30))
    assert (answer["user_id"], answer["at"]) == ("u9", (AT + timedelta(days=30)).isoformat())
    assert [(i["product_id"], i["quantity"], i["cycle_days"]) for i in answer["usual"]] == [("oat-milk", 2, 7.0)]
    assert [i["product_id"] for i in answer["due_for_reorder"]] == ["oat-milk"]
    assert {f["name"] for f in answer["facts"]} == {"frequently_buys", "reorder_cycle"}
    assert all(f["fact"] and f["invalid_at"] is None for f in answer["facts"])


def test_a_note_is_refused_by_the_service_when_personalization_is_off(services):
    with pytest.raises(TextMemoryUnavailable):  # on: it reaches the graph, which has no LLM here
        services.memory.add_note("u9", "Loves the oat milk", "review", AT)
    services.privacy.update("u9", PrivacyUpdate(personalization_enabled=False))
    with pytest.raises(PersonalizationDisabled, match="nothing is remembered"):
        services.memory.add_note("u9", "Loves the oat milk", "review", AT)


def test_the_pipeline_services_drop_late_events_of_deleted_shoppers(services):
    services.privacy.request_deletion("gone", at=AT + timedelta(days=30))
    late = EventBatch(tuple(purchases("gone")))  # from before the deletion, delivered after it
    mixed = EventBatch(tuple(purchases("gone", 1) + purchases("kept", 1)))

    assert services.loader.load(late) == 0
    assert services.loader.load(mixed) > 0
    assert set(services.warehouse.user_rows("gone")) == set() and services.warehouse.user_rows("kept")

    assert services.archiver.archive_batch(late) == 0
    assert services.archiver.archive_batch(mixed) == 1  # only the kept shopper's event
    assert services.memory.ingest(late)["users"] == 0
    assert services.memory.ingest(mixed)["users"] == 1
    assert services.memory.shopper_memory("gone", AT + timedelta(days=30))["facts"] == []
