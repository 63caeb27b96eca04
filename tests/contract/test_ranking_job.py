"""The ranking_model job on every warehouse (DuckDB; the BigQuery adapter on bqemulator): it trains on
the warehouse's orders, guards the model on held-out shoppers, publishes it, and serving loads it.

The store has a pattern the rules score cannot see: every shopper alternates between two products of
each category, week on, week off, so the one bought two weeks ago is the one due now. The rules rank
both equally (same count); a model that reads the days since the latest purchase gets it right.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from shared.adapters.archive.local import LocalFolderArchive
from shared.adapters.product_search.bm25s import Bm25sProductSearch
from shared.adapters.ranking_model.archive import ArchiveModelStore
from shared.adapters.warehouse.duckdb import DuckDbWarehouse
from shared.domain.catalog import Catalog, Product
from shared.domain.engine import ProfileEngine
from shared.domain.events import Interaction
from shared.domain.pipeline import warehouse_rows
from shared.domain.ranker import RankerArtifact
from shared.services.jobs import JobRunner
from shared.services.ranking import RankerProvider, RankerTrainer
from tests.emulator_fixtures import new_warehouse

T0 = datetime(2025, 9, 1, 9, tzinfo=UTC)
WEEKS = 8
NOW = T0 + timedelta(weeks=WEEKS, days=1)
CATEGORIES = ("yogurt", "cereal", "coffee")
CATALOG = Catalog(
    Product(id=f"{c}-{i}", name=f"{c.title()} number {i}", category=c, department="pantry")
    for c in CATEGORIES
    for i in range(12)
)


def alternating_orders(shoppers: int = 70, seed: int = 3) -> list[Interaction]:
    """Each shopper has two products per category and buys them on alternate weeks."""
    rng = random.Random(seed)
    events = []
    for s in range(shoppers):
        pairs = {c: rng.sample(range(12), 2) for c in CATEGORIES}
        for week in range(WEEKS):
            for c, (a, b) in pairs.items():
                pid = f"{c}-{a if week % 2 else b}"
                events.append(
                    Interaction(
                        event_id=f"s{s}-w{week}-{pid}",
                        event_type="purchase",
                        user_id=f"shopper-{s:03d}",
                        product_id=pid,
                        timestamp=T0 + timedelta(weeks=week, hours=s % 12),
                        context={"order_id": f"s{s}-w{week}"},
                    )
                )
    return events


@pytest.fixture(params=["duckdb", "bigquery"])
def warehouse(request, tmp_path, rules):
    store = new_warehouse(request, tmp_path, request.param, "ranking")
    store.insert(warehouse_rows(alternating_orders(), CATALOG, rules, NOW))
    yield store
    store.close()


def test_the_job_trains_guards_publishes_and_serving_loads_the_model(tmp_path, warehouse, rules):
    archive = LocalFolderArchive(tmp_path / "archive")
    engine = ProfileEngine(rules, CATALOG)
    provider = RankerProvider(lambda: ArchiveModelStore(archive), CATALOG, rules.ranking)
    trainer = RankerTrainer(ArchiveModelStore(archive), engine, Bm25sProductSearch(CATALOG), published=provider.refresh)
    runner = JobRunner(warehouse, clock=lambda: NOW, train_ranker=trainer)

    report = runner.run("daily", only=["order_lines", "ranking_model"])

    assert [j["status"] for j in report["jobs"]] == ["done", "done"]
    version, data = ArchiveModelStore(archive).current()
    artifact = RankerArtifact.from_bytes(data)
    assert version == artifact.version == NOW.strftime("%Y%m%dT000000Z")  # the daily window's end
    metrics = artifact.metrics
    assert metrics["outcome"] == "published"
    assert metrics["guard_ndcg@10_model"] > metrics["guard_ndcg@10_rules"] + 0.1, metrics
    assert artifact.stats.popularity  # the store's popularity travels with the model
    assert provider.health() == {"status": "healthy", "ranking": "learnt", "version": version}
    served = provider()
    assert served.version == version and served.model is not None

    # The next day's model has nothing new to learn: the serving model stays, and serving keeps it.
    runner.clock = lambda: NOW + timedelta(days=1)
    runner.run("daily", only=["order_lines", "ranking_model"])
    newer, data = ArchiveModelStore(archive).current()
    kept = RankerArtifact.from_bytes(data)
    assert newer > version
    if kept.metrics["outcome"] != "published":
        assert kept.model == artifact.model
    assert provider().version == newer and provider().model is not None


def test_the_learnt_model_ranks_the_due_product_first(tmp_path, rules):
    """Served through the search service: the product bought two weeks ago comes before last week's."""
    from shared.adapters.profile_store.memory import MemoryProfileStore
    from shared.domain.search import SearchRequest
    from shared.services.search import SearchService
    from shared.services.tracking import TrackingService

    warehouse = DuckDbWarehouse(tmp_path / "w.duckdb")
    events = alternating_orders()
    warehouse.insert(warehouse_rows(events, CATALOG, rules, NOW))
    archive = LocalFolderArchive(tmp_path / "archive")
    engine = ProfileEngine(rules, CATALOG)
    products = Bm25sProductSearch(CATALOG)
    provider = RankerProvider(lambda: ArchiveModelStore(archive), CATALOG, rules.ranking)
    trainer = RankerTrainer(ArchiveModelStore(archive), engine, products, published=provider.refresh)
    JobRunner(warehouse, clock=lambda: NOW, train_ranker=trainer).run("daily", only=["order_lines", "ranking_model"])
    warehouse.close()
    profiles = MemoryProfileStore()
    TrackingService(engine, profiles).track(events)
    now = T0 + timedelta(weeks=WEEKS)  # the next week: the shoppers' odd-week products are due
    search = SearchService(engine, products, profiles, clock=now.timestamp, ranker=provider)
    rules_only = SearchService(engine, products, profiles, clock=now.timestamp)
    hits = {"learnt": [], "rules": []}
    for s in range(70):
        user = f"shopper-{s:03d}"
        two_weeks_ago = T0 + timedelta(weeks=WEEKS - 2, hours=s % 12)
        due = {e.product_id for e in events if e.user_id == user and e.timestamp == two_weeks_ago}
        for name, service in (("learnt", search), ("rules", rules_only)):
            for category in CATEGORIES:
                answer = service.search(SearchRequest(query=category, user_id=user))
                assert answer["personalization"]["ranking"] == ("learnt" if name == "learnt" else "rules")
                hits[name].append(answer["results"][0]["product_id"] in due)
    learnt, plain_rules = np.mean(hits["learnt"]), np.mean(hits["rules"])
    assert learnt > 0.9 and learnt > plain_rules + 0.3, (learnt, plain_rules)


def logged_searches(shoppers: int = 70) -> list[Interaction]:
    """In the last week, each shopper searches each category, sees all its products, and buys one."""
    events = []
    for s in range(shoppers):
        for c in CATEGORIES:
            search_id, at = f"search-{s}-{c}", T0 + timedelta(weeks=WEEKS - 1, hours=s % 12, minutes=-5)
            shown = [f"{c}-{i}" for i in range(12)]
            context = {"search_query": c, "results_shown": shown, "search_id": search_id}
            events.append(
                Interaction(
                    event_id=search_id, event_type="search", user_id=f"shopper-{s:03d}", timestamp=at, context=context
                )
            )
            events.append(
                Interaction(
                    event_id=f"{search_id}-click",
                    event_type="click_product",
                    user_id=f"shopper-{s:03d}",
                    product_id=shown[s % 12],
                    timestamp=at + timedelta(minutes=1),
                    context={"search_id": search_id, "position": s % 12},
                )
            )
    return events


def test_the_job_learns_from_logged_searches_too(tmp_path, warehouse, rules):
    """Impressions with outcomes (search_outcomes) join the replays, with each shopper's profile as it
    was when they searched."""
    warehouse.insert(warehouse_rows(logged_searches(), CATALOG, rules, NOW))
    archive = LocalFolderArchive(tmp_path / "archive")
    engine = ProfileEngine(rules, CATALOG)
    trainer = RankerTrainer(ArchiveModelStore(archive), engine, Bm25sProductSearch(CATALOG))
    runner = JobRunner(warehouse, clock=lambda: NOW, train_ranker=trainer)
    runner.run("daily", only=["order_lines", "search_outcomes", "ranking_model"])
    metrics = RankerArtifact.from_bytes(ArchiveModelStore(archive).current()[1]).metrics
    # every shopper's three searches had a click; the guard's shoppers (a fifth) are left out
    assert metrics["impression_queries"] == 3 * (70 - metrics["guard_shoppers"])


def test_replays_are_capped_but_the_published_popularity_counts_every_shopper(tmp_path, rules):
    warehouse = DuckDbWarehouse(tmp_path / "w.duckdb")
    warehouse.insert(warehouse_rows(alternating_orders(), CATALOG, rules, NOW))
    archive = LocalFolderArchive(tmp_path / "archive")
    trainer = RankerTrainer(ArchiveModelStore(archive), ProfileEngine(rules, CATALOG), Bm25sProductSearch(CATALOG))
    runner = JobRunner(warehouse, clock=lambda: NOW, train_ranker=trainer, ranking_users=10)
    runner.run("daily", only=["order_lines", "ranking_model"])
    warehouse.close()
    artifact = RankerArtifact.from_bytes(ArchiveModelStore(archive).current()[1])
    assert artifact.metrics["shoppers"] == 10
    # 70 shoppers x 8 weekly orders x 3 categories, one product each
    assert sum(artifact.stats.popularity.values()) == 70 * WEEKS * len(CATEGORIES)


def test_a_job_process_that_never_served_keeps_the_published_model(tmp_path, rules):
    """The guard compares against the model instances serve (read from the store), so a losing model
    never replaces it, whatever the job's own process has loaded."""
    warehouse = DuckDbWarehouse(tmp_path / "w.duckdb")
    warehouse.insert(warehouse_rows(alternating_orders(), CATALOG, rules, NOW))
    archive = LocalFolderArchive(tmp_path / "archive")
    store = ArchiveModelStore(archive)
    products = Bm25sProductSearch(CATALOG)
    JobRunner(
        warehouse, clock=lambda: NOW, train_ranker=RankerTrainer(store, ProfileEngine(rules, CATALOG), products)
    ).run("daily", only=["order_lines", "ranking_model"])
    first = RankerArtifact.from_bytes(store.current()[1])
    assert first.model is not None
    fresh = RankerTrainer(store, ProfileEngine(rules, CATALOG), products)  # a new process: nothing loaded
    JobRunner(warehouse, clock=lambda: NOW + timedelta(days=1), train_ranker=fresh).run(
        "daily", only=["order_lines", "ranking_model"]
    )
    warehouse.close()
    second = RankerArtifact.from_bytes(store.current()[1])
    assert "guard_ndcg@10_serving" in second.metrics  # guarded against the published model
    assert second.model is not None
    if second.metrics["outcome"] != "published":
        assert second.model == first.model


def test_shoppers_being_erased_are_never_trained_on(tmp_path, rules):
    warehouse = DuckDbWarehouse(tmp_path / "w.duckdb")
    warehouse.insert(warehouse_rows(alternating_orders(), CATALOG, rules, NOW))
    archive = LocalFolderArchive(tmp_path / "archive")
    erased = {f"shopper-{s:03d}" for s in range(10)}
    trainer = RankerTrainer(
        ArchiveModelStore(archive),
        ProfileEngine(rules, CATALOG),
        Bm25sProductSearch(CATALOG),
        being_erased=lambda: erased,
    )
    JobRunner(warehouse, clock=lambda: NOW, train_ranker=trainer).run("daily", only=["order_lines", "ranking_model"])
    warehouse.close()
    assert RankerArtifact.from_bytes(ArchiveModelStore(archive).current()[1]).metrics["shoppers"] == 60
