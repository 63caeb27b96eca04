"""POST /api/recommendations through functions-framework's own app and test client."""

from __future__ import annotations

import pytest

from shared.domain.catalog import CatalogChange, ProductPatch
from tests.functions.test_rank_http import client, fields


def test_an_anonymous_home_page_gets_popular_products_flagged(services):
    response = client("recommend_products").post("/", json={"surface": "for_you", "limit": 3})
    assert response.status_code == 200
    body = response.get_json()
    assert body["surface"] == "for_you" and len(body["results"]) == 3
    assert body["fallback"] == {"to": "popular", "reason": "no_features"}
    assert body["personalization"]["reason"] == "anonymous"


def test_the_answer_says_which_moment_it_was_ranked_for(services):
    body = {
        "surface": "trending",
        "context": {"local_time": "2026-12-05T19:15:00+01:00", "weather": {"condition": "snow"}},
    }
    answer = client("recommend_products").post("/", json=body).get_json()
    assert answer["context"] == {
        "weekday": "saturday",
        "daypart": "evening",
        "meal": "dinner",
        "season": "winter",
        "weather": "snow",
        "applied": False,  # no lifts published yet
    }


def test_buy_it_again_after_purchases_over_http(services):
    for product in ("oat-milk", "original-chips"):
        event = {"event_type": "purchase", "user_id": "u1", "product_id": product, "quantity": 2}
        assert client("track_interaction").post("/", json=event).status_code in (200, 202)
    body = client("recommend_products").post("/", json={"surface": "buy_it_again", "user_id": "u1"}).get_json()
    assert {r["product_id"] for r in body["results"]} == {"oat-milk", "original-chips"}
    assert body["fallback"] is None and body["personalization"]["applied"] is True
    assert all(r["suggested_quantity"] == 2 for r in body["results"])


def test_out_of_stock_products_are_left_out_unless_asked(services):
    services.live.commit(CatalogChange(patches=(ProductPatch(id="oat-milk", in_stock=False),)))
    services.live.refresh()
    shown = client("recommend_products").post("/", json={"surface": "trending", "limit": 100}).get_json()
    assert "oat-milk" not in {r["product_id"] for r in shown["results"]} and shown["results"]
    asked = {"surface": "trending", "limit": 100, "filters": {"include_out_of_stock": True}}
    everything = client("recommend_products").post("/", json=asked).get_json()
    assert "oat-milk" in {r["product_id"] for r in everything["results"]}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"surface": "everything"}, "surface"),
        ({"surface": "similar"}, "<body>"),
        ({"surface": "for_you", "limit": 1000}, "limit"),
        ({"surface": "for_you", "filters": {"colour": "red"}}, "filters.colour"),
        ({"surface": "for_you", "context": {"cart": ["x"] * 101}}, "context.cart"),
        ({"surface": "for_you", "context": {"local_time": "2026-12-05T08:30:00"}}, "context.local_time"),
        ({"surface": "for_you", "context": {"weather": {"condition": "hail"}}}, "context.weather.condition"),
        ({"surface": "for_you", "context": {"notes": "x" * 5000}}, "context"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(services, body, field):
    response = client("recommend_products").post("/", json=body)
    assert response.status_code == 400
    assert field in fields(response)
