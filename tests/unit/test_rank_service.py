"""Ranking the store's own results (SearchService.rank): the same ranker as search, every item kept."""

from __future__ import annotations

import itertools

import pytest
from pydantic import ValidationError

from shared.domain.search import RankRequest, SearchRequest
from tests.unit.test_search_service import click, make

# The store's own order; without scores relevance falls by position from 1 to min_relevance (0.5).
STORE_ORDER = ["whole-milk", "oat-milk", "skim-milk", "greek-yogurt", "original-chips"]


def rank(search, items, **fields) -> dict:
    return search.rank(RankRequest.model_validate({"items": items, **fields}))


def ids(answer: dict) -> list[str]:
    return [r["product_id"] for r in answer["results"]]


def test_a_shopper_who_clicked_oatly_gets_oatly_first_with_reasons(rules, small_catalog):
    search, tracking = make(rules, small_catalog)
    tracking.track([click("oat-milk")])
    answer = rank(search, [{"product_id": p} for p in STORE_ORDER], user_id="u")
    assert answer["personalization"]["applied"] is True
    assert sorted(ids(answer)) == sorted(STORE_ORDER)  # the same items, none dropped
    first = answer["results"][0]
    assert first["product_id"] == "oat-milk"
    assert first["base_rank"] == 1 and first["moved"] == 1
    assert "You clicked this before" in first["badges"]
    assert first["reasons"] and 0 < first["confidence"] <= 1
    for place, r in enumerate(answer["results"]):
        assert r["rank"] == place and r["moved"] == r["base_rank"] - place


def test_an_unknown_product_of_a_brand_the_shopper_clicked_moves_up_by_its_facts(rules, small_catalog):
    search, tracking = make(rules, small_catalog)
    tracking.track([click("oat-milk")])

    def new(brand: str) -> dict:
        return {"product_id": "barista", "name": f"{brand} Barista", "brand": brand, "category": "milk", "price": 5.0}

    others = [{"product_id": f"loaf-{i}", "brand": "Bakery", "category": "bread"} for i in range(20)]
    oatly = rank(search, [*others[:10], new("Oatly"), *others[10:]], user_id="u")["results"]
    moved = next(r for r in oatly if r["product_id"] == "barista")
    assert moved["name"] == "Oatly Barista" and moved["brand"] == "Oatly" and moved["base_rank"] == 10
    assert moved["moved"] > 0
    assert "brand" in {r["facet"] for r in moved["reasons"]}
    assert len(oatly) == 21
    # Its brand moved it: a brand the shopper never met does not (milk, the category, still counts).
    other = rank(search, [*others[:10], new("Nobody"), *others[10:]], user_id="u")["results"]
    assert next(r for r in other if r["product_id"] == "barista")["moved"] < moved["moved"]


def test_an_unknown_product_without_facts_is_kept(rules, small_catalog):
    search, tracking = make(rules, small_catalog)
    tracking.track([click("oat-milk")])
    answer = rank(search, [{"product_id": "whole-milk"}, {"product_id": "mystery"}], user_id="u")
    assert sorted(ids(answer)) == ["mystery", "whole-milk"]
    mystery = next(r for r in answer["results"] if r["product_id"] == "mystery")
    assert mystery["name"] == "mystery" and mystery["brand"] is None and mystery["reasons"] == []


def test_the_store_score_sets_the_base_order(rules, small_catalog):
    search, _ = make(rules, small_catalog)
    items = [{"product_id": "whole-milk", "score": 1.0}, {"product_id": "skim-milk", "score": 4.0}]
    results = rank(search, items)["results"]
    assert [r["product_id"] for r in results] == ["skim-milk", "whole-milk"]
    assert [r["relevance"] for r in results] == [1.0, 0.25]


def test_anonymous_gets_the_given_order(rules, small_catalog):
    search, tracking = make(rules, small_catalog)
    tracking.track([click("oat-milk")])
    answer = rank(search, [{"product_id": p} for p in STORE_ORDER])
    assert answer["personalization"]["reason"] == "anonymous"
    assert ids(answer) == STORE_ORDER
    assert all(r["moved"] == 0 and r["reasons"] == [] for r in answer["results"])


def test_this_sessions_views_count_for_an_anonymous_shopper(rules, small_catalog):
    search, _ = make(rules, small_catalog)
    context = {"recent_views": [{"product_id": "oat-milk", "event_type": "click_product"}]}
    answer = rank(search, [{"product_id": p} for p in STORE_ORDER], context=context)
    assert answer["personalization"]["applied"] is True
    assert ids(answer)[0] == "oat-milk"


def test_over_budget_serves_the_given_order(rules, small_catalog):
    ticks = itertools.count(step=0.2)  # every timer reading is 200 ms after the previous one
    search, tracking = make(rules, small_catalog, timer=lambda: next(ticks))
    tracking.track([click("oat-milk")])
    answer = rank(search, [{"product_id": p} for p in STORE_ORDER], user_id="u")
    assert answer["personalization"]["reason"] == "over_budget"
    assert ids(answer) == STORE_ORDER


def test_a_broken_profile_store_fails_open_to_the_given_order(rules, small_catalog):
    from tests.unit.test_search_service import BrokenProfileStore

    search, _ = make(rules, small_catalog, store=BrokenProfileStore())
    answer = rank(search, [{"product_id": p} for p in STORE_ORDER], user_id="u")
    assert answer["personalization"]["reason"] == "error"
    assert ids(answer) == STORE_ORDER


def test_a_thousand_items_are_ranked_and_a_thousand_and_one_refused(rules, small_catalog):
    search, tracking = make(rules, small_catalog)
    tracking.track([click("oat-milk")])
    items = [
        {"product_id": f"p{i}", "brand": "Oatly" if i == 999 else "Other", "category": "milk"} for i in range(1000)
    ]
    answer = rank(search, items, user_id="u")
    assert sorted(ids(answer)) == sorted(item["product_id"] for item in items)
    assert answer["results"][-1]["product_id"] != "p999"  # its brand moved it up
    with pytest.raises(ValidationError) as refused:
        RankRequest.model_validate({"items": [*items, {"product_id": "one-more"}]})
    assert [e["loc"] for e in refused.value.errors()] == [("items",)]


def test_conflicts_name_the_field():
    request = RankRequest.model_validate(
        {"items": [{"product_id": "a", "score": 1}, {"product_id": "b"}, {"product_id": "a", "score": 2}]}
    )
    assert request.conflicts() == [
        ("items.2.product_id", "duplicate product id 'a'"),
        ("items.1.score", "give a score for every item or for none"),
    ]


def test_the_stores_strength_per_surface_scales_personalization_and_zero_turns_it_off(rules, small_catalog):
    """Merchandising's per-surface strength: 1 as before, 0.5 half the personal lift (relevance kept), 0 off."""
    search, tracking = make(rules, small_catalog)
    tracking.track([click("oat-milk")])
    items = [{"product_id": p} for p in STORE_ORDER]
    strengths = {"search": 1.0, "rank": 1.0}
    search.strength = strengths.__getitem__
    full = {r["product_id"]: r for r in rank(search, items, user_id="u")["results"]}
    strengths["rank"] = 0.5
    half = {r["product_id"]: r for r in rank(search, items, user_id="u")["results"]}
    for product, result in half.items():
        lift = full[product]["score"] - full[product]["relevance"]
        assert result["score"] - result["relevance"] == pytest.approx(lift / 2, abs=1e-3)  # answers are rounded
    strengths["rank"] = 0.0
    off = rank(search, items, user_id="u")
    assert off["personalization"]["applied"] is False and off["personalization"]["reason"] == "off"
    assert ids(off) == STORE_ORDER  # the store's own order
    personal = search.search(SearchRequest(query="yogurt", user_id="u"))  # other surfaces keep theirs
    assert personal["personalization"]["applied"] is True


def test_the_stores_rules_apply_to_rank_without_bringing_in_items_it_did_not_send(rules, small_catalog):
    from shared.domain.merchandising import apply, parse_merchandising

    served = parse_merchandising({"version": 1, "rules": [
        {"id": "no-skim", "kind": "hide", "product_id": "skim-milk"},
        {"id": "chips-first", "kind": "promote", "product_id": "original-chips", "position": 0},
        {"id": "elsewhere", "kind": "promote", "product_id": "oat-yogurt", "position": 1},  # not among the items
    ]})  # fmt: skip
    search, _ = make(rules, small_catalog)
    search.merchandise = lambda query, surface, results, limit, bring: apply(served, query, results, limit, bring)
    answer = rank(search, [{"product_id": p} for p in STORE_ORDER])
    assert ids(answer) == ["original-chips", "whole-milk", "oat-milk", "greek-yogurt"]
    assert answer["results"][0]["rule"] == "chips-first" and answer["results"][0]["promoted"] is True
