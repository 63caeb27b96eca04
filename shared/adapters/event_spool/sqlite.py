"""The event spool in a local SQLite file, shared by the local instances (processes) of a host."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

from shared.domain.events import Interaction
from shared.ports.event_spool import EventSpool
from shared.processes import process_alive

SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    owner   INTEGER NOT NULL,  -- pid of the instance that queued the event
    user_id TEXT NOT NULL,  -- the key events are grouped by: a user id, or a bus batch id
    event   TEXT NOT NULL
)
"""


class SqliteEventSpool(EventSpool):
    """Rows belong to the process that queued them; a process adopts rows of dead processes."""

    def __init__(self, path: str | Path, owner: int | None = None) -> None:
        self.path = Path(path)
        self.owner = owner if owner is not None else os.getpid()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(SCHEMA)

    def append(self, key: str, events: list[Interaction]) -> list[int]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                ids = [
                    int(
                        self._db.execute(
                            "INSERT INTO spool (owner, user_id, event) VALUES (?, ?, ?)",
                            (self.owner, key, event.model_dump_json()),
                        ).lastrowid
                        or 0
                    )
                    for event in events
                ]
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return ids

    def remove(self, ids: list[int]) -> None:
        if ids:
            with self._lock:
                self._db.executemany("DELETE FROM spool WHERE id = ?", [(i,) for i in ids])

    def adopt(self) -> list[tuple[int, str, Interaction]]:
        with self._lock:
            owners = [row[0] for row in self._db.execute("SELECT DISTINCT owner FROM spool")]
            for owner in owners:
                if owner != self.owner and not process_alive(owner):
                    self._db.execute("UPDATE spool SET owner = ? WHERE owner = ?", (self.owner, owner))
            rows = self._db.execute(
                "SELECT id, user_id, event FROM spool WHERE owner = ? ORDER BY id", (self.owner,)
            ).fetchall()
        return [(row_id, user, Interaction.model_validate_json(event)) for row_id, user, event in rows]

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM spool").fetchone()[0])
