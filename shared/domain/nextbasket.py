"""Next-basket recommendation: metrics, frequency baselines and LeafLoaf's "my usual" recommender.

The protocol and the baselines follow Li et al., "A Next Basket Recommendation Reality Check" (ACM TOIS 2023):
Recall@K, NDCG@K (binary relevance) and PHR@K over each test user's held-out last basket, against G-TopFreq,
P-TopFreq and GP-TopFreq. Pure functions over order histories; loading files is `shared.evaluation`'s job.
"""

from __future__ import annotations

import functools
import itertools
import math
import random
import statistics
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import sparse


@dataclass(frozen=True)
class Basket:
    """One order: its distinct products and, when order timing is known, its day offset (and its
    local weekday, 0 = Sunday, and hour, when the history gives them)."""

    products: tuple[str, ...]
    day: float | None = None
    weekday: int | None = None
    hour: int | None = None


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


def order_counts(baskets: Iterable[Basket]) -> Counter[str]:
    """How many of the baskets hold each product (each product once per order)."""
    counts: Counter[str] = Counter()
    for basket in baskets:
        counts.update(set(basket.products))
    return counts


def global_top(train: Histories, k: int) -> list[str]:
    """G-TopFreq: the K products on most training order lines (each product once per order), ties by id."""
    counts = order_counts(basket for baskets in train.values() for basket in baskets)
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


# --- TIFU-KNN ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TifuParams:
    """TIFU-KNN's knobs (Hu et al., SIGIR 2020); the defaults are the paper's Instacart setting.

    Li et al.'s reality check ran the same (900 neighbours, r_b 0.9, r_g 0.7, alpha 0.9, 3 groups).

    Attributes:
        neighbours: k, how many of the nearest training shoppers are averaged.
        within_decay: r_b, the weight of a basket relative to the next more recent one.
        group_decay: r_g, the weight of a group of baskets relative to the next more recent group.
        alpha: the share of the user's own vector in the prediction; the neighbours' mean gets the rest.
        groups: how many groups the baskets are split into (the reference code's `group_size` argument).
    """

    neighbours: int = 900
    within_decay: float = 0.9
    group_decay: float = 0.7
    alpha: float = 0.9
    groups: int = 3


def basket_groups(n: int, groups: int) -> list[range]:
    """Consecutive groups of n baskets as the reference code splits them.

    The last n mod `groups` groups hold one basket more; with fewer baskets than groups, each basket is a group.
    """
    if n < groups:
        return [range(i, i + 1) for i in range(n)]
    size, extra = divmod(n, groups)
    sizes = [size + (j >= groups - extra) for j in range(groups)]
    return [range(end - length, end) for length, end in zip(sizes, itertools.accumulate(sizes), strict=True)]


def tifu_vector(history: Sequence[Basket], params: TifuParams) -> dict[str, float]:
    """The user's TIFU-KNN vector: decayed basket vectors, averaged per group, decayed per group, averaged.

    As the authors' code computes it (TIFUKNN.py, `temporal_decay_sum_history`): basket i of n weighs
    r_b^(n-1-i), counted over the whole history rather than within its group as the paper's formula writes it;
    group j weighs r_g^(groups-1-j), counted from `groups` even when there are fewer groups.

    Args:
        history: the user's baskets, oldest first.
        params: the decays and the number of groups.

    Returns:
        product id -> weight (each product counts once per basket).
    """
    n = len(history)
    spans = basket_groups(n, params.groups)
    vector: dict[str, float] = {}
    for j, span in enumerate(spans):
        group_weight = params.group_decay ** (params.groups - 1 - j) / len(span) / len(spans)
        for i in span:
            weight = group_weight * params.within_decay ** (n - 1 - i)
            for item in set(history[i].products):
                vector[item] = vector.get(item, 0.0) + weight
    return vector


def tifu_knn(
    train: Histories, users: Iterable[str], k: int, params: TifuParams | None = None, chunk: int = 256
) -> dict[str, list[str]]:
    """TIFU-KNN for each user: alpha × their vector + (1 - alpha) × the mean vector of their nearest shoppers.

    Every training shopper is a candidate neighbour, the user excepted. Products rank by that score, ties by id;
    products scoring 0 are not listed.

    Args:
        train: training histories of all users, oldest basket first.
        users: whom to recommend for.
        k: list length.
        params: the knobs (default: the paper's Instacart setting).
        chunk: users scored per block of dense arrays (bounds memory).

    Returns:
        user id -> up to K product ids, best first.
    """
    params = params or TifuParams()
    vectors = {user: tifu_vector(history, params) for user, history in train.items()}
    model = Collaborative(vectors)
    users = list(users)
    out = {}
    for start in range(0, len(users), chunk):
        block = users[start : start + chunk]
        own = model.vectors([vectors.get(user, {}) for user in block])
        mean = model.neighbour_mean(own, block, params.neighbours)
        scores = params.alpha * own.toarray() + (1.0 - params.alpha) * mean
        for r, user in enumerate(block):
            out[user] = [model.items[c] for c in _top_k(scores[r], k) if scores[r, c] > 0]
    return out


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
        neighbour_weight: weight of the user's nearest shoppers' mean usual scores, added to the user's own when
            ranking their products (TIFU-KNN's (1 - alpha) / alpha; 0 = the user's history alone).
        neighbours: how many nearest shoppers are averaged (TIFU-KNN's k; its Instacart setting).
    """

    decay: float = 0.9
    timing_weight: float = 0.3
    neighbour_weight: float = 0.5
    neighbours: int = 900


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
    """Every training shopper's product scores as a sparse matrix, for item-item similarities and nearest shoppers.

    Built from per-user score mappings, so a scheduled job can feed it stored features instead of raw orders.
    """

    def __init__(self, profiles: Mapping[str, Mapping[str, float]]) -> None:
        self.items = sorted({item for scores in profiles.values() for item in scores})
        self.column = {item: i for i, item in enumerate(self.items)}
        self.row = {user: i for i, user in enumerate(profiles)}
        self.scores = self.vectors(list(profiles.values()))

    def vectors(self, rows: Sequence[Mapping[str, float]]) -> sparse.csr_matrix:
        """One sparse row per mapping; products unseen in training are dropped."""
        return _rows(rows, self.column)

    @functools.cached_property
    def by_item(self) -> sparse.csr_matrix:
        """Who bought what, with item columns of unit length: cosine similarity by dot product."""
        bought = self.scores.copy()
        bought.data[:] = 1.0
        return _unit_rows(bought.T.tocsr()).T.tocsr()

    def similar_items(self, own: sparse.csr_matrix) -> np.ndarray:
        """Per user, each product's cosine similarity to the user's products, summed with their scores as weights."""
        # (W Bᵀ) B = W (BᵀB): item-item cosine without forming the item-item matrix; dense in the middle is faster.
        shared_buyers = (self.by_item @ own.T).toarray()  # users x block
        return (self.by_item.T @ shared_buyers).T

    @functools.cached_property
    def norms(self) -> np.ndarray:
        """Each shopper's squared vector length."""
        return _squared_norms(self.scores)

    def neighbour_mean(self, own: sparse.csr_matrix, users: Sequence[str], k: int) -> np.ndarray:
        """Per row of `own` (the scores of `users[row]`), the mean scores of the k nearest shoppers.

        Nearest by Euclidean distance between score vectors, as TIFU-KNN's reference code (scikit-learn's
        NearestNeighbors); a user is never their own neighbour (there, query users are not in the training pool).
        Ties go to the shopper listed first.
        """
        # |a - b|² = |a|² + |b|² - 2 a·b: one block of users against every shopper at once
        distances = _squared_norms(own)[:, None] + self.norms[None, :] - 2.0 * (own @ self.scores.T).toarray()
        weights = np.zeros_like(distances)
        for r, user in enumerate(users):
            if user in self.row:
                distances[r, self.row[user]] = np.inf
            count = min(k, int(np.isfinite(distances[r]).sum()))
            if count:  # else nobody else to learn from
                weights[r, _top_k(-distances[r], count)] = 1.0 / count
        return np.asarray(self.scores.T @ weights.T).T  # sparse times dense: far faster than a sparse product


def _top_k(values: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k largest values, largest first; ties go to the smaller position (deterministic)."""
    if k >= len(values):
        return np.argsort(-values, kind="stable")
    threshold = np.partition(values, len(values) - k)[len(values) - k]
    candidates = np.flatnonzero(values >= threshold)  # ascending positions, so the stable sort keeps ties in order
    return candidates[np.argsort(-values[candidates], kind="stable")][:k]


def _rows(rows: Sequence[Mapping[str, float]], column: Mapping[str, int]) -> sparse.csr_matrix:
    """One sparse row per mapping, over the products of `column` (others are dropped)."""
    indptr, indices, data = [0], list[int](), list[float]()
    for row in rows:
        cols = sorted((column[item], value) for item, value in row.items() if item in column)
        indices.extend(c for c, _ in cols)
        data.extend(v for _, v in cols)
        indptr.append(len(indices))
    return sparse.csr_matrix((data, indices, indptr), shape=(len(rows), len(column)), dtype=np.float64)


def _squared_norms(matrix: sparse.csr_matrix) -> np.ndarray:
    return np.asarray(matrix.multiply(matrix).sum(axis=1), dtype=np.float64).ravel()


def _unit_rows(matrix: sparse.csr_matrix) -> sparse.csr_matrix:
    norms = np.sqrt(_squared_norms(matrix))
    norms[norms == 0] = 1.0
    return sparse.csr_matrix(sparse.diags(1.0 / norms) @ matrix)


def usual_scores(
    history: Sequence[Basket], params: Params, stats: Mapping[str, RepeatStats] | None = None
) -> dict[str, float]:
    """The user's "my usual" scores: `repeat_scores` at the user's expected next order, per decayed order.

    Dividing by the decayed count of the user's orders makes a score about the share of orders holding the
    product, as in TIFU-KNN's vectors, so shoppers with short and long histories compare (nearest neighbours).
    `stats` are the history's `repeat_stats` at `params.decay`, when already at hand.
    """
    stats = repeat_stats(history, params.decay) if stats is None else stats
    orders = sum(params.decay**age for age in range(len(history)))
    scores = repeat_scores(stats, expected_next_day(history), params.timing_weight)
    return {item: score / orders for item, score in scores.items()}


def rank_usual(usual: Mapping[str, float], neighbours: Mapping[str, float], weight: float) -> list[str]:
    """The user's own products by usual score plus `weight` × their neighbours' mean score; ties by id."""
    score = {item: value + weight * neighbours.get(item, 0.0) for item, value in usual.items()}
    return sorted(score, key=lambda item: (-score[item], item))


# Order counts first (a decay of 0.999 only breaks their ties by recency, as P-TopFreq does) and no neighbours
# first, so on ties, or on data with no recency, timing or neighbour structure, tuning keeps P-TopFreq's order.
CANDIDATES = tuple(
    Params(decay, timing, weight)
    for decay in (0.999, 0.9, 0.8)
    for timing in (0.0, 0.3)
    for weight in (0.0, 0.1, 0.25, 0.5, 1.0)
)


def tune(
    train: Histories,
    k: int = 10,
    candidates: Sequence[Params] = CANDIDATES,
    sample: int = 2_000,
    targets: int = 3,
    chunk: int = 256,
) -> Params:
    """The knobs that best predict the training users' recent training baskets from their earlier ones.

    Model selection on the training data only (the held-out baskets are never seen): for a seeded sample of the
    users with at least 3 training baskets, each of their last `targets` baskets that has 2 or more before it is
    predicted from those, and the best mean Recall@k wins (the first of equals). A candidate ranks the user's
    products by `rank_usual`, the neighbours coming from the sampled users' whole training histories (the user
    excepted). So a store whose shoppers buy by habit rather than by recency gets plain frequency, one with clear
    cycles gets the timing factor, and one where similar shoppers tell more gets the neighbour blend.

    Args:
        train: training histories, oldest basket first.
        k: the list length the choice is made for.
        candidates: the knob settings to choose from.
        sample: at most this many users are scored.
        targets: baskets predicted per user (several: a less noisy choice than the last basket alone).
        chunk: predictions per block of dense arrays (bounds memory).

    Returns:
        The best candidate (the first one when no user has 3 baskets).
    """
    eligible = sorted(user for user, history in train.items() if len(history) >= 3)
    users = random.Random(0).sample(eligible, min(sample, len(eligible)))
    cases = [(user, n) for user in users for n in range(max(2, len(train[user]) - targets), len(train[user]))]
    if not cases:
        return candidates[0]
    truth = [train[user][n].products for user, n in cases]
    by_scores: dict[Params, list[Params]] = {}  # candidates that differ only in their neighbour weight
    for params in candidates:
        by_scores.setdefault(replace(params, neighbour_weight=0.0), []).append(params)

    @functools.lru_cache(maxsize=1)  # the stats depend on the decay alone: the timing weights share them
    def stats(decay: float) -> tuple[list[dict[str, RepeatStats]], dict[str, dict[str, RepeatStats]]]:
        before = [repeat_stats(train[user][:n], decay) for user, n in cases]
        return before, {user: repeat_stats(train[user], decay) for user in users}

    recall = {}
    for base, blends in by_scores.items():
        before, whole = stats(base.decay)
        usual = [usual_scores(train[user][:n], base, before[i]) for i, (user, n) in enumerate(cases)]
        around: list[dict[str, float]] = [{} for _ in cases]
        if any(params.neighbour_weight for params in blends):
            model = Collaborative({user: usual_scores(train[user], base, whole[user]) for user in users})
            around = _neighbour_scores(model, usual, [user for user, _ in cases], base.neighbours, chunk)
        for params in blends:
            weight = params.neighbour_weight
            total = sum(recall_at_k(rank_usual(usual[i], around[i], weight), truth[i], k) for i in range(len(cases)))
            recall[params] = total / len(cases)
    return max(candidates, key=recall.__getitem__)


def _neighbour_scores(
    model: Collaborative, usual: Sequence[Mapping[str, float]], users: Sequence[str], k: int, chunk: int
) -> list[dict[str, float]]:
    """For each usual-score mapping (of `users[i]`), its nearest shoppers' mean score of each of its products."""
    out = []
    for start in range(0, len(usual), chunk):
        block = usual[start : start + chunk]
        mean = model.neighbour_mean(model.vectors(block), users[start : start + chunk], k)
        out += [{item: mean[r, model.column[item]] for item in scores} for r, scores in enumerate(block)]
    return out


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
    return dict(recommend_from(profiles, users, k, global_top(train, k), params, chunk))


def recommend_from(
    profiles: Mapping[str, Mapping[str, float]],
    users: Sequence[str],
    k: int,
    popular: Sequence[str],
    params: Params | None = None,
    chunk: int = 256,
) -> Iterator[tuple[str, list[str]]]:
    """Next-basket lists from every shopper's "my usual" scores (what the scheduled job streams).

    Each product a user bought scores by `usual_scores` (order frequency decayed towards recent orders, scaled by
    how due the product is on its reorder cycle at the expected next order), plus `neighbour_weight` × the mean
    usual score of the user's nearest shoppers (TIFU-KNN's blend); the user's own products head the list in that
    order, as in P-TopFreq (a user with at least K products gets only their own). Free places go to products
    similar to the user's (summed item-item cosine over who bought what), then to `popular`.

    Args:
        profiles: every training shopper's usual scores (similar products and shoppers come from them).
        users: whom to recommend for.
        k: list length.
        popular: the most bought products, most first (the last fill).
        params: the knobs the profiles were made with (only the neighbour ones are read); None = Params().
        chunk: users scored per block of dense arrays (bounds memory).

    Yields:
        (user id, up to K product ids, best first), in the order of `users`.
    """
    params = params or Params()
    model = Collaborative(profiles)
    for start in range(0, len(users), chunk):
        block = list(users[start : start + chunk])
        own = model.vectors([profiles.get(u, {}) for u in block])
        similar = model.similar_items(own)
        mean = model.neighbour_mean(own, block, params.neighbours) if params.neighbour_weight else None
        for r, user in enumerate(block):
            usual = {item: score for item, score in profiles.get(user, {}).items() if item in model.column}
            around = {} if mean is None else {item: mean[r, model.column[item]] for item in usual}
            ranked = rank_usual(usual, around, params.neighbour_weight)
            candidates = similar[r]
            candidates[[model.column[item] for item in usual]] = 0.0  # explore: only products new to the user
            picks = [model.items[c] for c in _top_k(candidates, k) if candidates[c] > 0]
            yield user, fill(ranked, [*picks, *popular], k)
