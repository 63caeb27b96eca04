"""Builds the instance's services once, lazily (never at import time: cold starts stay cheap)."""

from __future__ import annotations

import atexit
import gc
import logging
import math
import sys
import threading
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property

import numpy as np

from shared.adapters import import_class
from shared.adapters.archive import ARCHIVE_CLASS_FOR_TYPE
from shared.config import Settings
from shared.domain.catalog import Catalog
from shared.domain.catalog_generator import generate_catalog
from shared.domain.engine import ProfileEngine
from shared.domain.merchandising import load_merchandising
from shared.domain.rules import Rules, load_rules
from shared.observability import configure_logging
from shared.ports.archive import Archive
from shared.ports.catalog_store import CatalogStore, CatalogUnavailable
from shared.ports.event_bus import EventBus
from shared.ports.feature_store import FeatureStore
from shared.ports.graph_memory import GraphMemory
from shared.ports.identity import IdentityVerifier
from shared.ports.privacy_store import PrivacyStore
from shared.ports.product_search import ProductSearch
from shared.ports.profile_store import ProfileStore
from shared.ports.ranking_model import ModelStore
from shared.ports.warehouse import Warehouse
from shared.services.catalog import LiveCatalog
from shared.services.erasure import ErasureService
from shared.services.features import FeaturePublisher
from shared.services.health import HealthMonitor
from shared.services.jobs import JobRunner
from shared.services.memory import GraphMemoryService
from shared.services.merchandising import MerchandisingService
from shared.services.orders import OrderService
from shared.services.pipeline import Archiver, WarehouseLoader
from shared.services.preferences import PreferencesService
from shared.services.privacy import PrivacyService
from shared.services.profile_cache import CachedProfileStore
from shared.services.publisher import EventPublisher
from shared.services.ranking import RankerProvider, RankerTrainer
from shared.services.search import SearchService
from shared.services.suggest import SuggestService
from shared.services.tracking import TrackingService
from shared.telemetry import Telemetry

HEALTH_KEY = "__health__"  # a key no shopper or object has: probes read it and find nothing

# Short adapter names to class paths, imported only when chosen (unused cloud clients never load).
PROFILE_STORE_CLASS_FOR_TYPE = {
    "memory": "shared.adapters.profile_store.memory.MemoryProfileStore",
    "sqlite": "shared.adapters.profile_store.sqlite.SqliteProfileStore",
    "firestore": "shared.adapters.profile_store.firestore.FirestoreProfileStore",
}
PRODUCT_SEARCH_CLASS_FOR_TYPE = {"bm25s": "shared.adapters.product_search.bm25s.Bm25sProductSearch"}
EVENT_BUS_CLASS_FOR_TYPE = {
    "sqlite": "shared.adapters.event_bus.sqlite.SqliteEventBus",
    "pubsub": "shared.adapters.event_bus.pubsub.PubSubEventBus",
}
WAREHOUSE_CLASS_FOR_TYPE = {
    "duckdb": "shared.adapters.warehouse.duckdb.DuckDbWarehouse",
    "bigquery": "shared.adapters.warehouse.bigquery.BigQueryWarehouse",
}
GRAPH_MEMORY_CLASS_FOR_TYPE = {
    "kuzu": "shared.adapters.graph_memory.kuzu.KuzuGraphMemory",
    "falkordb": "shared.adapters.graph_memory.falkordb.FalkorGraphMemory",
    "spanner": "shared.adapters.graph_memory.spanner.SpannerGraphMemory",
}
PRIVACY_STORE_CLASS_FOR_TYPE = {
    "sqlite": "shared.adapters.privacy_store.sqlite.SqlitePrivacyStore",
    "firestore": "shared.adapters.privacy_store.firestore.FirestorePrivacyStore",
}
IDENTITY_CLASS_FOR_TYPE = {
    "hmac": "shared.adapters.identity.hmac.HmacVerifier",
    "firebase": "shared.adapters.identity.google.GoogleTokenVerifier",
}


CATALOG_STORE_CLASS_FOR_TYPE = {
    "sqlite": "shared.adapters.catalog.sqlite.SqliteCatalogStore",
    "objects": "shared.adapters.catalog.objects.ObjectCatalogStore",
}


def open_catalog_store(settings: Settings) -> CatalogStore:
    store_class: type[CatalogStore] = import_class(settings.catalog_store, CATALOG_STORE_CLASS_FOR_TYPE)
    return store_class.from_settings(settings)


def initial_catalog(settings: Settings) -> Catalog:
    """The store's newest version, read as the instance starts (before any request). An empty store
    is seeded from the catalog file when there is one, else, on local runs only, with the demo
    catalog; otherwise the instance starts with no products (/health says why). A store that is
    down gives no products now: the background refresh keeps trying."""
    try:
        store = open_catalog_store(settings)
        if store.latest() is None:
            if settings.catalog_path.exists():
                from shared.adapters.catalog.files import load_catalog_file

                store.replace(load_catalog_file(settings.catalog_path))
            elif settings.demo_catalog:
                store.replace(generate_catalog(settings.demo_catalog_size))
        found = store.load()
        store.close()
    except CatalogUnavailable:
        logging.getLogger(__name__).exception("the catalog store failed at start; serving no products until it answers")
        return Catalog([])
    return Catalog(found.products, found.version) if found is not None else Catalog([])


@dataclass
class Container:
    settings: Settings
    rules: Rules
    live: LiveCatalog
    engine: ProfileEngine
    profiles: ProfileStore
    tracking: TrackingService
    preferences: PreferencesService
    bus: EventBus
    publisher: EventPublisher
    orders: OrderService
    privacy: PrivacyService
    telemetry: Telemetry

    @property
    def catalog(self) -> Catalog:
        """The catalog version served now."""
        return self.live.catalog

    @property
    def products(self) -> ProductSearch:
        """The search index of the version served now."""
        return self.live.shelf.products

    # The event functions' backends, built on first use: an HTTP-only instance never opens them.
    @cached_property
    def warehouse(self) -> Warehouse:
        warehouse_class: type[Warehouse] = import_class(self.settings.warehouse, WAREHOUSE_CLASS_FOR_TYPE)
        return warehouse_class.from_settings(self.settings)

    @cached_property
    def archive(self) -> Archive:
        archive_class: type[Archive] = import_class(self.settings.archive, ARCHIVE_CLASS_FOR_TYPE)
        return archive_class.from_settings(self.settings)

    @cached_property
    def graph(self) -> GraphMemory:
        graph_class: type[GraphMemory] = import_class(self.settings.graph_memory, GRAPH_MEMORY_CLASS_FOR_TYPE)
        return graph_class.from_settings(self.settings)

    @cached_property
    def memory(self) -> GraphMemoryService:
        return GraphMemoryService(
            self.graph,
            lambda: self.live.catalog,
            self.rules,
            privacy=self.privacy.of,
            screen=self.privacy.without_erased,
        )

    @cached_property
    def features(self) -> FeatureStore:
        from shared.adapters.feature_store.snapshot import SnapshotFeatureStore

        return SnapshotFeatureStore(self.archive, self.settings.features_cache_path, self.settings.features_refresh_s)

    @cached_property
    def feature_publisher(self) -> FeaturePublisher:
        store = self.privacy.store
        return FeaturePublisher(self.warehouse, self.features, being_erased=lambda: _being_erased(store))

    @cached_property
    def jobs(self) -> JobRunner:
        return JobRunner(
            self.warehouse,
            after_run=self.feature_publisher,
            chunk_users=self.settings.jobs_chunk_users,
            train_ranker=self.ranker_trainer,
            context=self.rules.context,
        )

    @cached_property
    def model_store(self) -> ModelStore:
        from shared.adapters.ranking_model.archive import ArchiveModelStore

        return ArchiveModelStore(self.archive)

    @cached_property
    def rankers(self) -> RankerProvider:
        """The served ranker: the rules until the daily job publishes a model (the store is opened
        in the background on the first search)."""
        return RankerProvider(
            lambda: self.model_store, self.engine.catalog, self.rules.ranking, self.settings.features_refresh_s
        )

    @cached_property
    def ranker_trainer(self) -> RankerTrainer:
        # The publishing instance serves its new version at once.
        store = self.privacy.store
        return RankerTrainer(
            self.model_store,
            self.engine,
            self.live.shelf.products,
            published=self.rankers.refresh,
            being_erased=lambda: _being_erased(store),
            shelf=lambda: self.live.shelf,
        )

    @cached_property
    def identity(self) -> IdentityVerifier | None:
        """Who may act for a shopper; None when authentication is off (every caller trusted)."""
        if self.settings.auth == "off":
            logging.getLogger(__name__).warning("authentication is off: every caller may act for any shopper")
            return None
        verifier: type[IdentityVerifier] = import_class(self.settings.auth, IDENTITY_CLASS_FOR_TYPE)
        return verifier.from_settings(self.settings)

    @cached_property
    def health(self) -> HealthMonitor:
        """Every backend probed in the background (opening a backend this instance has not used yet)."""
        llm = self.settings.graph_llm
        return HealthMonitor(
            {
                # a real read: no shopper has this id, so it reaches the store
                "profile_store": lambda: self.profiles.read(HEALTH_KEY, len),
                "event_bus": self.bus.health,
                "warehouse": lambda: self.warehouse.query("SELECT 1"),
                "archive": lambda: self.archive.get(HEALTH_KEY),
                "graph_memory": lambda: self.graph.history(HEALTH_KEY),
                "privacy_store": lambda: self.privacy.store.settings(HEALTH_KEY),
                # Calling the LLM would cost money: configured is all that is known.
                "text_memory": (lambda: {"llm": llm}) if llm else "no LLM configured (LEAFLOAF_GRAPH_LLM)",
            },
            interval_s=self.settings.health_interval_s,
            timeout_s=self.settings.health_timeout_s,
        )

    @cached_property
    def erasure(self) -> ErasureService:
        return ErasureService(
            self.privacy.store,
            self.profiles,
            self.graph,
            self.warehouse,
            self.archiver,
            self.feature_publisher,
            self.features,
            grace=timedelta(seconds=self.settings.deletion_grace_s),
            retention_days=self.settings.retention_days,
        )

    @cached_property
    def merchandising(self) -> MerchandisingService:
        """The store's rules: the file's (read now: a bad file stops the start), until some are published."""
        initial = load_merchandising(self.settings.merchandising_rules_path)
        return MerchandisingService(lambda: self.archive, initial, self.settings.merchandising_refresh_s)

    @cached_property
    def search(self) -> SearchService:
        live = self.live
        return SearchService(
            self.engine,
            live.shelf.products,
            self.profiles,
            publish=self.publisher.publish,
            features=lambda: self.features,  # opened on the first search that needs it
            privacy=self.privacy.of,
            ranker=self.rankers,
            merchandise=self.merchandising.apply,
            strength=self.merchandising.strength_for,
            shelf=lambda: live.shelf,
        )

    @cached_property
    def suggestions(self) -> SuggestService:
        return SuggestService(
            lambda: self.live.catalog,
            self._orders,
            self.engine,
            self.profiles,
            features=lambda: self.features,
            privacy=self.privacy.of,
            min_shoppers=self.settings.suggest_min_shoppers,
            stats=lambda: self.rankers.served.table.stats,
            refresh_s=self.settings.suggest_refresh_s,
        )

    def _orders(self, catalog: Catalog) -> np.ndarray:
        """Each row's order count, from the ranker's table when it is on `catalog`."""
        table = self.rankers.served.table
        return table.orders if table.catalog is catalog else np.zeros(len(catalog))

    def __post_init__(self) -> None:
        # Built now (the ranker's feature table and the suggestions' index, no I/O), so the first
        # request does not wait for them; the suggestions then follow the served version by themselves.
        self.search  # noqa: B018
        self.suggestions  # noqa: B018
        # A new catalog version is served once the engine and the ranker have it (the ranker's table is
        # built on the previous version's, so this is a small part of the build).
        self.live.adopt = [self.engine.adopt, self.rankers.adopt]

    @cached_property
    def loader(self) -> WarehouseLoader:
        return WarehouseLoader(
            self.warehouse, lambda: self.live.catalog, self.rules, screen=self.privacy.without_erased
        )

    @cached_property
    def archiver(self) -> Archiver:
        return Archiver(
            self.archive,
            self.settings.archive_flush_events,
            self.settings.archive_flush_interval_s,
            screen=self.privacy.without_erased,
        )

    def degraded(self) -> list[str]:
        """The request path's backends failing right now, from state kept in memory (no I/O): a
        request answered meanwhile used the instance's cache, queue or spool instead."""
        failing = {
            "profile_store": not getattr(self.profiles, "healthy", True),
            "event_bus": self.publisher.health()["status"] != "healthy",
            "privacy_store": not self.privacy.healthy,
        }
        return [name for name, down in failing.items() if down]

    def close(self) -> None:
        """Stop the instance in dependency order (at exit; tests): publish what is queued, stop the
        deliveries, archive what is staged, then close the backends, whose close waits for the
        statement in progress and is final, and write the queued profiles. A backend closed while
        a delivery still ran would be reopened by it, and left unclosed at exit (DuckDB, Kuzu)."""
        self.publisher.close()
        self.bus.close()
        if "archiver" in self.__dict__:
            _archive_staged(self.archiver)
        for backend in ("warehouse", "graph"):
            if backend in self.__dict__:
                self.__dict__[backend].close()
        if isinstance(self.profiles, CachedProfileStore):
            self.profiles.close()
        self.live.close()


def _being_erased(store: PrivacyStore) -> set[str]:
    return {request.user_id for request in store.pending_deletions(limit=100_000)}


def _archive_staged(archiver: Archiver) -> None:
    """Archive what is staged (at shutdown: the next instance may be long in coming)."""
    try:
        archiver.flush(force=True)
    except Exception:
        logging.getLogger(__name__).exception("could not flush the archive at shutdown; events stay staged")


def build(settings: Settings | None = None, catalog: Catalog | None = None) -> Container:
    from shared.adapters.event_spool.sqlite import SqliteEventSpool  # the local spool of every instance

    settings = settings or Settings()
    configure_logging(settings.log_level)
    rules = load_rules(settings.rules_path)
    # A catalog given (tests, benchmarks) is served as it is: the store is not polled for newer
    # versions (a change committed through this instance is still served).
    given = catalog is not None
    catalog = catalog if catalog is not None else initial_catalog(settings)
    engine = ProfileEngine(rules, catalog, settings.dedup_window)
    store_class: type[ProfileStore] = import_class(settings.profile_store, PROFILE_STORE_CLASS_FOR_TYPE)
    profiles = store_class.from_settings(settings, engine)
    if settings.profile_store != "memory":
        profiles = CachedProfileStore(
            profiles,
            engine,
            spool=SqliteEventSpool(settings.profile_spool_path),
            apply=engine.apply,
            compact=lambda profile, now: engine.compact(profile, now, settings.profile_max_stored_bytes),
            flush_interval_s=settings.profile_flush_interval_s,
            max_staleness_s=settings.profile_max_staleness_s,
            max_entries=settings.profile_cache_entries,
            max_bytes=settings.profile_cache_bytes,
            ttl_s=settings.profile_cache_ttl_s,
        )
    live = LiveCatalog(
        lambda: open_catalog_store(settings),
        import_class(settings.product_search, PRODUCT_SEARCH_CLASS_FOR_TYPE),
        catalog,
        refresh_s=math.inf if given else settings.catalog_refresh_s,
    )
    bus_class: type[EventBus] = import_class(settings.event_bus, EVENT_BUS_CLASS_FOR_TYPE)
    bus = bus_class.from_settings(settings)
    publisher = EventPublisher(
        bus,
        SqliteEventSpool(settings.publish_spool_path),
        batch_events=settings.publish_batch_events,
        max_latency_s=settings.publish_max_latency_s,
        retry_interval_s=settings.publish_retry_interval_s,
    )
    store_of_privacy: type[PrivacyStore] = import_class(settings.privacy_store, PRIVACY_STORE_CLASS_FOR_TYPE)
    privacy = PrivacyService(
        store_of_privacy.from_settings(settings),
        profiles,
        retention_days=settings.retention_days,
        ttl_s=settings.privacy_cache_ttl_s,
    )
    tracking = TrackingService(engine, profiles, publisher.publish, screen=privacy.screen)
    services = Container(
        settings,
        rules,
        live,
        engine,
        profiles,
        tracking,
        PreferencesService(engine, profiles, privacy=privacy.of),
        bus,
        publisher,
        OrderService(tracking),
        privacy,
        instrumented(Telemetry(settings.metrics_export), profiles, publisher),
    )
    atexit.register(services.close)  # an instance stopping publishes, archives and writes what it holds
    return services


def instrumented(telemetry: Telemetry, profiles: ProfileStore, publisher: EventPublisher) -> Telemetry:
    """Metrics read from the services' own counters when collected (nothing added to the hot path)."""
    telemetry.observe_counters(
        "leafloaf.events", "outcome",
        lambda: {"published": publisher.published, "spooled": publisher.spooled, "failed": publisher.failures},
    )  # fmt: skip
    if isinstance(profiles, CachedProfileStore):
        cache = profiles
        lookups = lambda: {"hit": cache.hits, "miss": cache.misses}  # noqa: E731
        telemetry.observe_counters("leafloaf.profile_cache.lookups", "result", lookups)
        telemetry.observe_gauge("leafloaf.profile_cache.profiles", lambda: len(cache))
        telemetry.observe_gauge(
            "leafloaf.profile_cache.bytes_per_profile", lambda: cache.cached_bytes() / max(1, len(cache))
        )
    return telemetry


def settle_heap() -> None:
    """Tune the collector for a long-lived instance.

    The catalog and index built at start-up stay out of every GC pass (freeze), as each later version
    does once built (shared.pacing.collections_deferred). Young-generation
    passes run every 10,000 net allocations instead of 700: the event path frees almost all it
    allocates, so it rarely triggers one, while the ~14 objects of cyclic garbage each Flask
    request leaves cost one pass of ~10 ms every ~700 requests (measured; 50,000 made them ~80 ms).
    """
    gc.freeze()
    gc.set_threshold(10_000, 20, 100)
    # Request threads preempt background work (the write-behind flusher) after 1 ms, not 5 ms.
    sys.setswitchinterval(0.001)


_container: Container | None = None
_lock = threading.Lock()


def container() -> Container:
    """The instance's services, built on first use."""
    global _container
    if _container is None:
        with _lock:
            if _container is None:
                _container = build()
                settle_heap()
    return _container


def install(replacement: Container | None) -> None:
    """Use `replacement` as the instance's services (tests, the local server); None rebuilds lazily."""
    global _container
    with _lock:
        _container = replacement
