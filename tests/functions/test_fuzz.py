"""Bad input at scale: every HTTP function and every event function fed malformed, huge, deeply
nested, wrong-type and unicode-hostile payloads (hypothesis). Never a 500 or a crash; poison
messages are acknowledged and dead-lettered with a log line; and afterwards the state is not
poisoned: normal traffic still works and nothing bad was stored."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from cloudevents.conversion import to_binary
from functions_framework import create_app
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared import bootstrap
from shared.ports.event_bus import pubsub_cloud_event
from tests.conftest import ROOT, installed_services

MAIN = str(ROOT / "main.py")
HOSTILE = st.sampled_from([
    "", " ", "\x00", "\u202e\u0644\u0627", "\ufeff", "🥛" * 300, "\U0010ffff", "a" * 200_000, "null", "../../etc",
    "' OR 1=1 --", "<script>", "%s%n", "\\", '"', "NaN", "1e309", "-0", "💥\u200d💥", "\r\n",
])  # fmt: skip
LEAF = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=50) | HOSTILE
JSONISH = st.recursive(LEAF, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=20) | HOSTILE,
                                                                                          inner, max_size=5),
                       max_leaves=40)  # fmt: skip
EVENT_KEYS = ["event_id", "event_type", "user_id", "session_id", "product_id", "timestamp", "quantity", "context",
              "price", "purchase_kind", "product_attributes"]  # fmt: skip
VALID = {"event_type": "click_product", "user_id": "fuzz", "product_id": "oat-milk"}


def mutated_event() -> st.SearchStrategy[dict]:
    """A valid event with some fields replaced by anything."""
    return st.dictionaries(st.sampled_from(EVENT_KEYS), JSONISH, max_size=4).map(lambda changes: VALID | changes)


HTTP = [
    ("track_interaction", "post", "/"),
    ("search_personalized", "post", "/"),
    ("rank_personalized", "post", "/"),
    ("recommend_products", "post", "/"),
    ("confirm_order", "post", "/"),
    ("manage_privacy", "put", "/api/users/fuzz/privacy"),
    ("add_memory_note", "post", "/api/users/fuzz/memory/notes"),
    ("run_hourly_jobs", "post", "/"),
    ("process_deletion_queue", "post", "/"),
    ("manage_catalog", "put", "/"),
    ("manage_catalog", "patch", "/"),
    ("manage_catalog", "delete", "/"),
]


def parses(raw: bytes) -> bool:
    try:
        json.loads(raw)
    except ValueError:
        return False
    return True


OPTIONAL_BODY = {"run_hourly_jobs", "process_deletion_queue"}


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    services = installed_services(tmp_path_factory.mktemp("fuzz"))
    yield services
    services.close()
    bootstrap.install(None)


@pytest.fixture(scope="module")
def clients(services):
    names = {target for target, _, _ in HTTP} | {"get_live_preferences", "load_events_bigquery", "archive_events",
                                                 "ingest_graph_memory", "get_deletion_status"}  # fmt: skip
    return {name: create_app(name, MAIN).test_client() for name in names}


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


@FUZZ
@given(body=JSONISH | mutated_event() | st.lists(mutated_event(), max_size=3).map(lambda e: {"events": e}))
def test_no_http_function_answers_500_to_anything(clients, body):
    for target, method, path in HTTP:
        answer = getattr(clients[target], method)(path, json=body)
        assert answer.status_code < 500 or answer.status_code == 501, (target, answer.get_json())
        assert "error" in answer.get_json() or answer.status_code < 400


@FUZZ
@given(raw=st.binary(max_size=2_000) | st.text(max_size=500).map(str.encode))
def test_no_http_function_answers_500_to_bytes_that_are_not_json(clients, raw):
    for target, method, path in HTTP:
        answer = getattr(clients[target], method)(path, data=raw, content_type="application/json")
        assert answer.status_code < 500 or answer.status_code == 501, (target, answer.status_code)
        optional = not raw.strip() and target in OPTIONAL_BODY  # an empty body means "the defaults"
        if not optional and not parses(raw):
            assert answer.status_code in (400, 413), (target, answer.status_code)


@FUZZ
@given(segment=HOSTILE | st.text(max_size=300))
def test_hostile_path_segments_are_400_or_404(clients, segment):
    from urllib.parse import quote

    for target, path in [("get_live_preferences", f"/api/users/{quote(segment, safe='')}/preferences/live"),
                         ("get_deletion_status", f"/api/deletions/{quote(segment, safe='')}")]:  # fmt: skip
        assert clients[target].get(path).status_code in (200, 400, 404)


def deliver(client, target: str, envelope: object):
    event = pubsub_cloud_event("p", "user-events", target, "m", b"", {}, datetime.now(UTC))
    event.data = envelope  # whatever a broken publisher (or an attacker with publish rights) sent
    headers, body = to_binary(event)
    return client.post("/", headers=headers, data=body)


def message(data: bytes) -> dict:
    attributes = {"schema": "leafloaf.events.v1"}
    return {"message": {"data": base64.b64encode(data).decode(), "attributes": attributes, "messageId": "m"}}


@FUZZ
@given(
    envelope=JSONISH
    | st.binary(max_size=3_000).map(message)
    | st.lists(mutated_event(), min_size=1, max_size=3).map(
        lambda events: message("\n".join(json.dumps(e, default=str) for e in events).encode())
    )
)
def test_poison_messages_are_acknowledged_and_dead_lettered(services, clients, caplog, envelope):
    before = len(services.bus.dead_letters())
    rows = services.warehouse.query("SELECT COUNT(*) AS n FROM raw_user_actions")[0]["n"]
    for target in ("load_events_bigquery", "archive_events", "ingest_graph_memory"):
        answer = deliver(clients[target], target, envelope)
        assert answer.status_code == 200, (target, answer.data[:300])  # acknowledged: never a retry loop
    dead = len(services.bus.dead_letters()) - before
    loaded = services.warehouse.query("SELECT COUNT(*) AS n FROM raw_user_actions")[0]["n"] - rows
    assert (dead, loaded > 0) in ((3, False), (0, True), (0, False)), (dead, loaded)  # poison, or valid events
    if dead:
        assert "poison message dead-lettered" in caplog.text


def test_after_the_fuzz_normal_traffic_still_works(services, clients):
    event = {"event_type": "view_details", "user_id": "after-fuzz", "product_id": "oat-yogurt"}
    assert clients["track_interaction"].post("/", json=event).get_json()["accepted"]
    answer = clients["search_personalized"].post("/", json={"query": "yogurt", "user_id": "after-fuzz"})
    assert answer.get_json()["results"][0]["product_id"] == "oat-yogurt"
    good = "\n".join(json.dumps(VALID | {"event_id": f"good-{n}"}) for n in range(3)).encode()
    assert deliver(clients["load_events_bigquery"], "load_events_bigquery", message(good)).status_code == 200
    ids = {r["event_id"] for r in services.warehouse.query("SELECT event_id FROM raw_user_actions")}
    assert {"good-0", "good-1", "good-2"} <= ids
