"""The catalog in a local SQLite file: the embedded default, shared by a host's processes.

One row per product and one per version. A change is one `BEGIN IMMEDIATE` transaction (writers
from several processes serialise there), and a load reads the version and its products in one read
transaction, so WAL gives it that version whole while a writer commits the next one.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import TypeVar

from shared.adapters.sqlite_retry import open_shared
from shared.config import Settings
from shared.domain.catalog import CatalogChange, Product
from shared.pacing import paced
from shared.ports.catalog_store import CatalogDelta, CatalogStore, CatalogUnavailable, CatalogVersion

SCHEMA = """
CREATE TABLE IF NOT EXISTS products (
    id      TEXT PRIMARY KEY,
    doc     TEXT NOT NULL,
    version INTEGER NOT NULL  -- the version that last wrote it
);
CREATE INDEX IF NOT EXISTS products_by_version ON products (version);
CREATE TABLE IF NOT EXISTS deleted (
    id      TEXT PRIMARY KEY,
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    version  INTEGER PRIMARY KEY,
    at       TEXT NOT NULL,
    upserted INTEGER NOT NULL,
    patched  INTEGER NOT NULL,
    deleted  INTEGER NOT NULL,
    replaced INTEGER NOT NULL  -- 1: the whole catalog was replaced (an import)
);
"""
T = TypeVar("T")
# An upsert keeps the row (and so the product's place in the catalog's order).
UPSERT = (
    "INSERT INTO products (id, doc, version) VALUES (?, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET doc = excluded.doc, version = excluded.version"
)


class SqliteCatalogStore(CatalogStore):
    def __init__(self, path: str | Path, busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = open_shared(self.path, SCHEMA, busy_timeout_s)

    @classmethod
    def from_settings(cls, settings: Settings) -> SqliteCatalogStore:
        return cls(settings.catalog_store_path)

    def latest(self) -> int | None:
        with self._lock, _unavailable():
            return self._db.execute("SELECT max(version) FROM versions").fetchone()[0]

    def load(self) -> CatalogVersion | None:
        with self._lock, _unavailable():
            self._db.execute("BEGIN")
            try:
                version = self._db.execute("SELECT max(version) FROM versions").fetchone()[0]
                rows = self._db.execute("SELECT doc FROM products ORDER BY rowid").fetchall() if version else []
            finally:
                self._db.execute("COMMIT")
        if version is None:
            return None
        return CatalogVersion(version, [Product.model_validate_json(doc) for (doc,) in paced(rows)])

    def changes(self, since: int) -> CatalogDelta | None:
        with self._lock, _unavailable():
            self._db.execute("BEGIN")
            try:
                version, replaced = self._db.execute(
                    "SELECT max(version), (SELECT max(version) FROM versions WHERE replaced) FROM versions"
                ).fetchone()
                known = self._db.execute("SELECT 1 FROM versions WHERE version = ?", (since,)).fetchone()
                if version is None or not known or (replaced or 0) > since:
                    return None
                rows = self._db.execute("SELECT doc FROM products WHERE version > ? ORDER BY rowid", (since,))
                upserted = [Product.model_validate_json(doc) for (doc,) in paced(rows)]
                deleted = [pid for (pid,) in self._db.execute("SELECT id FROM deleted WHERE version > ?", (since,))]
            finally:
                self._db.execute("COMMIT")
        return CatalogDelta(version, upserted, deleted)

    def commit(self, change: CatalogChange) -> int:
        with self._lock, _unavailable():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                ids = [p.id for p in change.patches]
                held = {
                    pid: Product.model_validate_json(doc)
                    for chunk in batched(ids, 500)
                    for pid, doc in self._db.execute(
                        f"SELECT id, doc FROM products WHERE id IN ({','.join('?' * len(chunk))})", chunk
                    )
                }
                changed = change.applied_to(held)  # raises, naming them, for patches of missing products
                version = self._next_version(len(change.upserts), len(change.patches), len(change.deletes), 0)
                self._db.executemany(UPSERT, _rows(changed.values(), version))
                self._db.executemany("DELETE FROM products WHERE id = ?", ((pid,) for pid in change.deletes))
                self._db.executemany(
                    "INSERT OR REPLACE INTO deleted (id, version) VALUES (?, ?)",
                    ((pid, version) for pid in change.deletes),
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return version

    def replace(self, products: Iterable[Product]) -> int:
        with self._lock, _unavailable():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("DELETE FROM products")
                self._db.execute("DELETE FROM deleted")
                version = self._next_version(0, 0, 0, 1)
                for chunk in batched(products, 10_000):
                    self._db.executemany(UPSERT, _rows(chunk, version))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return version

    def _next_version(self, upserted: int, patched: int, deleted: int, replaced: int) -> int:
        at = datetime.now(UTC).isoformat(timespec="microseconds")
        cursor = self._db.execute(
            "INSERT INTO versions (version, at, upserted, patched, deleted, replaced) "
            "VALUES ((SELECT coalesce(max(version), 0) + 1 FROM versions), ?, ?, ?, ?, ?) RETURNING version",
            (at, upserted, patched, deleted, replaced),
        )
        return int(cursor.fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


@contextmanager
def _unavailable() -> Iterator[None]:
    """SQLite's own failures (a locked or unreadable file) as CatalogUnavailable."""
    try:
        yield
    except sqlite3.Error as exc:
        raise CatalogUnavailable(f"catalog store {type(exc).__name__}: {exc}") from exc


def batched(items: Iterable[T], size: int) -> Iterator[tuple[T, ...]]:
    """`items` in tuples of `size` (itertools.batched is Python 3.12's)."""
    it = iter(items)
    while chunk := tuple(islice(it, size)):
        yield chunk


def _rows(products: Iterable[Product], version: int) -> Iterator[tuple[str, str, int]]:
    return ((p.id, p.model_dump_json(), version) for p in products)
