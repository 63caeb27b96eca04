"""Attribution over HTTP: search, track what followed with the answer's search_id, deliver the
pipeline through the load function, and find the impressions and linked outcomes in the warehouse."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cloudevents.conversion import to_binary
from functions_framework import create_app

from shared import bootstrap
from tests.conftest import ROOT, installed_services

MAIN = str(ROOT / "main.py")


@pytest.fixture()
def services(tmp_path):
    container = installed_services(tmp_path)
    yield container
    bootstrap.install(None)
    container.close()


def client(target: str):
    return create_app(target, MAIN).test_client()


def deliver_to_the_warehouse(services) -> None:
    """What Pub/Sub does: every published message to load_events_bigquery, as Eventarc's CloudEvent."""
    services.publisher.flush()
    loader, answers = client("load_events_bigquery"), []

    def push(event) -> None:  # the bus would retry a failure later: record it instead
        headers, body = to_binary(event)
        answers.append(loader.post("/", headers=headers, data=body).status_code)

    while services.bus.deliver("load_events_bigquery", push):
        pass
    assert answers and set(answers) == {200}


def test_a_click_and_a_purchase_with_the_search_id_are_linked_to_the_impressions(services):
    search = client("search_personalized").post("/", json={"query": "milk", "user_id": "u5", "session_id": "s-1"})
    assert search.status_code == 200
    answer = search.get_json()
    search_id, results = answer["search_id"], answer["results"]
    assert len(search_id) == 32 and len(results) >= 3
    assert [r["position"] for r in results] == list(range(len(results)))
    picked = results[1]["product_id"]
    track = client("track_interaction").post(
        "/",
        json=[
            {"event_type": "click_product", "user_id": "u5", "product_id": picked,
             "context": {"search_id": search_id, "position": 1}},
            {"event_type": "purchase", "user_id": "u5", "product_id": picked, "quantity": 2,
             "context": {"search_id": search_id}},
            {"event_type": "click_product", "user_id": "u5", "product_id": results[0]["product_id"]},  # untagged
        ],
    )  # fmt: skip
    assert track.status_code == 202 and len(track.get_json()["accepted"]) == 3
    again = client("search_personalized").post("/", json={"query": "milk", "user_id": "u5"}).get_json()
    assert again["search_id"] != search_id  # every answer its own id

    deliver_to_the_warehouse(services)
    warehouse = services.warehouse
    shown = warehouse.query(
        "SELECT position, product_id, user_id, session_id, search_query FROM search_impressions "
        "WHERE search_id = @id ORDER BY position",
        {"id": search_id},
    )
    assert shown == [
        {"position": i, "product_id": r["product_id"], "user_id": "u5", "session_id": "s-1", "search_query": "milk"}
        for i, r in enumerate(results)
    ]
    outcomes = warehouse.query(
        "SELECT event_type, product_id, result_position, quantity FROM search_outcome_events "
        "WHERE search_id = @id ORDER BY event_type",
        {"id": search_id},
    )
    assert outcomes == [
        {"event_type": "click_product", "product_id": picked, "result_position": 1, "quantity": None},
        {"event_type": "purchase", "product_id": picked, "result_position": None, "quantity": 2},
    ]

    # Today's window, as the scheduler runs it tomorrow (the endpoint refuses an `at` of the future).
    jobs = services.jobs.run("daily", datetime.now(UTC) + timedelta(days=1), ["search_outcomes"])
    assert jobs["jobs"][0]["rows"] == len(results) * 2  # both searches
    labelled = warehouse.query(
        "SELECT position, clicked, added_to_cart, purchased FROM search_outcomes WHERE search_id = @id",
        {"id": search_id},
    )
    assert sorted((r["position"], r["clicked"], r["added_to_cart"], r["purchased"]) for r in labelled) == [
        (i, i == 1, False, i == 1) for i in range(len(results))
    ]


@pytest.mark.parametrize("bad", ["not an id!", "", "x" * 129, 42, ["a"]])
def test_a_malformed_search_id_is_a_400_naming_the_field(services, bad):
    event = {"event_type": "click_product", "user_id": "u5", "product_id": "oat-milk", "context": {"search_id": bad}}
    one = client("track_interaction").post("/", json=event)
    assert one.status_code == 400
    assert [f["field"] for f in one.get_json()["error"]["fields"]] == ["context.search_id"]
    batch = client("track_interaction").post("/", json={"events": [event]})
    assert [f["field"] for f in batch.get_json()["error"]["fields"]] == ["events.0.context.search_id"]
