"""Use cases of the event functions: load batches into the warehouse, archive them as JSONL.

Both are idempotent: the warehouse skips event ids it has; the archiver stages each batch under
its batch id once and remembers the batches it has flushed.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from shared.domain.catalog import Catalog
from shared.domain.pipeline import (
    ARCHIVE_PREFIX,
    FLUSHED_PREFIX,
    STAGING_PREFIX,
    EventBatch,
    PoisonMessage,
    archive_lines,
    archive_name,
    decode_pubsub_envelope,
    staged_batch_id,
    staged_count,
    staged_name,
    warehouse_rows,
)
from shared.domain.rules import Rules
from shared.ports.archive import Archive, ArchiveUnavailable, StoredObject
from shared.ports.event_bus import EventBus
from shared.ports.warehouse import Warehouse

log = logging.getLogger(__name__)

# What of a delivered batch may be written (None: nothing); bootstrap passes PrivacyService.without_erased.
Screen = Callable[[EventBatch], EventBatch | None]


def keep_all(batch: EventBatch) -> EventBatch:
    return batch


def receive(subscription: str, envelope: Any, bus: EventBus, handle: Callable[[EventBatch], object]) -> object:
    """Decode a delivered message and hand it to `handle`; poison goes to the dead letters.

    Errors from `handle` propagate, so the delivery is retried (Pub/Sub redelivers on a raise).
    """
    try:
        message_id, batch = decode_pubsub_envelope(envelope)
    except PoisonMessage as exc:
        message = envelope.get("message", {}) if isinstance(envelope, dict) else {}
        attributes = message.get("attributes") if isinstance(message, dict) else None
        log.error(
            "poison message dead-lettered",
            extra={"subscription": subscription, "reason": str(exc), "message_id": _get(message, "messageId")},
        )
        raw = json.dumps(envelope, default=str).encode()  # the whole delivery, for inspection and replay
        bus.dead_letter(subscription, raw, attributes if isinstance(attributes, dict) else {}, str(exc))
        return None
    log.debug("delivered", extra={"subscription": subscription, "message_id": message_id})
    return handle(batch)


def _get(message: Any, key: str) -> Any:
    return message.get(key) if isinstance(message, dict) else None


class WarehouseLoader:
    """Writes each event to raw_user_actions and to its kind's table."""

    def __init__(
        self, warehouse: Warehouse, catalog: Callable[[], Catalog], rules: Rules, screen: Screen = keep_all
    ) -> None:
        self.warehouse = warehouse
        self.catalog = catalog
        self.rules = rules
        self.screen = screen

    def load(self, batch: EventBatch) -> int:
        """Returns how many rows were new (0 for a redelivered batch, or one the screen dropped)."""
        kept = self.screen(batch)
        if kept is None:
            return 0
        return self.warehouse.insert(warehouse_rows(kept.events, self.catalog(), self.rules, datetime.now(UTC)))


class Archiver:
    """Batches events into archive objects of `flush_events` events or `flush_interval_s` age.

    A function instance gets no CPU between invocations, so no timer is trusted: each batch is
    staged durably in the archive itself, and any invocation (or shutdown, or the local timer)
    flushes what is due. A lock object (create-if-absent) keeps flushes from overlapping.
    """

    LOCK = f"{STAGING_PREFIX}.lock"
    PLAN = f"{STAGING_PREFIX}.flushing"  # the flush in progress: which object, from which staged batches
    CONTROL = (LOCK, PLAN)  # objects under the staging prefix that are not staged batches

    def __init__(
        self,
        archive: Archive,
        flush_events: int = 100,
        flush_interval_s: float = 60.0,
        lock_expiry_s: float = 300.0,
        screen: Screen = keep_all,
    ) -> None:
        self.archive = archive
        self.screen = screen
        self.flush_events = flush_events
        self.flush_interval_s = flush_interval_s
        self.lock_expiry_s = lock_expiry_s
        self.holder = uuid.uuid4().hex  # names this archiver in the flush lock
        self._local = threading.Lock()

    def archive_batch(self, batch: EventBatch) -> int:
        """Stage what the screen keeps of the batch (once) and flush if due; returns how many events
        were flushed."""
        kept = self.screen(batch)
        if kept is None:
            return 0
        self.stage(kept)
        return self.flush()

    def stage(self, batch: EventBatch) -> bool:
        """Keep the batch's lines until a flush; False when it was staged or archived before."""
        if self.archive.get(FLUSHED_PREFIX + batch.batch_id) is not None:
            return False
        return self.archive.put(staged_name(batch), archive_lines(batch), if_absent=True)

    def flush(self, force: bool = False, now: float | None = None) -> int:
        """Write due staged batches into archive objects; `force` writes everything staged."""
        now = time.time() if now is None else now
        listed = self.archive.list(STAGING_PREFIX)
        staged = self._staged(listed)
        # An unfinished flush is finished; a forced flush (shutdown) also releases a lock of its
        # own that a failed release left, even with nothing staged.
        unfinished = any(o.name == self.PLAN or (force and o.name == self.LOCK) for o in listed)
        if not unfinished and not (staged and (force or self._due(staged, now))):
            return 0
        with self._local:
            if not self._acquire(now):
                return 0
            try:
                return self._flush_locked(force, now)
            finally:
                self.archive.delete(self.LOCK)

    def _staged(self, listed: list[StoredObject] | None = None) -> list[StoredObject]:
        """The staged batches among `listed` (default: what the staging prefix holds now)."""
        listed = self.archive.list(STAGING_PREFIX) if listed is None else listed
        return [o for o in listed if o.name not in self.CONTROL]

    def _due(self, staged: list[StoredObject], now: float) -> bool:
        events = sum(staged_count(o.name) for o in staged)
        return events >= self.flush_events or now - min(o.created for o in staged) >= self.flush_interval_s

    def _acquire(self, now: float) -> bool:
        """Take the flush lock (the caller holds `_local`). The lock names its holder: a lock of
        this archiver's is one its own release failed to delete (the archive failed mid-flush),
        taken back at once rather than blocking every flush, the shutdown's included, until it expires."""
        lock = f"{now} {self.holder}".encode()
        if self.archive.put(self.LOCK, lock, if_absent=True):
            return True
        held = (self.archive.get(self.LOCK) or b"").decode(errors="replace").split()
        if held[1:] == [self.holder]:
            return self.archive.put(self.LOCK, lock)
        try:
            stale = bool(held) and now - float(held[0]) > self.lock_expiry_s
        except ValueError:
            stale = True
        if stale:  # its holder died mid-flush; the staged batches it had not cleared are still there
            self.archive.delete(self.LOCK)
            return self.archive.put(self.LOCK, lock, if_absent=True)
        return False

    def _flush_locked(self, force: bool, now: float) -> int:
        unfinished = self.archive.get(self.PLAN)
        if unfinished is not None:  # a flush that failed midway (the archive went away): finish it first
            self._carry_out(json.loads(unfinished))
        staged = sorted(self._staged(), key=lambda o: (o.created, o.name))
        chunks: list[list[StoredObject]] = [[]]
        for item in staged:
            if sum(staged_count(o.name) for o in chunks[-1]) >= self.flush_events:
                chunks.append([])
            chunks[-1].append(item)
        flushed = objects = 0
        for chunk in chunks:
            events = sum(staged_count(o.name) for o in chunk)
            due = chunk and (force or events >= self.flush_events or now - chunk[0].created >= self.flush_interval_s)
            if not due:  # (an empty chunk: an unfinished flush just took what was staged)
                continue
            plan = {"object": self._free_name(), "staged": [o.name for o in chunk]}
            self.archive.put(self.PLAN, json.dumps(plan).encode())
            self._carry_out(plan)
            flushed += events
            objects += 1
        if flushed:
            log.info("archived events", extra={"events": flushed, "objects": objects})
        return flushed

    def _carry_out(self, plan: dict[str, Any]) -> None:
        """Write the planned object from its staged batches, unless written already, then forget them.

        Idempotent, so a flush that failed at any step is finished by the next without writing its
        lines twice (rewriting under a new name, as a plain retry would, duplicated them)."""
        if self.archive.get(plan["object"]) is None:
            parts = [self.archive.get(name) for name in plan["staged"]]
            self.archive.put(plan["object"], b"".join(p for p in parts if p), if_absent=True)
        for name in plan["staged"]:  # remember the batch before forgetting its lines: a late copy stays out
            self.archive.put(FLUSHED_PREFIX + staged_batch_id(name), b"", if_absent=True)
            self.archive.delete(name)
        self.archive.delete(self.PLAN)

    def _free_name(self) -> str:
        at, number = datetime.now(UTC), 0
        while self.archive.get(name := archive_name(at, number)) is not None:
            number += 1
        return name

    def scan(
        self, keep: Callable[[dict[str, Any]], bool] | None = None, flushed_before: datetime | None = None
    ) -> Iterator[tuple[str, list[bytes], int]]:
        """(object name, its lines, how many `keep` rejected) for every archived and staged object,
        or only the archived ones flushed before `flushed_before`."""
        if flushed_before is None:
            items = self.archive.list(ARCHIVE_PREFIX) + self._staged()
        else:
            items = [o for o in self.archive.list(ARCHIVE_PREFIX) if o.name < archive_name(flushed_before, 0)]
        for item in items:
            lines = (self.archive.get(item.name) or b"").splitlines(keepends=True)
            kept = lines if keep is None else [line for line in lines if keep(json.loads(line))]
            yield item.name, kept, len(lines) - len(kept)

    def purge(
        self, keep: Callable[[dict[str, Any]], bool], flushed_before: datetime | None = None, wait_s: float = 120.0
    ) -> dict[str, int]:
        """Rewrite every archived and staged object without the events `keep` rejects, holding the
        flush lock so no flush writes lines it read before the rewrite. Idempotent.

        Raises:
            ArchiveUnavailable: the lock stayed taken for `wait_s` (a flush in progress); retry later.
        """
        deadline = time.monotonic() + wait_s
        with self._local:
            while not self._acquire(time.time()):
                if time.monotonic() > deadline:
                    raise ArchiveUnavailable("the archive's flush lock stayed taken; try again later")
                time.sleep(1.0)
            try:
                rewritten = removed = 0
                for name, kept, dropped in self.scan(keep, flushed_before):
                    if not dropped:
                        continue
                    if kept:
                        self.archive.put(name, b"".join(kept))
                    else:
                        self.archive.delete(name)
                    rewritten, removed = rewritten + 1, removed + dropped
            finally:
                self.archive.delete(self.LOCK)
        log.info("archive purged", extra={"objects": rewritten, "events": removed})
        return {"objects_rewritten": rewritten, "events_removed": removed}

    def expire_before(self, cutoff: datetime) -> int:
        """Delete archive objects flushed before `cutoff`: every event in them is older (retention;
        a bucket lifecycle rule does the same in production)."""
        expired = [o.name for o in self.archive.list(ARCHIVE_PREFIX) if o.name < archive_name(cutoff, 0)]
        for name in expired:
            self.archive.delete(name)
        return len(expired)

    def archived_lines(self) -> int:
        """Lines in the archive objects (tests and benchmarks)."""
        return sum((self.archive.get(o.name) or b"").count(b"\n") for o in self.archive.list(ARCHIVE_PREFIX))
