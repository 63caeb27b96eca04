"""Use cases of the scheduled privacy work and of the data export: erase shoppers everywhere,
enforce retention, and gather everything held about one shopper.

The 72-hour promise: a request is made durable with its tombstone before DELETE answers; the
queue runs hourly (Cloud Scheduler retries a failed call) and works oldest first; each step is
idempotent and recorded when done, so a crash or an outage costs one hour, not the request; after
a grace period (events already in flight are dropped by the tombstone, never written after the
erasure) that leaves about 70 tries; a request past its due time is logged as an error for the
alert policy.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.domain.events import as_utc
from shared.domain.jsonable import jsonable
from shared.domain.privacy import DATA_USES, ERASURE_STEPS, DeletionRequest
from shared.ports.feature_store import FeatureStore
from shared.ports.graph_memory import GraphMemory
from shared.ports.privacy_store import PrivacyStore
from shared.ports.profile_store import ProfileStore
from shared.ports.warehouse import Warehouse
from shared.services.features import FeaturePublisher
from shared.services.pipeline import Archiver
from shared.services.preferences import PreferencesService

log = logging.getLogger(__name__)


class ErasureService:
    def __init__(
        self,
        store: PrivacyStore,
        profiles: ProfileStore,
        graph: GraphMemory,
        warehouse: Warehouse,
        archiver: Archiver,
        publisher: FeaturePublisher,
        features: FeatureStore,
        grace: timedelta = timedelta(minutes=15),
        retention_days: int = 90,
    ) -> None:
        self.store = store
        self.profiles = profiles
        self.graph = graph
        self.warehouse = warehouse
        self.archiver = archiver
        self.publisher = publisher
        self.features = features
        self.grace = grace
        self.retention_days = retention_days

    def run(self, at: datetime | None = None) -> dict[str, Any]:
        """What the scheduled process_deletion_queue does each hour: erasures, then retention."""
        now = as_utc(at or datetime.now(UTC))
        return {"deletions": self.process_queue(now), "retention": self.enforce_retention(now)}

    # -- the deletion queue ----------------------------------------------------------------------
    def process_queue(self, at: datetime | None = None, limit: int = 500) -> dict[str, Any]:
        """Run the remaining steps of every request past its grace period, each step once for all
        of them; a failed step stops the later ones (the features must not be rebuilt from a
        warehouse that still holds the user) until the next run."""
        now = as_utc(at or datetime.now(UTC))
        requests = [r for r in self.store.pending_deletions(limit) if now - r.requested_at >= self.grace]
        done: dict[str, Any] = {}
        for step in ERASURE_STEPS:
            todo = [r for r in requests if step not in r.steps]
            if not todo:
                continue
            log.info("erasing", extra={"step": step, "requests": len(todo)})
            try:
                done[step] = self._erase(step, {r.user_id for r in todo}, now)
            except Exception as exc:
                log.exception("erasure step failed; retried on the next run", extra={"step": step})
                for request in todo:
                    self._save(request, attempts=request.attempts + 1, last_error=f"{step}: {exc}")
                done[step] = {"error": str(exc)}
                break
            for request in todo:
                request.steps[step] = now
                self._save(request, last_error=None)
        completed = [r for r in requests if not r.remaining()]
        for request in completed:
            self._save(request, status="complete", completed_at=now)
        waiting = self.store.pending_deletions(limit)
        overdue = [r.request_id for r in waiting if now > r.due_by]
        if overdue:
            log.error("deletion requests are past their 72-hour due time", extra={"requests": overdue})
        summary = {"processed": len(requests), "completed": len(completed), "waiting": len(waiting)}
        return summary | {"overdue": overdue, "steps": done}

    def _erase(self, step: str, users: set[str], now: datetime) -> Any:
        if step == "profile":  # again: an instance that had not seen the tombstone may have written
            return sum(self.profiles.delete(user) for user in users)
        if step == "graph":
            return sum(self.graph.delete_user(user) for user in users)
        if step == "warehouse":
            return self.warehouse.delete_users(users)
        if step == "archive":
            return self.archiver.purge(lambda event: event.get("user_id") not in users)
        if step == "features":  # a version without them (pending users are left out), then drop older ones
            published = self.publisher.republish(now)
            return published | {"versions_discarded": self.features.discard_older()}
        raise ValueError(f"unknown erasure step {step!r}")

    def _save(self, request: DeletionRequest, **changes: Any) -> None:
        for name, value in changes.items():
            setattr(request, name, value)
        self.store.save_deletion(request)

    # -- retention -------------------------------------------------------------------------------
    def enforce_retention(self, at: datetime | None = None) -> dict[str, Any]:
        """Remove raw events older than the store's window, and older than each shopper's own
        shorter window, from the warehouse's event tables and the archive."""
        now = as_utc(at or datetime.now(UTC))
        cutoff = now - timedelta(days=self.retention_days)
        shorter = self.store.retention_overrides(below=self.retention_days)
        rows = self.warehouse.delete_events_before(cutoff)
        for days, users in _group_by_value(shorter).items():
            rows += self.warehouse.delete_events_before(now - timedelta(days=days), users)

        archive = {"objects_expired": self.archiver.expire_before(cutoff)}
        if shorter:  # objects flushed more than a day after the shortest window began cannot hold its events

            def keep(event: dict[str, Any]) -> bool:
                days = shorter.get(event.get("user_id", ""), self.retention_days)
                return as_utc(datetime.fromisoformat(event["timestamp"])) >= now - timedelta(days=days)

            oldest = now - timedelta(days=min(shorter.values()) - 1)
            archive |= self.archiver.purge(keep, flushed_before=oldest)
        log.info("retention enforced", extra={"warehouse_rows": rows} | archive)
        summary = {"cutoff": cutoff.isoformat(), "shoppers_with_shorter_windows": len(shorter), "warehouse_rows": rows}
        return summary | archive

    # -- transparency ----------------------------------------------------------------------------
    def export(self, user_id: str, preferences: PreferencesService) -> dict[str, Any]:
        """Everything held about the shopper, from every store, with what each part is used for."""
        orders, signals = self.graph.history(user_id)
        held = {
            "privacy_settings": self.store.settings(user_id),
            "live_profile": preferences.live(user_id),
            "warehouse": self.warehouse.user_rows(user_id),
            "archive": [
                json.loads(line)
                for _, lines, _ in self.archiver.scan(lambda event: event.get("user_id") == user_id)
                for line in lines
            ],
            "graph_memory": {
                "orders": [dataclasses.asdict(o) for o in orders],
                "signals": [dataclasses.asdict(s) for s in signals],
                "facts": [dataclasses.asdict(f) for f in self.graph.facts(user_id)],
            },
            "learnt_features": self.features.user(user_id),
        }
        sections = {name: {"used_for": DATA_USES[name], "data": data} for name, data in held.items()}
        document = {"user_id": user_id, "exported_at": datetime.now(UTC).isoformat(), "data": sections}
        return jsonable(document)


def _group_by_value(days_by_user: dict[str, int]) -> dict[int, list[str]]:
    groups: dict[int, list[str]] = {}
    for user, days in days_by_user.items():
        groups.setdefault(days, []).append(user)
    return groups
