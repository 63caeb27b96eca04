"""Next-basket recommendation: metrics, frequency baselines and LeafLoaf's "my usual" recommender.

The protocol and the baselines follow Li et al., "A Next Basket Recommendation Reality Check" (ACM TOIS 2023):
Recall@K, NDCG@K (binary relevance) and PHR@K over each test user's held-out last basket, against G-TopFreq,
P-TopFreq and GP-TopFreq. Pure functions over order histories; loading files is `shared.evaluation`'s job.
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse


@dataclass(frozen=True)
class Basket:
    """One order: its distinct products and, when order timing is known, its day offset."""

    products: tuple[str, ...]
    day: float | None = None


Histories = Mapping[str, Sequence[Basket]]  # user id -> baskets, oldest first


# --- metrics -------------------------------------------------------------------------------------------------


def recall_at_k(ranked: Sequence[str], truth: Collection[str], k: int) -> float:
    """|top-K ∩ truth| / |truth| (0 for an empty truth)."""
    if not truth:
        return 0.0
    return len(set(ranked[:k]) & set(truth)) / len(truth)


def ndcg_at_k(ranked: Sequence[str], truth: Collection[str], k: int) -> float:
    """NDCG@K with binary relevance: DCG sums 1/log2(rank+1) over hits, IDCG over min(K, |truth|) ideal hits."""
    wanted = set(truth)
    if not wanted:
        return 0.0
    dcg = sum(1.0 / math.log2(rank + 1) for rank, item in enumerate(ranked[:k], start=1) if item in wanted)
    idcg = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(k, len(wanted)) + 1))
    return dcg / idcg


def phr_at_k(ranked: Sequence[str], truth: Collection[str], k: int) -> float:
    """Personal hit ratio: 1 if any of the top K is in the truth, else 0."""
    wanted = set(truth)
    return 1.0 if any(item in wanted for item in ranked[:k]) else 0.0


METRICS = {"recall": recall_at_k, "ndcg": ndcg_at_k, "phr": phr_at_k}
REPORTED = (("recall", 10), ("ndcg", 10), ("phr", 10), ("recall", 20), ("ndcg", 20))


def evaluate(
    recommendations: Mapping[str, Sequence[str]],
    truth: Mapping[str, Collection[str]],
    reported: Iterable[tuple[str, int]] = REPORTED,
) -> dict[str, float]:
    """Metrics averaged over the users in `truth` (a user without recommendations scores 0).

    Args:
        recommendations: ranked product ids per user.
        truth: the held-out basket per test user.
        reported: (metric name, K) pairs; names are keys of METRICS.

    Returns:
        {"recall@10": ..., ...} in the order of `reported`.
    """
    users = list(truth)
    out = {}
    for name, k in reported:
        metric = METRICS[name]
        total = sum(metric(recommendations.get(u, ()), truth[u], k) for u in users)
        out[f"{name}@{k}"] = total / len(users) if users else 0.0
    return out


# --- the split -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """Training histories for every user, and the held-out last basket of each test user."""

    train: dict[str, tuple[Basket, ...]]
    test: dict[str, Basket]


def split_last_basket(histories: Histories, test_fraction: float = 0.2, seed: int = 0) -> Split:
    """Hold out the last basket of a seeded random `test_fraction` of the users with at least 2 orders.

    Args:
        histories: every user's baskets, oldest first.
        test_fraction: share of the eligible users (>= 2 orders) that become test users.
        seed: seeds the choice of test users; the same seed gives the same split.

    Returns:
        A Split whose training data holds everyone's history except the test users' last baskets.
    """
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction must be within [0, 1], got {test_fraction}")
    eligible = sorted(user for user, baskets in histories.items() if len(baskets) >= 2)
    chosen = set(random.Random(seed).sample(eligible, round(test_fraction * len(eligible))))
    train = {user: tuple(baskets[:-1] if user in chosen else baskets) for user, baskets in histories.items()}
    test = {user: histories[user][-1] for user in eligible if user in chosen}
    return Split(train, test)


# --- baselines -----------------------------------------------------------------------------------------------


def global_top(train: Histories, k: int) -> list[str]:
    """G-TopFreq: the K products on most training order lines (each product once per order), ties by id."""
    counts: Counter[str] = Counter()
    for baskets in train.values():
        for basket in baskets:
            counts.update(set(basket.products))
    return [item for item, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]


def personal_top(history: Sequence[Basket], k: int) -> list[str]:
    """P-TopFreq: the user's K products in most orders; ties go to the most recent, then the smaller id."""
    orders: Counter[str] = Counter()
    last: dict[str, int] = {}
    for index, basket in enumerate(history):
        for item in set(basket.products):
            orders[item] += 1
            last[item] = index
    return sorted(orders, key=lambda item: (-orders[item], -last[item], item))[:k]


def fill(head: Sequence[str], tail: Iterable[str], k: int) -> list[str]:
    """`head`, then the items of `tail` not yet listed, up to K items."""
    out = list(head[:k])
    seen = set(out)
    for item in tail:
        if len(out) >= k:
            break
        if item not in seen:
            out.append(item)
            seen.add(item)
    return out


def g_topfreq(train: Histories, users: Iterable[str], k: int) -> dict[str, list[str]]:
    """G-TopFreq for each user: the same global list."""
    top = global_top(train, k)
    return {user: list(top) for user in users}


def p_topfreq(train: Histories, users: Iterable[str], k: int) -> dict[str, list[str]]:
    """P-TopFreq for each user (may be shorter than K)."""
    return {user: personal_top(train.get(user, ()), k) for user in users}


def gp_topfreq(train: Histories, users: Iterable[str], k: int) -> dict[str, list[str]]:
    """GP-TopFreq for each user: P-TopFreq, then G-TopFreq items not yet listed, up to K."""
    top = global_top(train, k)
    return {user: fill(personal_top(train.get(user, ()), k), top, k) for user in users}


# --- LeafLoaf: "my usual" + reorder timing + collaborative fill ----------------------------------------------


@dataclass(frozen=True)
class Params:
    """The recommender's few knobs; docs/EVALUATION.md measures what each part adds.

    Attributes:
        decay: weight of an order relative to the next more recent one in the repeat score; 1 = plain order
            counts (P-TopFreq), lower = "what I buy these days" (TIFU-KNN's within-user time decay).
        timing_weight: share of the repeat score given to the reorder-timing factor (0 = ignore timing). The
            factor is 1 when the days from the product's last purchase to the expected next order equal its
            median reorder gap and falls with their log ratio; products with no known cycle get 0.5.
    """

    decay: float = 0.9
    timing_weight: float = 0.3


@dataclass(frozen=True)
class RepeatStats:
    """What one user's history says about one product; a scheduled job can store these per (user, product)."""

    decayed: float  # sum of decay ** (orders since) over the user's orders containing it; the last order counts 1
    last_day: float | None  # day of the last order containing it (None: timing unknown)
    cycle: float | None  # median days between consecutive orders containing it (None: bought once, or untimed)


def repeat_stats(history: Sequence[Basket], decay: float) -> dict[str, RepeatStats]:
    """Per product the user bought: time-decayed order count, last purchase day and median reorder gap.

    Args:
        history: the user's baskets, oldest first.
        decay: weight of an order relative to the next more recent one.

    Returns:
        product id -> RepeatStats.
    """
    n = len(history)
    decayed: dict[str, float] = {}
    days: dict[str, list[float | None]] = {}
    for index, basket in enumerate(history):
        weight = decay ** (n - 1 - index)
        for item in set(basket.products):
            decayed[item] = decayed.get(item, 0.0) + weight
            days.setdefault(item, []).append(basket.day)
    out = {}
    for item, score in decayed.items():
        known = [d for d in days[item] if d is not None]
        timed = len(known) == len(days[item])
        gaps = [b - a for a, b in itertools.pairwise(known)]
        out[item] = RepeatStats(
            decayed=score,
            last_day=known[-1] if timed else None,
            cycle=statistics.median(gaps) if timed and gaps else None,
        )
    return out


def expected_next_day(history: Sequence[Basket]) -> float | None:
    """When the next order is expected: the last order's day plus the user's median gap between orders.

    Only the user's past is used (never the held-out order's own date), so lists can be computed ahead of time.
    """
    days = [b.day for b in history]
    known = [d for d in days if d is not None]
    if len(known) < 2 or len(known) < len(days):
        return None
    return known[-1] + statistics.median(b - a for a, b in itertools.pairwise(known))


def timing_factor(stats: RepeatStats, now: float | None) -> float:
    """How due the product is at day `now`: 1 on its median cycle, exp(-ln(ratio)²/2) off it, 0.5 if unknown."""
    if now is None or stats.cycle is None or stats.last_day is None:
        return 0.5
    elapsed = max(now - stats.last_day, 0.0) + 1.0  # +1 day keeps same-day reorders finite
    return math.exp(-0.5 * math.log(elapsed / (stats.cycle + 1.0)) ** 2)


def repeat_scores(stats: Mapping[str, RepeatStats], now: float | None, timing_weight: float) -> dict[str, float]:
    """The "my usual" score of each product the user bought: decayed frequency scaled by how due it is.

    Args:
        stats: the user's RepeatStats per product (from `repeat_stats` or a feature store).
        now: the day the basket is for (None: timing unknown, frequency alone ranks).
        timing_weight: share of the score given to the timing factor.

    Returns:
        product id -> score (higher = more likely in the next basket).
    """
    w = timing_weight
    return {item: s.decayed * ((1.0 - w) + w * timing_factor(s, now)) for item, s in stats.items()}


class Collaborative:
    """Who bought what over the training data, as a sparse matrix: item-item cosine similarities come from it.

    Built from per-user score mappings, so a scheduled job can feed it stored features instead of raw orders.
    """

    def __init__(self, profiles: Mapping[str, Mapping[str, float]]) -> None:
        self.items = sorted({item for scores in profiles.values() for item in scores})
        self.column = {item: i for i, item in enumerate(self.items)}
        bought = self.vectors(list(profiles.values()))
        bought.data[:] = 1.0
        self.by_item = _unit_rows(bought.T.tocsr()).T.tocsr()  # item columns of unit length: cosine by dot product

    def vectors(self, rows: Sequence[Mapping[str, float]]) -> sparse.csr_matrix:
        """One sparse row per mapping; products unseen in training are dropped."""
        indptr, indices, data = [0], list[int](), list[float]()
        for row in rows:
            cols = sorted((self.column[item], value) for item, value in row.items() if item in self.column)
            indices.extend(c for c, _ in cols)
            data.extend(v for _, v in cols)
            indptr.append(len(indices))
        return sparse.csr_matrix((data, indices, indptr), shape=(len(rows), len(self.items)), dtype=np.float64)

    def similar_items(self, own: sparse.csr_matrix) -> np.ndarray:
        """Per user, each product's cosine similarity to the user's products, summed with their scores as weights."""
        # (W Bᵀ) B = W (BᵀB): item-item cosine without forming the item-item matrix; dense in the middle is faster.
        shared_buyers = (self.by_item @ own.T).toarray()  # users x block
        return (self.by_item.T @ shared_buyers).T


def _top_k(values: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k largest values, largest first; ties go to the smaller position (deterministic)."""
    if k >= len(values):
        return np.argsort(-values, kind="stable")
    threshold = np.partition(values, len(values) - k)[len(values) - k]
    candidates = np.flatnonzero(values >= threshold)  # ascending positions, so the stable sort keeps ties in order
    return candidates[np.argsort(-values[candidates], kind="stable")][:k]


def _unit_rows(matrix: sparse.csr_matrix) -> sparse.csr_matrix:
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return sparse.csr_matrix(sparse.diags(1.0 / norms) @ matrix)


def usual_scores(history: Sequence[Basket], params: Params) -> dict[str, float]:
    """The user's "my usual" scores: `repeat_scores` at the user's expected next order."""
    return repeat_scores(repeat_stats(history, params.decay), expected_next_day(history), params.timing_weight)


# Order counts first (a decay of 0.999 only breaks their ties by recency, as P-TopFreq does), so on ties, or
# on data with no recency or timing structure, tuning keeps P-TopFreq's order.
CANDIDATES = tuple(Params(decay, timing) for decay in (0.999, 0.9, 0.8) for timing in (0.0, 0.3))


def tune(train: Histories, k: int = 10, candidates: Sequence[Params] = CANDIDATES, sample: int = 2_000) -> Params:
    """The knobs that best predict the training users' own last training basket from their earlier ones.

    Model selection on the training data only (the held-out baskets are never seen): for a seeded sample of the
    users with at least 3 training baskets, each candidate ranks the user's products by `usual_scores` on all but
    the last basket, and the best Recall@k wins (the first of equals). So a store whose shoppers buy by habit
    rather than by recency gets plain frequency, and one with clear cycles gets the timing factor.

    Args:
        train: training histories, oldest basket first.
        k: the list length the choice is made for.
        candidates: the knob settings to choose from.
        sample: at most this many users are scored.

    Returns:
        The best candidate (the first one when no user has 3 baskets).
    """
    eligible = sorted(user for user, history in train.items() if len(history) >= 3)
    users = random.Random(0).sample(eligible, min(sample, len(eligible)))
    if not users:
        return candidates[0]
    truth = {user: train[user][-1].products for user in users}

    def recall(params: Params) -> float:
        lists = {}
        for user in users:
            scores = usual_scores(train[user][:-1], params)
            lists[user] = sorted(scores, key=lambda item: (-scores[item], item))[:k]
        return evaluate(lists, truth, [("recall", k)])[f"recall@{k}"]

    return max(candidates, key=recall)


def recommend(
    train: Histories,
    users: Sequence[str],
    k: int,
    params: Params | None = None,
    chunk: int = 256,
) -> dict[str, list[str]]:
    """LeafLoaf's next-basket lists from training histories (the evaluation's entry point).

    Args:
        train: training histories of all users, oldest basket first.
        users: whom to recommend for.
        k: list length.
        params: the knobs (see Params); None = `tune` them on `train`.
        chunk: users scored per block of dense arrays (bounds memory).

    Returns:
        user id -> up to K product ids, best first.
    """
    params = params or tune(train, k)
    profiles = {user: usual_scores(history, params) for user, history in train.items()}
    return dict(recommend_from(profiles, users, k, global_top(train, k), chunk))


def recommend_from(
    profiles: Mapping[str, Mapping[str, float]],
    users: Sequence[str],
    k: int,
    popular: Sequence[str],
    chunk: int = 256,
) -> Iterator[tuple[str, list[str]]]:
    """Next-basket lists from every shopper's "my usual" scores (what the scheduled job streams).

    Each product a user bought scores by `usual_scores` (order frequency decayed towards recent orders, scaled by
    how due the product is on its reorder cycle at the expected next order); the user's own products head the
    list in that order, as in P-TopFreq (a user with at least K products gets only their own). Free places go to
    products similar to the user's (summed item-item cosine over who bought what), then to `popular`.

    Args:
        profiles: every training shopper's usual scores (item similarities come from who bought what).
        users: whom to recommend for.
        k: list length.
        popular: the most bought products, most first (the last fill).
        chunk: users scored per block of dense arrays (bounds memory).

    Yields:
        (user id, up to K product ids, best first), in the order of `users`.
    """
    model = Collaborative(profiles)
    for start in range(0, len(users), chunk):
        block = list(users[start : start + chunk])
        own = model.vectors([profiles.get(u, {}) for u in block])
        similar = model.similar_items(own)
        for r, user in enumerate(block):
            usual = profiles.get(user, {})
            cols = {item: model.column[item] for item in usual if item in model.column}
            ranked = sorted(cols, key=lambda item: (-usual[item], item))
            candidates = similar[r]
            candidates[list(cols.values())] = 0.0  # explore: only products new to the user
            picks = [model.items[c] for c in _top_k(candidates, k) if candidates[c] > 0]
            yield user, fill(ranked, [*picks, *popular], k)
