"""What the scheduled jobs learnt about a shopper, as search uses it: "your usual", "time to
reorder", "goes well with", suggested quantities, and a small lift in the ranking for them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

from shared.domain.context import lifts_of
from shared.domain.ranking import Ranked
from shared.domain.rules import RankingRules

USUAL = "Your usual"
REORDER = "Time to reorder"


@dataclass(frozen=True)
class ShopperFeatures:
    usual: tuple[str, ...] = ()
    reorder: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # product -> cycle, confidence, next
    quantities: Mapping[str, int] = field(default_factory=dict)
    next_basket: tuple[str, ...] = ()  # the next-basket recommender's list: own products first, then new ones
    discovery: tuple[str, ...] = ()  # products new to the shopper that shoppers like them buy
    bought: frozenset[str] = frozenset()  # every product the shopper's orders hold
    context: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # their category lifts by moment

    @classmethod
    def of(cls, document: Mapping[str, Any] | None) -> ShopperFeatures:
        doc = document or {}
        return cls(
            usual=tuple(doc.get("usual", ())),
            reorder=dict(doc.get("reorder", {})),
            quantities={p: int(q) for p, q in doc.get("quantities", {}).items()},
            next_basket=tuple(doc.get("next_basket", ())),
            discovery=tuple(doc.get("discovery", ())),
            bought=frozenset(doc.get("bought", ())),
            context=lifts_of(doc.get("context", ())),
        )

    def due(self, product_id: str, today: date, min_confidence: float) -> bool:
        """The product's reorder cycle expects it by today, confidently enough."""
        cycle = self.reorder.get(product_id)
        if not cycle or float(cycle.get("confidence", 0)) < min_confidence:
            return False
        return date.fromisoformat(str(cycle["next_expected"])[:10]) <= today


def reorder_cycles(shopper: ShopperFeatures) -> dict[str, tuple[float, float]]:
    """product id -> (cycle days, confidence), as the ranking reads the jobs' reorder cycles."""
    return {p: (float(c.get("cycle_days", 0)), float(c.get("confidence", 0))) for p, c in shopper.reorder.items()}


def learned_badges(
    product_id: str, shopper: ShopperFeatures, today: date, goes_with: Mapping[str, str], min_confidence: float
) -> list[str]:
    """Badges from the jobs' features; `goes_with` maps a complementary product to what it goes with."""
    out = []
    if product_id in shopper.usual:
        out.append(USUAL)
    if shopper.due(product_id, today, min_confidence):
        out.append(REORDER)
    if product_id in goes_with:
        out.append(f"Goes well with {goes_with[product_id]}")
    return out


def complements(products: Iterable[tuple[str, Iterable[str]]]) -> dict[str, str]:
    """complementary product -> the (first) product it goes with, from (name, goes_with ids) pairs."""
    out: dict[str, str] = {}
    for name, others in products:
        for other in others:
            out.setdefault(other, name)
    return out


def lift_learned(ranked: list[Ranked], shopper: ShopperFeatures, today: date, rules: RankingRules) -> list[Ranked]:
    """Add `learned_boost` to the score of usual and due products among the good matches (at least
    `min_relevance` of the best, as the re-ranking) and re-sort; ties keep their order."""
    if rules.learned_boost <= 0 or not (shopper.usual or shopper.reorder) or not ranked:
        return ranked
    usual = set(shopper.usual)
    floor = rules.min_relevance * max(item.relevance for item in ranked)

    def lifted(item: Ranked) -> Ranked:
        pid = item.product.id
        hits = (pid in usual) + shopper.due(pid, today, rules.reorder_min_confidence)
        if not hits or item.relevance < floor:
            return item
        return replace(item, score=item.score + rules.learned_boost * hits)

    return sorted((lifted(item) for item in ranked), key=lambda item: -item.score)
