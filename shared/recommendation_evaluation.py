"""Recommendations replay: the served surfaces against the next-basket baselines on real orders.

Protocol (docs/EVALUATION.md, "Recommendations"): per seed, the next-basket split holds out the last
basket of a share of the shoppers; everything else trains. What the daily jobs would publish is
computed from the training orders alone (the next-basket recommender's lists with its knobs tuned on
them, each test shopper's reorder cycles, the store's order counts), each test shopper's training
orders are tracked as purchases, and then `buy_it_again`, `for_you` and `new_for_you` are asked
through the recommendation service, as the HTTP function asks it. Recall@K, NDCG@K and PHR@K of the
held-out basket, beside G-, P- and GP-TopFreq and the next-basket recommender, on the same split.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared.adapters.product_search.bm25s import Bm25sProductSearch
from shared.adapters.profile_store.memory import MemoryProfileStore
from shared.datasets import OrderFileError
from shared.domain.catalog import Catalog
from shared.domain.engine import ProfileEngine
from shared.domain.nextbasket import (
    Histories,
    evaluate,
    g_topfreq,
    global_top,
    gp_topfreq,
    order_counts,
    p_topfreq,
    recommend_from,
    split_last_basket,
    tune,
    usual_scores,
)
from shared.domain.ranker import FeatureTable, Ranker, StoreStats
from shared.domain.ranker_training import purchase_events, replay_days
from shared.domain.recommendations import RecommendationRequest
from shared.domain.rules import Rules
from shared.evaluation import log, write_report
from shared.search_evaluation import (
    NOW,
    MemoryFeatureStore,
    context_documents,
    load_replay,
    local_time,
    reorder_document,
    without_context,
)
from shared.services.search import SearchService
from shared.services.tracking import TrackingService

K = 20  # the longest list asked for (REPORTED: Recall and NDCG at 10 and 20, PHR at 10)
SURFACES = ("buy_it_again", "for_you", "new_for_you")
TIMELESS = "_no_context"  # a surface's name + this: served without the context engine (its effect's baseline)
Log = Callable[[str], None]


def evaluate_split(
    histories: Histories, catalog: Catalog, rules: Rules, seed: int, test_fraction: float, users: int | None, log: Log
) -> tuple[dict[str, dict[str, float]], int]:
    """One seed: (method -> metrics averaged over the test shoppers, test shoppers)."""
    split = split_last_basket(histories, test_fraction, seed)
    test_users = sorted(split.test)
    if users is not None and len(test_users) > users:
        test_users = sorted(random.Random(seed).sample(test_users, users))
    if not test_users:
        raise OrderFileError("no test users (need users with at least 2 orders and test_fraction > 0)")
    k = K
    started = time.perf_counter()
    params = tune(split.train, k)  # the next_basket job tunes on its own (training) orders
    profiles = {user: usual_scores(history, params) for user, history in split.train.items()}
    lists = dict(recommend_from(profiles, test_users, k, global_top(split.train, k), params))
    log(f"seed {seed}: next-basket lists from the training orders in {time.perf_counter() - started:.1f} s")

    engine = ProfileEngine(rules, catalog)
    store = MemoryProfileStore()
    tracking = TrackingService(engine, store)
    popularity = {p: float(n) for p, n in order_counts(b for h in split.train.values() for b in h).items()}
    ranker = Ranker(FeatureTable(catalog, rules.ranking, StoreStats(popularity)))
    products = Bm25sProductSearch(catalog)
    service = SearchService(engine, products, store, clock=NOW.timestamp, ranker=lambda: ranker)
    timeless = SearchService(
        ProfileEngine(without_context(rules), catalog), products, store, clock=NOW.timestamp, ranker=lambda: ranker
    )
    documents = {}
    for user in test_users:
        history = list(split.train[user])
        days = replay_days([*history, split.test[user]])
        events = [event for order in purchase_events(user, history, days[:-1], days[-1]) for event in order]
        tracking.track(events)
        usual = [p for p in lists[user] if p in profiles[user]]
        bought = sorted({p for basket in history for p in basket.products})
        documents[user] = reorder_document(events) | {"usual": usual[:10], "next_basket": lists[user], "bought": bought}
    store_context, shopper_context = context_documents(split.train, test_users, catalog, rules.context.cap)
    for user, document in shopper_context.items():
        documents[user] |= document
    jobs = MemoryFeatureStore()
    jobs.publish("replay", [("user", documents.items()), ("store", [("context", store_context)])])
    log(
        f"seed {seed}: context weight {store_context['weight']} tuned on the training orders: {store_context['tuning']}"
    )
    service.features = timeless.features = lambda: jobs

    served: dict[str, dict[str, list[str]]] = {s + t: {} for s in SURFACES for t in ("", TIMELESS)}
    started = time.perf_counter()
    for user in test_users:
        context = {"local_time": local_time(split.test[user])}  # the held-out order's weekday and hour
        for surface in SURFACES:
            request = RecommendationRequest(surface=surface, user_id=user, limit=k, context=context)
            served[surface][user] = [r["product_id"] for r in service.recommend(request)["results"]]
            served[surface + TIMELESS][user] = [r["product_id"] for r in timeless.recommend(request)["results"]]
    log(
        f"seed {seed}: {len(SURFACES)} surfaces for {len(test_users)} shoppers in {time.perf_counter() - started:.1f} s"
    )

    methods: dict[str, dict[str, list[str]]] = {
        **served,
        "next_basket": lists,
        "g_topfreq": g_topfreq(split.train, test_users, k),
        "p_topfreq": p_topfreq(split.train, test_users, k),
        "gp_topfreq": gp_topfreq(split.train, test_users, k),
        "g_topfreq_unbought": unbought_topfreq(split.train, test_users, k),
    }
    truth = {user: split.test[user].products for user in test_users}
    return {name: evaluate(ranked, truth) for name, ranked in methods.items()}, len(test_users)


def unbought_topfreq(train: Histories, users: list[str], k: int) -> dict[str, list[str]]:
    """G-TopFreq without the shopper's own products: the baseline of a "new for you" list."""
    popular = global_top(train, k + max((len(order_counts(train[u])) for u in users), default=0))
    return {u: [p for p in popular if p not in order_counts(train[u])][:k] for u in users}


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
) -> dict[str, Any]:
    """Every method per seed, averaged over the seeds."""
    if seeds < 1:
        raise ValueError(f"seeds must be at least 1, got {seeds}")
    seed_list = [seed + i for i in range(seeds)]
    averaged: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    test_users = 0
    for current in seed_list:
        metrics, test_users = evaluate_split(histories, catalog, rules, current, test_fraction, users, log)
        for name, values in metrics.items():
            for metric, value in values.items():
                averaged[name][metric] += value / seeds
    return {
        "dataset": dataset,
        "users": len(histories),
        "test_users": test_users,
        "seeds": seed_list,
        "methods": {name: {m: round(v, 4) for m, v in values.items()} for name, values in averaged.items()},
    }


def evaluate_recommendations(
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
