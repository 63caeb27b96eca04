"""The scheduled functions through functions-framework, and the loop back to search: the jobs'
features published as a snapshot change what the next search shows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from functions_framework import create_app

from shared import bootstrap
from shared.domain.events import Interaction
from shared.domain.pipeline import warehouse_rows
from tests.conftest import ROOT, installed_services

MAIN = str(ROOT / "main.py")
NOW = datetime.now(UTC)


@pytest.fixture(autouse=True)
def services(tmp_path):
    services = installed_services(tmp_path, features_refresh_s=0.001)
    yield services
    services.close()
    bootstrap.install(None)


def client(target: str):
    return create_app(target, MAIN).test_client()


def bob_buys_two_milks_and_chips_every_ten_days(services) -> None:
    events = [
        Interaction(
            event_id=f"bob-{n}-{product}",
            event_type="purchase",
            user_id="bob",
            product_id=product,
            quantity=2 if product == "whole-milk" else 1,
            timestamp=NOW - timedelta(days=10 * (6 - n)),
            context={"order_id": f"bob-{n}"},
        )
        for n in range(6)
        for product in ("whole-milk", "original-chips")
    ]
    events += [  # someone else's baskets, so chips with whole milk is more than chance (lift > 1)
        Interaction(event_type="purchase", user_id="cat", product_id="skim-milk", timestamp=NOW - timedelta(days=n))
        for n in range(1, 4)
    ]
    services.warehouse.insert(warehouse_rows(events, services.catalog, services.rules, NOW))


def test_scheduled_runs_publish_features_that_search_uses(services):
    search = client("search_personalized")
    before = search.post("/", json={"query": "milk", "user_id": "bob"}).get_json()
    assert before["personalization"]["learned"] is False
    bob_buys_two_milks_and_chips_every_ten_days(services)

    daily = client("run_daily_jobs").post("/")  # Cloud Scheduler's call: no body
    assert daily.status_code == 200
    summary = daily.get_json()
    assert {j["status"] for j in summary["jobs"]} == {"done"} and summary["features"]["user"] == 2
    hourly = client("run_hourly_jobs").post("/", json={"jobs": ["order_lines", "reorder_predictions"]})
    assert [j["job"] for j in hourly.get_json()["jobs"]] == ["order_lines", "reorder_predictions"]
    rest = client("run_hourly_jobs").post("/", json={})
    status = {j["job"]: j["status"] for j in rest.get_json()["jobs"]}
    assert status["order_lines"] == status["reorder_predictions"] == "skipped"  # done for this hour
    assert status["quantity_predictions"] == "done"

    after = search.post("/", json={"query": "milk", "user_id": "bob"}).get_json()
    assert after["personalization"]["learned"] is True
    first = after["results"][0]
    assert first["product_id"] == "whole-milk"
    assert "Your usual" in first["badges"] and "Time to reorder" in first["badges"]
    assert first["suggested_quantity"] == 2  # the bulk buyer is suggested 2
    with_cart = search.post("/", json={"query": "chips", "user_id": "bob", "context": {"cart": ["whole-milk"]}})
    lays = next(r for r in with_cart.get_json()["results"] if r["product_id"] == "original-chips")
    assert "Goes well with Organic Valley Whole Milk" in lays["badges"]
    chips = search.post(
        "/", json={"query": "chips", "user_id": "bob", "context": {"personalization": False}}
    ).get_json()
    assert chips["personalization"]["learned"] is False  # opting out covers learnt features too


def test_what_sells_in_the_rain_is_learnt_from_orders_and_said_in_search(services):
    """100 rainy orders of milk, 100 clear ones of chips, on the same days: milk sells 1.5 times its
    usual share in the rain (with the store's 100 prior lines: (100 + 50) / 200 / 0.5)."""
    events = [
        Interaction(
            event_id=f"{kind}-{n}",
            event_type="purchase",
            user_id=f"{kind}-{n}",
            product_id=product,
            timestamp=NOW - timedelta(days=n % 50, hours=1),
            context={"order_id": f"{kind}-{n}", "weather": {"condition": weather, "temperature": 12}},
        )
        for n in range(100)
        for kind, product, weather in (("rainy", "whole-milk", "rain"), ("sunny", "original-chips", "clear"))
    ]
    services.warehouse.insert(warehouse_rows(events, services.catalog, services.rules, NOW))
    assert client("run_daily_jobs").post("/").status_code == 200
    search = client("search_personalized")
    rainy = search.post("/", json={"query": "milk", "context": {"weather": {"condition": "rain"}}}).get_json()
    milk = next(r for r in rainy["results"] if r["product_id"] == "whole-milk")
    assert "Popular when it rains" in milk["badges"] and rainy["context"]["weather"] == "rain"
    sunny = search.post("/", json={"query": "milk", "context": {"weather": {"condition": "clear"}}}).get_json()
    assert not any("rain" in b for r in sunny["results"] for b in r["badges"])
    # One order each: nothing to tune the weight on, so the lift is said, not applied.
    assert rainy["context"]["applied"] is False


@pytest.mark.parametrize(
    ("body", "field"),
    [({"jobs": ["no_such_job"]}, "jobs"), ({"at": "yesterday"}, "at"), ({"force": True, "extra": 1}, "extra")],
)
def test_bad_job_requests_are_400s_naming_the_field(body, field):
    response = client("run_hourly_jobs").post("/", json=body)
    assert response.status_code == 400
    assert field in [f["field"] for f in response.get_json()["error"]["fields"]]


def test_jobs_refuse_get():
    assert client("run_daily_jobs").get("/").status_code == 405


@pytest.mark.parametrize("target", ["run_hourly_jobs", "run_daily_jobs", "process_deletion_queue"])
def test_a_run_stamped_beyond_the_clock_skew_is_a_400_and_changes_nothing(services, target):
    requested = services.privacy.request_deletion("ann")
    future = (datetime.now(UTC) + timedelta(minutes=6)).isoformat()
    response = client(target).post("/", json={"at": future})
    assert response.status_code == 400
    assert [f["field"] for f in response.get_json()["error"]["fields"]] == ["at"]
    assert services.privacy.deletion(requested.request_id).status == "pending"  # not erased before the grace
    within_skew = (datetime.now(UTC) + timedelta(minutes=4)).isoformat()
    body = {"at": within_skew} | ({} if target == "process_deletion_queue" else {"jobs": ["order_lines"]})
    assert client(target).post("/", json=body).status_code == 200
