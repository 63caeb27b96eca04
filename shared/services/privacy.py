"""Use case: a shopper's privacy choices on the request path, and the immediate part of a deletion.

Settings and tombstones are read through a small per-instance cache (`ttl_s`). Only a shopper
this instance has never seen waits for the store, and not while the store is failing (the
defaults then, as a failed read gives); an expired entry is served while a background read
refreshes it, so a slow or frozen store holds no request but the first to find it failing (it
held every one for the store's 2 s read timeout under injected faults). A change made on this
instance applies at once, on other instances within `ttl_s` and one read.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from shared.domain.events import Interaction
from shared.domain.pipeline import EventBatch
from shared.domain.privacy import DeletionRequest, PrivacySettings, PrivacyUpdate
from shared.ports.identity import Caller, InvalidToken
from shared.ports.privacy_store import PrivacyStore
from shared.ports.profile_store import ProfileStore

log = logging.getLogger(__name__)
DEFAULTS = PrivacySettings()


@dataclass(frozen=True)
class UserPrivacy:
    settings: PrivacySettings
    deleted_at: datetime | None  # the latest deletion request: events up to then are dropped

    def erased(self, event: Interaction) -> bool:
        """An event from before the shopper's deletion request: it must never be written."""
        return self.deleted_at is not None and event.timestamp <= self.deleted_at

    def refuses(self, event: Interaction) -> str | None:
        """Why the event must be dropped (deleted user, a setting), or None to keep it."""
        return "user_deleted" if self.erased(event) else self.settings.allows(event)


def ignored_signals(privacy: UserPrivacy | None) -> tuple[str, ...]:
    """Decay classes a profile read leaves out: what purchases taught, with purchase history off."""
    return () if privacy is None or privacy.settings.features.purchase_history else ("purchase",)


class InvalidPrivacySettings(ValueError):
    """A setting the store does not allow (e.g. a retention longer than the store keeps data)."""


class PrivacyService:
    def __init__(
        self,
        store: PrivacyStore,
        profiles: ProfileStore,
        retention_days: int = 90,
        ttl_s: float = 5.0,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.profiles = profiles
        self.retention_days = retention_days
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.clock = clock
        self._cache: OrderedDict[str, tuple[float, UserPrivacy]] = OrderedDict()
        self._lock = threading.Lock()
        self._refreshing: set[str] = set()
        self.healthy = True  # false while reads of the store fail (answers use the last known state)
        self._refresher = ThreadPoolExecutor(max_workers=2, thread_name_prefix="privacy-refresh")

    def of(self, user_id: str) -> UserPrivacy:
        """The user's settings and tombstone (cached). When the store fails, the last known state
        is served, or the defaults for a user this instance never saw (logged)."""
        with self._lock:
            cached = self._cache.get(user_id)
            stale = cached is not None and self.clock() - cached[0] >= self.ttl_s
            # A stranger while the store is failing gets the defaults at once (what a failed read
            # would give, without waiting for its timeout again) and a read in the background.
            later = stale or (cached is None and not self.healthy)
            if later and user_id not in self._refreshing:
                self._refreshing.add(user_id)
                self._refresher.submit(self._refresh, user_id)
        if cached is not None:
            return cached[1]
        if not self.healthy:
            return UserPrivacy(DEFAULTS, None)
        return self._refresh(user_id) or UserPrivacy(DEFAULTS, None)

    def _refresh(self, user_id: str) -> UserPrivacy | None:
        """Read the user's state from the store into the cache; None when the store failed."""
        now = self.clock()
        try:
            state = UserPrivacy(self.store.settings(user_id) or DEFAULTS, self.store.deleted_at(user_id))
        except Exception:
            self.healthy = False
            log.warning("privacy store unavailable; using the last known settings", exc_info=True)
            with self._lock:  # try again after ttl_s, not on every request meanwhile
                if (cached := self._cache.get(user_id)) is not None:
                    self._cache[user_id] = (now, cached[1])
            return None
        else:
            self.healthy = True
            self._remember(user_id, state, now)
            return state
        finally:
            with self._lock:
                self._refreshing.discard(user_id)

    def screen(self, events: Iterable[Interaction]) -> tuple[list[Interaction], dict[str, str]]:
        """(events to keep, {event id: why it was dropped}) under each user's settings and tombstone."""
        kept: list[Interaction] = []
        refused: dict[str, str] = {}
        for event in events:
            reason = self.of(event.user_id).refuses(event)
            if reason is None:
                kept.append(event)
            else:
                refused[event.event_id] = reason
        return kept, refused

    def without_erased(self, batch: EventBatch) -> EventBatch | None:
        """The batch less events of deleted shoppers that arrived late; None when none is left.
        (The event functions apply it: an erasure must not be undone by a redelivery.)"""
        kept = tuple(event for event in batch.events if not self.of(event.user_id).erased(event))
        if len(kept) < len(batch.events):
            log.info("dropped events of deleted users", extra={"events": len(batch.events) - len(kept)})
        if not kept:
            return None
        return batch if len(kept) == len(batch.events) else EventBatch(kept)

    def spend(self, token: Caller | None) -> None:
        """A token authorizes one change: claim its nonce, atomically across instances, until the
        token expires. The changes below call it once the change is valid, just before applying it
        (a refused change leaves the token unspent).

        Args:
            token: the caller whose token authorizes the change; None with authentication off.

        Raises:
            InvalidToken: `token_replayed`, the token was already spent on a change.
        """
        if token is not None and not self.store.claim_nonce(token.nonce, token.expires_at):
            raise InvalidToken("token_replayed", "this token was already used for a change: get a new one")

    def update(self, user_id: str, change: PrivacyUpdate, token: Caller | None = None) -> PrivacySettings:
        """Apply the fields `change` gives to the stored settings, spending `token` (see spend).

        Raises:
            InvalidPrivacySettings: a setting the store does not allow (the token is not spent).
            InvalidToken: the token was already spent.
        """
        current = self._refresh(user_id) or self.of(user_id)  # the change applies to the stored settings
        settings = change.applied_to(current.settings)
        if settings.data_retention_days > self.retention_days:
            raise InvalidPrivacySettings(
                f"data_retention_days can be at most {self.retention_days}: this store keeps raw events that long"
            )
        self.spend(token)
        self.store.save_settings(user_id, settings)
        self._remember(user_id, UserPrivacy(settings, current.deleted_at), self.clock())
        return settings

    def request_deletion(
        self, user_id: str, at: datetime | None = None, token: Caller | None = None
    ) -> DeletionRequest:
        """Tombstone first (events from now on are dropped), then the live profile and settings go
        at once; the graph, warehouse, archive and features are erased by the deletion queue.
        `token` is spent (see spend): InvalidToken when it already was."""
        self.spend(token)
        at = at or datetime.now(UTC)
        request = self.store.record_deletion(DeletionRequest.new(user_id, at))
        self.profiles.delete(user_id)  # the instance cache and the profile store
        self.store.forget_settings(user_id)
        self._remember(user_id, UserPrivacy(DEFAULTS, self.store.deleted_at(user_id)), self.clock())
        log.info("deletion requested", extra={"request_id": request.request_id})
        return request

    def deletion(self, request_id: str) -> DeletionRequest | None:
        return self.store.deletion(request_id)

    def _remember(self, user_id: str, state: UserPrivacy, now: float) -> None:
        with self._lock:
            self._cache[user_id] = (now, state)
            self._cache.move_to_end(user_id)
            while len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)
