"""Use case: instant, personalized query suggestions (GET /api/suggest).

The catalog's names, brands and categories are indexed in a background thread of their own, at
most every `refresh_s` and only when asked for suggestions, on the served catalog version (so no
request waits for it, and suggestions may lag the served version by up to `refresh_s`): rebuilt at
every version swap, in the build's thread, it doubled search's p99 during swaps (measured); the store's
frequent queries come from the features snapshot (the daily `popular_queries` job) and are indexed
again when a new snapshot is served. A shopper who proves who they are sees their own past queries
(the `user_queries` job) and their own products, brands and categories (the live profile) first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np

from shared.domain.catalog import Catalog
from shared.domain.engine import ProfileEngine
from shared.domain.suggest import (
    EntryIndex,
    PrefixIndex,
    ProductIndex,
    Shopper,
    SuggestRequest,
    facet_entries,
    query_entries,
    suggest,
)
from shared.pacing import pacing
from shared.ports.feature_store import FeatureStore
from shared.ports.profile_store import ProfileStore
from shared.refresh import BackgroundRefresh
from shared.services.privacy import UserPrivacy, ignored_signals
from shared.services.search import learnt_after

log = logging.getLogger(__name__)
FACETS = ("product:", "brand:", "category:")


class SuggestService:
    def __init__(
        self,
        served: Callable[[], Catalog],  # the catalog version served now
        orders: Callable[[Catalog], np.ndarray],  # per catalog row (the ranker's order counts)
        engine: ProfileEngine,
        profiles: ProfileStore,
        features: Callable[[], FeatureStore | None] = lambda: None,
        privacy: Callable[[str], UserPrivacy] | None = None,
        min_shoppers: int = 5,
        stats: Callable[[], object] = lambda: None,  # a new object whenever the order counts change
        refresh_s: float = 30.0,
        clock: Callable[[], float] = time.time,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.orders = orders
        self.stats = stats
        self._stats = stats()
        self.engine = engine
        self.profiles = profiles
        self.features = features
        self.privacy = privacy
        self.min_shoppers = min_shoppers  # a store query is shown only when this many shoppers searched it
        self.clock = clock
        self.timer = timer
        self.served = served
        catalog = served()
        self._products = ProductIndex(catalog, orders(catalog))
        self._facets = EntryIndex(facet_entries(catalog, orders(catalog)))
        self._refresh = BackgroundRefresh(self._follow, refresh_s, name="suggest-refresh")
        self._queries: tuple[str | None, PrefixIndex] = (None, EntryIndex([]))

    def refresh(self) -> None:
        """Index the served catalog version now, in this thread, if not indexed yet."""
        self._refresh.now()

    def _follow(self) -> None:
        catalog = self.served()
        if not self._products.indexes(catalog):
            with pacing():  # the build gives way to requests being served
                self.adopt(catalog)

    def adopt(self, catalog: Catalog) -> None:
        """Index catalog version `catalog` (built on the index of the version indexed before)."""
        orders, previous = self.orders(catalog), self._products
        # Built on the index of the version before: only the products that changed are keyed again.
        self._products = ProductIndex(catalog, orders, previous=previous)
        # Brands and categories are summed again (a pass over every product) only when the store's
        # order counts changed or a changed product brings one the index lacks.
        stats = self.stats()
        fresh = np.flatnonzero(previous.rows_in(catalog) < 0).tolist()
        if stats is not self._stats or self._facets.lacks(catalog.products[row] for row in fresh):
            self._facets, self._stats = EntryIndex(facet_entries(catalog, orders)), stats

    def suggest(self, request: SuggestRequest) -> dict:
        """Completions of what was typed, the shopper's own first; `corrected` when a typo was assumed."""
        started = self.timer()
        self._refresh.due()  # a newer catalog version is indexed in the background
        shopper = self._shopper(request.user_id) if request.user_id else None
        indexes = [self._query_index(), self._facets, self._products]  # the store's queries, then its facets
        found, corrected = suggest(request.q, indexes, request.limit, shopper)
        return {
            "q": request.q,
            "suggestions": found,
            "corrected": corrected,
            "personalized": shopper is not None,
            "timing_ms": {"total": round((self.timer() - started) * 1000, 3)},
        }

    def _query_index(self) -> PrefixIndex:
        """The store's frequent queries of the served snapshot (indexed again when it changes)."""
        try:
            store = self.features()
            version = store.version() if store is not None else None
            if store is None or version == self._queries[0]:
                return self._queries[1]
            document = store.store("queries") or {}
            self._queries = (version, EntryIndex(query_entries(document.get("queries", ()), self.min_shoppers)))
        except Exception:  # fail open: the catalog's suggestions still come
            log.exception("could not read the store's queries")
        return self._queries[1]

    def _shopper(self, user_id: str) -> Shopper | None:
        """What the shopper allows suggestions to use: None when personalization is off for them."""
        privacy = self.privacy(user_id) if self.privacy is not None else None
        if privacy is not None and not privacy.settings.personalization_enabled:
            return None
        try:
            queries: list[str] = []
            store = self.features()
            searches_kept = privacy is None or privacy.settings.features.search_history
            if store is not None and searches_kept and learnt_after(store, privacy):
                queries = list((store.user(user_id) or {}).get("queries", ()))
            now, ignore = self.clock(), ignored_signals(privacy)
            affinities = self.profiles.read(user_id, lambda p: self.engine.read(p, now, [], ignore))
            keys: set[str] = set()
            if affinities is not None:
                keys = {k for k, v in affinities.scores.items() if v > 0 and k.startswith(FACETS)}
                keys |= {k for k in affinities.history if k.startswith("product:")}
            return Shopper(tuple(queries), frozenset(keys))
        except Exception:  # fail open: suggestions for anyone
            log.exception("could not read the shopper for suggestions", extra={"user_id": user_id})
            return None
