"""Use cases: train and publish the ranking model (a daily job), and serve the newest one.

An instance serves the rules ranking until an artifact is published. It looks for a newer version
at most every `refresh_s`, in a background thread (no request waits on the store), and swaps the
ranker in at once. It never moves back to an older version, and keeps what it serves when an
artifact is corrupt, made for other features, or too slow for the budget; /health says why.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from shared.domain.catalog import Catalog
from shared.domain.engine import ProfileEngine
from shared.domain.events import Interaction
from shared.domain.nextbasket import Histories
from shared.domain.ranker import FeatureTable, LearntModel, ModelArtifactError, Ranker, RankerArtifact, ranker_of
from shared.domain.ranker_training import LoggedSearch, TrainingParams, build_artifact
from shared.domain.rules import RankingRules
from shared.domain.search import SearchFilters
from shared.ports.product_search import ProductSearch
from shared.ports.ranking_model import ModelStore
from shared.refresh import BackgroundRefresh
from shared.services.catalog import Shelf
from shared.services.features import version_name

log = logging.getLogger(__name__)


class RankerProvider:
    """The served ranker; see the module docstring."""

    def __init__(
        self,
        store: Callable[[], ModelStore],
        catalog: Catalog,
        rules: RankingRules,
        refresh_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._store_factory = store  # opened in the background, on the first refresh
        self._store: ModelStore | None = None
        self.catalog = catalog
        self.rules = rules
        self.timer = timer
        self._ranker = Ranker(FeatureTable(catalog, rules))
        self._refresh = BackgroundRefresh(self._load, refresh_s, clock, "ranker-refresh")
        self._rejected: tuple[str, str] | None = None  # (version, digest) that failed to load: not tried again
        self._digest: str | None = None  # of the artifact served
        self._state: dict[str, Any] = {"ranking": "rules", "version": None, "reason": "no ranking model published"}

    def __call__(self) -> Ranker:
        self._refresh.due()
        return self._ranker

    @property
    def served(self) -> Ranker:
        """The ranker served now, without looking for a newer model (no thread started: safe while
        the instance is built, before a server forks its workers)."""
        return self._ranker

    def adopt(self, catalog: Catalog) -> None:
        """Serve the same model and stats on a new catalog version (its feature table is built
        here, in the caller's background thread; a model loading meanwhile finishes first)."""
        with self._refresh.lock:
            served = self._ranker
            self.catalog = catalog
            self._ranker = Ranker(served.table.for_catalog(catalog), served.model, served.version)

    def health(self) -> dict[str, Any]:
        """The ranking being served, from memory: "degraded" when the newest artifact was refused."""
        return {"status": "degraded" if "refused" in self._state else "healthy"} | self._state

    def refresh(self) -> None:
        """Load the current artifact when it is newer than the one served (tests, and the publisher)."""
        self._refresh.now()

    def _load(self) -> None:
        try:
            if self._store is None:
                self._store = self._store_factory()
            found = self._store.current()
            version = found[0] if found is not None else None
        except Exception as exc:  # any store failure: keep serving, look again at the next refresh
            log.warning("could not look for a ranking model; serving %s: %s", self._ranker.version or "the rules", exc)
            return
        if found is None or version is None:
            return
        digest = hashlib.sha256(found[1]).hexdigest()
        served = self._ranker.version
        if (version, digest) == self._rejected or (
            served is not None and (version < served or (version == served and digest == self._digest))
        ):
            return  # never an older version; the same version again only when it was re-published
        try:
            ranker = ranker_of(RankerArtifact.from_bytes(found[1]), self.catalog, self.rules)
            slow = self._scoring_ms(ranker)  # also proves the model scores and explains this ranker's rows
        except Exception as exc:  # corrupt, incompatible, or failing to score: keep what is served
            why = str(exc) if isinstance(exc, ModelArtifactError) else f"{type(exc).__name__}: {exc}"
            self._refuse(version, digest, why)
            return
        if ranker.model is not None and slow > self.rules.budget_ms:
            self._refuse(version, digest, f"the model takes {slow:.1f} ms for {self.rules.candidate_pool} candidates")
            return
        self._ranker, self._digest = ranker, digest
        self._state = {"ranking": "learnt" if ranker.model else "rules", "version": version}
        log.info("serving ranking %s (%s)", version, self._state["ranking"])

    def _refuse(self, version: str, digest: str, why: str) -> None:
        self._rejected = (version, digest)
        serving = self._ranker.version
        log.error("ranking model %s refused, serving %s: %s", version, serving or "the rules", why)
        self._state = {
            "ranking": "learnt" if self._ranker.model else "rules",
            "version": serving,
            "refused": version,
            "reason": f"model {version} refused: {why}",
        }

    def _scoring_ms(self, ranker: Ranker) -> float:
        """The median of five rankings of a full candidate pool (no profile) by this ranker, each
        explaining its first 20 results as search does (a pause of this background thread is not
        the model's time)."""
        rows = np.arange(min(self.rules.candidate_pool, len(self.catalog)))
        x = ranker.table.features(rows, np.linspace(1.0, 0.1, len(rows)), None)
        times = []
        for _ in range(5):
            started = self.timer()
            ranking = ranker.rank(x)
            shown = ranking.order[:20]
            ranker.contributions(x[shown], ranking.scored[shown])
            times.append((self.timer() - started) * 1000)
        return float(np.median(times))


class RankerTrainer:
    """The daily job's training: replays of the warehouse's orders, guarded against the serving model."""

    def __init__(
        self,
        store: ModelStore,
        engine: ProfileEngine,
        products: ProductSearch,
        params: TrainingParams | None = None,
        published: Callable[[], None] = lambda: None,
        being_erased: Callable[[], Collection[str]] = frozenset,
        shelf: Callable[[], Shelf] | None = None,  # the catalog version served now (default: engine's, products)
    ) -> None:
        # Given `shelf`, `products` (the first version's index) is not kept: it would hold that version
        # for the life of the instance.
        self.shelf = shelf or (lambda: Shelf(self.engine.catalog, products))
        self.published = published
        self.being_erased = being_erased  # shoppers whose deletion is pending: never trained on
        self.store = store
        self.engine = engine
        self.params = params or TrainingParams()

    def __call__(
        self,
        window_end: datetime,
        histories: Histories,
        logged: tuple[Sequence[LoggedSearch], Mapping[str, Sequence[Interaction]]] = ((), {}),
        popularity: Mapping[str, float] | None = None,
    ) -> dict[str, Any]:
        """Train on `histories` (and the `logged` searches with their shoppers' events), publish the
        artifact as the window's version with the store's `popularity` (orders per product; default:
        counted over `histories`), and return its metrics."""
        pool = self.engine.rules.ranking.candidate_pool
        shelf = self.shelf()  # one catalog version for the whole replay
        erased = set(self.being_erased())
        if erased:
            histories = {user: baskets for user, baskets in histories.items() if user not in erased}
            searches, events = logged
            logged = (
                [s for s in searches if s.user not in erased],
                {u: e for u, e in events.items() if u not in erased},
            )
        artifact = build_artifact(
            version_name(window_end),
            histories,
            ProfileEngine(self.engine.rules, shelf.catalog),  # a replay's own facet index
            lambda query, own: shelf.products.search(query, SearchFilters(), pool, own),
            self._published_model(),
            self.params,
            logged=logged,
            popularity=popularity,
        )
        self.store.publish(artifact.version, artifact.to_bytes())
        self.published()
        return dict(artifact.metrics)

    def _published_model(self) -> LearntModel | None:
        """The model instances serve: the current artifact's, read from the store (not from this
        process's ranker, which may not have loaded it yet)."""
        found = self.store.current()
        if found is None:
            return None
        try:
            model = RankerArtifact.from_bytes(found[1]).model
            return LearntModel(model) if model is not None else None
        except ModelArtifactError as exc:  # instances refused it too: they serve an older model or the rules
            log.warning("the current ranking artifact %s does not load (%s); guarding against the rules", found[0], exc)
            return None
