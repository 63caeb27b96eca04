"""Use case: personalized product search with a time budget, failing open to plain results."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from itertools import islice

import numpy as np

from shared.domain.catalog import Catalog, Product
from shared.domain.context import ContextLift, Lifts, Moment, lift_context, lifts_of
from shared.domain.engine import ProfileEngine
from shared.domain.events import EventContext, EventType, Interaction
from shared.domain.features import ShopperFeatures, complements, learned_badges, lift_learned, reorder_cycles
from shared.domain.merchandising import Surface
from shared.domain.profile import Affinities, Profile
from shared.domain.ranker import FeatureTable, Ranker, Session
from shared.domain.ranking import Ranked, badges, confidences, explained, grouped, plain, rounded
from shared.domain.recommendations import POPULAR, Candidate, Known, RecommendationRequest, candidates
from shared.domain.search import Hits, RankRequest, SearchRequest
from shared.ports.feature_store import FeatureStore
from shared.ports.product_search import ProductSearch
from shared.ports.profile_store import ProfileStore
from shared.services.catalog import Shelf
from shared.services.privacy import UserPrivacy, ignored_signals

log = logging.getLogger(__name__)
Asked = SearchRequest | RankRequest | RecommendationRequest  # what every door is asked: a shopper, session, consent
SIMILAR_BY_CONTENT = 50  # products of the anchor's category looked at for content similarity, most ordered first


@dataclass(frozen=True)
class Pool:
    """The candidates a door hands the one ranker, in base order, and how their features are built."""

    catalog: Catalog  # the version the candidates come from, for the whole request
    products: list[Product]
    relevance: np.ndarray  # per candidate, best first, > 0 at the top
    features: Callable[[FeatureTable, np.ndarray, Affinities, Session], np.ndarray]  # (table, relevance, ...)


# (query, surface, compiled results, limit, bring(product_id) -> a compiled result) -> results
Merchandise = Callable[[str, str, list[dict], int, Callable[[str], dict | None]], list[dict]]


class SearchService:
    """Base search, then re-rank with the shopper's profile within `rules.ranking.budget_ms`."""

    def __init__(
        self,
        engine: ProfileEngine,
        products: ProductSearch,
        profiles: ProfileStore,
        clock: Callable[[], float] = time.time,
        timer: Callable[[], float] = time.perf_counter,
        publish: Callable[[list[Interaction]], None] | None = None,
        features: Callable[[], FeatureStore | None] = lambda: None,
        privacy: Callable[[str], UserPrivacy] | None = None,
        ranker: Callable[[], Ranker] | None = None,  # the served ranker: rules, or a published model
        merchandise: Merchandise | None = None,  # the store's merchandising rules, after personalization
        strength: Callable[[Surface], float] | None = None,  # the store's personalization strength per surface
        shelf: Callable[[], Shelf] | None = None,  # the catalog version served now (default: engine's, products)
    ) -> None:
        self.merchandise = merchandise
        self.strength = strength
        self.privacy = privacy  # the shopper's settings and tombstone
        self.publish = publish
        self.features = features  # what the scheduled jobs learnt, when a snapshot is published
        self.engine = engine
        self.profiles = profiles
        self.clock = clock
        self.timer = timer
        self.ranker = ranker or functools.cache(lambda: Ranker(FeatureTable(engine.catalog, engine.rules.ranking)))
        # Given `shelf`, `products` (the first version's index) is not kept: it would hold that version
        # for the life of the instance.
        self.shelf = shelf or (lambda: Shelf(self.engine.catalog, products))
        self._popular_order: tuple[np.ndarray, np.ndarray] | None = None  # (order counts, rows most ordered first)
        # (features store, its version, the store's context lifts, their tuned weight): parsed once per version
        self._context_cache: tuple[FeatureStore, str | None, Lifts, float] | None = None

    def search(self, request: SearchRequest) -> dict:
        """Ranked results with reasons, whether personalization applied (and why not), and timings."""
        search_id = uuid.uuid4().hex  # events tracked with context.search_id are attributed to this answer
        privacy = self._privacy(request)
        shelf = self.shelf()  # one catalog version from start to end
        answer = self._answer(
            request,
            privacy,
            lambda affinities: self._pool(request, affinities, shelf),
            request.limit,
            "search",
            request.query,
        )
        if self.publish is not None and request.user_id:
            event = search_event(request, [r["product_id"] for r in answer["results"]], search_id)
            if privacy is None or privacy.refuses(event) is None:  # search history may be off
                self.publish([event])
        return {"query": request.query, "search_id": search_id, **answer}

    def rank(self, request: RankRequest) -> dict:
        """The store's own results re-ordered for the shopper, every item the filters accept kept, with
        the same reasons, fail-open and budget as search: one ranker, two doors."""
        # Rules may hide or move the items given, never bring in one the store did not send.
        pool = self._items(request, self.shelf().catalog)
        answer = self._answer(request, self._privacy(request), lambda _: pool, len(request.items), "rank", "", False)
        kept = {p.id for p in pool.products}
        return answer | {"filtered_out": [item.product_id for item in request.items if item.product_id not in kept]}

    def recommend(self, request: RecommendationRequest) -> dict:
        """A surface without a query, through the same ranker and compiler as search: the surface's
        candidates (shared.domain.recommendations) in their order, re-ranked for the shopper. With
        none (no features or profile for the surface yet), the store's popular products, flagged."""
        privacy = self._privacy(request)
        catalog = self.shelf().catalog
        today = datetime.fromtimestamp(self.clock(), UTC).date()
        chosen: dict[str, Candidate] = {}
        fallback: list[str | None] = [None]
        size = max(2 * request.limit, 50)  # candidates handed to the ranker
        wants_popular = request.surface in ("for_you", "new_for_you")  # surfaces whose own list ends in popular

        def pool_of(affinities: Affinities | None) -> Pool:
            shopper, _ = self._learned(request, privacy, catalog)
            history = affinities.history if affinities is not None else {}
            known = Known(
                shopper=shopper or ShopperFeatures(),
                bought={k[8:]: v[0] for k, v in history.items() if k.startswith("product:")},
                related=self._related(request, catalog),
                trending=self._trending(request.surface),
                popular=[p.id for p in islice(self._popular(catalog), size)] if wants_popular else (),
                today=today,
            )
            found = self._accepted(candidates(request.surface, known, request.anchors), request, catalog, size)
            if all(c.fill for c in found):  # nothing of the surface's own: what the store sells most, flagged
                fallback[0] = "no_features" if shopper is None and not history else "no_candidates"
            if not found:
                popular = (Candidate(p.id, POPULAR, fill=True) for p in self._popular(catalog))
                found = self._accepted(popular, request, catalog, size, set(request.anchors))
            chosen.update((c.product_id, c) for c in found)
            products = [catalog.get(c.product_id) for c in found]
            return self._products_pool(catalog, products, self._surface_relevance(found, request.limit))  # type: ignore[arg-type]

        answer = self._answer(request, privacy, pool_of, request.limit, "recommendations", "", brings=False)
        for item in answer["results"]:
            reason = chosen[item["product_id"]].reason
            item["badges"] = [reason, *(b for b in item["badges"] if b != reason)]
        return {
            "surface": request.surface,
            "fallback": None if fallback[0] is None else {"to": "popular", "reason": fallback[0]},
            **answer,
        }

    def _surface_relevance(self, found: list[Candidate], depth: int) -> np.ndarray:
        """By position, the surface's best `depth` own candidates from 1 down to `min_relevance` (the
        ranker re-orders them for the shopper), the rest below it (kept after them in the surface's
        order, the fill last): personalization re-orders what the surface chose, as a learnt model
        re-orders the rules' best (measured: letting it pull deeper candidates up lost recall)."""
        floor = self.engine.rules.ranking.min_relevance
        own = min(sum(not c.fill for c in found) or len(found), depth)  # all fill (fail-open): re-ranked as own
        relevance = 1.0 - (1.0 - floor) * np.arange(len(found)) / max(own, 1)
        relevance[own:] = floor * 0.99 * (1.0 - np.arange(len(found) - own) / (len(found) - own + 1))
        return relevance

    def _accepted(
        self,
        found: Iterable[Candidate],
        request: RecommendationRequest,
        catalog: Catalog,
        size: int,
        excluded: Collection[str] = (),
    ) -> list[Candidate]:
        """The first `size` candidates the catalog holds and the request's filters accept (stock too)."""
        out = []
        for candidate in found:
            product = catalog.get(candidate.product_id)
            if product is not None and candidate.product_id not in excluded and request.filters.accepts(product):
                out.append(candidate)
                if len(out) >= size:
                    break
        return out

    def _related(self, request: RecommendationRequest, catalog: Catalog) -> dict[str, tuple[str, list[str]]]:
        """anchor -> (its name, related ids): bought together for goes_with; for similar, the jobs'
        item neighbours, then the products of its category sharing most of its attributes."""
        if request.surface not in ("goes_with", "similar"):
            return {}
        store = self._feature_store()
        out = {}
        for anchor in request.anchors:
            product = catalog.get(anchor)
            if product is None:
                continue
            document = (store.product(anchor) if store is not None else None) or {}
            related = list(document.get(request.surface, ()))
            if request.surface == "similar":
                related += self._similar_by_content(product, catalog)
            out[anchor] = (product.name, related)
        return out

    def _similar_by_content(self, product: Product, catalog: Catalog) -> list[str]:
        """Products of the same category, those sharing most of its attributes first, then most ordered."""
        codes = catalog.category_codes
        row = catalog.index[product.id]
        orders = self._popularity_of(catalog)
        same = np.flatnonzero(codes == codes[row])
        same = same[np.argsort(-orders[same], kind="stable")][: SIMILAR_BY_CONTENT + 1]
        mine = set(product.attributes)
        shared = [(-len(mine & set(catalog.products[r].attributes)), i, r) for i, r in enumerate(same.tolist())]
        return [catalog.products[r].id for _, _, r in sorted(shared) if r != row]

    def _trending(self, surface: str) -> list[str]:
        if surface != "trending":
            return []
        store = self._feature_store()
        document = store.store("trending") if store is not None else None
        return list((document or {}).get("products", ()))

    def _popular(self, catalog: Catalog) -> Iterator[Product]:
        """The catalog's products, most ordered first (the ranker's order counts)."""
        orders = self._popularity_of(catalog)
        cached = self._popular_order
        if cached is None or cached[0] is not orders:
            cached = self._popular_order = (orders, np.argsort(-orders, kind="stable"))
        return (catalog.products[row] for row in cached[1].tolist())

    def _popularity_of(self, catalog: Catalog) -> np.ndarray:
        """Each row's order count in `catalog` (zeros while the ranker is on another version)."""
        table = self.ranker().table
        return table.orders if table.catalog is catalog else np.zeros(len(catalog))

    def _feature_store(self) -> FeatureStore | None:
        try:
            return self.features()
        except Exception:  # fail open: learnt features only ever add to an answer
            log.exception("could not open the features snapshot")
            return None

    def _answer(
        self,
        request: Asked,
        privacy: UserPrivacy | None,
        pool_of: Callable[[Affinities | None], Pool],
        limit: int,
        surface: Surface,
        query: str,
        brings: bool = True,
    ) -> dict:
        """What both doors answer: the candidates `pool_of` gives (from the shopper's profile, or
        None) ranked for the shopper, their first `limit` compiled, the store's merchandising rules for
        `surface` and `query` applied, and why personalization was skipped. When it `brings`, a pin
        may bring in a product beyond the candidates (from the catalog)."""
        rules = self.engine.rules.ranking
        started = self.timer()
        if privacy is not None and not privacy.settings.personalization_enabled:
            request = request.model_copy(
                update={"context": request.context.model_copy(update={"personalization": False})}
            )
        affinities, skipped = self._affinities(request, privacy)
        pool = pool_of(affinities)
        searched = self.timer()
        shopper, goes_with = self._learned(request, privacy, pool.catalog)
        strength = self.strength(surface) if self.strength is not None else 1.0
        ranked, skipped, learnt, model = self._personalize(request, pool, limit, affinities, skipped, shopper, strength)
        ranked_at = self.timer()
        if skipped:
            ranked, affinities = plain(pool.products, pool.relevance, limit), None
        now = datetime.fromtimestamp(self.clock(), UTC)
        today = now.date()
        if shopper is not None:
            ranked = lift_learned(ranked, shopper, today, rules)
        moment = request.context.moment(now, self.engine.rules.context.timezone)
        ranked, in_context, context_applied = self._in_context(request, ranked, moment, shopper)
        # Suggested quantities come from the profile (or the jobs), so only a personalized answer has them.
        quantities = dict(shopper.quantities) if shopper is not None else {}
        if affinities is not None and request.user_id:
            quantities |= self._quantities(request.user_id)
        if privacy is not None and not privacy.settings.features.household_inference:
            quantities = {}
        results = self._compile(ranked, affinities, quantities, today, shopper, goes_with, in_context)
        if self.merchandise is not None:  # the store's rules, after personalization
            bring = functools.partial(self._unranked, catalog=pool.catalog, today=today) if brings else lambda _: None
            results = self.merchandise(query, surface, results, limit, bring)
        done = self.timer()
        return {
            "results": results,
            "personalization": {
                "applied": skipped is None,
                "reason": skipped,
                "budget_ms": rules.budget_ms,
                "learned": shopper is not None,
                "ranking": None if skipped else ("learnt" if learnt else "rules"),
                "model": model,
            },
            "context": {**moment.described(), "applied": context_applied},
            "timing_ms": {
                "base_search": _ms(searched - started),
                "rerank": _ms(ranked_at - searched),
                "compile": _ms(done - ranked_at),
                "total": _ms(done - started),
            },
        }

    def candidates(self, request: SearchRequest) -> Hits:
        """What the ranking orders for this request: the best matches of the query within the
        filters, and the shopper's own products that match."""
        privacy = self._privacy(request)
        return self._candidates(request, self._affinities(request, privacy)[0], self.shelf())

    def _privacy(self, request: Asked) -> UserPrivacy | None:
        return self.privacy(request.user_id) if self.privacy is not None and request.user_id else None

    def _candidates(self, request: SearchRequest, affinities: Affinities | None, shelf: Shelf) -> Hits:
        own = shelf.catalog.rows_of(affinities.bought()) if affinities is not None else []
        pool = max(self.engine.rules.ranking.candidate_pool, request.limit)
        return shelf.products.search(request.query, request.filters, pool, own)

    def _pool(self, request: SearchRequest, affinities: Affinities | None, shelf: Shelf) -> Pool:
        hits = self._candidates(request, affinities, shelf)
        candidates = [shelf.catalog.products[row] for row in hits.rows]

        def features(table: FeatureTable, relevance: np.ndarray, live: Affinities, session: Session) -> np.ndarray:
            if table.catalog is shelf.catalog:
                return table.features(hits.rows, relevance, live, session)
            # The ranker is already on the next version (a swap in progress): by the products' own facts.
            return table.features_of(candidates, relevance, live, session)

        return Pool(shelf.catalog, candidates, hits.relevance, features)

    def _items(self, request: RankRequest, catalog: Catalog) -> Pool:
        """The store's items in base order: by score when they have one (relevance = score / the best
        score), else as given (positional relevance); the catalog's row for a product it holds, else
        the item's facts. Items the request's filters refuse (out of stock, unless it asks) are left out."""
        facts = [catalog.get(item.product_id) or item.product() for item in request.items]
        kept = [i for i, product in enumerate(facts) if request.filters.accepts(product)]
        items = [request.items[i] for i in kept]
        scores = [item.score for item in items]
        best = max((s for s in scores if s is not None), default=0.0)
        if best <= 0:
            return self._products_pool(catalog, [facts[i] for i in kept])
        order = sorted(range(len(items)), key=lambda i: -(scores[i] or 0.0))  # stable: ties as given
        relevance = np.array([(scores[i] or 0.0) / best for i in order])
        return self._products_pool(catalog, [facts[kept[i]] for i in order], relevance)

    def _products_pool(self, catalog: Catalog, products: list[Product], relevance: np.ndarray | None = None) -> Pool:
        """`products` in base order (by default, relevance falling by position from 1 to
        `min_relevance`, so that every one may move), each by the catalog's row when it holds the
        product, else by the product's own facts."""
        if relevance is None:
            n = len(products)
            relevance = 1.0 - (1.0 - self.engine.rules.ranking.min_relevance) * np.arange(n) / max(n, 1)

        def features(table: FeatureTable, relevance: np.ndarray, live: Affinities, session: Session) -> np.ndarray:
            index = table.catalog.index if table.catalog is catalog else {}  # {}: the ranker is on another version
            rows = np.array([index.get(p.id, -1) for p in products], dtype=np.int64)
            known = rows >= 0
            x = table.features(rows[known], relevance[known], live, session)
            if known.all():
                return x
            out = np.empty((len(products), x.shape[1]))
            out[known] = x
            unknown = [p for p, held in zip(products, known, strict=True) if not held]
            out[~known] = table.features_of(unknown, relevance[~known], live, session)
            return out

        return Pool(catalog, products, relevance, features)

    def _affinities(self, request: Asked, privacy: UserPrivacy | None) -> tuple[Affinities | None, str | None]:
        """(the shopper's profile read now, None), or (None, why personalization is skipped)."""
        session = self._session_events(request)
        if not request.context.personalization:
            return None, "opted_out"
        if request.user_id is None and not session:
            return None, "anonymous"
        try:
            now = self.clock()
            affinities = None
            if request.user_id is not None:
                ignore = ignored_signals(privacy)
                affinities = self.profiles.read(request.user_id, lambda p: self.engine.read(p, now, session, ignore))
            if affinities is None and session:  # no stored profile yet: this session's signals alone
                affinities = self.engine.read(Profile(request.user_id or "anonymous"), now, session)
            if affinities is not None and privacy is not None and not privacy.settings.features.price_tracking:
                affinities = dataclasses.replace(affinities, price_preference=None)
        except Exception:  # fail open: a broken profile must never break search
            log.exception("personalization failed; serving plain results", extra={"user_id": request.user_id})
            return None, "error"
        if affinities is None or affinities.empty:
            return None, "no_profile"
        return affinities, None

    def _personalize(
        self,
        request: Asked,
        pool: Pool,
        limit: int,
        affinities: Affinities | None,
        skipped: str | None,
        shopper: ShopperFeatures | None = None,
        strength: float = 1.0,
    ) -> tuple[list[Ranked], str | None, bool, str | None]:
        """(ranked, None, whether a learnt model ranked, its version) when personalization applied,
        else ([], why it was skipped, False, None). `strength` scales the personal part of the score."""
        if skipped in ("opted_out", "anonymous"):
            return [], skipped, False, None
        if strength <= 0:  # the store turned personalization off on this surface
            return [], "off", False, None
        if not len(pool.products):
            return [], "no_results", False, None
        if skipped is not None or affinities is None:
            return [], skipped or "no_profile", False, None
        started = self.timer()
        try:
            ranker = self.ranker()
            relevance = pool.relevance / pool.relevance[0]
            views = frozenset(v.product_id for v in request.context.recent_views)
            cycles = reorder_cycles(shopper) if shopper is not None else {}
            session = Session(views, frozenset(request.context.cart), cycles)
            x = pool.features(ranker.table, relevance, affinities, session)
            ranking = ranker.rank(x, strength=strength)
            top = ranking.order[:limit]
            parts = ranker.contributions(x[top], ranking.scored[top], strength)
            rules = self.engine.rules.ranking
            places = top.tolist()
            products = [pool.products[i] for i in places]
            by_group = grouped(x[top], parts, rules)
            found = explained(products, by_group, affinities, pool.catalog, rules.min_reason)
            relevance, score = pool.relevance[top].tolist(), ranking.score[top].tolist()
            moves = zip(products, relevance, places, score, found, confidences(by_group, rules), strict=True)
            ranked = [Ranked(*move) for move in moves]
        except Exception:  # fail open: a broken profile or model must never break search
            log.exception("personalization failed; serving plain results", extra={"user_id": request.user_id})
            return [], "error", False, None
        if (self.timer() - started) * 1000 > self.engine.rules.ranking.budget_ms:
            return [], "over_budget", False, None
        # The version of the ranker that ranked: another may have been swapped in since.
        return ranked, None, ranking.learnt, ranker.version if ranking.learnt else None

    def _session_events(self, request: Asked) -> list[Interaction]:
        """The request's recent views as events at this instant."""
        at = datetime.fromtimestamp(self.clock(), UTC)
        return [
            Interaction(
                event_id=view.event_id or session_event_id(view.product_id),
                event_type=view.event_type,
                user_id=request.user_id or "anonymous",
                product_id=view.product_id,
                timestamp=at,
            )
            for view in request.context.recent_views
        ]

    def _learned(
        self, request: Asked, privacy: UserPrivacy | None, catalog: Catalog
    ) -> tuple[ShopperFeatures | None, dict[str, str]]:
        """The shopper's learnt features and what complements the cart and this session's views
        (None when none are published for them, personalization or purchase history is off, the
        snapshot predates their deletion, or the store fails)."""
        if request.user_id is None or not request.context.personalization:
            return None, {}
        if privacy is not None and not privacy.settings.features.purchase_history:
            return None, {}
        try:
            store = self.features()
            document = store.user(request.user_id) if store is not None else None
            if store is None or document is None or not learnt_after(store, privacy):
                return None, {}
            context = request.context
            seen = [*context.cart, *(v.product_id for v in context.recent_views)]
            products = [p for p in (catalog.get(pid) for pid in dict.fromkeys(seen)) if p is not None]
            goes_with = complements((p.name, (store.product(p.id) or {}).get("goes_with", ())) for p in products)
            return ShopperFeatures.of(document), goes_with
        except Exception:  # fail open: learnt features only ever add to an answer
            log.exception("could not read learnt features", extra={"user_id": request.user_id})
            return None, {}

    def _in_context(
        self, request: Asked, ranked: list[Ranked], moment: Moment, shopper: ShopperFeatures | None
    ) -> tuple[list[Ranked], dict[str, str], bool]:
        """(`ranked` lifted by what sells more in the shopper's moment, product id -> why, whether a
        lift moved the scores): the store's lifts for every shopper who did not opt out, and their
        own when their features are published (and allowed)."""
        if not request.context.personalization or not ranked:
            return ranked, {}, False
        rules = self.engine.rules
        store, learnt_weight = self._store_context()
        weight = learnt_weight if rules.context.weight is None else rules.context.weight
        context = ContextLift(moment, store, shopper.context if shopper is not None else {}, weight)
        lifted, reasons = lift_context(ranked, context, rules.context, rules.ranking.min_relevance)
        return lifted, reasons, weight > 0 and bool(context.store or context.shopper)

    def _store_context(self) -> tuple[Lifts, float]:
        """(the store's category lifts by moment, the weight the job tuned), read once per features version."""
        store = self._feature_store()
        if store is None:
            return {}, 0.0
        try:
            version = store.version()
            cached = self._context_cache
            if cached is None or cached[0] is not store or cached[1] != version:
                document = store.store("context") or {}
                lifts = lifts_of(document.get("lifts", ()))
                cached = self._context_cache = (store, version, lifts, float(document.get("weight", 0.0)))
            return cached[2], cached[3]
        except Exception:  # fail open: learnt features only ever add to an answer
            log.exception("could not read the store's context lifts")
            return {}, 0.0

    def _compile(
        self,
        ranked: list[Ranked],
        affinities: Affinities | None,
        quantities: dict[str, int],
        today: date,
        shopper: ShopperFeatures | None = None,
        goes_with: dict[str, str] | None = None,
        in_context: Mapping[str, str] | None = None,
    ) -> list[dict]:
        """The answer's items, in served order: the one place both doors compile what they show."""
        rules = self.engine.rules.ranking
        # The numbers shown, rounded for the whole answer at once (as round() rounds each one).
        relevance = rounded([item.relevance for item in ranked], 4)
        score = rounded([item.score for item in ranked], 4)
        confidence = rounded([item.confidence for item in ranked], 3)
        contributions = iter(rounded([c.contribution for item in ranked for c in item.reasons], 4))
        results = []
        for rank, item in enumerate(ranked):
            p = item.product
            learned = (
                learned_badges(p.id, shopper, today, goes_with or {}, rules.reorder_min_confidence)
                if shopper is not None
                else []
            )
            if in_context and p.id in in_context:
                learned.append(in_context[p.id])
            results.append(
                {
                    "product_id": p.id,
                    "name": p.name,
                    "brand": p.brand,
                    "category": p.category,
                    "department": p.department,
                    "attributes": list(p.attributes),
                    "price": p.price,
                    "size": p.size,
                    "unit": p.unit,
                    "in_stock": p.in_stock,
                    "rank": rank,
                    "position": rank,  # the place in this answer, as impressions record it
                    "base_rank": item.base_rank,
                    "moved": item.base_rank - rank,
                    "relevance": relevance[rank],
                    "score": score[rank],
                    "badges": learned + badges(item.reasons, rules.min_reason),
                    "reasons": [
                        {"facet": c.facet, "value": c.value, "contribution": next(contributions)}
                        for c in item.reasons  # at least min_reason each; their contributions in order
                    ],
                    "confidence": confidence[rank],
                    "suggested_quantity": quantities.get(p.id, 1),
                }
            )
        return results

    def _unranked(self, product_id: str, catalog: Catalog, today: date) -> dict | None:
        """A product a rule brings in, compiled as unranked; none that is out of stock."""
        product = catalog.get(product_id)
        if product is None or not product.in_stock:
            return None
        return self._compile([Ranked(product, 0.0, -1, 0.0)], None, {}, today)[0]

    def _quantities(self, user_id: str) -> dict[str, int]:
        try:
            return self.profiles.read(user_id, self.engine.preferred_quantities) or {}
        except Exception:
            log.exception("could not read preferred quantities", extra={"user_id": user_id})
            return {}


def session_event_id(product_id: str) -> str:
    """A stable id for a session view given without one; within the 128 characters ids may have."""
    name = f"session:{product_id}"
    return name if len(name) <= 128 else f"session:{hashlib.sha256(product_id.encode()).hexdigest()}"


def search_event(request: SearchRequest, shown: list[str], search_id: str | None = None) -> Interaction:
    """The search as an event for the pipeline (searches carry no profile signal); with the
    answer's search_id, the warehouse keeps what it showed as impressions."""
    context = EventContext(search_query=request.query, results_shown=shown, search_id=search_id)
    return Interaction(
        event_type=EventType.SEARCH, user_id=request.user_id, session_id=request.session_id, context=context
    )


def learnt_after(store: FeatureStore, privacy: UserPrivacy | None) -> bool:
    """Whether the snapshot may speak about the shopper: one built before their deletion request
    still holds what was erased (later ones leave out shoppers whose erasure is pending)."""
    if privacy is None or privacy.deleted_at is None:
        return True
    built = store.built_at()
    return built is not None and built > privacy.deleted_at


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)
