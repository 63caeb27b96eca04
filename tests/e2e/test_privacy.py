"""A shopper with activity in every store asks to be deleted: at once nothing serves them, and once
the deletion queue has run nothing about them is left anywhere (instance cache, profile store,
warehouse with the jobs' outputs, archive objects, graph memory, features snapshots), while the
other shoppers' data is untouched and late events of the deleted one are dropped."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from functions_framework import create_app

from functions.pipeline import archive_events, ingest_graph_memory, load_events_bigquery
from shared import bootstrap
from shared.domain.events import Interaction
from shared.domain.pipeline import TOPIC, EventBatch, archive_name, warehouse_rows
from shared.ports.event_bus import pubsub_cloud_event
from shared.ports.graph_memory import GraphUnavailable
from tests.conftest import ROOT, installed_services

MAIN = str(ROOT / "main.py")
NOW = datetime.now(UTC)


@pytest.fixture()
def services(tmp_path):
    services = installed_services(
        tmp_path,
        profile_store="sqlite",
        sqlite_path=tmp_path / "profiles.sqlite3",
        profile_spool_path=tmp_path / "profile-spool.sqlite3",
        auth="hmac",
        auth_secret="e2e-" + "k" * 40,
        deletion_grace_s=600,
        features_refresh_s=0.001,
    )
    services.published = []
    services.tracking.publish = services.published.extend  # delivered below through the event functions
    services.search.publish = services.published.extend
    yield services
    services.close()
    bootstrap.install(None)


def call(target: str, method: str, path: str, user: str | None = None, service: bool = False, **kwargs):
    services = bootstrap.container()
    headers = {"Authorization": f"Bearer {services.identity.issue(user, service=service)}"} if user else {}
    return getattr(create_app(target, MAIN).test_client(), method)(path, headers=headers, **kwargs)


def run_queue(**kwargs):
    """Cloud Scheduler's call of the deletion queue, now (with its service identity)."""
    return call("process_deletion_queue", "post", "/", "scheduler", service=True, **kwargs)


def deliver(events: list[Interaction]) -> None:
    """What Pub/Sub would push to each event function, as one message."""
    data, attributes = EventBatch(tuple(events)).encode()
    for function in (load_events_bigquery, archive_events, ingest_graph_memory):
        message = pubsub_cloud_event("p", TOPIC, function.__name__, uuid.uuid4().hex, data, attributes, NOW)
        function(message)


def shop(user: str, days_ago: int, order: str) -> None:
    """A session: a view, a search, and an order of two products."""
    at = (NOW - timedelta(days=days_ago)).isoformat()
    view = {"event_id": f"{order}-v", "event_type": "view_details", "user_id": user, "product_id": "oat-milk"}
    assert call("track_interaction", "post", "/", user, json=view | {"timestamp": at}).status_code == 202
    assert call("search_personalized", "post", "/", user, json={"query": "milk", "user_id": user}).status_code == 200
    items = [{"product_id": "oat-milk", "quantity": 2}, {"product_id": "original-chips", "quantity": 1}]
    body = {"order_id": order, "user_id": user, "items": items, "timestamp": at}
    assert call("confirm_order", "post", "/", user, json=body).status_code == 200


def everything_about(services, user: str) -> dict[str, object]:
    """What each store holds about the user (empty values: nothing)."""
    orders, signals = services.graph.history(user)
    archived = [line for _, lines, _ in services.archiver.scan(lambda e: e.get("user_id") == user) for line in lines]
    return {
        "instance cache and profile store": services.profiles.read(user, lambda profile: len(profile)),
        "durable profile store": services.profiles.durable.read(user, lambda profile: len(profile)),
        "warehouse": services.warehouse.user_rows(user),
        "archive (archived and staged)": archived,
        "graph orders and signals": orders + signals,
        "graph facts": services.graph.facts(user),
        "features snapshot": services.features.user(user),
    }


def test_a_deleted_shopper_is_erased_everywhere_and_stays_erased(services):
    for user in ("ann", "bob"):
        for n, days_ago in enumerate((30, 20, 10)):
            shop(user, days_ago, f"{user}-order-{n}")
    deliver(services.published)
    services.archiver.flush(force=True)
    later = [e for e in services.published if e.user_id == "ann"][:1]  # staged, not yet flushed, at deletion
    services.published.clear()
    assert services.jobs.run("daily", force=True)["features"]["user"] >= 2
    for user in ("ann", "bob"):
        held = everything_about(services, user)
        assert all(held.values()), {store: bool(value) for store, value in held.items()}
    assert {"raw_user_actions", "order_events", "next_basket"} <= set(services.warehouse.user_rows("ann"))

    answer = call("delete_user_data", "delete", "/api/users/ann", "ann")
    assert answer.status_code == 202
    status_url = answer.get_json()["status_url"]
    requested = datetime.fromisoformat(answer.get_json()["requested_at"])
    # At once: the live profile is gone and no search shows what was learnt about them.
    assert everything_about(services, "ann")["instance cache and profile store"] is None
    assert everything_about(services, "ann")["durable profile store"] is None
    search = call("search_personalized", "post", "/", "ann", json={"query": "milk", "user_id": "ann"}).get_json()
    assert search["personalization"]["learned"] is False and search["personalization"]["reason"] == "no_profile"

    # Events of before the deletion still in flight arrive late (a redelivery, a spooled batch).
    deliver([e.model_copy(update={"event_id": "late-" + e.event_id}) for e in later])
    services.jobs.run("hourly", force=True)  # a snapshot built while the erasure is pending leaves them out
    assert services.features.user("ann") is None

    assert run_queue().get_json()["deletions"]["processed"] == 0  # within the grace: in-flight events drain first
    # The queue's later runs, as the scheduler does them (the endpoint refuses an `at` of the future).
    assert services.erasure.run(requested + timedelta(minutes=9))["deletions"]["processed"] == 0
    queue = services.erasure.run(requested + timedelta(minutes=11))
    assert queue["deletions"]["completed"] == 1, queue
    status = call("get_deletion_status", "get", status_url, "ann").get_json()
    assert status["status"] == "complete" and status["remaining"] == []

    # Late events of before the deletion arrive after the erasure too: they must not resurrect anything.
    deliver([e.model_copy(update={"event_id": "later-" + e.event_id}) for e in later])
    services.archiver.flush(force=True)
    held = everything_about(services, "ann")
    assert not any(held.values()), {store: value for store, value in held.items() if value}
    versions = [o.name for o in services.archive.list("features/") if o.name.endswith(".sqlite3")]
    assert len(versions) == 1  # older snapshots, which held the shopper, are gone
    kept = everything_about(services, "bob")
    assert all(kept.values()), {store: bool(value) for store, value in kept.items()}
    export = call("export_user_data", "get", "/api/users/ann/data", "ann").get_json()["data"]
    assert not any(export[name]["data"] for name in ("warehouse", "archive", "learnt_features"))
    assert export["graph_memory"]["data"] == {"orders": [], "signals": [], "facts": []}

    # Running the queue again changes nothing; the shopper may come back as new.
    assert services.erasure.run(requested + timedelta(hours=2))["deletions"]["processed"] == 0
    assert run_queue().get_json()["deletions"]["processed"] == 0
    fresh = {"event_type": "view_details", "user_id": "ann", "product_id": "skim-milk"}
    assert call("track_interaction", "post", "/", "ann", json=fresh).get_json()["accepted"]


def test_retention_removes_raw_events_past_the_stores_and_each_shoppers_window(services):
    assert (
        call("manage_privacy", "put", "/api/users/ann/privacy", "ann", json={"data_retention_days": 7}).status_code
        == 200
    )

    def event(user: str, days_ago: int) -> Interaction:
        at = NOW - timedelta(days=days_ago)
        return Interaction(event_id=f"{user}-{days_ago}", event_type="view_details", user_id=user,
                           product_id="oat-milk", timestamp=at)  # fmt: skip

    events = [event("ann", 3), event("ann", 10), event("bob", 10), event("bob", 100)]
    services.warehouse.insert(warehouse_rows(events, services.catalog, services.rules, NOW))
    for e in events:  # each archived when it happened, as the archiver flushes within a minute
        services.archive.put(archive_name(e.timestamp, 0), e.model_dump_json().encode() + b"\n")

    answer = run_queue(json={})
    retention = answer.get_json()["retention"]
    assert retention["shoppers_with_shorter_windows"] == 1 and retention["objects_expired"] == 1

    def kept(user: str) -> tuple[set[str], set[str]]:
        rows = {row["event_id"] for row in services.warehouse.user_rows(user).get("raw_user_actions", [])}
        lines = {json.loads(line)["event_id"] for _, found, _ in
                 services.archiver.scan(lambda e: e["user_id"] == user) for line in found}  # fmt: skip
        return rows, lines

    assert kept("ann") == ({"ann-3"}, {"ann-3"})  # her own 7-day window
    assert kept("bob") == ({"bob-10"}, {"bob-10"})  # the store's 90 days


def test_a_failed_step_is_recorded_and_the_next_run_resumes_after_it(services, monkeypatch):
    shop("ann", 5, "ann-order-0")
    deliver(services.published)
    answer = call("delete_user_data", "delete", "/api/users/ann", "ann").get_json()
    erase = services.graph.delete_user

    def graph_down(user_id: str) -> int:
        raise GraphUnavailable("the graph is down")

    monkeypatch.setattr(services.graph, "delete_user", graph_down)
    later = datetime.fromisoformat(answer["requested_at"]) + timedelta(minutes=11)
    first = services.erasure.run(later)["deletions"]
    assert first["completed"] == 0 and first["steps"]["graph"] == {"error": "the graph is down"}
    status = call("get_deletion_status", "get", answer["status_url"], "ann").get_json()
    assert status["remaining"] == ["graph", "warehouse", "archive", "features"]  # later steps wait for it
    assert status["attempts"] == 1 and status["last_error"] == "graph: the graph is down"
    assert services.warehouse.user_rows("ann")  # not erased before the graph is

    monkeypatch.setattr(services.graph, "delete_user", erase)
    second = services.erasure.run(later)["deletions"]
    assert second["completed"] == 1 and "profile" not in second["steps"]  # done steps are not redone
    assert not any(everything_about(services, "ann").values())
