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

from shared.domain.catalog import Catalog, Product
from shared.domain.profile import Affinities
from shared.domain.rules import RankingRules
from shared.domain.search import Hit


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


def plain(hits: list[Hit]) -> list[Ranked]:
    """Base order, no personal contribution."""
    top = hits[0].relevance if hits else 1.0
    return [Ranked(h.product, h.relevance, i, h.relevance / top) for i, h in enumerate(hits)]


def _price_term(preference: float | None, ratio: float | None, rules: RankingRules) -> float:
    if preference is None or ratio is None:
        return 0.0
    return rules.price_weight * math.tanh(preference) * math.tanh(ratio)


def personal_score(product: Product, affinities: Affinities, rules: RankingRules, catalog: Catalog) -> float:
    """Sum of facet weight * affinity over the product's facets, plus the price term."""
    scores, weights = affinities.scores, rules.facet_weights
    total = 0.0
    for facet, key in catalog.keys(product.id):
        affinity = scores.get(key)
        if affinity:
            total += weights[facet] * affinity
    return total + _price_term(affinities.price_preference, catalog.price_ratio(product.id), rules)


def rerank(hits: list[Hit], affinities: Affinities, rules: RankingRules, catalog: Catalog) -> list[Ranked]:
    """Re-rank hits (sorted by relevance) with the shopper's affinities."""
    if not hits:
        return []
    top = hits[0].relevance
    eligible: list[Ranked] = []
    weaker: list[Ranked] = []
    for base_rank, hit in enumerate(hits):
        relevance = hit.relevance / top
        if relevance < rules.min_relevance:
            weaker.append(Ranked(hit.product, hit.relevance, base_rank, relevance))
            continue
        personal = personal_score(hit.product, affinities, rules, catalog)
        score = relevance + rules.strength * math.tanh(personal)
        eligible.append(Ranked(hit.product, hit.relevance, base_rank, score, personal))
    eligible.sort(key=lambda r: (-r.score, r.base_rank))
    return eligible + weaker


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
        found.append(Contribution("price", "cheaper" if (ratio or 0) < 0 else "pricier", affinities.price_preference or 0, price))
    return sorted(found, key=lambda c: -abs(c.contribution))


def confidence(found: list[Contribution], rules: RankingRules) -> float:
    """How much profile evidence stands behind a result's position, 0..1."""
    return math.tanh(sum(abs(c.contribution) for c in found) / rules.confidence_scale)


# Badge wording by the decay class that carries most of an affinity.
_BRAND_BADGE = {"purchase": "Because you buy {}", "cart": "Because you put {} in your cart", "click": "Because you clicked {}"}
_PRODUCT_BADGE = {"purchase": "You buy this", "cart": "You put this in your cart before", "click": "You clicked this before"}


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
