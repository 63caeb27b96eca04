"""Privacy records in a local SQLite file: the embedded default, shared by a host's processes."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path

from shared.adapters.sqlite_retry import open_shared
from shared.config import Settings
from shared.domain.privacy import DeletionRequest, PrivacySettings, tombstone_key
from shared.ports.privacy_store import PrivacyStore

# Times are UTC in a fixed-width ISO 8601 form (see `stamp`), so text order is time order.
SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (
    user_id TEXT PRIMARY KEY,
    doc     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS settings_by_retention ON settings (json_extract(doc, '$.data_retention_days'));
CREATE TABLE IF NOT EXISTS deletions (
    request_id   TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL,
    status       TEXT NOT NULL,
    requested_at TEXT NOT NULL,
    doc          TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS deletions_by_status ON deletions (status, requested_at);
CREATE INDEX IF NOT EXISTS deletions_by_user ON deletions (user_id, status);
CREATE TABLE IF NOT EXISTS tombstones (
    key          TEXT PRIMARY KEY,  -- tombstone_key(user_id), never the id itself
    requested_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS nonces (
    nonce      TEXT PRIMARY KEY,
    expires_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS nonces_by_expiry ON nonces (expires_at);
"""


def utc(at: datetime) -> datetime:
    """Aware UTC (naive times are taken to be UTC already)."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def stamp(at: datetime) -> str:
    return utc(at).isoformat(timespec="microseconds")


class SqlitePrivacyStore(PrivacyStore):
    """One connection in autocommit mode behind a lock; WAL so readers never wait for a writer,
    and `BEGIN IMMEDIATE` where a read decides a write, so processes serialise there."""

    def __init__(self, path: str | Path, busy_timeout_s: float = 10.0) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = open_shared(self.path, SCHEMA, busy_timeout_s)

    @classmethod
    def from_settings(cls, settings: Settings) -> SqlitePrivacyStore:
        return cls(settings.privacy_path)

    def settings(self, user_id: str) -> PrivacySettings | None:
        with self._lock:
            row = self._db.execute("SELECT doc FROM settings WHERE user_id = ?", (user_id,)).fetchone()
        return PrivacySettings.model_validate(json.loads(row[0])) if row else None

    def save_settings(self, user_id: str, settings: PrivacySettings) -> None:
        doc = json.dumps(settings.model_dump(mode="json"))
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO settings (user_id, doc) VALUES (?, ?)", (user_id, doc))

    def forget_settings(self, user_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM settings WHERE user_id = ?", (user_id,))

    def record_deletion(self, request: DeletionRequest) -> DeletionRequest:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT doc FROM deletions WHERE user_id = ? AND status = 'pending' ORDER BY requested_at LIMIT 1",
                    (request.user_id,),
                ).fetchone()
                if row is None:
                    self._write(request)
                self._db.execute(
                    """INSERT INTO tombstones (key, requested_at) VALUES (?, ?)
                       ON CONFLICT (key) DO UPDATE SET requested_at = excluded.requested_at
                       WHERE excluded.requested_at > tombstones.requested_at""",
                    (tombstone_key(request.user_id), stamp(request.requested_at)),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return DeletionRequest.model_validate_json(row[0]) if row else request

    def deletion(self, request_id: str) -> DeletionRequest | None:
        with self._lock:
            row = self._db.execute("SELECT doc FROM deletions WHERE request_id = ?", (request_id,)).fetchone()
        return DeletionRequest.model_validate_json(row[0]) if row else None

    def save_deletion(self, request: DeletionRequest) -> None:
        with self._lock:
            self._write(request)

    def _write(self, request: DeletionRequest) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO deletions (request_id, user_id, status, requested_at, doc) VALUES (?, ?, ?, ?, ?)",
            (
                request.request_id,
                request.user_id,
                request.status,
                stamp(request.requested_at),
                json.dumps(request.model_dump(mode="json")),
            ),
        )

    def pending_deletions(self, limit: int = 100) -> list[DeletionRequest]:
        with self._lock:
            rows = self._db.execute(
                "SELECT doc FROM deletions WHERE status = 'pending' ORDER BY requested_at, request_id LIMIT ?",
                (limit,),
            ).fetchall()
        return [DeletionRequest.model_validate_json(doc) for (doc,) in rows]

    def deleted_at(self, user_id: str) -> datetime | None:
        with self._lock:
            row = self._db.execute(
                "SELECT requested_at FROM tombstones WHERE key = ?", (tombstone_key(user_id),)
            ).fetchone()
        return datetime.fromisoformat(row[0]).astimezone(UTC) if row else None

    def retention_overrides(self, below: int) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute(
                "SELECT user_id, json_extract(doc, '$.data_retention_days') FROM settings"
                " WHERE json_extract(doc, '$.data_retention_days') < ?",
                (below,),
            ).fetchall()
        return {user_id: int(days) for user_id, days in rows}

    def claim_nonce(self, nonce: str, expires_at: datetime) -> bool:
        with self._lock:
            # Expired claims go on the way (the tokens carrying them are refused as expired).
            self._db.execute("DELETE FROM nonces WHERE expires_at < ?", (stamp(datetime.now(UTC)),))
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO nonces (nonce, expires_at) VALUES (?, ?)", (nonce, stamp(expires_at))
            )
        return cursor.rowcount == 1

    def close(self) -> None:
        with self._lock:
            self._db.close()
