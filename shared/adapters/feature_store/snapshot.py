"""Feature snapshots as SQLite files in the object store (a folder locally, Cloud Storage in production).

`features/<version>.sqlite3` holds three key-value tables (user, product, store) of JSON documents;
`features/CURRENT` names the version to serve. Versions sort by name (the publisher names them by a window's end or an
erasure's time), and neither CURRENT nor an instance ever moves back to an older one: an older
publication is not stored, and two publishers racing leave CURRENT on the newer (the object store
has no compare-and-set, so each looks again after writing). An instance checks CURRENT at most every `refresh_s`
seconds in a background thread, downloads a new version into its cache folder once, and answers
lookups from the local file (a primary-key read, tens of microseconds), so a snapshot larger than
memory still serves.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

from shared.ports.archive import Archive, ArchiveUnavailable
from shared.ports.feature_store import Document, FeatureStore
from shared.refresh import BackgroundRefresh

log = logging.getLogger(__name__)
PREFIX = "features/"
CURRENT = f"{PREFIX}CURRENT"
SUFFIX = ".sqlite3"
KINDS = ("user", "product", "store")


class SnapshotFeatureStore(FeatureStore):
    def __init__(
        self,
        archive: Archive,
        cache_dir: str | Path | None = None,
        refresh_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.archive = archive
        self.cache_dir = Path(cache_dir or tempfile.mkdtemp(prefix="leafloaf-features-"))
        self._refresh = BackgroundRefresh(self._load_current, refresh_s, clock, "features-refresh")
        self._version: str | None = None
        self._db: sqlite3.Connection | None = None
        self._path: Path | None = None

    def publish(self, version: str, sources: Iterable[tuple[str, Iterable[tuple[str, Document]]]]) -> dict[str, int]:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "snapshot.sqlite3"
            db = sqlite3.connect(path)
            for kind in KINDS:
                db.execute(f"CREATE TABLE {kind} (id TEXT PRIMARY KEY, doc TEXT NOT NULL)")
            for kind, documents in sources:
                if kind not in KINDS:
                    raise ValueError(f"unknown feature kind {kind!r}: {KINDS}")
                db.executemany(  # json_patch merges what several sources say about one id
                    f"INSERT INTO {kind} (id, doc) VALUES (?, ?) "
                    "ON CONFLICT (id) DO UPDATE SET doc = json_patch(doc, excluded.doc)",
                    ((key, json.dumps(doc, default=str)) for key, doc in documents),
                )
            counts = {kind: db.execute(f"SELECT COUNT(*) FROM {kind}").fetchone()[0] for kind in KINDS}
            db.execute("CREATE TABLE meta (built_at TEXT NOT NULL)")
            db.execute("INSERT INTO meta VALUES (?)", (datetime.now(UTC).isoformat(),))
            db.commit()
            db.close()
            data = path.read_bytes()
        current = self._current()
        if current is None or current <= version:  # an older version is not even stored
            self.archive.put(_object(version), data)
            current = self._point_current_at_newest()  # CURRENT written last: readers never see half a version
        with self._refresh.lock:
            if current == version and (self._version is None or version >= self._version):
                self._serve(version, data)  # without downloading what it just published
            else:
                log.warning("features %s not served: the newer %s is current", version, current)
                self._load_current()
        return counts

    def user(self, user_id: str) -> Document | None:
        return self._read("user", user_id)

    def product(self, product_id: str) -> Document | None:
        return self._read("product", product_id)

    def store(self, key: str) -> Document | None:
        return self._read("store", key)

    def version(self) -> str | None:
        self._refresh.due()  # until the first version arrives, there are no features
        return self._version

    def built_at(self) -> datetime | None:
        self._refresh.due()  # until the first version arrives, there are no features
        db = self._db
        if db is None:
            return None
        row = db.execute("SELECT built_at FROM meta").fetchone() if _has_meta(db) else None
        return datetime.fromisoformat(row[0]) if row else datetime.min.replace(tzinfo=UTC)

    def discard_older(self) -> int:
        current = self._current()
        if current is None:
            return 0
        old = [version for version in self._stored() if version < current]
        for version in old:
            self.archive.delete(_object(version))
        return len(old)

    def _current(self) -> str | None:
        current = self.archive.get(CURRENT)
        return current.decode() if current else None

    def _stored(self) -> list[str]:
        """Every stored version (an object is whole once listed)."""
        return [o.name[len(PREFIX) : -len(SUFFIX)] for o in self.archive.list(PREFIX) if o.name.endswith(SUFFIX)]

    def _point_current_at_newest(self) -> str:
        """Make CURRENT name the newest stored version, and return what it names. A publisher that
        wrote an older version after a newer publisher's write finds the newer one stored when it
        looks again, and writes it back."""
        while True:
            newest, current = max(self._stored()), self._current()
            if current is not None and current >= newest:
                return current
            self.archive.put(CURRENT, newest.encode())

    def _read(self, kind: str, key: str) -> Document | None:
        self._refresh.due()  # until the first version arrives, there are no features
        db = self._db
        if db is None:
            return None
        try:
            row = db.execute(f"SELECT doc FROM {kind} WHERE id = ?", (key,)).fetchone()
        except sqlite3.OperationalError:  # a snapshot published before this kind existed
            return None
        return json.loads(row[0]) if row else None

    def _load_current(self) -> None:
        """Download the version CURRENT names, if newer than the one served (runs holding the lock)."""
        try:
            version = self._current()
            if version is None or (self._version is not None and version <= self._version):
                return
            data = self.archive.get(_object(version))
            if data is None:
                return  # CURRENT names a version being replaced; keep serving the old one
            self._serve(version, data)
        except (ArchiveUnavailable, OSError):
            log.warning("could not refresh the features snapshot; serving version %s", self._version, exc_info=True)

    def _serve(self, version: str, data: bytes) -> None:
        path = self.cache_dir / f"{version.replace(':', '-')}.sqlite3"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        # The old connection is left to the collector: a request may still be reading from it.
        self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        if self._path is not None and self._path != path:
            self._path.unlink(missing_ok=True)  # an open file stays readable until closed
        self._version, self._path = version, path


def _object(version: str) -> str:
    return f"{PREFIX}{version}{SUFFIX}"


def _has_meta(db: sqlite3.Connection) -> bool:
    """Snapshots published before build times were recorded have no meta table (treated as old)."""
    return db.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone() is not None
