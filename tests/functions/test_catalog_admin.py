"""The catalog's admin API through functions-framework, with authentication on: only a service
identity may change the catalog, each change is one version served at once, bad input is a 400
naming the field, and an instance with no catalog says so (503) instead of serving demo products."""

from __future__ import annotations

import time

import pytest
from functions_framework import create_app

from shared import bootstrap
from tests.conftest import installed_services
from tests.functions.test_merchandising import MAIN, SECRET, token

OATLY = {"id": "oatly-barista", "name": "Oatly Barista Oat Drink", "brand": "Oatly", "category": "milk",
         "department": "dairy", "attributes": ["vegan"], "price": 5.5}  # fmt: skip


@pytest.fixture()
def services(tmp_path):  # as the merchandising admin API's tests: authentication on
    services = installed_services(tmp_path, auth="hmac", auth_secret=SECRET)
    yield services
    services.close()
    bootstrap.install(None)


def admin():
    return create_app("manage_catalog", MAIN).test_client()


def served(services, version: int) -> None:
    deadline = time.monotonic() + 10
    while services.catalog.version < version:
        assert time.monotonic() < deadline, f"version {version} not served"
        time.sleep(0.01)


def test_only_a_service_identity_may_change_the_catalog(services):
    assert admin().put("/", json={"products": [OATLY]}).status_code == 401
    shopper = admin().put("/", json={"products": [OATLY]}, headers=token(services, "ann"))
    assert shopper.status_code == 403 and shopper.get_json()["error"]["code"] == "forbidden"
    assert (
        admin()
        .patch("/", json={"products": [{"id": "oat-milk", "price": 1}]}, headers=token(services, "ann"))
        .status_code
        == 403
    )
    assert services.live.store().latest() == 1  # nothing changed


def test_upsert_patch_and_delete_each_make_a_version_served_at_once(services):
    ops = token(services, "ops", service=True)
    put = admin().put("/", json={"products": [OATLY]}, headers=ops)
    assert put.status_code == 200 and put.get_json() | {"serving": 0} == {
        "version": 2, "upserted": 1, "patched": 0, "deleted": 0, "serving": 0}  # fmt: skip
    served(services, 2)
    got = admin().get("/oatly-barista", headers=ops).get_json()
    assert got["version"] == 2 and got["product"]["price"] == 5.5 and got["product"]["in_stock"] is True
    patch = admin().patch("/", json={"products": [{"id": "oat-milk", "price": 3.25, "in_stock": False}]}, headers=ops)
    assert patch.status_code == 200 and patch.get_json()["version"] == 3
    served(services, 3)
    oat = services.catalog.get("oat-milk")
    assert (oat.price, oat.in_stock, oat.brand) == (3.25, False, "Oatly")  # the rest as it was
    assert admin().delete("/", json={"ids": ["skim-milk", "never-there"]}, headers=ops).get_json()["version"] == 4
    assert admin().delete("/whole-milk", headers=ops).get_json()["version"] == 5
    served(services, 5)
    assert services.catalog.get("skim-milk") is None and services.catalog.get("whole-milk") is None
    assert admin().get("/whole-milk", headers=ops).status_code == 404


@pytest.mark.parametrize(
    ("method", "body", "field"),
    [
        ("put", {"products": [OATLY, OATLY | {"id": "two", "price": -1}]}, "products.1.price"),
        ("put", {"products": [OATLY | {"colour": "white"}]}, "products.0.colour"),
        ("put", {"products": [OATLY, OATLY]}, "products.1.id"),
        ("put", {"products": [OATLY | {"id": f"p{i}"} for i in range(1001)]}, "products"),
        ("put", {"products": []}, "products"),
        ("patch", {"products": [{"id": "oat-milk", "name": None}]}, "products.0"),
        ("patch", {"products": [{"id": "oat-milk"}]}, "products.0"),
        ("patch", {"products": [{"id": "oat-milk", "price": 1}, {"id": "nope", "price": 2}]}, "products.1.id"),
        ("delete", {"ids": []}, "ids"),
    ],
    ids=["bad-price", "unknown-field", "twice", "too-many", "none", "clear-name", "nothing", "missing", "no-ids"],
)
def test_bad_input_is_a_400_naming_the_field_and_changes_nothing(services, method, body, field):
    answer = getattr(admin(), method)("/", json=body, headers=token(services, "ops", service=True))
    assert answer.status_code == 400, answer.get_json()
    assert field in [f["field"] for f in answer.get_json()["error"]["fields"]], answer.get_json()
    assert services.live.store().latest() == 1


def test_an_instance_with_no_catalog_is_unhealthy_and_serves_no_demo_products(tmp_path, monkeypatch):
    monkeypatch.setenv("LEAFLOAF_DEMO_CATALOG", "false")
    from shared.config import Settings

    settings = Settings(
        catalog_path=tmp_path / "none.jsonl", catalog_store_path=tmp_path / "catalog.sqlite3",
        profile_store="memory", local_schedule=False, bus_path=tmp_path / "bus.sqlite3",
        publish_spool_path=tmp_path / "spool.sqlite3", privacy_path=tmp_path / "privacy.sqlite3",
        archive_path=tmp_path / "archive", auth="off",
    )  # fmt: skip
    assert settings.demo_catalog is False
    services = bootstrap.build(settings)
    bootstrap.install(services)
    try:
        health = create_app("check_health", MAIN).test_client().get("/")
        assert health.status_code == 503 and health.get_json()["status"] == "unhealthy"
        assert "no catalog" in health.get_json()["backends"]["catalog"]["reason"]
        search = create_app("search_personalized", MAIN).test_client().post("/", json={"query": "milk"})
        assert search.status_code == 200 and search.get_json()["results"] == []
    finally:
        services.close()
        bootstrap.install(None)
