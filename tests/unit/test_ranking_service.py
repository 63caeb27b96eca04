"""Serving the ranking model: loads in the background, never moves back, and keeps what it serves when
an artifact is corrupt, made for other features, or too slow (with /health saying why)."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime

import lightgbm
import numpy as np
import pytest

from shared.adapters.product_search.bm25s import Bm25sProductSearch
from shared.adapters.profile_store.memory import MemoryProfileStore
from shared.domain.engine import ProfileEngine
from shared.domain.events import Interaction
from shared.domain.ranker import FEATURES, ModelArtifactError, RankerArtifact, StoreStats
from shared.domain.search import SearchRequest
from shared.ports.archive import ArchiveUnavailable
from shared.ports.ranking_model import ModelStore
from shared.services.ranking import RankerProvider
from shared.services.search import SearchService
from shared.services.tracking import TrackingService

NOW = datetime(2026, 3, 1, tzinfo=UTC)


class MemoryModelStore(ModelStore):
    def __init__(self) -> None:
        self.versions: dict[str, bytes] = {}
        self.current_version: str | None = None
        self.down = False

    def publish(self, version: str, data: bytes) -> None:
        self.versions[version] = data
        self.current_version = version

    def current(self) -> tuple[str, bytes] | None:
        if self.down:
            raise ArchiveUnavailable("store down")
        if self.current_version is None:
            return None
        return self.current_version, self.versions[self.current_version]


def tiny_model(seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    x, y = rng.random((200, len(FEATURES))), (rng.random(200) > 0.8).astype(float)
    data = lightgbm.Dataset(x, y, group=[20] * 10, feature_name=list(FEATURES))
    return lightgbm.train({"objective": "lambdarank", "verbose": -1, "min_data_in_leaf": 5}, data, 5).model_to_string()


def multiclass_model() -> str:
    rng = np.random.default_rng(1)
    x, y = rng.random((90, len(FEATURES))), np.arange(90) % 3
    data = lightgbm.Dataset(x, y, feature_name=list(FEATURES))
    params = {"objective": "multiclass", "num_class": 3, "verbose": -1, "min_data_in_leaf": 5}
    return lightgbm.train(params, data, 2).model_to_string()


def artifact(version: str, model: str | None = None) -> bytes:
    return RankerArtifact(version, StoreStats({"oat-milk": 3.0, "skim-milk": 1.0}), model).to_bytes()


@pytest.fixture()
def store() -> MemoryModelStore:
    return MemoryModelStore()


@pytest.fixture()
def provider(store, rules, small_catalog) -> RankerProvider:
    return RankerProvider(lambda: store, small_catalog, rules.ranking)


def test_rules_until_a_model_is_published_then_the_newest_never_an_older(store, provider):
    provider.refresh()
    assert provider().model is None and provider.health()["ranking"] == "rules"
    store.publish("20260102T000000Z", artifact("20260102T000000Z", tiny_model()))
    provider.refresh()
    assert provider().version == "20260102T000000Z" and provider().model is not None
    assert provider.health() == {"status": "healthy", "ranking": "learnt", "version": "20260102T000000Z"}
    store.publish("20260101T000000Z", artifact("20260101T000000Z"))  # an older version made current
    provider.refresh()
    assert provider().version == "20260102T000000Z"


@pytest.mark.parametrize(
    "data, why",
    [
        (b"\x00\x01 not json", "not JSON"),
        (artifact("v")[:40], "not JSON"),  # truncated
        (json.dumps({"format": 1, "features": ["relevance"], "popularity": {}}).encode(), "features"),
        (artifact("v", "tree\nnot a model"), "does not load"),
        (
            json.dumps({"format": 1, "features": list(FEATURES), "popularity": {"oat-milk": float("nan")}}).encode(),
            "finite counts",
        ),
        (artifact("v", multiclass_model()), "ValueError"),  # loads, but does not score as a ranker
    ],
)
def test_a_bad_artifact_keeps_the_served_model_and_is_reported(store, provider, data, why):
    store.publish("20260101T000000Z", artifact("20260101T000000Z", tiny_model()))
    provider.refresh()
    store.publish("20260102T000000Z", data)
    provider.refresh()
    assert provider().version == "20260101T000000Z" and provider().model is not None
    health = provider.health()
    assert health["status"] == "degraded" and health["refused"] == "20260102T000000Z"
    assert why in health["reason"]
    if why not in ("does not load", "ValueError"):
        with pytest.raises(ModelArtifactError):
            RankerArtifact.from_bytes(data)


def test_a_store_that_fails_keeps_the_served_ranker(store, provider):
    store.publish("20260101T000000Z", artifact("20260101T000000Z", tiny_model()))
    provider.refresh()
    store.down = True
    provider.refresh()
    assert provider().version == "20260101T000000Z"


def test_a_model_too_slow_for_the_budget_is_refused_and_the_rules_serve(store, rules, small_catalog):
    ticks = itertools.count(step=1.0)  # every timer reading is a second after the previous one
    provider = RankerProvider(lambda: store, small_catalog, rules.ranking, timer=lambda: next(ticks))
    store.publish("20260101T000000Z", artifact("20260101T000000Z", tiny_model()))
    provider.refresh()
    assert provider().model is None and provider().version is None  # still the rules it served
    health = provider.health()
    assert health["status"] == "degraded" and "the model takes 1000.0 ms for 500 candidates" in health["reason"]


def test_search_serves_the_loaded_model_and_says_which(store, provider, rules, small_catalog):
    engine = ProfileEngine(rules, small_catalog)
    profiles = MemoryProfileStore()
    TrackingService(engine, profiles).track(
        [Interaction(event_type="purchase", user_id="u", product_id="oat-milk", timestamp=NOW)]
    )
    search = SearchService(engine, Bm25sProductSearch(small_catalog), profiles, clock=NOW.timestamp, ranker=provider)
    store.publish("20260101T000000Z", artifact("20260101T000000Z", tiny_model()))
    provider.refresh()
    answer = search.search(SearchRequest(query="milk", user_id="u"))
    assert answer["personalization"] | {"budget_ms": 0} == {
        "applied": True,
        "reason": None,
        "budget_ms": 0,
        "learned": False,
        "ranking": "learnt",
        "model": "20260101T000000Z",
    }
    assert len(answer["results"]) == 3


def test_a_models_reasons_are_only_what_the_shopper_has(store, provider, rules, small_catalog):
    """A model's contributions are measured against its training average: a feature at its "nothing
    known" value (never bought) must not show as a reason, such as "You buy this"."""
    engine = ProfileEngine(rules, small_catalog)
    profiles = MemoryProfileStore()
    click = Interaction(event_type="click_product", user_id="u", product_id="oat-milk", timestamp=NOW)
    TrackingService(engine, profiles).track([click])
    search = SearchService(engine, Bm25sProductSearch(small_catalog), profiles, clock=NOW.timestamp, ranker=provider)
    store.publish("20260101T000000Z", artifact("20260101T000000Z", tiny_model()))
    provider.refresh()
    answer = search.search(SearchRequest(query="milk", user_id="u"))
    assert answer["personalization"]["ranking"] == "learnt"
    facets = {r["facet"] for result in answer["results"] for r in result["reasons"]}
    assert "history" not in facets and not any("You buy this" in r["badges"] for r in answer["results"])
    oat = next(r for r in answer["results"] if r["product_id"] == "oat-milk")
    assert {r["facet"] for r in oat["reasons"]} & {"product", "brand", "attribute"}  # the click is a reason


def test_a_version_published_again_is_loaded_again(store, provider):
    store.publish("20260101T000000Z", artifact("20260101T000000Z"))
    provider.refresh()
    assert provider().version == "20260101T000000Z" and provider().model is None
    store.publish("20260101T000000Z", artifact("20260101T000000Z", tiny_model()))  # a forced re-run
    provider.refresh()
    assert provider().model is not None
