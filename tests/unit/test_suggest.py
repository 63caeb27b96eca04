"""Instant suggestions: prefix matching, typo tolerance, k shoppers, the shopper's own first."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from shared.domain.catalog import Catalog
from shared.domain.privacy import PrivacyFeatures, PrivacySettings
from shared.domain.suggest import (
    EntryIndex,
    PrefixIndex,
    ProductIndex,
    Shopper,
    SuggestRequest,
    facet_entries,
    query_entries,
    suggest,
)
from shared.search_evaluation import MemoryFeatureStore
from shared.services.privacy import UserPrivacy
from shared.services.suggest import SuggestService
from tests.unit.test_search_service import make

QUERIES = [
    {"query": "oat milk", "searches": 40, "shoppers": 12},
    {"query": "oatly barista", "searches": 90, "shoppers": 4},  # fewer than 5 shoppers: never shown
    {"query": "original chips", "searches": 7, "shoppers": 5},
]


@pytest.fixture()
def catalog_index(small_catalog) -> list[PrefixIndex]:
    """The catalog's brands and categories, then its products (as the service asks them)."""
    orders = np.arange(len(small_catalog), dtype=np.float64)  # later products sell more
    return [EntryIndex(facet_entries(small_catalog, orders)), ProductIndex(small_catalog, orders)]


def texts(found) -> list[str]:
    return [s["text"] for s in found]


def test_any_words_prefix_matches_and_the_store_queries_come_first(catalog_index):
    found, corrected = suggest("oat", [EntryIndex(query_entries(QUERIES, 5)), *catalog_index], 10)
    assert corrected is None
    assert texts(found)[0] == "oat milk"
    assert {"Oatly Oat Milk", "Oatly Oatgurt Plant-Based Yogurt", "Oatly"} <= set(texts(found))
    assert "oatly barista" not in texts(found)  # searched by 4 shoppers only
    found, _ = suggest("whole mi", catalog_index, 10)  # a later word's prefix
    assert texts(found) == ["Organic Valley Whole Milk"]


def test_a_typo_in_the_word_being_typed_is_corrected(catalog_index):
    found, corrected = suggest("yoghurt", catalog_index, 5)
    assert corrected == "yogurt" and "yogurt" in {s["text"] for s in found}
    assert suggest("xq", catalog_index, 5) == ([], None)  # under 3 letters: no guess


def test_categories_and_brands_weigh_what_their_products_sell(catalog_index):
    found = texts(suggest("o", catalog_index, 10)[0])
    assert found[:2] == ["Oatly", "Organic Valley"]  # oat milk (0) + oat yogurt (4) outsell whole milk (1)
    assert found[2] == "Lay's Original Chips"  # then the products, the best seller (6) first


def test_the_shoppers_own_queries_and_products_come_first(catalog_index):
    shopper = Shopper(queries=("organic valley milk",), keys=frozenset({"product:oat-yogurt"}))
    found, _ = suggest("o", catalog_index, 4, shopper)
    assert texts(found)[:2] == ["organic valley milk", "Oatly Oatgurt Plant-Based Yogurt"]
    assert [s["personal"] for s in found[:3]] == [True, True, False]


def test_the_typed_text_is_checked():
    with pytest.raises(ValidationError):
        SuggestRequest(q="  ")
    with pytest.raises(ValidationError):
        SuggestRequest(q="x" * 101)
    with pytest.raises(ValidationError):
        SuggestRequest.model_validate({"q": "milk", "colour": "red"})


def service(rules, small_catalog, privacy=None, served=None):
    search, tracking = make(rules, small_catalog)
    features = MemoryFeatureStore()
    features.publish(
        "v1", [("store", [("queries", {"queries": QUERIES})]), ("user", [("u", {"queries": ["skyr", "chai tea"]})])]
    )
    orders = lambda catalog: np.zeros(len(catalog))  # noqa: E731
    served = served or (lambda: small_catalog)
    suggestions = SuggestService(
        served, orders, search.engine, search.profiles, lambda: features, privacy, clock=search.clock
    )
    return suggestions, tracking


def test_the_service_personalizes_a_shopper_and_nobody_else(rules, small_catalog):
    suggestions, tracking = service(rules, small_catalog)
    from tests.unit.test_search_service import click

    tracking.track([click("spicy-chips")])
    mine = suggestions.suggest(SuggestRequest(q="ch", user_id="u"))
    assert mine["personalized"] is True
    shown = [(s["text"], s["personal"]) for s in mine["suggestions"]]
    # theirs first (their query, then what they clicked: its category and the product), then the store's query
    assert shown[:4] == [
        ("chai tea", True),
        ("chips", True),
        ("Doritos Flamin Hot Chips", True),
        ("original chips", False),
    ]
    anyone = suggestions.suggest(SuggestRequest(q="ch"))
    assert anyone["personalized"] is False and "chai tea" not in [s["text"] for s in anyone["suggestions"]]


def test_search_history_off_hides_the_shoppers_own_queries(rules, small_catalog):
    off = PrivacySettings(features=PrivacyFeatures(search_history=False))
    suggestions, _ = service(rules, small_catalog, privacy=lambda user: UserPrivacy(off, None))
    answer = suggestions.suggest(SuggestRequest(q="sk", user_id="u"))
    assert "skyr" not in [s["text"] for s in answer["suggestions"]]


def test_a_new_catalog_version_is_indexed_in_the_background_never_on_a_request(rules, small_catalog):
    from tests.conftest import product

    served = [small_catalog]
    suggestions, _ = service(rules, small_catalog, served=lambda: served[0])
    served[0] = Catalog([*small_catalog.products, product("kefir", "Lifeway Kefir", "Lifeway", "kefir")])
    suggestions.refresh()  # as the background refresh does, at most every refresh_s
    found = [s["text"] for s in suggestions.suggest(SuggestRequest(q="kef"))["suggestions"]]
    assert found == ["kefir", "Lifeway Kefir"]  # a new category is summed in, then the product


def test_an_index_built_on_the_previous_version_finds_what_a_fresh_one_finds():
    from shared.domain.catalog_generator import generate_catalog

    first = Catalog(generate_catalog(500), version=1)
    renamed = [p.model_copy(update={"name": f"Zesty {p.name}"}) for p in first.products[:20]]
    added = [p.model_copy(update={"id": f"new-{p.id}", "name": f"Quinoa {p.name}"}) for p in first.products[20:30]]
    gone = [p.id for p in first.products[30:40]]
    second = Catalog.amended(first, [*renamed, *added], gone, version=2)
    orders = np.ones(len(second))
    carried = ProductIndex(second, orders, previous=ProductIndex(first, np.ones(len(first))))
    # The version the previous index was built on is gone (it is held weakly): found by id and name.
    orphaned = ProductIndex(second, orders, previous=ProductIndex(Catalog(list(first.products)), np.ones(500)))
    fresh = ProductIndex(second, orders)
    for typed in ("zesty", "quinoa", "organic", "o", "milk", first.products[35].name.lower()[:12]):
        assert carried.matching(typed).tolist() == fresh.matching(typed).tolist() == orphaned.matching(typed).tolist()
    assert sorted(carried.words) == sorted(set(fresh.words) | set(ProductIndex(first, np.ones(500)).words))
