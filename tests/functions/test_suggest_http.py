"""GET /api/suggest through functions-framework's own app and test client."""

from __future__ import annotations

import pytest

from tests.functions.test_rank_http import client, fields


def test_suggestions_for_what_was_typed(services):
    response = client("suggest_queries").get("/", query_string={"q": "oat", "limit": "3"})
    assert response.status_code == 200
    body = response.get_json()
    assert body["q"] == "oat" and len(body["suggestions"]) == 3 and body["personalized"] is False
    assert all("oat" in s["text"].lower() for s in body["suggestions"])


def test_a_typo_is_answered_with_what_was_matched(services):
    body = client("suggest_queries").get("/", query_string={"q": "yoghurt"}).get_json()
    assert body["corrected"] == "yogurt" and body["suggestions"]


@pytest.mark.parametrize(
    ("query", "field"),
    [({}, "q"), ({"q": ""}, "q"), ({"q": "milk", "limit": "50"}, "limit"), ({"q": "milk", "page": "2"}, "page")],
)
def test_bad_input_is_a_400_naming_the_field(services, query, field):
    response = client("suggest_queries").get("/", query_string=query)
    assert response.status_code == 400 and field in fields(response)


def test_only_get_is_allowed(services):
    assert client("suggest_queries").post("/", json={"q": "milk"}).status_code == 405
