"""The privacy cache on the request path: a slow store holds only a shopper's first request."""

from __future__ import annotations

import threading
import time

from shared.adapters.privacy_store.sqlite import SqlitePrivacyStore
from shared.domain.privacy import PrivacySettings
from shared.services.privacy import PrivacyService


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Gated(SqlitePrivacyStore):
    """The SQLite store whose settings reads wait for `opened` (a frozen store), counting them."""

    def __init__(self, path) -> None:
        super().__init__(path)
        self.opened = threading.Event()
        self.opened.set()
        self.reads = 0

    def settings(self, user_id: str) -> PrivacySettings | None:
        self.reads += 1
        self.opened.wait(10)
        return super().settings(user_id)


def wait_for(condition) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_an_expired_entry_is_served_at_once_and_refreshed_in_the_background(tmp_path):
    store, clock = Gated(tmp_path / "privacy.sqlite3"), Clock()
    service = PrivacyService(store, profiles=None, ttl_s=5, clock=clock)  # type: ignore[arg-type]
    assert service.of("ann").settings.personalization_enabled  # first sight: read from the store
    store.save_settings("ann", PrivacySettings(personalization_enabled=False))  # changed by another instance
    clock.now = 6.0  # expired
    store.opened.clear()  # the store hangs
    started = time.monotonic()
    for _ in range(5):
        assert service.of("ann").settings.personalization_enabled  # the last known state, at once
    assert time.monotonic() - started < 1.0
    wait_for(lambda: store.reads == 2)  # one background read for all five requests
    store.opened.set()
    wait_for(lambda: not service.of("ann").settings.personalization_enabled)  # the change arrives
    assert store.reads == 2


def test_a_failing_store_keeps_the_last_known_state_and_defaults_for_strangers(tmp_path):
    store, clock = Gated(tmp_path / "privacy.sqlite3"), Clock()
    store.save_settings("bob", PrivacySettings(personalization_enabled=False))
    service = PrivacyService(store, profiles=None, ttl_s=5, clock=clock)  # type: ignore[arg-type]
    assert not service.of("bob").settings.personalization_enabled
    store._db.close()  # every read now fails
    clock.now = 6.0
    assert not service.of("bob").settings.personalization_enabled
    wait_for(lambda: not service._refreshing)  # the refresh failed
    reads = store.reads
    for _ in range(5):
        assert not service.of("bob").settings.personalization_enabled
    assert store.reads == reads  # the failing store is tried again after ttl_s, not on every request
    clock.now = 12.0
    service.of("bob")
    wait_for(lambda: store.reads == reads + 1)
    started = time.monotonic()
    assert service.of("carol").settings == PrivacySettings()  # never seen: the defaults at once
    assert time.monotonic() - started < 1.0
