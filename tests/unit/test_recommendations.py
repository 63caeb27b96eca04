"""Recommendations without a query: each surface's candidates, and the service that ranks them."""

from __future__ import annotations

from datetime import date

import pytest
from pydantic import ValidationError

from shared.domain.features import ShopperFeatures
from shared.domain.privacy import PrivacyFeatures, PrivacySettings
from shared.domain.recommendations import (
    BOUGHT,
    DISCOVERY,
    LIKE_YOU,
    POPULAR,
    TRENDING,
    Known,
    RecommendationRequest,
    candidates,
)
from shared.search_evaluation import MemoryFeatureStore
from shared.services.privacy import UserPrivacy
from tests.unit.test_search_service import NOW, make

TODAY = date(2026, 3, 1)
SHOPPER = ShopperFeatures.of(
    {
        "usual": ["whole-milk"],
        "next_basket": ["whole-milk", "greek-yogurt", "oat-yogurt"],  # own first, then a collaborative pick
        "bought": ["whole-milk", "greek-yogurt", "skim-milk"],
        "discovery": ["original-chips", "skim-milk"],
        "reorder": {"greek-yogurt": {"cycle_days": 7, "confidence": 0.9, "next_expected": "2026-02-27"}},
    }
)


def ids(found) -> list[str]:
    return [c.product_id for c in found]


def test_buy_it_again_is_own_products_only_in_the_recommenders_order_then_the_rest():
    found = candidates("buy_it_again", Known(SHOPPER, bought={"spicy-chips": 0.4}, popular=["oat-milk"], today=TODAY))
    assert ids(found) == ["whole-milk", "greek-yogurt", "spicy-chips", "skim-milk"]
    assert [c.reason for c in found[:3]] == ["Your usual", "Time to reorder", BOUGHT]


def test_new_for_you_never_proposes_what_the_shopper_bought():
    known = Known(SHOPPER, bought={"spicy-chips": 0.4}, popular=["whole-milk", "oat-milk", "spicy-chips"], today=TODAY)
    found = candidates("new_for_you", known)
    assert ids(found) == ["original-chips", "oat-yogurt", "oat-milk"]
    assert [c.reason for c in found] == [DISCOVERY, LIKE_YOU, POPULAR]


def test_for_you_blends_the_recommender_discoveries_then_popular_as_fill():
    found = candidates("for_you", Known(SHOPPER, popular=["oat-milk", "whole-milk"], today=TODAY))
    assert ids(found) == ["whole-milk", "greek-yogurt", "oat-yogurt", "original-chips", "skim-milk", "oat-milk"]
    assert found[-1].fill and not any(c.fill for c in found[:-1])


def test_goes_with_takes_each_anchors_best_in_turn_and_never_the_cart():
    related = {"a": ("Anchor A", ["x", "b", "y"]), "b": ("Anchor B", ["z", "x"])}
    found = candidates("goes_with", Known(related=related), anchors=["a", "b"])
    assert ids(found) == ["x", "z", "y"]
    assert found[1].reason == "Goes well with Anchor B"


def test_trending_is_the_stores_list():
    assert [(c.product_id, c.reason) for c in candidates("trending", Known(trending=["t1", "t2"]))] == [
        ("t1", TRENDING),
        ("t2", TRENDING),
    ]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"surface": "everything"}, "surface"),
        ({"surface": "similar"}, "product_id"),
        ({"surface": "goes_with"}, "context.cart"),
        ({"surface": "for_you", "limit": 0}, "limit"),
        ({"surface": "for_you", "filters": {"min_price": 5, "max_price": 1}}, "min_price"),
    ],
)
def test_a_bad_request_names_what_is_wrong(body, field):
    with pytest.raises(ValidationError) as error:
        RecommendationRequest.model_validate(body)
    assert field in str(error.value)


# -- the service: one ranker, a third door -------------------------------------------------------
def served(rules, small_catalog, documents=None, products=None, store=None):
    search, tracking = make(rules, small_catalog)
    features = MemoryFeatureStore()
    features.publish("v1", [("user", (documents or {}).items()), ("product", (products or {}).items()), *(store or [])])
    search.features = lambda: features
    return search, tracking


def ask(search, **body):
    return search.recommend(RecommendationRequest.model_validate(body))


def test_without_anything_known_popular_items_are_served_and_flagged(rules, small_catalog):
    search, _ = served(rules, small_catalog)
    answer = ask(search, surface="trending")
    assert answer["fallback"] == {"to": "popular", "reason": "no_features"}
    assert len(answer["results"]) == len(small_catalog)
    assert all(r["badges"][0] == POPULAR for r in answer["results"])
    assert answer["personalization"]["reason"] == "anonymous"


def test_buy_it_again_serves_the_shoppers_products_with_quantities_and_reasons(rules, small_catalog):
    document = {"usual": ["whole-milk"], "next_basket": ["whole-milk", "oat-yogurt"], "bought": ["whole-milk"]}
    document["quantities"] = {"whole-milk": 2}
    search, _ = served(rules, small_catalog, {"u": document})
    answer = ask(search, surface="buy_it_again", user_id="u")
    assert answer["fallback"] is None
    assert [r["product_id"] for r in answer["results"]] == ["whole-milk"]
    first = answer["results"][0]
    assert first["badges"][0] == "Your usual" and first["suggested_quantity"] == 2
    assert 0 <= first["confidence"] <= 1


def test_goes_with_complements_the_cart_and_leaves_the_cart_out(rules, small_catalog):
    products = {"original-chips": {"goes_with": ["spicy-chips", "whole-milk", "oat-milk"]}}
    search, _ = served(rules, small_catalog, products=products)
    answer = ask(search, surface="goes_with", context={"cart": ["original-chips", "oat-milk"]})
    assert [r["product_id"] for r in answer["results"]] == ["spicy-chips", "whole-milk"]
    assert answer["results"][0]["badges"][0] == "Goes well with Lay's Original Chips"


def test_similar_uses_the_neighbours_then_the_category_by_shared_attributes(rules, small_catalog):
    search, _ = served(rules, small_catalog, products={"oat-milk": {"similar": ["oat-yogurt"]}})
    answer = ask(search, surface="similar", product_id="oat-milk")
    assert [r["product_id"] for r in answer["results"]][:1] == ["oat-yogurt"]
    assert {r["product_id"] for r in answer["results"][1:]} == {"whole-milk", "skim-milk"}
    assert "oat-milk" not in [r["product_id"] for r in answer["results"]]


def test_trending_comes_from_the_published_store_list_and_honours_stock_and_filters(rules, small_catalog):
    trending = [("store", [("trending", {"products": ["spicy-chips", "oat-milk", "greek-yogurt"]})])]
    search, _ = served(rules, small_catalog, store=trending)
    answer = ask(search, surface="trending", filters={"department": "dairy"})
    assert [r["product_id"] for r in answer["results"]] == ["oat-milk", "greek-yogurt"]
    assert answer["results"][0]["badges"][0] == TRENDING


def test_a_live_profile_orders_what_it_knows_about(rules, small_catalog):
    search, tracking = served(rules, small_catalog)
    tracking.track([_event("purchase", "oat-milk"), _event("purchase", "original-chips")])
    answer = ask(search, surface="buy_it_again", user_id="u")
    assert {r["product_id"] for r in answer["results"]} == {"oat-milk", "original-chips"}
    assert answer["personalization"]["applied"] is True


def test_purchase_history_off_means_no_learnt_features_on_any_surface(rules, small_catalog):
    document = {"usual": ["whole-milk"], "next_basket": ["whole-milk"], "bought": ["whole-milk"]}
    search, _ = served(rules, small_catalog, {"u": document})
    off = PrivacySettings(features=PrivacyFeatures(purchase_history=False))
    search.privacy = lambda user: UserPrivacy(off, None)
    answer = ask(search, surface="buy_it_again", user_id="u")
    assert answer["fallback"] == {"to": "popular", "reason": "no_features"}


def _event(kind: str, product: str):
    from shared.domain.events import Interaction

    return Interaction(event_type=kind, user_id="u", product_id=product, timestamp=NOW, quantity=1)
