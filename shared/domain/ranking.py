"""Personalized re-ranking and the explanations that go with it.

A candidate's final score is its normalised relevance (1.0 for the best match) plus a bounded
lift, strength * tanh(personal score). Only candidates with at least `min_relevance` of the best
relevance are re-ranked; the weaker matches stay below them in base order, so personalization
reorders good answers and never promotes a poor one. Ranking uses a lean scoring pass; the
reasons are built afterwards, for the results actually shown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from shared.domain.catalog import Catalog, Product
from shared.domain.profile import Affinities
from shared.domain.rules import RankingRules
from shared.domain.search import Hits


@dataclass(frozen=True, slots=True)
class Contribution:
    facet: str  # product, brand, category, attribute or price
    value: str  # what in the profile matched: a brand name, an attribute, ...
    affinity: float  # the shopper's affinity for it
    contribution: float  # what it added to the personal score
    dominant: str | None = None  # decay class behind the affinity (purchase, cart, click, view)


@dataclass(frozen=True, slots=True)
class Ranked:
    product: Product
    relevance: float
    base_rank: int
    score: float
    personal: float = 0.0


def plain(hits: Hits, catalog: Catalog, limit: int) -> list[Ranked]:
    """The first `limit` hits in base order, no personal contribution."""
    top = hits.relevance[0] if len(hits) else 1.0
    return [
        Ranked(catalog.products[row], float(r), i, float(r / top))
        for i, (row, r) in enumerate(zip(hits.rows[:limit], hits.relevance[:limit], strict=True))
    ]


def _price_term(preference: float | None, ratio: float | None, rules: RankingRules) -> float:
    if preference is None or ratio is None:
        return 0.0
    return rules.price_weight * math.tanh(preference) * math.tanh(ratio)


class FacetMatrix:
    """Every catalog product's weighted facets as one sparse matrix, so a profile scores hundreds
    of candidates in a single sparse product instead of a Python loop per candidate."""

    def __init__(self, catalog: Catalog, rules: RankingRules) -> None:
        self.rules = rules
        self.catalog = catalog
        self.columns: dict[str, int] = {}
        rows, cols, weights = [], [], []
        for row, product in enumerate(catalog.products):
            for facet, key in catalog.keys(product.id):
                rows.append(row)
                cols.append(self.columns.setdefault(key, len(self.columns)))
                weights.append(rules.facet_weights[facet])
        shape = (len(catalog.products), max(1, len(self.columns)))
        self.matrix = sparse.csr_matrix((weights, (rows, cols)), shape=shape, dtype=np.float64)
        ratios = [catalog.price_ratio(p.id) for p in catalog.products]
        self.price_tanh = np.tanh(np.array([0.0 if r is None else r for r in ratios], dtype=np.float64))

    def personal(self, rows: np.ndarray, affinities: Affinities) -> np.ndarray:
        """Personal scores of the products at `rows` (same sum as `explain` gives per product)."""
        vector = np.zeros(self.matrix.shape[1])
        for key, score in affinities.scores.items():
            column = self.columns.get(key)
            if column is not None:
                vector[column] = score
        scores = self.matrix[rows] @ vector
        if affinities.price_preference is not None:
            scores += self.rules.price_weight * math.tanh(affinities.price_preference) * self.price_tanh[rows]
        return scores


def rerank(hits: Hits, affinities: Affinities, matrix: FacetMatrix, limit: int) -> list[Ranked]:
    """The best `limit` of hits (sorted by relevance) re-ranked with the shopper's affinities."""
    if not len(hits):
        return []
    rules = matrix.rules
    relevance = hits.relevance / hits.relevance[0]
    personal = matrix.personal(hits.rows, affinities)
    eligible = relevance >= rules.min_relevance
    score = np.where(eligible, relevance + rules.strength * np.tanh(personal), relevance)
    base = np.arange(len(hits))
    # eligible first by score (ties keep base order), then the weaker matches in base order
    order = np.lexsort((base, np.where(eligible, -score, 0.0), ~eligible))[:limit]
    products = matrix.catalog.products
    return [
        Ranked(
            products[hits.rows[i]], float(hits.relevance[i]), int(i), float(score[i]), float(personal[i]) * eligible[i]
        )
        for i in order
    ]


def explain(product: Product, affinities: Affinities, rules: RankingRules, catalog: Catalog) -> list[Contribution]:
    """The facets behind a product's personal score, strongest first (they sum to it)."""
    labels = {"product": product.name, "brand": product.brand, "category": product.category}
    found = []
    for facet, key in catalog.keys(product.id):
        affinity = affinities.of(key)
        if affinity:
            label = labels.get(facet) or key.partition(":")[2]
            weighted = rules.facet_weights[facet] * affinity
            found.append(Contribution(facet, label, affinity, weighted, affinities.dominant.get(key)))
    ratio = catalog.price_ratio(product.id)
    price = _price_term(affinities.price_preference, ratio, rules)
    if price:
        found.append(
            Contribution("price", "cheaper" if (ratio or 0) < 0 else "pricier", affinities.price_preference or 0, price)
        )
    return sorted(found, key=lambda c: -abs(c.contribution))


def confidence(found: list[Contribution], rules: RankingRules) -> float:
    """How much profile evidence stands behind a result's position, 0..1."""
    return math.tanh(sum(abs(c.contribution) for c in found) / rules.confidence_scale)


# Badge wording by the decay class that carries most of an affinity.
_BRAND_BADGE = {
    "purchase": "Because you buy {}",
    "cart": "Because you put {} in your cart",
    "click": "Because you clicked {}",
}
_PRODUCT_BADGE = {
    "purchase": "You buy this",
    "cart": "You put this in your cart before",
    "click": "You clicked this before",
}


def badge(c: Contribution) -> str:
    """A short shopper-facing reason for one contribution."""
    if c.facet == "price":
        return "Fits your budget" if c.value == "cheaper" else "A premium pick like your usual"
    if c.contribution < 0:
        return "Shown lower: you passed on this" if c.facet == "product" else f"Shown lower: you tend to skip {c.value}"
    if c.facet == "product":
        return _PRODUCT_BADGE.get(c.dominant or "", "You looked at this before")
    if c.facet == "brand":
        return _BRAND_BADGE.get(c.dominant or "", "Because you looked at {}").format(c.value)
    if c.facet == "category":
        return f"Because you shop {c.value}"
    return f"Matches your {c.value} picks"


def badges(found: list[Contribution], min_reason: float, most: int = 2) -> list[str]:
    """Up to `most` distinct badges for the strongest contributions (already sorted)."""
    shown: list[str] = []
    for c in found:
        if abs(c.contribution) < min_reason or len(shown) == most:
            break
        text = badge(c)
        if text not in shown:
            shown.append(text)
    return shown
