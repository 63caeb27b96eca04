"""Training the ranker on purchase replays, and the guard that decides whether a model is served.

A replay walks a shopper's orders through the profile engine, as tracking would. Before each of
their last few orders, every category of that order is searched by its name, as in the search
replay evaluation; the products of that category in the order are relevant. The model learns a
LambdaRank correction on top of the rules score (the rules score is its starting point). A replay
reads the store's popularity cross-fitted (counted over the other half of the shoppers, scaled to
the store), so it never holds the shopper's own orders, the predicted one included. Shoppers are
split once more: the model is fitted on some and guarded on the rest.
"""

from __future__ import annotations

import logging
import random
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from shared.domain.catalog import Catalog
from shared.domain.engine import ProfileEngine
from shared.domain.events import EventType, Interaction
from shared.domain.memory import cycle_of, distinct_days
from shared.domain.nextbasket import Basket, Histories, ndcg_at_k, order_counts
from shared.domain.profile import Profile
from shared.domain.ranker import (
    COLUMN,
    FEATURES,
    FeatureTable,
    LearntModel,
    Ranker,
    RankerArtifact,
    Session,
    StoreStats,
    rules_parts,
)
from shared.domain.rules import RankingRules
from shared.domain.search import Hits

log = logging.getLogger(__name__)
REPLAY_END = datetime(2026, 1, 5, 12, tzinfo=UTC)  # every replayed history is shifted to end here
Search = Callable[[str, Sequence[int]], Hits]  # (query, own product rows) -> candidates
CLICKED, ADDED, PURCHASED = 1.0, 2.0, 3.0  # graded relevance: a replayed order's products are purchases


@dataclass(frozen=True)
class LoggedSearch:
    """A search answer the shopper saw (warehouse impressions), and what they did with each result."""

    user: str
    at: datetime
    query: str
    shown: tuple[tuple[str, float], ...]  # (product id, CLICKED / ADDED / PURCHASED or 0), in answer order


@dataclass(frozen=True)
class TrainingParams:
    targets: int = 3  # replayed orders per training shopper (their last ones)
    negatives: int = 40  # best-scored non-relevant candidates kept per query, besides own products
    random_negatives: int = 10
    validation_share: float = 0.2  # shoppers held out to guard the model
    max_users: int = 2_000  # shoppers replayed at most (bounds time and memory)
    rounds: int = 50  # as good as 100 on the search replay (docs/EVALUATION.md), half the time to score and explain
    params: Mapping[str, object] = field(
        default_factory=lambda: {
            "objective": "lambdarank",
            # Small trees: scoring 500 candidates and explaining 20 take about 0.8 ms.
            "learning_rate": 0.1,
            "num_leaves": 8,
            "max_depth": 3,
            "min_data_in_leaf": 50,
            "feature_fraction": 0.9,
            "lambdarank_truncation_level": 20,
            "deterministic": True,
            "num_threads": 2,
            "seed": 7,
            "verbose": -1,
        }
    )


@dataclass
class Examples:
    """Replayed queries: feature rows, graded labels, query sizes, and the rules score per row."""

    x: list[np.ndarray] = field(default_factory=list)
    y: list[np.ndarray] = field(default_factory=list)
    groups: list[int] = field(default_factory=list)

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x.append(x)
        self.y.append(y)
        self.groups.append(len(y))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.x:
            return np.zeros((0, len(FEATURES))), np.zeros(0)
        return np.vstack(self.x), np.concatenate(self.y)


def replay_days(baskets: Sequence[Basket]) -> list[float]:
    """Each basket's day: as given, else one week per order."""
    return [b.day if b.day is not None else 7.0 * i for i, b in enumerate(baskets)]


def purchase_events(
    user: str, baskets: Sequence[Basket], days: Sequence[float], end_day: float
) -> list[list[Interaction]]:
    """Each basket as purchase events, shifted so that `end_day` falls on REPLAY_END."""
    return [
        [
            Interaction(
                event_id=f"replay:{i}:{product}"[:128],
                event_type=EventType.PURCHASE,
                user_id=user,
                product_id=product,
                timestamp=REPLAY_END - timedelta(days=end_day - day),
            )
            for product in basket.products
        ]
        for i, (basket, day) in enumerate(zip(baskets, days, strict=True))
    ]


def category_queries(basket: Basket, catalog: Catalog) -> dict[str, set[str]]:
    """The basket's categories (by name) and its products in each."""
    found: dict[str, set[str]] = defaultdict(set)
    for product_id in basket.products:
        product = catalog.get(product_id)
        if product is not None:
            found[product.category].add(product_id)
    return dict(sorted(found.items()))


class PurchaseDays:
    """Each product's purchases so far, for its reorder cycle as the jobs compute it then: graph
    memory's `distinct_days` and `cycle_of`, which equal `reorder_predictions` on real shoppers
    (tests/contract/test_jobs.py)."""

    def __init__(self) -> None:
        self.purchases: dict[str, list[tuple[datetime, int, str]]] = defaultdict(list)

    def add(self, event: Interaction) -> None:
        if event.event_type is EventType.PURCHASE and event.product_id:
            self.purchases[event.product_id].append((event.timestamp, event.quantity, event.event_id))

    def last(self, product_id: str) -> datetime:
        return max(at for at, _, _ in self.purchases[product_id])

    def cycles(self) -> dict[str, tuple[float, float]]:
        found = ((product, cycle_of(distinct_days(bought))) for product, bought in self.purchases.items())
        return {product: cycle for product, cycle in found if cycle is not None}


def replay_user(
    user: str,
    baskets: Sequence[Basket],
    engine: ProfileEngine,
    table: FeatureTable,
    search: Search,
    targets: int,
    keep: Callable[[np.ndarray, np.ndarray], np.ndarray] | None,
    into: Examples,
) -> None:
    """Replay one shopper's orders, adding a query per category of each of their last `targets` orders."""
    days = replay_days(baskets)
    events = purchase_events(user, baskets, days, days[-1])
    profile, bought = Profile(user), PurchaseDays()
    first_target = max(1, len(baskets) - targets)
    for k, basket in enumerate(baskets):
        if k >= first_target:
            now = (REPLAY_END - timedelta(days=days[-1] - days[k])).timestamp()
            affinities = engine.read(profile, now)
            session = Session(cycles=bought.cycles())
            own = table.catalog.rows_of(affinities.bought())
            for category, relevant in category_queries(basket, table.catalog).items():
                hits = search(category, own)
                if not len(hits) or not any(table.catalog.products[r].id in relevant for r in hits.rows):
                    continue
                ids = [table.catalog.products[r].id for r in hits.rows]
                x = table.features(hits.rows, hits.relevance / hits.relevance[0], affinities, session)
                y = np.where([pid in relevant for pid in ids], PURCHASED, 0.0)
                chosen = keep(x, y) if keep is not None else np.arange(len(y))
                into.add(x[chosen], y[chosen])
        for event in events[k]:
            engine.apply(profile, event)
            bought.add(event)


def impression_examples(
    searches: Iterable[LoggedSearch],
    events: Mapping[str, Sequence[Interaction]],
    engine: ProfileEngine,
    table_of: Callable[[str], FeatureTable],
    search: Search,
    into: Examples,
) -> int:
    """Add one query per logged search with an outcome: the results shown, with the shopper's profile
    as it was when they searched (their events replayed up to then), and the store's popularity of
    `table_of(shopper)` (cross-fitted: it must not count the purchase that is the label). Returns
    the queries added."""
    added = 0
    by_user: dict[str, list[LoggedSearch]] = defaultdict(list)
    for logged in searches:
        by_user[logged.user].append(logged)
    for user, logged_searches in sorted(by_user.items()):
        table = table_of(user)
        profile, bought = Profile(user), PurchaseDays()
        history = sorted(events.get(user, ()), key=lambda e: e.timestamp)
        applied = 0
        for logged in sorted(logged_searches, key=lambda s: s.at):
            while applied < len(history) and history[applied].timestamp < logged.at:
                engine.apply(profile, history[applied])
                bought.add(history[applied])
                applied += 1
            grades = dict(logged.shown)
            rows = table.catalog.rows_of(list(grades))
            if not rows or not any(grades[table.catalog.products[r].id] for r in rows):
                continue
            hits = search(logged.query, rows)
            found = dict(zip(hits.rows.tolist(), hits.relevance.tolist(), strict=True))
            best = hits.relevance[0] if len(hits) else 1.0
            relevance = np.array([found.get(r, 0.0) / best for r in rows])
            affinities = engine.read(profile, logged.at.timestamp())
            x = table.features(np.array(rows), relevance, affinities, Session(cycles=bought.cycles()))
            into.add(x, np.array([grades[table.catalog.products[r].id] for r in rows]))
            added += 1
    return added


def subsample(
    rules: RankingRules, negatives: int, random_negatives: int, rng: random.Random
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Rows kept for training: relevant ones, the shopper's own products, the best-scored others and
    a few random others (the full pool would be mostly easy negatives)."""

    def keep(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        score = rules_parts(x, rules).sum(axis=1)
        must = (y > 0) | (x[:, COLUMN["own_count"]] > 0)
        others = np.flatnonzero(~must)
        best = others[np.argsort(-score[others], kind="stable")[:negatives]]
        rest = sorted(set(others.tolist()) - set(best.tolist()))
        sampled = np.array(rng.sample(rest, min(random_negatives, len(rest))), dtype=np.int64)
        return np.sort(np.concatenate([np.flatnonzero(must), best, sampled]))

    return keep


def cross_fitted(table: FeatureTable, histories: Histories) -> FeatureTable:
    """`table` with the popularity of `histories` scaled to the store's total orders."""
    counted = store_popularity(histories)
    total, part = sum(table.stats.popularity.values()), sum(counted.values())
    factor = total / part if part and total else 1.0
    return FeatureTable(table.catalog, table.rules, StoreStats({p: n * factor for p, n in counted.items()}))


def guard_scores(ranker: Ranker, examples: Examples) -> np.ndarray:
    """NDCG@10 of the ranker's served order on each replayed query."""
    return np.array(
        [
            ndcg_at_k([str(i) for i in ranker.rank(x).order], {str(i) for i in np.flatnonzero(y > 0)}, 10)
            for x, y in zip(examples.x, examples.y, strict=True)
        ]
    )


def guard_ndcg(ranker: Ranker, examples: Examples) -> float:
    """NDCG@10 of the ranker's served order over the replayed queries, averaged."""
    return round(float(guard_scores(ranker, examples).mean()), 4) if examples.x else 0.0


@dataclass(frozen=True)
class Trained:
    model: str | None  # LightGBM model text, None when it did not beat the serving ranking
    metrics: dict[str, float | int | str]


def train(
    histories: Histories,
    engine: ProfileEngine,
    table: FeatureTable,
    search: Search,
    serving: LearntModel | None = None,
    params: TrainingParams = TrainingParams(),
    seed: int = 0,
    progress: Callable[[str], None] = log.info,
    logged: tuple[Sequence[LoggedSearch], Mapping[str, Sequence[Interaction]]] = ((), {}),
) -> Trained:
    """Fit a LambdaRank correction on replays of some shoppers, and on the logged searches (with the
    shoppers' events) of the same shoppers, and guard it on the other shoppers' replays.

    Returns:
        The model text when it beats the serving ranking (the serving model, else the rules) on the
        held-out shoppers' replays, and the figures of that comparison.
    """
    import lightgbm  # only the daily job trains

    started = time.perf_counter()
    rng = random.Random(seed)
    users = sorted(u for u, baskets in histories.items() if len(baskets) >= 2)
    if len(users) > params.max_users:
        users = sorted(rng.sample(users, params.max_users))
    held = set(rng.sample(users, round(params.validation_share * len(users))))
    fit, guard = Examples(), Examples()
    keep = subsample(table.rules, params.negatives, params.random_negatives, rng)
    # Cross-fitted popularity: a shopper's replays see the store's popularity counted over the other
    # half of the shoppers, so it never holds their own orders (the one predicted included): a count
    # lowered by the predicted order would tell the model which product it is. It is scaled to the
    # store's total, so the values are those serving sees.
    fold = {user: i % 2 for i, user in enumerate(rng.sample(users, len(users)))}
    halves = [cross_fitted(table, {u: b for u, b in histories.items() if fold.get(u) != half}) for half in (0, 1)]
    for number, user in enumerate(users, start=1):
        if user in held:
            replay_user(user, histories[user], engine, halves[fold[user]], search, 1, None, guard)
        else:
            replay_user(user, histories[user], engine, halves[fold[user]], search, params.targets, keep, fit)
        if number % 1_000 == 0 or number == len(users):
            progress(f"ranking model: replayed {number}/{len(users)} shoppers ({len(fit.groups)} training queries)")
    searches, events = logged
    impressions = impression_examples(
        (s for s in searches if s.user not in held),
        events,
        engine,
        lambda user: halves[fold.get(user, zlib.crc32(user.encode()) % 2)],
        search,
        fit,
    )
    x, y = fit.arrays()
    metrics: dict[str, float | int | str] = {
        "impression_queries": impressions,
        "shoppers": len(users),
        "training_queries": len(fit.groups),
        "training_rows": len(y),
        "guard_queries": len(guard.groups),
        "guard_shoppers": len(held),
    }
    if len(fit.groups) < 10 or len(guard.groups) < 10:
        metrics["outcome"] = "too few replayed queries to train and guard a model"
        progress(f"ranking model: not trained: {metrics['outcome']}")
        return Trained(None, metrics)
    init = rules_parts(x, table.rules).sum(axis=1)
    data = lightgbm.Dataset(x, y, group=fit.groups, init_score=init, feature_name=list(FEATURES), free_raw_data=True)
    booster = lightgbm.train(dict(params.params), data, num_boost_round=params.rounds)
    model = LearntModel(booster.model_to_string())
    # The model must beat the serving ranking (a model, else the rules) by more than twice the standard
    # error of the per-query difference: a gain within the noise of the held-out replays is no gain.
    candidates = {"rules": guard_scores(Ranker(table), guard)}
    if serving is not None:
        candidates["serving"] = guard_scores(Ranker(table, serving), guard)
    new = guard_scores(Ranker(table, model), guard)
    for name, scores in [*candidates.items(), ("model", new)]:
        metrics[f"guard_ndcg@10_{name}"] = round(float(scores.mean()), 4)
    best = max(candidates.values(), key=lambda scores: float(scores.mean()))
    difference = new - best
    gain, error = float(difference.mean()), float(difference.std(ddof=1) / np.sqrt(len(difference)))
    metrics["guard_gain"], metrics["guard_gain_se"] = round(gain, 4), round(error, 4)
    better = gain > 2 * error
    metrics["outcome"] = (
        "published" if better else "kept the serving ranking: the new model did not beat it by 2 standard errors"
    )
    metrics["seconds"] = round(time.perf_counter() - started, 1)
    progress(f"ranking model: {metrics['outcome']} ({metrics})")
    return Trained(model.text if better else None, metrics)


def store_popularity(histories: Histories) -> dict[str, float]:
    """Orders holding each product, over every shopper."""
    counts = order_counts(basket for baskets in histories.values() for basket in baskets)
    return {product: float(n) for product, n in counts.items()}


def build_artifact(
    version: str,
    histories: Histories,
    engine: ProfileEngine,
    search: Search,
    serving: LearntModel | None = None,
    params: TrainingParams = TrainingParams(),
    progress: Callable[[str], None] = log.info,
    logged: tuple[Sequence[LoggedSearch], Mapping[str, Sequence[Interaction]]] = ((), {}),
    popularity: Mapping[str, float] | None = None,
) -> RankerArtifact:
    """What the daily job publishes: the store's popularity (orders per product; default: counted
    over `histories`) and, when it beats the serving ranking on held-out replays, a model trained on
    these histories (and logged searches)."""
    stats = StoreStats(dict(popularity) if popularity is not None else store_popularity(histories))
    table = FeatureTable(engine.catalog, engine.rules.ranking, stats)
    trained = train(histories, engine, table, search, serving, params, progress=progress, logged=logged)
    # A model that lost to the serving one is not published: the serving model stays, with new stats.
    model = trained.model or (serving.text if serving is not None else None)
    return RankerArtifact(version, stats, model, trained.metrics)
