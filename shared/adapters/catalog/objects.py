"""The catalog as an append-only log of objects in the archive's object store (Cloud Storage in
production, a local folder otherwise).

`<prefix>log/<version:012d>.json.gz` holds version N: a snapshot (every product; after `replace`,
and as a compaction every `snapshot_every` versions or once the deltas since the last snapshot pass
`snapshot_bytes`) or a delta (products upserted, ids deleted). Version N is written with
create-if-absent, so of two writers only one makes it; the other reads what won and applies its
change on that. Versions are contiguous (a writer writes N only once it holds N-1), so `latest`
reads the small `<prefix>HEAD` hint and probes the versions after it until one is absent: a HEAD
that lags (it is written after the log object, and a failed write of it is only logged) or is
missing costs probes, never a wrong answer. See docs/CATALOG.md.
"""

from __future__ import annotations

import gzip
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from pydantic import BaseModel

from shared.adapters import import_class
from shared.adapters.archive import ARCHIVE_CLASS_FOR_TYPE
from shared.config import Settings
from shared.domain.catalog import CatalogChange, Product
from shared.ports.archive import Archive
from shared.ports.catalog_store import CatalogDelta, CatalogStore, CatalogUnavailable, CatalogVersion

log = logging.getLogger(__name__)
T = TypeVar("T")


class Entry(BaseModel):
    """One version's object."""

    version: int
    at: str
    snapshot: int  # the newest snapshot at or before this version (itself when it is one; 0: none)
    replaced: int  # the newest `replace` at or before this version (0: none)
    products: list[Product] | None = None  # a snapshot: the whole catalog at this version
    # The change this version made (a compaction snapshot keeps it, so the delta chain goes on).
    upserted: list[Product] = []
    deleted: list[str] = []


@dataclass
class State:
    """A version whole, decoded, as this instance last read or wrote it."""

    version: int
    products: dict[str, Product]  # in the catalog's order
    snapshot: int
    replaced: int
    delta_bytes: int = 0  # encoded size of the deltas after the snapshot
    deltas: int = 0  # how many versions follow the snapshot


class ObjectCatalogStore(CatalogStore):
    def __init__(
        self,
        archive: Archive,
        prefix: str = "catalog/",
        snapshot_every: int = 100,
        snapshot_bytes: int = 8 * 2**20,
        max_changes_read: int = 1_000,
        max_attempts: int = 50,
        readers: int = 8,
    ) -> None:
        """
        Args:
            archive: the object store.
            prefix: where the catalog's objects are named.
            snapshot_every: the version this many after the last snapshot is a snapshot (a
                compaction: `load` then reads fewer deltas).
            snapshot_bytes: so is one that would take the deltas since the last snapshot past this
                encoded size.
            max_changes_read: `changes` answers None (load it whole) past this many versions.
            max_attempts: writes lost to other writers before a commit gives up (CatalogUnavailable).
            readers: objects read at once.
        """
        self.archive = archive
        self.prefix = prefix
        self.snapshot_every = snapshot_every
        self.snapshot_bytes = snapshot_bytes
        self.max_changes_read = max_changes_read
        self.max_attempts = max_attempts
        self.readers = readers
        self._lock = threading.Lock()  # one read-up or write of the cached state at a time
        self._state: State | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ObjectCatalogStore:
        archive_class: type[Archive] = import_class(settings.archive, ARCHIVE_CLASS_FOR_TYPE)
        return cls(archive_class.from_settings(settings), settings.catalog_prefix)

    def latest(self) -> int | None:
        known = max(self._head(), self._state.version if self._state else 0)
        newest = self._newest_from(known)
        return newest or None

    def load(self) -> CatalogVersion | None:
        with self._lock:
            state = self._read_up()
        if state is None:
            return None
        return CatalogVersion(state.version, list(state.products.values()))

    def changes(self, since: int) -> CatalogDelta | None:
        newest = self.latest()
        if newest is None or not 1 <= since <= newest or newest - since > self.max_changes_read:
            return None
        if since == newest:
            return CatalogDelta(newest, [], [])
        last = self._entry(newest)[0]
        if last.replaced > since:
            return None
        entries = [entry for entry, _ in self._entries(range(since + 1, newest))] + [last]
        upserted: dict[str, Product] = {}
        deleted: dict[str, None] = {}
        for entry in entries:  # as applying them one by one: deletes, then upserts
            for product_id in entry.deleted:
                upserted.pop(product_id, None)
                deleted[product_id] = None  # kept when upserted again: the product moves to the end
            upserted.update((p.id, p) for p in entry.upserted)
        return CatalogDelta(newest, list(upserted.values()), list(deleted))

    def commit(self, change: CatalogChange) -> int:
        upserted_ids = dict.fromkeys([p.id for p in change.upserts] + [p.id for p in change.patches])
        deletes = list(dict.fromkeys(change.deletes))
        with self._lock:
            for attempt in range(self.max_attempts):
                state = self._read_up() or State(0, {}, 0, 0)
                products = change.applied_to(state.products)  # CatalogError, naming them: nothing written
                upserted = [products[pid] for pid in upserted_ids if pid in products]
                if self._write(state, products, upserted, deletes, replace=False):
                    return state.version + 1
                _back_off(attempt)
        raise CatalogUnavailable(f"catalog commit lost to other writers {self.max_attempts} times; try again")

    def replace(self, products: Iterable[Product]) -> int:
        whole = {p.id: p for p in products}
        with self._lock:
            for attempt in range(self.max_attempts):
                newest = self.latest() or 0
                if self._write(State(newest, {}, 0, 0), whole, [], [], replace=True):
                    return newest + 1
                _back_off(attempt)
        raise CatalogUnavailable(f"catalog replace lost to other writers {self.max_attempts} times; try again")

    def _write(
        self, state: State, products: dict[str, Product], upserted: list[Product], deleted: list[str], replace: bool
    ) -> bool:
        """Write version state.version + 1 if no one has; then cache it and point HEAD at it."""
        version = state.version + 1
        entry = Entry(version=version, at=datetime.now(UTC).isoformat(), snapshot=state.snapshot,
                      replaced=version if replace else state.replaced, upserted=upserted, deleted=deleted)  # fmt: skip
        data = _encode(entry)
        compact = state.deltas + 1 >= self.snapshot_every or state.delta_bytes + len(data) > self.snapshot_bytes
        if replace or compact:
            entry.snapshot, entry.products = version, list(products.values())
            data = _encode(entry)
        name = self._name(version)
        with _unavailable(f"cannot write catalog version {version}"):
            written = self.archive.put(name, data, if_absent=True)
            # A write the client retried after it had landed finds its own bytes there: it won.
            if not written and self.archive.get(name) != data:
                return False
        if entry.products is not None:
            self._state = State(version, products, version, entry.replaced)
        else:
            self._state = State(version, products, state.snapshot, state.replaced,
                                state.delta_bytes + len(data), state.deltas + 1)  # fmt: skip
        self._point_head(version, entry.snapshot)
        return True

    def _read_up(self) -> State | None:
        """The newest version whole: the cached one, brought up to date by the deltas after it, or
        else the newest snapshot and the deltas after that."""
        newest = self.latest()
        cached = self._state
        if newest is None or (cached and cached.version >= newest):
            return cached
        last, last_size = self._entry(newest)
        if cached and last.snapshot <= cached.version:  # no snapshot since: only the deltas after it
            state, first = cached, cached.version + 1
        elif last.snapshot:
            base = last if last.snapshot == newest else self._entry(last.snapshot)[0]
            if base.products is None:
                raise CatalogUnavailable(f"catalog version {base.version} should be a snapshot and is not")
            state = State(base.version, {p.id: p for p in base.products}, base.version, base.replaced)
            first = base.version + 1
        else:  # no snapshot yet: the deltas from the empty catalog
            state, first = State(0, {}, 0, 0), 1
        products = dict(state.products)
        deltas = [*self._entries(range(first, newest)), (last, last_size)] if first <= newest else []
        for entry, size in deltas:
            for product_id in entry.deleted:
                products.pop(product_id, None)
            products.update((p.id, p) for p in entry.upserted)
            state = State(entry.version, products, state.snapshot, state.replaced,
                          state.delta_bytes + size, state.deltas + 1)  # fmt: skip
        self._state = state
        return state

    def _head(self) -> int:
        """The version HEAD names (0: no HEAD, or one that cannot be read)."""
        with _unavailable("cannot read the catalog's HEAD"):
            data = self.archive.get(f"{self.prefix}HEAD")
        try:
            return int(json.loads(data)["version"]) if data else 0
        except (ValueError, KeyError, TypeError):
            log.warning("catalog HEAD unreadable; probing the log from the start")
            return 0

    def _point_head(self, version: int, snapshot: int) -> None:
        # Only a hint: the version is written already, so a failed write (Cloud Storage allows
        # about one write a second to one object) must not fail the commit.
        try:
            self.archive.put(f"{self.prefix}HEAD", json.dumps({"version": version, "snapshot": snapshot}).encode())
        except Exception as exc:
            log.warning("catalog HEAD not moved to %s (readers probe past it): %s", version, exc)

    def _newest_from(self, known: int) -> int:
        """The newest version, given that `known` exists (0: nothing known): probes known + 1, + 2,
        + 4, ... until one is absent, then halves the gap (versions have no holes)."""
        step = 1
        while self._exists(known + step):
            known, step = known + step, step * 2
        absent = known + step
        while absent - known > 1:
            middle = (known + absent) // 2
            known, absent = (middle, absent) if self._exists(middle) else (known, middle)
        return known

    def _exists(self, version: int) -> bool:
        with _unavailable(f"cannot read catalog version {version}"):
            return self.archive.get(self._name(version)) is not None

    def _entry(self, version: int) -> tuple[Entry, int]:
        """A version's object, decoded, and its encoded size."""
        with _unavailable(f"cannot read catalog version {version}"):
            data = self.archive.get(self._name(version))
            if data is None:
                raise CatalogUnavailable(f"catalog version {version} is missing from the log")
            return Entry.model_validate_json(gzip.decompress(data)), len(data)

    def _entries(self, versions: range) -> list[tuple[Entry, int]]:
        return _parallel(self._entry, versions, self.readers)

    def _name(self, version: int) -> str:
        return f"{self.prefix}log/{version:012d}.json.gz"

    def health(self) -> dict:
        return self.archive.health() | {"kind": type(self).__name__, "archive": type(self.archive).__name__}


def _encode(entry: Entry) -> bytes:
    return gzip.compress(entry.model_dump_json(exclude_none=True).encode(), compresslevel=6, mtime=0)


def _parallel(read: Callable[[int], T], versions: range, workers: int) -> list[T]:
    """read(v) for each version, in order, a few at a time (object reads are mostly waiting)."""
    if len(versions) <= 1:
        return [read(v) for v in versions]
    with ThreadPoolExecutor(max_workers=min(workers, len(versions)), thread_name_prefix="catalog-read") as pool:
        return list(pool.map(read, versions))


def _back_off(attempt: int) -> None:
    """A short random wait after losing a write, so racing writers spread out."""
    time.sleep(random.uniform(0, min(0.2, 0.005 * 2**attempt)))


@contextmanager
def _unavailable(what: str) -> Iterator[None]:
    """The object store's failures as CatalogUnavailable: ArchiveUnavailable, and the client's own
    errors a cloud adapter lets through (a 403, a missing bucket), which this store cannot name
    without importing that client; an unreadable object too."""
    try:
        yield
    except CatalogUnavailable:
        raise
    except Exception as exc:
        raise CatalogUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc
