"""Feature snapshots as SQLite files in the object store (a folder locally, Cloud Storage in production).

`features/<version>.sqlite3` holds two key-value tables of JSON documents; `features/CURRENT` names
the version to serve; versions sort by name (the publisher names them by their window's end), and an
instance only ever moves to a newer one. An instance checks CURRENT at most every `refresh_s`
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
KINDS = ("user", "product")


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
        self.archive.put(_object(version), data)
        self.archive.put(CURRENT, version.encode())  # written last: readers never see half a version
        with self._refresh.lock:  # this instance serves what it just published without downloading it
            self._serve(version, data)
        return counts

    def user(self, user_id: str) -> Document | None:
        return self._read("user", user_id)

    def product(self, product_id: str) -> Document | None:
        return self._read("product", product_id)

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
        current = self.archive.get(CURRENT)
        if current is None:
            return 0
        keep = _object(current.decode())
        old = [o.name for o in self.archive.list(PREFIX) if o.name.endswith(".sqlite3") and o.name < keep]
        for name in old:
            self.archive.delete(name)
        return len(old)

    def _read(self, kind: str, key: str) -> Document | None:
        self._refresh.due()  # until the first version arrives, there are no features
        db = self._db
        if db is None:
            return None
        row = db.execute(f"SELECT doc FROM {kind} WHERE id = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def _load_current(self) -> None:
        """Download the version CURRENT names, if newer than the one served (runs holding the lock)."""
        try:
            current = self.archive.get(CURRENT)
            version = current.decode() if current else None
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
    return f"{PREFIX}{version}.sqlite3"


def _has_meta(db: sqlite3.Connection) -> bool:
    """Snapshots published before build times were recorded have no meta table (treated as old)."""
    return db.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone() is not None
