"""POST /api/rank through functions-framework's own app and test client."""

from __future__ import annotations

import pytest
from functions_framework import create_app

from shared import bootstrap
from tests.conftest import ROOT, installed_services
from tests.functions.test_privacy import SECRET, token

MAIN = str(ROOT / "main.py")
ITEMS = [{"product_id": p} for p in ("whole-milk", "oat-milk", "skim-milk", "greek-yogurt")]


def client(target: str):
    return create_app(target, MAIN).test_client()


def fields(response) -> list[str]:
    return [f["field"] for f in response.get_json()["error"]["fields"]]


def test_rank_personalizes_the_stores_items(services):
    client("track_interaction").post(
        "/", json={"event_type": "click_product", "user_id": "u1", "product_id": "oat-milk"}
    )
    answer = client("rank_personalized").post("/", json={"user_id": "u1", "items": ITEMS})
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["personalization"]["applied"] is True
    assert body["results"][0]["product_id"] == "oat-milk"
    assert sorted(r["product_id"] for r in body["results"]) == sorted(i["product_id"] for i in ITEMS)
    assert body["results"][0]["badges"] and body["results"][0]["moved"] == 1


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, ["items"]),
        ({"items": [{"product_id": f"p{i}"} for i in range(1001)]}, ["items"]),
        ({"items": [{"product_id": "a"}, {"product_id": "b"}, {"product_id": "c"}, {"product_id": "bad id"}]},
         ["items.3.product_id"]),
        ({"items": [{"product_id": "a", "price": -1}, {"product_id": "b", "colour": "red"}]},
         ["items.0.price", "items.1.colour"]),
        ({"items": [{"product_id": "a", "score": "high"}]}, ["items.0.score"]),
        ({"items": [{"product_id": "a"}, {"product_id": "a"}]}, ["items.1.product_id"]),
        ({"items": [{"product_id": "a", "score": 1}, {"product_id": "b"}]}, ["items.1.score"]),
    ],
)  # fmt: skip
def test_bad_rank_requests_name_every_field(services, body, expected):
    response = client("rank_personalized").post("/", json=body)
    assert response.status_code == 400 and fields(response) == expected


def test_no_items_no_results(services):
    client("track_interaction").post(
        "/", json={"event_type": "click_product", "user_id": "u1", "product_id": "oat-milk"}
    )
    body = client("rank_personalized").post("/", json={"items": [], "user_id": "u1"}).get_json()
    assert body["results"] == [] and body["personalization"]["reason"] == "no_results"


def test_a_thousand_items_are_fine(services):
    items = [{"product_id": f"p{i}", "category": "milk"} for i in range(1000)]
    response = client("rank_personalized").post("/", json={"items": items})
    assert response.status_code == 200 and len(response.get_json()["results"]) == 1000


def test_a_user_id_counts_only_with_a_token_proving_it(tmp_path):
    services = installed_services(tmp_path, auth="hmac", auth_secret=SECRET)
    try:
        view = {"event_type": "click_product", "user_id": "ann", "product_id": "oat-milk"}
        client("track_interaction").post("/", json=view, headers=token(services, "ann"))
        rank = client("rank_personalized")
        anonymous = rank.post("/", json={"user_id": "ann", "items": ITEMS}).get_json()
        assert anonymous["personalization"]["reason"] == "anonymous"
        assert [r["product_id"] for r in anonymous["results"]] == [i["product_id"] for i in ITEMS]
        proven = rank.post("/", json={"user_id": "ann", "items": ITEMS}, headers=token(services, "ann")).get_json()
        assert proven["personalization"]["applied"] is True
    finally:
        services.close()
        bootstrap.install(None)
