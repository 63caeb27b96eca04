"""Recommendations without a query: what each surface proposes, before the one ranker orders it.

Each surface turns what is known (the jobs' features, the live profile, the store's popularity) into
an ordered list of candidates, each with the reason it was proposed. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.domain.events import Id
from shared.domain.features import REORDER, USUAL, ShopperFeatures
from shared.domain.search import SearchContext, SearchFilters

RecommendationSurface = Literal["for_you", "buy_it_again", "goes_with", "similar", "trending", "new_for_you"]

BOUGHT = "You bought this before"
LIKE_YOU = "Shoppers like you buy this"
DISCOVERY = "Something new for you"
TRENDING = "Trending in the store"
POPULAR = "Popular in the store"


class RecommendationRequest(BaseModel):
    """A surface to fill for a shopper (or an anonymous session), optionally around a product."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    surface: RecommendationSurface
    user_id: Id | None = None
    session_id: Id | None = None
    product_id: Id | None = None  # the product a product page shows (goes_with, similar)
    filters: SearchFilters = Field(default_factory=SearchFilters)
    limit: int = Field(default=20, ge=1, le=100)
    context: SearchContext = Field(default_factory=SearchContext)

    @model_validator(mode="after")
    def _anchored(self) -> RecommendationRequest:
        if self.surface == "similar" and self.product_id is None:
            raise ValueError("product_id is required for surface 'similar'")
        if self.surface == "goes_with" and self.product_id is None and not self.context.cart:
            raise ValueError("product_id or context.cart is required for surface 'goes_with'")
        return self

    @property
    def anchors(self) -> tuple[str, ...]:
        """The products the answer is about: the page's product, then the cart's."""
        return tuple(dict.fromkeys([*([self.product_id] if self.product_id else []), *self.context.cart]))


@dataclass(frozen=True, slots=True)
class Candidate:
    product_id: str
    reason: str  # why the surface proposed it, shown as the item's first badge
    fill: bool = False  # proposed only to fill the list (popular): ranked after the surface's own


@dataclass(frozen=True)
class Known:
    """What a surface may draw on for one request; empty parts are simply not there yet."""

    shopper: ShopperFeatures = field(default_factory=ShopperFeatures)  # the jobs' features (none: empty)
    bought: Mapping[str, float] = field(default_factory=dict)  # product -> the live profile's affinity
    related: Mapping[str, tuple[str, Sequence[str]]] = field(default_factory=dict)  # anchor -> (its name, ids)
    trending: Sequence[str] = ()
    popular: Sequence[str] = ()  # the store's most ordered products, most first
    today: date | None = None


def candidates(surface: RecommendationSurface, known: Known, anchors: Sequence[str] = ()) -> list[Candidate]:
    """The surface's candidates, best first, each product once; never an anchor or the cart."""
    shopper = known.shopper
    usual = set(shopper.usual)
    due = {p for p in shopper.reorder if known.today is not None and shopper.due(p, known.today, 0.0)}
    owned = set(known.bought) | shopper.bought | usual | due  # what the shopper has bought, as far as known
    own = [p for p in shopper.next_basket if p in owned]
    by_affinity = sorted(known.bought, key=lambda p: -known.bought[p])

    def mine(product_id: str) -> Candidate:
        reason = REORDER if product_id in due else USUAL if product_id in usual else BOUGHT
        return Candidate(product_id, reason)

    if surface == "buy_it_again":
        found = [mine(p) for p in [*own, *sorted(due), *by_affinity, *sorted(shopper.bought)]]
    elif surface == "for_you":
        found = [mine(p) if p in owned else Candidate(p, LIKE_YOU) for p in shopper.next_basket]
        found += [mine(p) for p in by_affinity]
        found += [Candidate(p, DISCOVERY) for p in shopper.discovery]
        found += [Candidate(p, POPULAR, fill=True) for p in known.popular]
    elif surface == "new_for_you":
        fresh = [
            *(Candidate(p, DISCOVERY) for p in shopper.discovery),
            *(Candidate(p, LIKE_YOU) for p in shopper.next_basket),
            *(Candidate(p, POPULAR) for p in known.popular),  # re-ranked for the shopper: what suits them
        ]
        found = [c for c in fresh if c.product_id not in owned]
    elif surface == "goes_with":
        found = [Candidate(p, f"Goes well with {name}") for p, name in _round_robin(known.related, anchors)]
    elif surface == "similar":
        found = [Candidate(p, f"Similar to {name}") for p, name in _round_robin(known.related, anchors)]
    else:  # trending
        found = [Candidate(p, TRENDING) for p in known.trending]
    return _first_of_each(found, set(anchors))


def _round_robin(related: Mapping[str, tuple[str, Sequence[str]]], anchors: Sequence[str]) -> Iterable[tuple[str, str]]:
    """(product, anchor's name), taking each anchor's best in turn so that one anchor does not fill the list."""
    lists = [related[a] for a in anchors if a in related]
    for depth in range(max((len(items) for _, items in lists), default=0)):
        for name, items in lists:
            if depth < len(items):
                yield items[depth], name


def _first_of_each(found: Iterable[Candidate], excluded: set[str]) -> list[Candidate]:
    seen = set(excluded)
    out = []
    for candidate in found:
        if candidate.product_id not in seen:
            seen.add(candidate.product_id)
            out.append(candidate)
    return out
