"""Use case: publish tracked events to the bus in batches, off the request path, losing none.

`publish` only queues in memory. A background thread sends a batch when it holds
`batch_events` events or its oldest event has waited `max_latency_s`. A batch the bus refuses
goes to the local durable spool; while the spool holds anything, newer batches queue behind it
and the spool is re-published oldest first, so each user's events reach the bus in order.
`close` (at instance shutdown) publishes or spools what is still in memory.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable

from shared.domain.events import Interaction
from shared.domain.pipeline import EventBatch
from shared.ports.event_bus import EventBus
from shared.ports.event_spool import EventSpool

log = logging.getLogger(__name__)


class EventPublisher:
    def __init__(
        self,
        bus: EventBus,
        spool: EventSpool,
        batch_events: int = 100,
        max_latency_s: float = 1.0,
        retry_interval_s: float = 5.0,
    ) -> None:
        self.bus = bus
        self.spool = spool
        self.batch_events = batch_events
        self.max_latency_s = max_latency_s
        self.retry_interval_s = retry_interval_s
        self._queue: deque[Interaction] = deque()
        self._oldest = 0.0  # monotonic time the oldest queued event arrived
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._send_lock = threading.RLock()  # one sender at a time keeps batches in order
        self._backlog = True  # until the spool was looked at (events of a previous life)
        self._retry_at = 0.0
        self.published = 0
        self.spooled = 0
        self.failures = 0

    def publish(self, events: Iterable[Interaction]) -> None:
        """Queue events for the bus; no I/O, never raises for bus trouble."""
        with self._lock:
            if not self._queue:
                self._oldest = time.monotonic()
            self._queue.extend(events)
            full = len(self._queue) >= self.batch_events
            if self._thread is None and not self._stopped:
                self._thread = threading.Thread(target=self._run, name="event-publisher", daemon=True)
                self._thread.start()
        if full:
            self._wake.set()

    def flush(self) -> None:
        """Send (or spool) everything queued now, then try the spool; for shutdown and tests."""
        while self._send_next(force=True):
            pass
        self._drain_spool(force=True)

    def close(self) -> None:
        self._stopped = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush()

    def pending(self) -> int:
        """Events not on the bus yet: queued in memory or spooled."""
        return len(self._queue) + len(self.spool)

    def health(self) -> dict:
        """No I/O: counters kept in memory."""
        status = "degraded" if self._backlog and self.failures else "healthy"
        return {
            "status": status,
            "queued": len(self._queue),
            "published": self.published,
            "spooled": self.spooled,
            "failures": self.failures,
        }

    # -- background ------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stopped:
            if self._send_next(force=False):
                continue
            self._drain_spool(force=False)
            with self._lock:
                wait = self.max_latency_s - (time.monotonic() - self._oldest) if self._queue else self.max_latency_s
            self._wake.wait(max(wait, 0.001))
            self._wake.clear()

    def _take(self, force: bool) -> EventBatch | None:
        with self._lock:
            if not self._queue:
                return None
            due = force or len(self._queue) >= self.batch_events
            if not due and time.monotonic() - self._oldest < self.max_latency_s:
                return None
            size = min(self.batch_events, len(self._queue))
            events = tuple(self._queue.popleft() for _ in range(size))
            self._oldest = time.monotonic()
        return EventBatch(events)

    def _send_next(self, force: bool) -> bool:
        """Send the next batch if one is due; False when none was."""
        with self._send_lock:
            batch = self._take(force)
            if batch is None:
                return False
            self._send(batch)
        return True

    def _send(self, batch: EventBatch) -> None:
        with self._send_lock:
            if not self._backlog:
                try:
                    self.bus.publish(batch)
                    self.published += len(batch.events)
                    return
                except Exception as exc:
                    self._bus_failed(exc)
            self.spool.append(batch.batch_id, list(batch.events))
            self.spooled += len(batch.events)
        self._drain_spool(force=False)

    def _drain_spool(self, force: bool) -> None:
        """Re-publish spooled batches oldest first; stop at the first failure."""
        if not self._backlog or (not force and time.monotonic() < self._retry_at):
            return
        with self._send_lock:
            batches: dict[str, tuple[list[int], list[Interaction]]] = {}
            for spool_id, batch_id, event in self.spool.adopt():  # in spool order
                ids, events = batches.setdefault(batch_id, ([], []))
                ids.append(spool_id)
                events.append(event)
            for ids, events in batches.values():
                try:
                    self.bus.publish(EventBatch(tuple(events)))
                except Exception as exc:
                    self._bus_failed(exc)
                    return
                self.spool.remove(ids)
                self.published += len(events)
            if batches:
                log.info("re-published spooled events", extra={"batches": len(batches)})
            self._backlog = False

    def _bus_failed(self, exc: Exception) -> None:
        self.failures += 1
        self._backlog = True
        self._retry_at = time.monotonic() + self.retry_interval_s
        log.warning("event bus unavailable; spooling events", extra={"error": str(exc)})
