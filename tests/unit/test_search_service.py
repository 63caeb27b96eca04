"""Personalized search: re-ranking rules, explanations and failing open."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import numpy as np
import pytest

from shared.adapters.product_search.bm25s import Bm25sProductSearch
from shared.adapters.profile_store.memory import MemoryProfileStore
from shared.domain.engine import ProfileEngine
from shared.domain.events import Interaction
from shared.domain.ranker import COLUMN
from shared.domain.ranking import explain, grouped, reasons
from shared.domain.search import SearchRequest
from shared.services.search import SearchService
from shared.services.tracking import TrackingService

NOW = datetime(2026, 3, 1, tzinfo=UTC)


class BrokenProfileStore(MemoryProfileStore):
    def read(self, user_id, view):
        raise ConnectionError("profile backend down")


def make(rules, catalog, store=None, timer=None) -> tuple[SearchService, TrackingService]:
    engine = ProfileEngine(rules, catalog)
    store = store if store is not None else MemoryProfileStore()
    kwargs = {"clock": NOW.timestamp}
    if timer:
        kwargs["timer"] = timer
    return SearchService(engine, Bm25sProductSearch(catalog), store, **kwargs), TrackingService(engine, store)


def click(product_id: str, user: str = "u") -> Interaction:
    return Interaction(event_type="click_product", user_id=user, product_id=product_id, timestamp=NOW)


def test_plant_based_yogurt_first_after_an_oat_milk_click(rules, small_catalog):
    search, tracking = make(rules, small_catalog)
    before = search.search(SearchRequest(query="yogurt", user_id="u"))
    assert before["personalization"] == {
        "applied": False,
        "reason": "no_profile",
        "budget_ms": 50.0,
        "learned": False,
        "ranking": None,
        "model": None,
    }
    tracking.track([click("oat-milk")])
    after = search.search(SearchRequest(query="yogurt", user_id="u"))
    first = after["results"][0]
    assert after["personalization"]["applied"] is True
    assert after["personalization"]["ranking"] == "rules"
    assert first["product_id"] == "oat-yogurt"
    assert "Because you clicked Oatly" in first["badges"]
    assert {r["facet"] for r in first["reasons"]} >= {"brand", "attribute"}
    assert 0 < first["confidence"] <= 1


def test_moves_are_reported(rules, small_catalog):
    search, tracking = make(rules, small_catalog)
    plain = [r["product_id"] for r in search.search(SearchRequest(query="yogurt"))["results"]]
    tracking.track([click("oat-milk")])
    results = search.search(SearchRequest(query="yogurt", user_id="u"))["results"]
    for r in results:
        assert r["base_rank"] == plain.index(r["product_id"])
        assert r["moved"] == r["base_rank"] - r["rank"]


def test_weak_matches_are_never_promoted(rules, small_catalog):
    search, tracking = make(rules, small_catalog)
    tracking.track([Interaction(event_type="purchase", user_id="u", product_id="oat-milk", timestamp=NOW, quantity=5)])
    affinities = search.profiles.read("u", lambda p: search.engine.read(p, NOW.timestamp()))
    assert affinities.of("product:oat-milk") == 1.0
    floor = rules.ranking.min_relevance

    def order(oat_relevance: float) -> list[str]:
        picked = (("greek-yogurt", 1.0), ("skim-milk", floor + 0.01), ("oat-milk", oat_relevance))
        rows = np.array([small_catalog.index[pid] for pid, _ in picked])
        ranker = search.ranker()
        x = ranker.table.features(rows, np.array([r for _, r in picked]), affinities)
        return [small_catalog.products[rows[i]].id for i in ranker.rank(x).order]

    # Below the floor the loved product stays under a weak but eligible match ...
    assert order(floor * 0.99) == ["greek-yogurt", "skim-milk", "oat-milk"]
    # ... above it, it can climb to the top.
    assert order(0.75) == ["oat-milk", "greek-yogurt", "skim-milk"]


def test_anonymous_and_opted_out_get_plain_results(rules, small_catalog):
    search, tracking = make(rules, small_catalog)
    tracking.track([click("oat-milk")])
    assert search.search(SearchRequest(query="yogurt"))["personalization"]["reason"] == "anonymous"
    opted = search.search(SearchRequest(query="yogurt", user_id="u", context={"personalization": False}))
    assert opted["personalization"]["reason"] == "opted_out"
    assert all(not r["badges"] and r["moved"] == 0 for r in opted["results"])


def test_a_broken_profile_store_fails_open(rules, small_catalog):
    search, _ = make(rules, small_catalog, store=BrokenProfileStore())
    answer = search.search(SearchRequest(query="milk", user_id="u"))
    assert answer["personalization"]["reason"] == "error"
    assert [r["rank"] for r in answer["results"]] == list(range(len(answer["results"])))
    assert answer["results"]


def test_over_budget_serves_plain_results_flagged(rules, small_catalog):
    ticks = itertools.count(step=0.2)  # every timer reading is 200 ms after the previous one
    search, tracking = make(rules, small_catalog, timer=lambda: next(ticks))
    tracking.track([click("oat-milk")])
    answer = search.search(SearchRequest(query="yogurt", user_id="u"))
    assert answer["personalization"]["reason"] == "over_budget"
    assert answer["results"][0]["product_id"] != "oat-yogurt" or answer["results"][0]["base_rank"] == 0
    assert all(r["moved"] == 0 for r in answer["results"])


def test_no_match_is_an_empty_answer(rules, small_catalog):
    search, _ = make(rules, small_catalog)
    answer = search.search(SearchRequest(query="caviar", user_id="u"))
    assert answer["results"] == [] and answer["personalization"]["reason"] == "no_results"


def test_limit_and_timings(rules, small_catalog):
    search, _ = make(rules, small_catalog)
    answer = search.search(SearchRequest(query="milk", limit=2))
    assert len(answer["results"]) == 2
    assert set(answer["timing_ms"]) == {"base_search", "rerank", "compile", "total"}


@pytest.mark.parametrize(
    "bad",
    [
        {"query": ""},
        {"query": "   "},
        {"query": "x", "limit": 0},
        {"query": "x", "filters": {"min_price": 5, "max_price": 1}},
    ],
)
def test_bad_search_requests(bad):
    with pytest.raises(ValueError):
        SearchRequest.model_validate(bad)


def test_personal_feature_equals_the_explained_contributions(rules, small_catalog):
    search, tracking = make(rules, small_catalog)
    tracking.track(
        [click("oat-milk"), Interaction(event_type="purchase", user_id="u", product_id="skim-milk", timestamp=NOW)]
    )
    tracking.track(
        [Interaction(event_type="displayed_but_scrolled", user_id="u", product_id="spicy-chips", timestamp=NOW)]
    )
    affinities = search.profiles.read("u", lambda p: search.engine.read(p, NOW.timestamp()))
    rows = np.arange(len(small_catalog))
    scores = search.ranker().table.features(rows, np.ones(len(rows)), affinities)[:, COLUMN["personal"]]
    for product, score in zip(small_catalog.products, scores, strict=True):
        explained = sum(c.contribution for c in explain(product, affinities, rules.ranking, small_catalog))
        assert score == pytest.approx(explained, abs=1e-12), product.id
    assert any(scores > 0) and any(scores < 0)


def test_reasons_sum_to_what_moved_each_result(rules, small_catalog):
    """Every reason is a real contributor: relevance plus the reasons' contributions is the score."""
    search, tracking = make(rules, small_catalog)
    tracking.track(
        [click("oat-milk"), Interaction(event_type="purchase", user_id="u", product_id="skim-milk", timestamp=NOW)]
    )
    affinities = search.profiles.read("u", lambda p: search.engine.read(p, NOW.timestamp()))
    ranker = search.ranker()
    rows = np.arange(len(small_catalog))
    x = ranker.table.features(rows, np.linspace(1.0, 0.5, len(rows)), affinities)
    ranking = ranker.rank(x)
    by_group = grouped(x, ranker.contributions(x, ranking.scored), rules.ranking)
    for i, product in enumerate(small_catalog.products):
        found = reasons(product, by_group[i], affinities, small_catalog)
        explained = x[i, COLUMN["relevance"]] + sum(c.contribution for c in found)
        assert ranking.score[i] == pytest.approx(explained, abs=1e-9), product.id
    answer = search.search(SearchRequest(query="milk", user_id="u"))
    skim = next(r for r in answer["results"] if r["product_id"] == "skim-milk")
    assert "You buy this" in skim["badges"] and {"history", "product"} <= {r["facet"] for r in skim["reasons"]}


def test_recent_views_personalize_the_very_next_search(rules, small_catalog):
    search, _ = make(rules, small_catalog)
    request = {"query": "yogurt", "user_id": "u", "context": {"recent_views": [{"product_id": "oat-milk"}]}}
    answer = search.search(SearchRequest.model_validate(request))
    assert answer["personalization"]["applied"] is True  # nothing stored yet: the session alone
    assert answer["results"][0]["product_id"] == "oat-yogurt"
    anonymous = search.search(SearchRequest.model_validate({**request, "user_id": None}))
    assert anonymous["results"][0]["product_id"] == "oat-yogurt"


def test_recent_views_already_in_the_profile_count_once(rules, small_catalog):
    search, tracking = make(rules, small_catalog)
    tracking.track(
        [Interaction(event_id="e1", event_type="view_details", user_id="u", product_id="oat-milk", timestamp=NOW)]
    )
    engine, now = search.engine, NOW.timestamp()
    session = search._session_events(
        SearchRequest.model_validate(
            {"query": "x", "user_id": "u", "context": {"recent_views": [{"product_id": "oat-milk", "event_id": "e1"}]}}
        )
    )
    stored = search.profiles.read("u", lambda p: engine.read(p, now))
    with_session = search.profiles.read("u", lambda p: engine.read(p, now, session))
    assert with_session.scores == stored.scores
    fresh = search._session_events(
        SearchRequest.model_validate(
            {"query": "x", "user_id": "u", "context": {"recent_views": [{"product_id": "oat-milk"}]}}
        )
    )
    doubled = search.profiles.read("u", lambda p: engine.read(p, now, fresh))
    assert doubled.of("brand:oatly") == pytest.approx(2 * stored.of("brand:oatly"), rel=1e-6)


def test_own_products_that_match_always_join_the_candidates(rules, small_catalog):
    narrow = rules.model_copy(update={"ranking": rules.ranking.model_copy(update={"candidate_pool": 1})})
    search, tracking = make(narrow, small_catalog)
    request = SearchRequest(query="milk", user_id="u", limit=1)
    best = [small_catalog.products[r].id for r in search.candidates(request).rows]
    assert len(best) == 1 and "whole-milk" not in best
    tracking.track([Interaction(event_type="purchase", user_id="u", product_id="whole-milk", timestamp=NOW)])
    tracking.track([Interaction(event_type="purchase", user_id="u", product_id="spicy-chips", timestamp=NOW)])
    pool = [small_catalog.products[r].id for r in search.candidates(request).rows]
    assert set(pool) == {*best, "whole-milk"}  # chips do not match "milk": they stay out
    assert search.search(request)["results"][0]["product_id"] == "whole-milk"


def test_a_returned_product_is_no_longer_counted_as_bought(rules, small_catalog):
    search, tracking = make(rules, small_catalog)
    bought = Interaction(event_type="purchase", user_id="u", product_id="whole-milk", timestamp=NOW)
    tracking.track([bought])
    before = search.search(SearchRequest(query="milk", user_id="u"))["results"][0]
    assert before["product_id"] == "whole-milk" and "You buy this" in before["badges"]
    tracking.track([Interaction(event_type="returned", user_id="u", product_id="whole-milk", timestamp=NOW)])
    history = search.profiles.read("u", lambda p: search.engine.read(p, NOW.timestamp())).history
    assert history["product:whole-milk"][0] == pytest.approx(0.0, abs=1e-9)
    after = search.search(SearchRequest(query="milk", user_id="u"))["results"]
    whole = next(r for r in after if r["product_id"] == "whole-milk")
    assert "You buy this" not in whole["badges"] and "history" not in {r["facet"] for r in whole["reasons"]}
