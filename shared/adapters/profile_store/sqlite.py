"""Profiles in a local SQLite file: the embedded durable default, safe for several processes."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from shared.adapters.sqlite_retry import retry_while_locked
from shared.config import Settings
from shared.domain.profile import Profile
from shared.ports.profile_store import ProfileCodec, ProfileStore

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS profiles (
    user_id    TEXT PRIMARY KEY,
    doc        BLOB NOT NULL,
    version    INTEGER NOT NULL,
    updated_at REAL NOT NULL
)
"""


class SqliteProfileStore(ProfileStore):
    """WAL mode so readers never wait for the writer; each update is one `BEGIN IMMEDIATE`
    transaction (read, change, write), so concurrent processes serialise instead of losing
    each other's updates."""

    def __init__(self, path: str | Path, codec: ProfileCodec, busy_timeout_s: float = 10.0) -> None:
        self.path = Path(path)
        self.codec = codec
        self.busy_timeout_s = busy_timeout_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._prepare()

    def _prepare(self) -> None:
        """Switch the file to WAL (persistent, so once) and create the table."""

        def prepare() -> None:
            connection = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
            try:
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute(SCHEMA)
            finally:
                connection.close()

        retry_while_locked(prepare, self.busy_timeout_s)

    @classmethod
    def from_settings(cls, settings: Settings, codec: ProfileCodec) -> SqliteProfileStore:
        return cls(settings.sqlite_path, codec)

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
        connection.execute(
            "PRAGMA synchronous=NORMAL"
        )  # WAL: survives a process crash; a power cut may undo the last commits
        return connection

    @property
    def _db(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:  # one connection per thread: sqlite3 objects are not shared
            connection = self._local.connection = self._connect()
        return connection

    def update(self, user_id: str, change: Callable[[Profile], T]) -> T:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("SELECT doc FROM profiles WHERE user_id = ?", (user_id,)).fetchone()
            profile = self.codec.decode(user_id, row[0]) if row else Profile(user_id)
            result = change(profile)
            db.execute(
                "INSERT INTO profiles (user_id, doc, version, updated_at) VALUES (?, ?, 1, ?) "
                "ON CONFLICT(user_id) DO UPDATE SET doc = excluded.doc, version = version + 1, "
                "updated_at = excluded.updated_at",
                (user_id, self.codec.encode(profile), time.time()),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return result

    def read(self, user_id: str, view: Callable[[Profile], T]) -> T | None:
        row = self._db.execute("SELECT doc FROM profiles WHERE user_id = ?", (user_id,)).fetchone()
        return None if row is None else view(self.codec.decode(user_id, row[0]))

    def delete(self, user_id: str) -> bool:
        return self._db.execute("DELETE FROM profiles WHERE user_id = ?", (user_id,)).rowcount > 0
