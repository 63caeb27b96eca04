"""Search replay evaluation: the served personalized search against simple orderings on real orders.

Protocol (docs/EVALUATION.md): per seed, `evaluate`'s user split holds out the last basket of a share of
the shoppers. Each test shopper's earlier orders are tracked as purchases through the tracking service,
ending at a fixed "now" (the held-out order's time). Then, per category of the held-out order, the
category's name is searched through the search service; the products of that category in the order are
relevant. `plain`, `popularity` and `own_then_popularity` re-rank exactly the candidates the served
ranking (`leafloaf`) ranked, so the comparison is about ordering. Any model is trained on the split's
training orders only, by the daily job's training code.
"""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from shared.adapters.catalog.files import load_catalog_file
from shared.adapters.product_search.bm25s import Bm25sProductSearch
from shared.adapters.profile_store.memory import MemoryProfileStore
from shared.datasets import OrderFileError
from shared.domain.catalog import Catalog
from shared.domain.context import ContextCounter, Moment, PastOrder, lifts_document, nested, tuned_weight
from shared.domain.engine import ProfileEngine
from shared.domain.events import Interaction
from shared.domain.nextbasket import Basket, Histories, ndcg_at_k, order_counts, recall_at_k, split_last_basket
from shared.domain.ranker import Ranker, ranker_of
from shared.domain.ranker_training import (
    REPLAY_END,
    PurchaseDays,
    TrainingParams,
    build_artifact,
    category_queries,
    purchase_events,
    replay_days,
)
from shared.domain.rules import Rules
from shared.domain.search import SearchFilters, SearchRequest
from shared.evaluation import load_histories, log, write_report
from shared.ports.feature_store import Document, FeatureStore
from shared.services.search import SearchService
from shared.services.tracking import TrackingService

NOW = REPLAY_END  # the held-out orders' time: every replay ends here
DEPTH = 100  # the served answer's longest list; every method's list is cut here (MRR@100)
# leafloaf_rules: the same service with the rules ranking alone (what serves before a model is published);
# leafloaf_no_context: the served ranking without the context engine (rules.context.weight 0)
METHODS = ("plain", "popularity", "own_then_popularity", "leafloaf_rules", "leafloaf_no_context", "leafloaf")
Log = Callable[[str], None]


@dataclass(frozen=True)
class Query:
    user: str
    text: str  # the category's name
    relevant: frozenset[str]


def reciprocal_rank(ranked: Sequence[str], truth: Collection[str]) -> float:
    """1 / rank of the first relevant item (0 when none is ranked)."""
    return next((1.0 / rank for rank, item in enumerate(ranked, start=1) if item in truth), 0.0)


def scores(ranked: Sequence[str], truth: Collection[str]) -> dict[str, float]:
    return {
        "ndcg@10": ndcg_at_k(ranked, truth, 10),
        "recall@10": recall_at_k(ranked, truth, 10),
        "mrr": reciprocal_rank(ranked[:DEPTH], truth),
    }


def queries(user: str, basket: Basket, catalog: Catalog) -> list[Query]:
    """One query per category of the held-out basket: its name; relevant = its products in the basket."""
    return [Query(user, category, frozenset(found)) for category, found in category_queries(basket, catalog).items()]


def reorder_document(events: Sequence[Interaction]) -> dict:
    """The features document the jobs publish about a shopper's reorder cycles (reorder_predictions:
    cycle, confidence, next expected day), from their purchases."""
    bought = PurchaseDays()
    for event in events:
        bought.add(event)
    return {
        "reorder": {
            product: {
                "cycle_days": cycle,
                "confidence": confidence,
                "next_expected": (bought.last(product) + timedelta(days=cycle)).date().isoformat(),
            }
            for product, (cycle, confidence) in bought.cycles().items()
        }
    }


def context_documents(
    train: Histories, users: Iterable[str], catalog: Catalog, cap: float
) -> tuple[Document, dict[str, Document]]:
    """What the daily context_patterns job would publish from the training orders: the store's
    category lifts by moment with the weight tuned on them, and each of `users`' own lifts
    (shared.domain.context)."""
    counter = ContextCounter()
    wanted = set(users)
    mine: dict[str, Document] = {}
    orders: dict[str, list[PastOrder]] = {}
    for user, history in train.items():
        for basket in history:
            if basket.weekday is None or basket.hour is None:
                continue
            moment = Moment(basket.weekday, basket.hour)  # no month in the sample: no season
            found = (catalog.get(product) for product in basket.products)
            order = PastOrder(moment, tuple((p.id, p.category) for p in found if p is not None and p.category))
            counter.add_order(user, order)
            orders.setdefault(user, []).append(order)
        lifts = counter.take_shoppers().get(user, [])
        if user in wanted:
            mine[user] = {"context": lifts_document(lifts)}
    store = counter.store_lifts()
    weight, tuning = tuned_weight(orders, nested(store), cap)
    return {"lifts": lifts_document(store), "weight": weight, "tuning": tuning}, mine


def without_context(rules: Rules) -> Rules:
    """The rules with the context engine off: the baseline of the context's effect."""
    return rules.model_copy(update={"context": rules.context.model_copy(update={"weight": 0.0})})


def local_time(basket: Basket) -> datetime | None:
    """A local time on the basket's weekday and hour (in NOW's week), as a client would send it."""
    if basket.weekday is None or basket.hour is None:
        return None
    days = (basket.weekday - NOW.isoweekday() % 7) % 7
    return NOW.replace(hour=basket.hour, minute=0, second=0, microsecond=0) + timedelta(days=days)


class MemoryFeatureStore(FeatureStore):
    """Feature documents in memory: the evaluation's stand-in for the published snapshot."""

    def __init__(self) -> None:
        self.documents: dict[str, dict[str, Document]] = {"user": {}, "product": {}, "store": {}}
        self._version: str | None = None

    def publish(self, version: str, sources: Iterable[tuple[str, Iterable[tuple[str, Document]]]]) -> dict[str, int]:
        for kind, documents in sources:
            self.documents[kind].update(documents)
        self._version = version
        return {kind: len(documents) for kind, documents in self.documents.items()}

    def user(self, user_id: str) -> Document | None:
        return self.documents["user"].get(user_id)

    def product(self, product_id: str) -> Document | None:
        return self.documents["product"].get(product_id)

    def store(self, key: str) -> Document | None:
        return self.documents["store"].get(key)

    def version(self) -> str | None:
        return self._version

    def built_at(self) -> datetime | None:
        return NOW if self._version is not None else None

    def discard_older(self) -> int:
        return 0


def baselines(candidates: Sequence[str], popularity: Counter[str], own: Counter[str]) -> dict[str, list[str]]:
    """The candidates (in base order) re-ranked by the simple orderings."""
    base = {pid: i for i, pid in enumerate(candidates)}
    return {
        "plain": list(candidates),
        "popularity": sorted(candidates, key=lambda p: (-popularity[p], base[p])),
        "own_then_popularity": sorted(candidates, key=lambda p: (-own[p], -popularity[p], base[p])),
    }


def evaluate_split(
    histories: Histories,
    catalog: Catalog,
    rules: Rules,
    seed: int,
    test_fraction: float,
    users: int | None,
    log: Log,
    search_index: Bm25sProductSearch | None = None,
    training: TrainingParams | None = None,
) -> tuple[dict[str, dict[str, float]], int, int]:
    """One seed: (method -> summed metrics over the queries, test shoppers, queries)."""
    split = split_last_basket(histories, test_fraction, seed)
    test_users = sorted(split.test)
    if users is not None and len(test_users) > users:
        test_users = sorted(random.Random(seed).sample(test_users, users))
    if not test_users:
        raise OrderFileError("no test users (need users with at least 2 orders and test_fraction > 0)")
    engine = ProfileEngine(rules, catalog)
    profiles = MemoryProfileStore()
    tracking = TrackingService(engine, profiles)
    products = search_index or Bm25sProductSearch(catalog)
    pool = rules.ranking.candidate_pool
    started = time.perf_counter()
    artifact = build_artifact(
        f"seed-{seed}",
        split.train,
        ProfileEngine(rules, catalog),
        lambda query, own: products.search(query, SearchFilters(), pool, own),
        params=training or TrainingParams(),
        progress=log,
    )
    log(f"seed {seed}: ranking trained on the training orders in {time.perf_counter() - started:.1f} s")
    ranker = ranker_of(artifact, catalog, rules.ranking)
    service = SearchService(engine, products, profiles, clock=NOW.timestamp, ranker=lambda: ranker)
    rules_only = Ranker(ranker.table, None, artifact.version)
    cold = SearchService(engine, products, profiles, clock=NOW.timestamp, ranker=lambda: rules_only)
    timeless = SearchService(
        ProfileEngine(without_context(rules), catalog), products, profiles, clock=NOW.timestamp, ranker=lambda: ranker
    )
    popularity = Counter[str](artifact.stats.popularity)
    started = time.perf_counter()
    learnt: dict[str, dict] = {}
    for user in test_users:
        history = list(split.train[user])
        days = replay_days([*history, split.test[user]])
        events = [event for order in purchase_events(user, history, days[:-1], days[-1]) for event in order]
        tracking.track(events)
        learnt[user] = reorder_document(events)
    # What the jobs would have published for them (their reorder cycles, the category lifts by moment).
    store_context, shopper_context = context_documents(split.train, test_users, catalog, rules.context.cap)
    for user, document in shopper_context.items():
        learnt[user] |= document
    jobs = MemoryFeatureStore()
    jobs.publish("replay", [("user", learnt.items()), ("store", [("context", store_context)])])
    log(
        f"seed {seed}: context weight {store_context['weight']} tuned on the training orders: {store_context['tuning']}"
    )
    service.features = cold.features = timeless.features = lambda: jobs
    log(f"seed {seed}: tracked {len(test_users)} test shoppers' orders in {time.perf_counter() - started:.1f} s")
    totals: dict[str, dict[str, float]] = {name: defaultdict(float) for name in METHODS}
    asked = 0
    started = time.perf_counter()
    for number, user in enumerate(test_users, start=1):
        own = order_counts(split.train[user])
        context = {"local_time": local_time(split.test[user])}  # the held-out order's weekday and hour
        for query in queries(user, split.test[user], catalog):
            request = SearchRequest(query=query.text, user_id=user, limit=DEPTH, context=context)
            candidates = [catalog.products[row].id for row in service.candidates(request).rows]
            ranked = baselines(candidates, popularity, own)
            ranked["leafloaf"] = [r["product_id"] for r in service.search(request)["results"]]
            ranked["leafloaf_rules"] = [r["product_id"] for r in cold.search(request)["results"]]
            ranked["leafloaf_no_context"] = [r["product_id"] for r in timeless.search(request)["results"]]
            for name in METHODS:
                for metric, value in scores(ranked[name], query.relevant).items():
                    totals[name][metric] += value
            asked += 1
        if number % 500 == 0 or number == len(test_users):
            log(f"seed {seed}: searched for {number}/{len(test_users)} test shoppers ({asked} queries)")
    log(f"seed {seed}: {asked} queries in {time.perf_counter() - started:.1f} s")
    return totals, len(test_users), asked


def run(
    histories: Histories,
    catalog: Catalog,
    rules: Rules,
    dataset: str,
    seed: int = 0,
    seeds: int = 1,
    test_fraction: float = 0.2,
    users: int | None = None,
    log: Log = lambda message: None,
    training: TrainingParams | None = None,
) -> dict[str, Any]:
    """Evaluate every method per seed and average the per-query metrics, then over the seeds.

    Returns:
        {"dataset", "users", "test_users", "queries", "seeds", "methods": {name: {"ndcg@10", "recall@10", "mrr"}}}.
    """
    if seeds < 1:
        raise ValueError(f"seeds must be at least 1, got {seeds}")
    seed_list = [seed + i for i in range(seeds)]
    index = Bm25sProductSearch(catalog)  # the same catalog every seed: index it once
    averaged: dict[str, dict[str, float]] = {name: defaultdict(float) for name in METHODS}
    test_users = asked = 0
    for current in seed_list:
        totals, test_users, asked = evaluate_split(
            histories, catalog, rules, current, test_fraction, users, log, index, training
        )
        for name, metrics in totals.items():
            for metric, value in metrics.items():
                averaged[name][metric] += value / asked / seeds
    return {
        "dataset": dataset,
        "users": len(histories),
        "test_users": test_users,
        "queries": asked,
        "seeds": seed_list,
        "methods": {name: {m: round(v, 4) for m, v in metrics.items()} for name, metrics in averaged.items()},
    }


def load_replay(orders: str | Path | None, catalog_path: str | Path) -> tuple[str, Histories, Catalog]:
    """(dataset name, order histories, catalog) of a replay evaluation, with a progress line."""
    started = time.perf_counter()
    dataset, histories = load_histories(orders)
    catalog = Catalog(load_catalog_file(catalog_path))
    log(
        f"loaded {dataset}: {len(histories)} users, {sum(map(len, histories.values()))} orders; "
        f"{len(catalog)} products in {time.perf_counter() - started:.1f} s"
    )
    return dataset, histories, catalog


def evaluate_search(
    orders: str | Path | None,
    catalog_path: str | Path,
    rules: Rules,
    json_path: str | Path | None = None,
    seed: int = 0,
    seeds: int = 1,
    test_fraction: float = 0.2,
    users: int | None = None,
) -> dict[str, Any]:
    """Load the orders and the catalog, evaluate, write the JSON report (if asked) and print the table."""
    started = time.perf_counter()
    dataset, histories, catalog = load_replay(orders, catalog_path)
    report = run(histories, catalog, rules, dataset, seed, seeds, test_fraction, users, log)
    write_report(report, json_path, started)
    return report
