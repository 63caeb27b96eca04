"""Privacy through the HTTP functions, with authentication on: settings and what they switch off,
export, deletion and its status, and who may do what (forged, expired, replayed, others' tokens)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest
from functions_framework import create_app

from shared import bootstrap
from tests.conftest import ROOT, installed_services

MAIN = str(ROOT / "main.py")
SECRET = "test-secret-" + "x" * 40


@pytest.fixture()
def services(tmp_path):
    services = installed_services(tmp_path, auth="hmac", auth_secret=SECRET, deletion_grace_s=0)
    published: list = []
    services.tracking.publish = published.extend  # what would reach the bus
    services.search.publish = published.extend
    services.published = published
    yield services
    services.close()
    bootstrap.install(None)


def client(target: str):
    return create_app(target, MAIN).test_client()


def token(services, user: str, **kwargs) -> dict[str, str]:
    return {"Authorization": f"Bearer {services.identity.issue(user, **kwargs)}"}


def view(user: str, product: str = "oat-milk", n: int = 0) -> dict:
    return {"event_id": f"{user}-{product}-{n}", "event_type": "view_details", "user_id": user, "product_id": product}


def known(services, user: str) -> bool:
    preferences = client("get_live_preferences")
    return preferences.get(f"/api/users/{user}/preferences/live", headers=token(services, user)).get_json()["known"]


# -- access control --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "method", "path"),
    [
        ("get_live_preferences", "get", "/api/users/ann/preferences/live"),
        ("manage_privacy", "get", "/api/users/ann/privacy"),
        ("manage_privacy", "put", "/api/users/ann/privacy"),
        ("export_user_data", "get", "/api/users/ann/data"),
        ("delete_user_data", "delete", "/api/users/ann"),
        ("get_shopper_memory", "get", "/api/users/ann/memory"),
    ],
)
def test_user_scoped_endpoints_refuse_anyone_but_the_user(services, target, method, path):
    call = getattr(client(target), method)
    body = {"json": {"personalization_enabled": False}} if method == "put" else {}
    assert call(path, **body).status_code == 401  # no token
    assert call(path, headers=token(services, "bob"), **body).get_json()["error"]["code"] == "forbidden"
    forged = jwt.encode(
        {"iss": "leafloaf", "aud": "leafloaf-local", "sub": "ann", "iat": datetime.now(UTC),
         "exp": datetime.now(UTC) + timedelta(minutes=5), "jti": "j"},
        "not-the-secret-" + "y" * 40, algorithm="HS256",
    )  # fmt: skip
    answer = call(path, headers={"Authorization": f"Bearer {forged}"}, **body)
    assert answer.status_code == 401 and answer.get_json()["error"]["code"] == "token_invalid"
    stale = token(services, "ann", now=datetime.now(UTC) - timedelta(hours=1), ttl_s=600)
    answer = call(path, headers=stale, **body)
    assert answer.status_code == 401 and answer.get_json()["error"]["code"] == "token_expired"
    unsigned = jwt.encode({"sub": "ann"}, None, algorithm="none")
    assert call(path, headers={"Authorization": f"Bearer {unsigned}"}, **body).status_code == 401
    assert call(path, headers={"Authorization": "Basic YW5uOmFubg=="}, **body).status_code == 401
    assert services.privacy.of("ann").settings.personalization_enabled  # nothing changed
    assert services.privacy.store.deleted_at("ann") is None


def test_a_token_authorizes_one_change_and_is_refused_when_replayed(services):
    privacy = client("manage_privacy")
    headers = token(services, "ann")
    for refused in ({"json": {"data_retention_dayz": 30}}, {"json": {"data_retention_days": 365}}, {"data": "{"}):
        assert privacy.put("/api/users/ann/privacy", headers=headers, **refused).status_code == 400  # not spent
    assert privacy.put("/api/users/ann/privacy", json={"data_retention_days": 30}, headers=headers).status_code == 200
    replay = privacy.put("/api/users/ann/privacy", json={"data_retention_days": 7}, headers=headers)
    assert replay.status_code == 401 and replay.get_json()["error"]["code"] == "token_replayed"
    assert privacy.get("/api/users/ann/privacy", headers=headers).get_json()["data_retention_days"] == 30
    deleting = token(services, "ann")
    assert client("delete_user_data").delete("/api/users/ann", headers=deleting).status_code == 202
    assert client("delete_user_data").delete("/api/users/ann", headers=deleting).status_code == 401


@pytest.mark.parametrize(
    ("target", "body"),
    [("run_hourly_jobs", {"jobs": ["order_lines"]}), ("run_daily_jobs", {"jobs": ["search_outcomes"]}),
     ("process_deletion_queue", {})],
)  # fmt: skip
def test_the_scheduled_functions_need_a_service_identity(services, target, body):
    run = client(target)
    anonymous = run.post("/", json=body)
    assert anonymous.status_code == 401 and anonymous.get_json()["error"]["code"] == "unauthenticated"
    shopper = run.post("/", json=body, headers=token(services, "ann"))
    assert shopper.status_code == 403 and shopper.get_json()["error"]["code"] == "forbidden"
    assert run.post("/", json=body, headers={"Authorization": "Bearer x.y.z"}).status_code == 401
    assert run.post("/", json=body, headers=token(services, "scheduler", service=True)).status_code == 200


def test_the_scheduled_functions_trust_a_platform_that_checks_private_callers(services, monkeypatch):
    # Deployed (firebase): Cloud Run IAM admits only Cloud Scheduler, whose token is made for the
    # function's URL, so the function does not verify it again.
    monkeypatch.setattr(services.identity, "platform_checks_private_callers", True)
    assert client("process_deletion_queue").post("/").status_code == 200
    assert client("manage_privacy").get("/api/users/ann/privacy").status_code == 401  # public ones still check


def test_a_service_identity_may_act_for_any_shopper(services):
    support = token(services, "store-support", service=True)
    answer = client("manage_privacy").get("/api/users/ann/privacy", headers=support)
    assert answer.status_code == 200 and answer.get_json()["personalization_enabled"] is True


def test_tracking_without_a_token_is_anonymous_and_with_someone_elses_is_a_403(services):
    track = client("track_interaction")
    answer = track.post("/", json={"events": [view("ann")]}).get_json()
    assert answer["accepted"] == [] and answer["refused"] == [
        {"event_id": "ann-oat-milk-0", "reason": "unauthenticated"}
    ]
    someone_else = track.post("/", json={"events": [view("ann", n=1)]}, headers=token(services, "bob"))
    assert someone_else.status_code == 403 and someone_else.get_json()["error"]["code"] == "forbidden"
    mixed = track.post("/", json=[view("bob", n=1), view("ann", n=1)], headers=token(services, "bob"))
    assert mixed.status_code == 403  # the whole request: bob's own event is not applied either
    assert not known(services, "ann") and not known(services, "bob") and services.published == []
    support = track.post("/", json=[view("bob", n=2), view("ann", n=2)], headers=token(services, "s", service=True))
    assert support.get_json()["accepted"] == ["bob-oat-milk-2", "ann-oat-milk-2"]
    assert track.post("/", json=view("ann", n=3), headers=token(services, "ann")).get_json()["accepted"]
    assert known(services, "ann")

    search = client("search_personalized")
    anonymous = search.post("/", json={"query": "yogurt", "user_id": "ann"}).get_json()
    assert anonymous["personalization"] == anonymous["personalization"] | {"applied": False, "reason": "anonymous"}
    proven = search.post("/", json={"query": "yogurt", "user_id": "ann"}, headers=token(services, "ann")).get_json()
    assert proven["personalization"]["applied"] is True
    forged = search.post("/", json={"query": "yogurt", "user_id": "ann"}, headers={"Authorization": "Bearer x.y.z"})
    assert forged.status_code == 401  # a client sending a bad token is told, not silently served as anonymous


def test_orders_need_the_shoppers_token(services):
    order = {"order_id": "o1", "user_id": "ann", "items": [{"product_id": "oat-milk", "quantity": 1}]}
    assert client("confirm_order").post("/", json=order).status_code == 401
    assert client("confirm_order").post("/", json=order, headers=token(services, "ann")).status_code == 200


# -- settings ---------------------------------------------------------------------------------------


def test_settings_read_and_change_with_clear_errors(services):
    privacy = client("manage_privacy")
    default = privacy.get("/api/users/ann/privacy", headers=token(services, "ann")).get_json()
    assert default == {
        "user_id": "ann",
        "personalization_enabled": True,
        "features": {"search_history": True, "purchase_history": True, "price_tracking": True,
                     "household_inference": True},
        "data_retention_days": 90,
    }  # fmt: skip
    changed = privacy.put(
        "/api/users/ann/privacy", json={"features": {"price_tracking": False}}, headers=token(services, "ann")
    ).get_json()
    assert changed["features"]["price_tracking"] is False and changed["features"]["search_history"] is True
    for body, field in [
        ({"data_retention_days": 365}, "data_retention_days"),  # longer than the store keeps anything
        ({"data_retention_days": 0}, "data_retention_days"),
        ({"features": {"telepathy": True}}, "features.telepathy"),
        ({"personalization_enabled": "maybe"}, "personalization_enabled"),
    ]:
        answer = privacy.put("/api/users/ann/privacy", json=body, headers=token(services, "ann"))
        assert answer.status_code == 400, body
        assert field in [f["field"] for f in answer.get_json()["error"]["fields"]]


def opt(services, user: str, **change) -> None:
    answer = client("manage_privacy").put(f"/api/users/{user}/privacy", json=change, headers=token(services, user))
    assert answer.status_code == 200


def test_personalization_off_serves_plain_results_and_keeps_nothing(services):
    track, search = client("track_interaction"), client("search_personalized")
    track.post("/", json=view("ann", "oat-yogurt"), headers=token(services, "ann"))
    before = search.post("/", json={"query": "yogurt", "user_id": "ann"}, headers=token(services, "ann")).get_json()
    assert before["personalization"]["applied"] is True and before["results"][0]["product_id"] == "oat-yogurt"
    services.published.clear()
    opt(services, "ann", personalization_enabled=False)

    answer = track.post("/", json=view("ann", "greek-yogurt", n=5), headers=token(services, "ann")).get_json()
    assert answer["refused"] == [{"event_id": "ann-greek-yogurt-5", "reason": "personalization_disabled"}]
    after = search.post("/", json={"query": "yogurt", "user_id": "ann"}, headers=token(services, "ann")).get_json()
    assert after["personalization"] == after["personalization"] | {"applied": False, "reason": "opted_out"}
    assert all(r["reasons"] == [] for r in after["results"])
    assert services.published == []  # neither the view nor the search went to the bus
    preferences = client("get_live_preferences").get("/api/users/ann/preferences/live", headers=token(services, "ann"))
    assert "greek-yogurt" not in preferences.get_json()["products"] and preferences.get_json()["used"] is False
    note = client("add_memory_note").post("/api/users/ann/memory/notes", json={"text": "likes oat"},
                                          headers=token(services, "ann"))  # fmt: skip
    assert note.status_code == 409


def test_each_feature_flag_stops_its_signals(services):
    track, search = client("track_interaction"), client("search_personalized")
    headers = lambda: token(services, "ann")  # noqa: E731 - a fresh token per call
    bought = {"event_id": "p0", "event_type": "purchase", "user_id": "ann", "product_id": "whole-milk"}
    track.post("/", json=bought, headers=headers())
    live = client("get_live_preferences").get("/api/users/ann/preferences/live", headers=headers()).get_json()
    assert "whole-milk" in live["products"] and "product:whole-milk" in live["purchase_memory"]
    opt(services, "ann", features={"search_history": False, "purchase_history": False})
    live = client("get_live_preferences").get("/api/users/ann/preferences/live", headers=headers()).get_json()
    assert "whole-milk" not in live["products"]  # what purchases taught is no longer used
    assert live["purchase_memory"] == {}
    services.published.clear()
    answer = search.post("/", json={"query": "milk", "user_id": "ann"}, headers=headers()).get_json()
    assert not any(r["facet"] == "history" for item in answer["results"] for r in item["reasons"])
    assert [e.event_type for e in services.published] == []  # the search was not kept
    purchase = {"event_id": "p1", "event_type": "purchase", "user_id": "ann", "product_id": "oat-milk", "quantity": 2}
    answer = track.post("/", json={"events": [purchase, view("ann")]}, headers=headers()).get_json()
    assert answer["refused"] == [{"event_id": "p1", "reason": "purchase_history_disabled"}]
    assert answer["accepted"] == ["ann-oat-milk-0"]
    order = {"order_id": "o2", "user_id": "ann", "items": [{"product_id": "oat-milk", "quantity": 2}]}
    confirmed = client("confirm_order").post("/", json=order, headers=headers()).get_json()
    assert confirmed["status"] == "not_recorded" and confirmed["items"][0]["refused"] == "purchase_history_disabled"

    opt(services, "bob", features={"price_tracking": False, "household_inference": False})
    bob = {"event_type": "purchase", "user_id": "bob", "product_id": "whole-milk", "quantity": 3}
    track.post("/", json=bob | {"event_id": "b1"}, headers=token(services, "bob"))
    live = client("get_live_preferences").get("/api/users/bob/preferences/live", headers=token(services, "bob"))
    assert live.get_json()["price_sensitivity"]["label"] == "not_tracked"
    assert live.get_json()["preferred_quantities"] == {}
    results = search.post("/", json={"query": "milk", "user_id": "bob"}, headers=token(services, "bob")).get_json()
    assert {r["suggested_quantity"] for r in results["results"]} == {1}
    assert not any(r["facet"] == "price" for item in results["results"] for r in item["reasons"])


# -- export and deletion ----------------------------------------------------------------------------


def test_export_names_every_store_and_what_it_is_for(services):
    client("track_interaction").post("/", json=view("ann"), headers=token(services, "ann"))
    export = client("export_user_data").get("/api/users/ann/data", headers=token(services, "ann")).get_json()
    assert export["user_id"] == "ann"
    sections = export["data"]
    assert set(sections) == {"privacy_settings", "live_profile", "warehouse", "archive", "graph_memory",
                             "learnt_features"}  # fmt: skip
    assert all(section["used_for"] for section in sections.values())
    assert sections["live_profile"]["data"]["products"]["oat-milk"] > 0


def test_deletion_answers_at_once_and_its_status_is_the_users_alone(services):
    track = client("track_interaction")
    track.post("/", json=view("ann"), headers=token(services, "ann"))
    assert known(services, "ann")
    answer = client("delete_user_data").delete("/api/users/ann", headers=token(services, "ann"))
    assert answer.status_code == 202
    body = answer.get_json()
    assert body["status"] == "pending" and body["status_url"] == f"/api/deletions/{body['request_id']}"
    assert body["remaining"] == ["profile", "graph", "warehouse", "archive", "features"]
    assert not known(services, "ann")  # gone from the cache and the profile store at once

    earlier = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    late = track.post("/", json=view("ann", n=9) | {"timestamp": earlier}, headers=token(services, "ann")).get_json()
    assert late["refused"] == [{"event_id": "ann-oat-milk-9", "reason": "user_deleted"}] and not known(services, "ann")

    status = client("get_deletion_status")
    assert status.get(body["status_url"], headers=token(services, "ann")).get_json()["status"] == "pending"
    assert status.get(body["status_url"], headers=token(services, "bob")).status_code == 404
    assert status.get(body["status_url"]).status_code == 401
    assert status.get("/api/deletions/nope", headers=token(services, "ann")).status_code == 404

    queue = client("process_deletion_queue").post("/", headers=token(services, "scheduler", service=True))
    assert queue.status_code == 200 and queue.get_json()["deletions"]["completed"] == 1
    done = status.get(body["status_url"], headers=token(services, "ann")).get_json()
    assert done["status"] == "complete" and done["remaining"] == []
