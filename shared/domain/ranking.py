"""Explanations: what moved a result, as facets, badges and a confidence.

The ranker (shared.domain.ranker) gives every shown result its contributions by feature; here they
become reasons by facet (the live lift split over the facets that make it), short badges for the
strongest ones, and a confidence. The plain order is here too, for answers without personalization.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from shared.domain.catalog import Catalog, Product
from shared.domain.profile import Affinities
from shared.domain.rules import RankingRules
from shared.domain.search import Hits


@dataclass(frozen=True, slots=True)
class Contribution:
    facet: str  # product, brand, category, attribute, price, history, popularity or session
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
    reasons: tuple[Contribution, ...] = ()  # what moved it, strongest first


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


# What each ranking feature speaks about, as a reason: (facet, decay class behind it); relevance is
# the query's match, not a reason. The personal feature is split by facet with `explain`.
_FEATURE_FACET = {
    "product": ("product", None),
    "brand": ("brand", None),
    "category": ("category", None),
    "attribute": ("attribute", None),
    "price_fit": ("price", None),
    "own_count": ("history", "purchase"),
    "own_days": ("history", "purchase"),
    "own_brand_count": ("brand", "purchase"),
    "own_category_count": ("category", "purchase"),
    "own_category_days": ("category", "purchase"),
    "popularity": ("popularity", None),
    "category_share": ("popularity", None),
    "viewed_now": ("session", "viewed"),
    "in_cart": ("session", "cart"),
}


def reasons(
    product: Product,
    parts: Mapping[str, float],
    affinities: Affinities | None,
    rules: RankingRules,
    catalog: Catalog,
) -> list[Contribution]:
    """A product's contributions by feature (rules and model parts summed) as reasons by facet,
    strongest first. The live lift is split over the facets that make it, in `explain`'s shares."""
    sums: dict[tuple[str, str], float] = {}
    about: dict[tuple[str, str], tuple[float, str | None]] = {}  # (facet, value) -> affinity, decay class
    lift = parts.get("personal", 0.0)
    found = explain(product, affinities, rules, catalog) if affinities is not None else []
    total = sum(c.contribution for c in found)
    for c in found:
        key = (c.facet, c.value)
        sums[key] = sums.get(key, 0.0) + (lift * c.contribution / total if total else 0.0)
        about.setdefault(key, (c.affinity, c.dominant))
    labels = {
        "product": product.name,
        "brand": product.brand or "",
        "category": product.category,
        "history": product.name,
        "popularity": product.category,
    }
    for feature, value in parts.items():
        if not value or feature not in _FEATURE_FACET:
            continue
        facet, dominant = _FEATURE_FACET[feature]
        if facet == "attribute":
            label = max(
                product.attributes,
                key=lambda a: abs(affinities.of(f"attribute:{a}")) if affinities else 0.0,
                default="",
            )
        elif facet == "price":
            label = "cheaper" if (catalog.price_ratio(product.id) or 0) < 0 else "pricier"
        else:
            label = (dominant or "") if facet == "session" else labels.get(facet, "")
        key = (facet, label)
        sums[key] = sums.get(key, 0.0) + value
        if key not in about:
            about[key] = (
                0.0,
                dominant or (affinities.dominant.get(f"{facet}:{key[1].lower()}") if affinities else None),
            )
    merged = [Contribution(f, v, about[f, v][0], c, about[f, v][1]) for (f, v), c in sums.items() if c]
    return sorted(merged, key=lambda c: -abs(c.contribution))


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
    if c.facet == "history":
        return "You buy this" if c.contribution > 0 else "Shown lower: you bought this recently"
    if c.facet == "popularity":
        return f"Popular in {c.value}" if c.contribution > 0 else f"Less often bought in {c.value}"
    if c.facet == "session":
        return (
            ("In your cart" if c.value == "cart" else "You looked at this just now")
            if c.contribution > 0
            else ("Shown lower: already in your cart" if c.value == "cart" else "Shown lower: you just looked at it")
        )
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
