"""Explanations: what moved a result, as facets, badges and a confidence.

The ranker (shared.domain.ranker) gives every shown result its contributions by feature; here they
become reasons by facet (the live lift split over the facets that make it), short badges for the
strongest ones, and a confidence. The plain order is here too, for answers without personalization.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from shared.domain.catalog import Catalog, Product
from shared.domain.profile import Affinities
from shared.domain.ranker import COLUMN, FEATURES
from shared.domain.rules import RankingRules


@dataclass(slots=True)  # not frozen: a frozen init costs three times as much, and rank explains 1,000 items
class Contribution:
    facet: str  # product, brand, category, attribute, price, history, popularity or session
    value: str  # what in the profile matched: a brand name, an attribute, ...
    affinity: float  # the shopper's affinity for it
    contribution: float  # what it added to the personal score
    dominant: str | None = None  # decay class behind the affinity (purchase, cart, click, view)


@dataclass(slots=True)  # not frozen: a frozen init of six fields costs five times as much, and rank ranks 200
class Ranked:
    product: Product
    relevance: float
    base_rank: int
    score: float
    reasons: tuple[Contribution, ...] = ()  # what moved it by at least min_reason, strongest first
    confidence: float = 0.0  # how much profile evidence stands behind its position (all it was moved by), 0..1


def plain(products: Sequence[Product], relevance: np.ndarray, limit: int) -> list[Ranked]:
    """The first `limit` candidates (products with their relevance, best first) in base order, no
    personal contribution."""
    top = relevance[0] if len(relevance) else 1.0
    return [
        Ranked(product, float(r), i, float(r / top))
        for i, (product, r) in enumerate(zip(products[:limit], relevance[:limit], strict=True))
    ]


def _price_term(preference: float | None, ratio: float | None, rules: RankingRules) -> float:
    if preference is None or ratio is None:
        return 0.0
    return rules.price_weight * math.tanh(preference) * math.tanh(ratio)


def explain(product: Product, affinities: Affinities, rules: RankingRules, catalog: Catalog) -> list[Contribution]:
    """The facets behind a product's personal score, strongest first (they sum to it): the product-by-
    product reference that the ranker's vectorised personal feature is tested against."""
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


# Reasons group the ranking features by what they speak about; relevance (the query's match) is not
# a reason. The personal feature (the live lift) is split over the facets that make it.
GROUPS = ("product", "brand", "category", "attribute", "price", "history", "popularity", "viewed", "cart")
_GROUP_OF = {
    "product": "product",
    "brand": "brand",
    "own_brand_count": "brand",
    "category": "category",
    "own_category_count": "category",
    "own_category_days": "category",
    "attribute": "attribute",
    "price_fit": "price",
    "own_count": "history",
    "own_days": "history",
    "popularity": "popularity",
    "category_share": "popularity",
    "viewed_now": "viewed",
    "in_cart": "cart",
}
_LIFT = {"product": "product", "brand": "brand", "category": "category", "attribute": "attribute", "price_fit": "price"}


def _grouping(rules: RankingRules) -> tuple[np.ndarray, np.ndarray]:
    """(features x groups) matrices: where each part goes, and each live affinity's weight in the lift."""
    parts, lift = np.zeros((len(FEATURES), len(GROUPS))), np.zeros((len(FEATURES), len(GROUPS)))
    for feature, group in _GROUP_OF.items():
        parts[COLUMN[feature], GROUPS.index(group)] = 1.0
    for feature, group in _LIFT.items():
        weight = rules.price_weight if group == "price" else rules.facet_weights[group]  # type: ignore[index]
        lift[COLUMN[feature], GROUPS.index(group)] = weight
    return parts, lift


def grouped(x: np.ndarray, parts: np.ndarray, rules: RankingRules) -> np.ndarray:
    """(results x GROUPS) contributions of results with features `x` and score parts `parts` (both
    results x FEATURES): they sum to the score minus relevance."""
    to_group, lift_weights = _grouping(rules)
    personal = x[:, COLUMN["personal"]]
    share = np.divide(parts[:, COLUMN["personal"]], personal, out=np.zeros(len(x)), where=personal != 0)
    return parts @ to_group + share[:, None] * (x @ lift_weights)


def reasons(
    product: Product, contributions: np.ndarray, affinities: Affinities | None, catalog: Catalog
) -> list[Contribution]:
    """A product's grouped contributions (a row of `grouped`) as reasons, strongest first: the
    product-by-product reference that `explained` is tested against."""
    found = [
        _reason(product, group, value, affinities, catalog)
        for group, value in zip(GROUPS, contributions.tolist(), strict=True)
        if value
    ]
    return sorted(found, key=lambda c: -abs(c.contribution))


def _reason(
    product: Product, group: str, value: float, affinities: Affinities | None, catalog: Catalog
) -> Contribution:
    """One group's nonzero contribution to a product's score as a reason."""
    if group in ("viewed", "cart"):
        return Contribution("session", group, 0.0, value, group)
    if group == "attribute":
        label = max(
            product.attributes,
            key=lambda a: abs(affinities.of(f"attribute:{a}")) if affinities else 0.0,
            default="",
        )
        key = f"attribute:{label}"
    elif group == "price":
        held = product.id in catalog.index  # else an item's own facts: priced against the catalog's medians
        ratio = catalog.price_ratio(product.id) if held else catalog.price_ratio_of(product, product.price)
        cheaper = (ratio or 0) < 0
        label, key = "cheaper" if cheaper else "pricier", ""
    elif group in ("product", "history"):
        label, key = product.name, f"product:{product.id}"
    elif group == "brand":
        label, key = product.brand or "", f"brand:{(product.brand or '').lower()}"
    else:  # category, popularity
        label, key = product.category, f"category:{product.category.lower()}"
    live = affinities.dominant.get(key) if affinities is not None else None
    dominant = "purchase" if group == "history" else live or ("purchase" if group in ("brand", "category") else None)
    return Contribution(group, label, affinities.of(key) if affinities else 0.0, value, dominant)


def explained(
    products: Sequence[Product],
    contributions: np.ndarray,
    affinities: Affinities | None,
    catalog: Catalog,
    least: float = 0.0,
) -> list[tuple[Contribution, ...]]:
    """Each product's reasons of at least `least` (from its row of `grouped`), strongest first, as
    `reasons` gives them: which groups moved each one, and in what order, found for all the rows at once."""
    order = np.argsort(-np.abs(contributions), axis=1, kind="stable")  # stable: ties in GROUPS order, as sorted
    values = np.take_along_axis(contributions, order, axis=1)
    rows, places = np.nonzero((values != 0) & (np.abs(values) >= least))
    found: list[list[Contribution]] = [[] for _ in products]
    moved = zip(rows.tolist(), order[rows, places].tolist(), values[rows, places].tolist(), strict=True)
    for row, group, value in moved:  # lists: faster than numpy reads one at a time
        found[row].append(_reason(products[row], GROUPS[group], value, affinities, catalog))
    return [tuple(f) for f in found]


def confidence(found: Sequence[Contribution], rules: RankingRules) -> float:
    """How much profile evidence stands behind a result's position, 0..1 (from all its reasons)."""
    return math.tanh(sum(abs(c.contribution) for c in found) / rules.confidence_scale)


def confidences(contributions: np.ndarray, rules: RankingRules) -> list[float]:
    """Each row's `confidence` (rows of `grouped`), bit for bit that of all the row's `reasons`."""
    sizes = -np.sort(-np.abs(contributions), axis=1)  # strongest first, the order confidence adds them in
    evidence = np.cumsum(sizes, axis=1)[:, -1]  # one by one, as sum() adds (np.sum adds pairwise)
    return [math.tanh(e / rules.confidence_scale) for e in evidence.tolist()]


def rounded(values: Sequence[float], digits: int) -> list[float]:
    """round(v, digits) of each float, bit for bit, in a few numpy passes (an answer of 200 items
    shows 800 rounded numbers, and round() takes about 0.4 µs each on the bench machine)."""
    if len(values) < 20:  # numpy's passes cost as much as round() of about 20 values (measured)
        return [round(v, digits) for v in values]
    with np.errstate(over="ignore"):  # a huge value's product overflows: round() decides it, below
        scaled = np.asarray(values, dtype=np.float64) * 10.0**digits
    out = (np.rint(scaled) / 10.0**digits).tolist()
    # Halves below 2**52 are doubles and a product rounds monotonically, so it lies on the same side of
    # every half as the exact product, or on the half itself: only there can rint round otherwise than
    # round() (which rounds the exact value). round() decides those, and huge and non-finite values.
    clear = (np.abs(np.modf(scaled)[0]) != 0.5) & (np.abs(scaled) < 2.0**52)
    for i in np.flatnonzero(~clear).tolist():
        out[i] = round(values[i], digits)
    return out


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
    """A short shopper-facing reason for one contribution ("" when none fits)."""
    if c.facet == "history":  # below the average: never bought, or bought too recently; no one wording fits
        return "You buy this" if c.contribution > 0 else ""
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


def badges(found: Sequence[Contribution], min_reason: float, most: int = 2) -> list[str]:
    """Up to `most` distinct badges for the strongest contributions (already sorted)."""
    shown: list[str] = []
    for c in found:
        if abs(c.contribution) < min_reason or len(shown) == most:
            break
        text = badge(c) if c.value else ""  # no wording for a facet the product lacks (no brand, no attributes)
        # An empty wording shows no badge; the reason stays in `reasons`.
        if text and text not in shown:
            shown.append(text)
    return shown
