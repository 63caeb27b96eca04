"""The embedded bus: a durable queue in a SQLite file, delivering in-process like Pub/Sub does.

A published message gets one delivery row per subscription. Deliveries are leased (an ack
deadline), retried with exponential backoff when the event function raises, and moved to the
dead letters after `max_attempts`, the way a Pub/Sub subscription with a dead-letter policy
behaves. The CloudEvents handed to the functions have the shape Eventarc gives them.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from shared.config import Settings
from shared.domain.pipeline import EVENT_FUNCTIONS, TOPIC, EventBatch
from shared.ports.event_bus import BusUnavailable, EventBus, EventHandler, pubsub_cloud_event

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    data       BLOB NOT NULL,
    attributes TEXT NOT NULL,
    published  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    subscription TEXT NOT NULL,
    message      INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    due          REAL NOT NULL,     -- not before (backoff)
    leased_until REAL NOT NULL DEFAULT 0,
    acked_at     REAL,              -- kept for `seek` until the retention passes
    PRIMARY KEY (subscription, message)
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription TEXT NOT NULL,
    message_id   TEXT,
    data         BLOB NOT NULL,
    attributes   TEXT NOT NULL,
    reason       TEXT NOT NULL,
    attempts     INTEGER NOT NULL,
    at           REAL NOT NULL
);
"""


class SqliteEventBus(EventBus):
    def __init__(
        self,
        path: str | Path,
        project: str = "leafloaf-local",
        subscriptions: tuple[str, ...] = EVENT_FUNCTIONS,
        max_attempts: int = 5,
        min_backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        ack_deadline_s: float = 60.0,
        poll_interval_s: float = 0.25,
        retain_acked_s: float = 600.0,
        publish_timeout_s: float = 1.0,
    ) -> None:
        self.path = Path(path)
        self.project = project
        self.subscriptions = subscriptions
        self.max_attempts = max_attempts
        self.min_backoff_s = min_backoff_s
        self.max_backoff_s = max_backoff_s
        self.ack_deadline_s = ack_deadline_s
        self.poll_interval_s = poll_interval_s
        self.retain_acked_s = retain_acked_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        # Publishing has a connection of its own with a short busy timeout: a bus file another
        # process holds fails a publish fast (the publisher spools the batch) instead of queueing
        # it behind the deliveries for 10 s.
        self._publish_lock = threading.Lock()
        self._publishing = sqlite3.connect(
            self.path, timeout=publish_timeout_s, isolation_level=None, check_same_thread=False
        )
        self._publishing.execute("PRAGMA synchronous=NORMAL")
        self._wakes = {s: threading.Event() for s in subscriptions}
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []

    @classmethod
    def from_settings(cls, settings: Settings) -> SqliteEventBus:
        return cls(
            settings.bus_path,
            project=settings.pubsub_project,
            max_attempts=settings.delivery_max_attempts,
            min_backoff_s=settings.delivery_min_backoff_s,
            max_backoff_s=settings.delivery_max_backoff_s,
        )

    def _transaction(self, work, publishing: bool = False):
        lock, db = (self._publish_lock, self._publishing) if publishing else (self._lock, self._db)
        with lock:
            db.execute("BEGIN IMMEDIATE")
            try:
                result = work(db)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return result

    # -- publishing --------------------------------------------------------------------------
    def publish(self, batch: EventBatch) -> str:
        data, attributes = batch.encode()
        now = time.time()

        def insert(db: sqlite3.Connection) -> int:
            cursor = db.execute(
                "INSERT INTO messages (data, attributes, published) VALUES (?, ?, ?)",
                (data, json.dumps(attributes), now),
            )
            message = int(cursor.lastrowid or 0)
            db.executemany(
                "INSERT INTO deliveries (subscription, message, due) VALUES (?, ?, ?)",
                [(s, message, now) for s in self.subscriptions],
            )
            return message

        try:
            message = self._transaction(insert, publishing=True)
        except sqlite3.Error as exc:
            raise BusUnavailable(f"cannot write {self.path}: {exc}") from exc
        for wake in self._wakes.values():
            wake.set()
        return str(message)

    def dead_letter(self, subscription: str, data: bytes, attributes: Mapping[str, str], reason: str) -> None:
        self._transaction(lambda db: self._insert_dead_letter(db, subscription, None, data, attributes, reason, 0))

    @staticmethod
    def _insert_dead_letter(
        db: sqlite3.Connection,
        subscription: str,
        message_id: str | None,
        data: bytes,
        attributes: Mapping[str, str],
        reason: str,
        attempts: int,
    ) -> None:
        db.execute(
            "INSERT INTO dead_letters (subscription, message_id, data, attributes, reason, attempts, at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (subscription, message_id, data, json.dumps(dict(attributes)), reason, attempts, time.time()),
        )

    # -- delivering --------------------------------------------------------------------------
    def connect(self, handlers: Mapping[str, EventHandler], push_base_url: str | None = None) -> None:
        for subscription, handler in handlers.items():
            thread = threading.Thread(
                target=self._deliver_forever, args=(subscription, handler), name=f"deliver-{subscription}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _deliver_forever(self, subscription: str, handler: EventHandler) -> None:
        while not self._stopped.is_set():
            try:
                delivered = self.deliver(subscription, handler)
            except Exception:
                log.exception("delivery loop failed", extra={"subscription": subscription})
                delivered = 0
            if not delivered:
                wake = self._wakes.setdefault(subscription, threading.Event())
                wake.wait(self.poll_interval_s)
                wake.clear()

    def deliver(self, subscription: str, handler: EventHandler, limit: int = 50) -> int:
        """Hand due messages to `handler` once each; returns how many were attempted."""
        now = time.time()

        def lease(db: sqlite3.Connection) -> list[tuple]:
            rows = db.execute(
                "SELECT d.message, d.attempts, m.data, m.attributes, m.published FROM deliveries d"
                " JOIN messages m ON m.id = d.message"
                " WHERE d.subscription = ? AND d.acked_at IS NULL AND d.due <= ? AND d.leased_until <= ?"
                " ORDER BY d.message LIMIT ?",
                (subscription, now, now, limit),
            ).fetchall()
            db.executemany(
                "UPDATE deliveries SET leased_until = ? WHERE subscription = ? AND message = ?",
                [(now + self.ack_deadline_s, subscription, row[0]) for row in rows],
            )
            return rows

        rows = self._transaction(lease)
        for done, (message, attempts, data, attributes_json, published) in enumerate(rows):
            if self._stopped.is_set():  # shutting down: hand the rest back now, not at the ack deadline
                self._transaction(lambda db, rest=rows[done:]: self._release(db, subscription, rest))
                return done
            attributes = json.loads(attributes_json)
            event = pubsub_cloud_event(
                self.project,
                TOPIC,
                subscription,
                str(message),
                data,
                attributes,
                datetime.fromtimestamp(published, UTC),
            )
            try:
                handler(event)
            except Exception as exc:
                self._failed(subscription, message, attempts + 1, data, attributes, exc)
            else:
                self._transaction(lambda db, m=message: self._acked(db, subscription, m))
        return len(rows)

    @staticmethod
    def _release(db: sqlite3.Connection, subscription: str, rows: list[tuple]) -> None:
        db.executemany(
            "UPDATE deliveries SET leased_until = 0 WHERE subscription = ? AND message = ?",
            [(subscription, row[0]) for row in rows],
        )

    def _acked(self, db: sqlite3.Connection, subscription: str, message: int) -> None:
        now = time.time()
        db.execute(
            "UPDATE deliveries SET acked_at = ? WHERE subscription = ? AND message = ?", (now, subscription, message)
        )
        # Forget what every subscription acknowledged before the retention window.
        expired = now - self.retain_acked_s
        db.execute("DELETE FROM deliveries WHERE acked_at < ?", (expired,))
        db.execute(
            "DELETE FROM messages WHERE published < ? AND id NOT IN (SELECT message FROM deliveries)", (expired,)
        )

    def seek(self, since: float) -> int:
        """Deliver again every retained message published at or after `since` (Pub/Sub's seek to a time).

        Returns how many deliveries were reset.
        """
        reset = self._transaction(
            lambda db: (
                db.execute(
                    "UPDATE deliveries SET acked_at = NULL, due = 0, leased_until = 0, attempts = 0"
                    " WHERE message IN (SELECT id FROM messages WHERE published >= ?)",
                    (since,),
                ).rowcount
            )
        )
        for wake in self._wakes.values():
            wake.set()
        return int(reset)

    def _failed(
        self, subscription: str, message: int, attempts: int, data: bytes, attributes: dict, exc: Exception
    ) -> None:
        if attempts >= self.max_attempts:
            log.error(
                "delivery failed too often; dead-lettered",
                extra={
                    "subscription": subscription,
                    "message_id": str(message),
                    "attempts": attempts,
                    "error": str(exc),
                },
            )

            def bury(db: sqlite3.Connection) -> None:
                self._insert_dead_letter(db, subscription, str(message), data, attributes, str(exc), attempts)
                self._acked(db, subscription, message)

            self._transaction(bury)
            return
        backoff = min(self.max_backoff_s, self.min_backoff_s * 2 ** (attempts - 1))
        log.warning(
            "delivery failed; will retry",
            extra={
                "subscription": subscription,
                "message_id": str(message),
                "attempts": attempts,
                "error": str(exc),
                "retry_in_s": backoff,
            },
        )
        self._transaction(
            lambda db: db.execute(
                "UPDATE deliveries SET attempts = ?, due = ?, leased_until = 0 WHERE subscription = ? AND message = ?",
                (attempts, time.time() + backoff, subscription, message),
            )
        )

    # -- inspection ----------------------------------------------------------------------------
    def backlog(self) -> dict[str, int]:
        """Undelivered messages per subscription."""
        with self._lock:
            rows = self._db.execute(
                "SELECT subscription, count(*) FROM deliveries WHERE acked_at IS NULL GROUP BY subscription"
            ).fetchall()
        return {s: 0 for s in self.subscriptions} | dict(rows)

    def dead_letters(self) -> list[dict]:
        with self._lock:
            rows = self._db.execute(
                "SELECT subscription, message_id, data, attributes, reason, attempts FROM dead_letters ORDER BY id"
            ).fetchall()
        keys = ("subscription", "message_id", "data", "attributes", "reason", "attempts")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def health(self) -> dict:
        """Undelivered messages per subscription (a read of the local file)."""
        return {"status": "healthy", "kind": type(self).__name__, "backlog": self.backlog()}

    def close(self) -> None:
        self._stopped.set()
        for wake in self._wakes.values():
            wake.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads.clear()
