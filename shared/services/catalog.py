"""The live catalog: the newest version of the store's catalog, as this instance serves it.

Every change (an import, or the admin API's upserts, patches and deletes) makes a new version in the
catalog store. An instance looks for a newer one at most every `refresh_s` seconds, in a background
thread, and builds what serving needs there (the catalog's lookups, the search index, the engine's
facet ids and the ranker's feature table) while requests go on with the version they have. Then
one assignment swaps the new shelf in: a request holds one shelf from start to end, so it never
mixes two versions. An instance never moves back to an older version; the instance that commits a
change starts building it at once. A store that is down never blocks a request: the last version
keeps serving and `health` says degraded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from shared.domain.catalog import Catalog, CatalogChange, Product
from shared.pacing import REQUESTS, collections_deferred, pacing, quick_switches
from shared.ports.catalog_store import CatalogDelta, CatalogStore, CatalogVersion
from shared.ports.product_search import ProductSearch
from shared.refresh import BackgroundRefresh

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Shelf:
    """One catalog version and its search index, built together and served together."""

    catalog: Catalog
    products: ProductSearch


class LiveCatalog:
    """See the module docstring."""

    def __init__(
        self,
        store: Callable[[], CatalogStore],
        index: Callable[[Catalog, ProductSearch | None], ProductSearch],
        initial: Catalog,
        adopt: Sequence[Callable[[Catalog], None]] = (),
        refresh_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """
        Args:
            store: opens the catalog store (called in the background on the first refresh).
            index: builds the search index of a catalog (given the index of the version before).
            initial: served until the store has a newer version (the version the instance started
                with, or an empty catalog).
            adopt: told of each new catalog before it is served (the engine's facet ids, the
                ranker's feature table), in the building thread.
            refresh_s: how often the store is asked for its newest version.
        """
        self._store_factory = store
        self._store: CatalogStore | None = None
        self.index = index
        self.adopt = adopt
        self._shelf = Shelf(initial, index(initial, None))
        self._refresh = BackgroundRefresh(self._load, refresh_s, clock, "catalog-refresh")
        self._failure: str | None = None  # why the last look at the store failed

    @property
    def shelf(self) -> Shelf:
        """The version served now; never waits on the store."""
        self._refresh.due()
        return self._shelf

    @property
    def building(self) -> bool:
        """A look for a newer version, or its build, is under way."""
        return self._refresh.lock.locked()

    @property
    def catalog(self) -> Catalog:
        return self.shelf.catalog

    def commit(self, change: CatalogChange) -> int:
        """Apply `change` as a new version, start serving it here, and return its number."""
        with quick_switches():  # the requests this write overlaps take their turns at once
            version = self.store().commit(change)
        self._refresh.soon()
        return version

    def replace(self, products: Iterable[Product]) -> int:
        """Make `products` the whole catalog, as a new version served here next."""
        with quick_switches():
            version = self.store().replace(products)
        self._refresh.soon()
        return version

    def refresh(self) -> None:
        """Serve the store's newest version when newer than the one served, in this thread (tests,
        and the start of an instance)."""
        self._refresh.now()

    def store(self) -> CatalogStore:
        if self._store is None:
            self._store = self._store_factory()
        return self._store

    def _load(self) -> None:
        with pacing(), collections_deferred():  # the build gives way to requests being served
            self._build()

    def _build(self) -> None:
        served = self._shelf.catalog
        try:
            found = self._newer(served)
        except Exception as exc:  # any store failure: keep serving, look again at the next refresh
            self._failure = f"{type(exc).__name__}: {exc}"
            log.warning("could not look for a new catalog version; serving %s: %s", served.version, exc)
            return
        self._failure = None
        if found is None or found.version <= served.version:  # never an older version
            return
        started = time.perf_counter()
        catalog = (
            Catalog.amended(served, found.upserted, found.deleted, found.version)
            if isinstance(found, CatalogDelta)
            else Catalog(found.products, found.version, previous=served)
        )
        shelf = Shelf(catalog, self.index(catalog, self._shelf.products))
        for adopt in self.adopt:
            adopt(catalog)
        replaced, self._shelf = self._shelf, shelf
        # Freeing a version takes milliseconds in one go: here, once no request is in flight, rather
        # than in whichever request lets go of it last.
        REQUESTS.wait_idle(1.0)
        del replaced, served
        log.info(
            "serving catalog version %s (%d products, built in %.1f s)",
            catalog.version,
            len(catalog),
            time.perf_counter() - started,
        )

    def _newer(self, served: Catalog) -> CatalogVersion | CatalogDelta | None:
        """The store's newest version when newer than `served`: the changes since `served` when the
        store can say them (no product read again, and only the products changed worked out again),
        else whole."""
        store = self.store()
        latest = store.latest()
        if latest is None or latest <= served.version:
            return None
        delta = store.changes(served.version) if served.version else None
        return delta if delta is not None else store.load()

    def health(self) -> dict[str, Any]:
        """The version served, from memory: unhealthy with no products, degraded when the store fails
        (a look for a newer version starts in the background when due: an idle instance follows too)."""
        catalog = self.shelf.catalog
        state: dict[str, Any] = {"status": "healthy", "version": catalog.version, "products": len(catalog)}
        if not len(catalog):
            state |= {
                "status": "unhealthy",
                "reason": "no catalog: import one (python -m shared.cli import-catalog FILE, "
                "or PUT /api/catalog/products)",
            }
        if self._failure is not None:
            state |= {"status": "degraded" if len(catalog) else "unhealthy", "store": self._failure}
        return state

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
