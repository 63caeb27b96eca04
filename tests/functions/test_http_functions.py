"""The HTTP functions through functions-framework's own app and test client."""

from __future__ import annotations

import json
import time

import pytest
from functions_framework import create_app

from shared import bootstrap
from shared.config import Settings
from shared.domain.catalog import Catalog
from tests.conftest import ROOT, SMALL_CATALOG

MAIN = str(ROOT / "main.py")
CLICK = {"event_type": "click_product", "user_id": "u", "product_id": "p"}


@pytest.fixture(autouse=True)
def services(tmp_path):
    settings = Settings(
        catalog_path=tmp_path / "none.jsonl",
        profile_store="memory",
        max_body_bytes=4_000,
        max_batch_events=5,
        cors_origins="https://shop.example",
    )
    bootstrap.install(bootstrap.build(settings, catalog=Catalog(SMALL_CATALOG)))
    yield
    bootstrap.install(None)


def client(target: str):
    return create_app(target, MAIN).test_client()


def error_fields(response) -> list[str]:
    return [f["field"] for f in response.get_json()["error"]["fields"]]


def test_track_one_event_and_a_batch():
    track = client("track_interaction")
    one = track.post(
        "/", json={"event_id": "e1", "event_type": "click_product", "user_id": "u1", "product_id": "oat-milk"}
    )
    assert one.status_code == 202 and one.get_json() == {"accepted": ["e1"], "duplicates": [], "refused": []}
    batch = track.post(
        "/",
        json={
            "events": [
                {"event_id": "e1", "event_type": "click_product", "user_id": "u1", "product_id": "oat-milk"},
                {"event_id": "e2", "event_type": "search", "user_id": "u1", "context": {"search_query": "milk"}},
            ]
        },
    )
    assert batch.status_code == 202 and batch.get_json() == {"accepted": ["e2"], "duplicates": ["e1"], "refused": []}
    as_array = track.post("/", json=[{"event_type": "view_details", "user_id": "u2", "product_id": "whole-milk"}])
    assert as_array.status_code == 202 and len(as_array.get_json()["accepted"]) == 1


@pytest.mark.parametrize(
    ("body", "code", "fields"),
    [
        ("{not json", "invalid_json", []),
        ("", "invalid_json", []),
        ('{"event_type": "teleport", "user_id": "u", "product_id": "p"}', "invalid_request", ["event_type"]),
        ('{"event_type": "click_product"}', "invalid_request", ["user_id"]),
        ('{"event_type": "click_product", "user_id": 7, "product_id": "p"}', "invalid_request", ["user_id"]),
        (
            '{"event_type": "purchase", "user_id": "u", "product_id": "p", "quantity": "lots"}',
            "invalid_request",
            ["quantity"],
        ),
        (
            json.dumps({"events": [CLICK, {"event_type": "click_product", "user_id": "u"}]}),
            "invalid_request",
            ["events.1"],
        ),
        ('{"events": []}', "invalid_request", ["events"]),
        ('{"events": [], "extra": 1}', "invalid_request", []),
        (
            json.dumps({"events": [{"event_type": "view_details", "user_id": "u", "product_id": "p"}] * 6}),
            "batch_too_large",
            [],
        ),
        ('"just a string"', "invalid_request", ["<body>"]),
        ("[" * 5000 + "]" * 5000, "payload_too_large", []),
    ],
)
def test_bad_track_requests_get_400_naming_the_field(body, code, fields):
    response = client("track_interaction").post("/", data=body, content_type="application/json")
    assert response.status_code == 400, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["code"] == code and error["message"]
    assert error_fields(response) == fields or all(any(f.startswith(p) for p in fields) for f in error_fields(response))


def test_deeply_nested_json_is_a_400_not_a_crash():
    settings = bootstrap.container().settings.model_copy(update={"max_body_bytes": 1_000_000})
    bootstrap.install(bootstrap.build(settings, catalog=Catalog(SMALL_CATALOG)))
    response = client("track_interaction").post(
        "/", data="[" * 100_000 + "]" * 100_000, content_type="application/json"
    )
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "invalid_json"


def test_nothing_is_applied_when_one_event_of_a_batch_is_bad():
    client("track_interaction").post(
        "/",
        json={
            "events": [
                {"event_type": "click_product", "user_id": "u9", "product_id": "oat-milk"},
                {"event_type": "click_product", "user_id": "u9"},
            ]
        },
    )
    assert client("get_live_preferences").get("/api/users/u9/preferences/live").get_json()["known"] is False


def test_search_personalizes_after_tracking():
    client("track_interaction").post(
        "/", json={"event_type": "click_product", "user_id": "u1", "product_id": "oat-milk"}
    )
    answer = client("search_personalized").post("/", json={"query": "yogurt", "user_id": "u1", "limit": 5})
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["personalization"]["applied"] is True
    assert body["results"][0]["product_id"] == "oat-yogurt"
    assert body["results"][0]["badges"]


def test_search_opt_out_through_context():
    client("track_interaction").post(
        "/", json={"event_type": "click_product", "user_id": "u1", "product_id": "oat-milk"}
    )
    body = (
        client("search_personalized")
        .post("/", json={"query": "yogurt", "user_id": "u1", "context": {"personalization": False}})
        .get_json()
    )
    assert body["personalization"] == {
        "applied": False,
        "reason": "opted_out",
        "budget_ms": 50.0,
        "learned": False,
        "ranking": None,
        "model": None,
    }


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"user_id": "u"}, ["query"]),
        ({"query": "milk", "limit": 1000}, ["limit"]),
        ({"query": "milk", "filters": {"colour": "red"}}, ["filters.colour"]),
        ({"query": "milk", "filters": {"min_price": "cheap"}}, ["filters.min_price"]),
        ({"query": 42}, ["query"]),
        (
            {"query": "milk", "context": {"recent_views": [{"product_id": "bad id"}]}},
            ["context.recent_views.0.product_id"],
        ),
        ({"query": "milk", "context": {"personalization": "maybe"}}, ["context.personalization"]),
    ],
)
def test_bad_search_requests(body, fields):
    response = client("search_personalized").post("/", json=body)
    assert response.status_code == 400 and error_fields(response) == fields


def test_live_preferences():
    client("track_interaction").post(
        "/", json={"event_type": "purchase", "user_id": "u1", "product_id": "whole-milk", "quantity": 2}
    )
    prefs = client("get_live_preferences").get("/api/users/u1/preferences/live").get_json()
    assert prefs["known"] is True
    assert prefs["brands"] == {"organic valley": 0.8}
    assert prefs["preferred_quantities"] == {"whole-milk": 2}
    memory = prefs["purchase_memory"]  # the ranking's long horizon is shown (and exported) too
    assert set(memory) == {"product:whole-milk", "brand:organic valley", "category:milk"}
    assert memory["product:whole-milk"]["count"] == pytest.approx(1.0, abs=0.01)
    unknown = client("get_live_preferences").get("/api/users/nobody/preferences/live").get_json()
    assert unknown["known"] is False and unknown["categories"] == {}
    by_query = client("get_live_preferences").get("/?user_id=u1").get_json()
    assert by_query["known"] is True


def test_bad_user_id_in_path():
    response = client("get_live_preferences").get("/api/users/bad%20id!/preferences/live")
    assert response.status_code == 400 and error_fields(response) == ["user_id"]
    missing = client("get_live_preferences").get("/")
    assert missing.status_code == 400 and error_fields(missing) == ["user_id"]


def test_wrong_method_is_405_with_allow():
    response = client("track_interaction").get("/")
    assert response.status_code == 405 and response.headers["Allow"] == "POST"


def test_cors_preflight_and_headers_for_allowed_origins_only():
    search = client("search_personalized")
    preflight = search.options("/", headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    answer = search.post("/", json={"query": "milk"}, headers={"Origin": "https://shop.example"})
    assert answer.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    foreign = search.post("/", json={"query": "milk"}, headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in foreign.headers


def test_an_answer_made_without_a_failing_backend_says_so(monkeypatch):
    services = bootstrap.container()

    def unreachable(user_id):
        raise OSError("privacy store unreachable")

    search, origin = client("search_personalized"), {"Origin": "https://shop.example"}
    assert "X-LeafLoaf-Degraded" not in search.post("/", json={"query": "milk", "user_id": "ann"}).headers
    monkeypatch.setattr(services.privacy.store, "settings", unreachable)
    answer = search.post("/", json={"query": "milk", "user_id": "bob"}, headers=origin)
    assert answer.status_code == 200 and answer.headers["X-LeafLoaf-Degraded"] == "privacy_store"
    assert answer.headers["Access-Control-Expose-Headers"] == "X-LeafLoaf-Degraded"  # browsers may read it
    monkeypatch.undo()  # the store is back: the background read it triggers clears the flag
    deadline = time.monotonic() + 10
    while search.post("/", json={"query": "milk", "user_id": "cid"}).headers.get("X-LeafLoaf-Degraded"):
        assert time.monotonic() < deadline, "still flagged after the store came back"
        time.sleep(0.05)


def test_an_internal_error_is_a_json_500_and_logged(monkeypatch, caplog):
    def explode(events):
        raise RuntimeError("boom")

    monkeypatch.setattr(bootstrap.container().tracking, "track", explode)
    response = client("track_interaction").post(
        "/", json={"event_type": "view_details", "user_id": "u", "product_id": "p"}
    )
    assert response.status_code == 500 and response.get_json()["error"]["code"] == "internal"
    assert "unhandled error" in caplog.text


def probed() -> None:
    """The instance's first round of health probes has answered (/health itself never waits for it)."""
    monitor = bootstrap.container().health
    monitor.start()
    assert monitor.checked.wait(10)


def test_health_reports_every_backend():
    probed()
    body = client("check_health").get("/health").get_json()
    assert body["status"] == "healthy"
    backends = body["backends"]
    assert set(backends) == {"profile_store", "event_bus", "warehouse", "archive", "graph_memory", "privacy_store",
                             "text_memory", "ranking_model", "catalog"}  # fmt: skip
    assert backends["catalog"] == {"status": "healthy", "version": 0, "products": 7}  # the catalog given
    assert backends["ranking_model"] == {"status": "healthy", "ranking": "rules", "version": None,
                                        "reason": "no ranking model published"}  # fmt: skip
    assert backends["profile_store"] | {"probe_ms": 0} == {"status": "healthy", "kind": "MemoryProfileStore",
                                                           "probe_ms": 0}  # fmt: skip
    assert backends["text_memory"] == {"status": "disabled", "reason": "no LLM configured (LEAFLOAF_GRAPH_LLM)"}
    assert all(b["status"] in ("healthy", "unknown") for name, b in backends.items() if name != "text_memory")


def test_health_of_a_cached_durable_store(tmp_path):
    settings = Settings(
        catalog_path=tmp_path / "none.jsonl",
        profile_store="sqlite",
        sqlite_path=tmp_path / "p.sqlite3",
        profile_spool_path=tmp_path / "spool.sqlite3",
    )
    bootstrap.install(bootstrap.build(settings, catalog=Catalog(SMALL_CATALOG)))
    client("track_interaction").post(
        "/", json={"event_type": "click_product", "user_id": "u1", "product_id": "oat-milk"}
    )
    probed()
    store = client("check_health").get("/health").get_json()["backends"]["profile_store"]
    assert store["status"] == "healthy" and store["cached_profiles"] == 1
    assert store["store"]["kind"] == "SqliteProfileStore"
    bootstrap.container().profiles.close()


def test_found_by_the_api_fuzz_test_old_timestamps_and_long_session_ids():
    old = client("confirm_order").post(
        "/", json={"user_id": "u", "items": [{"product_id": "oat-milk"}], "timestamp": "0200-02-26T09:16:21-04:09"}
    )
    assert old.status_code == 400 and error_fields(old) == ["timestamp"]  # used to poison the profile (500)
    first = client("track_interaction").post(  # before the first UTC instant: converting it overflowed (500)
        "/", json={**CLICK, "timestamp": "0001-01-01T00:01:01.0+11:03"}
    )
    assert first.status_code == 400 and error_fields(first) == ["timestamp"]
    view = {"product_id": "p" * 128}  # no event_id: the session id derived from it must stay a valid id
    search = client("search_personalized").post("/", json={"query": "milk", "context": {"recent_views": [view]}})
    assert search.status_code == 200


def test_search_over_a_catalog_without_brands_or_prices(tmp_path):
    """A real catalog often lacks brands and prices (Instacart's does): search answers with them null."""
    from shared.domain.catalog import Product

    settings = Settings(catalog_path=tmp_path / "none.jsonl", profile_store="memory")
    bare = [Product(id=f"p{i}", name=f"Greek Yogurt {i}", category="yogurt", department="dairy") for i in range(3)]
    bootstrap.install(bootstrap.build(settings, catalog=Catalog(bare)))
    client("track_interaction").post("/", json={"event_type": "purchase", "user_id": "u1", "product_id": "p2"})
    answer = client("search_personalized").post("/", json={"query": "yogurt", "user_id": "u1"}).get_json()
    first = answer["results"][0]
    assert first["product_id"] == "p2" and first["brand"] is None and first["price"] is None
    assert "You buy this" in first["badges"]
    from functions.api import SearchResponse

    SearchResponse.model_validate(answer)  # the OpenAPI answer model allows the missing fields
