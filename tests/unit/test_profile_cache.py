"""The instance cache: write-behind coalescing, freshness across instances, surviving store failures."""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime, timedelta

import pytest

from shared.adapters.event_spool.sqlite import SqliteEventSpool
from shared.adapters.profile_store.memory import MemoryProfileStore
from shared.domain.engine import ProfileEngine
from shared.domain.events import Interaction
from shared.domain.profile import Profile
from shared.services.profile_cache import CachedProfileStore

T0 = datetime(2026, 3, 1, tzinfo=UTC)


class CountingStore(MemoryProfileStore):
    """The durable store of these tests: counts writes and can be switched off."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.down = False

    def update(self, user_id, change):
        if self.down:
            raise ConnectionError("store down")
        self.writes += 1
        return super().update(user_id, change)

    def read(self, user_id, view):
        if self.down:
            raise ConnectionError("store down")
        return super().read(user_id, view)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def engine(rules, small_catalog) -> ProfileEngine:
    return ProfileEngine(rules, small_catalog, dedup_window=64)


def click(i: int, product: str = "oat-milk", user: str = "u") -> Interaction:
    return Interaction(
        event_id=f"e{i}",
        event_type="click_product",
        user_id=user,
        product_id=product,
        timestamp=T0 + timedelta(seconds=i),
    )


def brand(store, engine, user: str = "u") -> float | None:
    return store.read(user, lambda p: engine.read(p, T0.timestamp() + 3600).of("brand:oatly"))


def expected(engine, events) -> float:
    """The brand affinity one plain profile gets from these events."""
    profile = Profile("u")
    for event in events:
        engine.apply(profile, event)
    return engine.read(profile, T0.timestamp() + 3600).of("brand:oatly")


def cache(durable, engine, clock, **options) -> CachedProfileStore:
    return CachedProfileStore(durable, engine, clock=clock, start_flusher=False, **options)


def test_events_are_visible_at_once_and_written_in_one_coalesced_write(engine):
    durable, clock = CountingStore(), Clock()
    store = cache(durable, engine, clock)
    for i in range(100):
        store.track("u", [click(i)], engine.apply)
    assert brand(store, engine) == pytest.approx(1.0)  # 100 clicks, capped
    assert durable.writes == 0 and store.pending_events() == 100
    assert store.flush() == 100
    assert durable.writes == 1 and store.pending_events() == 0
    assert brand(durable, engine) == pytest.approx(brand(store, engine))


def test_another_instance_sees_the_write_after_max_staleness(engine):
    durable, clock = CountingStore(), Clock()
    a = cache(durable, engine, clock, max_staleness_s=0.5)
    b = cache(durable, engine, clock, max_staleness_s=0.5)
    assert brand(b, engine) is None
    b.track("u", [click(0, "greek-yogurt")], engine.apply)  # b caches its own view of "u"
    a.track("u", [click(1)], engine.apply)
    a.flush()
    assert brand(b, engine) is None or brand(b, engine) == 0.0  # b's copy is still fresh
    clock.now += 0.6
    assert brand(b, engine) == pytest.approx(expected(engine, [click(1)]))  # reloaded
    b.flush()
    both = durable.read("u", lambda p: engine.read(p, T0.timestamp() + 3600))
    assert both.of("brand:oatly") > 0 and both.of("brand:chobani") > 0  # nothing lost


def test_store_outage_keeps_serving_and_loses_nothing(engine):
    durable, clock = CountingStore(), Clock()
    store = cache(durable, engine, clock, max_staleness_s=0.1)
    store.track("u", [click(0)], engine.apply)
    store.flush()
    durable.down = True
    store.track("u", [click(1), click(2)], engine.apply)
    assert store.flush() == 0 and store.healthy is False
    clock.now += 1.0  # stale, and the store cannot be read: the cached copy is served
    three = expected(engine, [click(0), click(1), click(2)])
    assert brand(store, engine) == pytest.approx(three)
    store.track("new-user", [click(3, user="new-user")], engine.apply)  # unknown while down: cached
    durable.down = False
    assert store.flush() == 3 and store.healthy is True
    assert brand(durable, engine) == pytest.approx(three)  # each event once
    assert brand(durable, engine, "new-user") == pytest.approx(expected(engine, [click(3)]))


def test_close_writes_what_is_queued(engine):
    durable = CountingStore()
    store = CachedProfileStore(durable, engine, flush_interval_s=60)
    store.track("u", [click(0)], engine.apply)
    store.close()
    assert brand(durable, engine) == pytest.approx(expected(engine, [click(0)]))


def test_the_flusher_thread_writes_within_its_interval(engine):
    durable = CountingStore()
    store = CachedProfileStore(durable, engine, flush_interval_s=0.05)
    store.track("u", [click(0)], engine.apply)
    deadline = time.monotonic() + 5
    while durable.writes == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert durable.writes == 1
    store.close()


def test_eviction_keeps_unflushed_profiles(engine):
    durable, clock = CountingStore(), Clock()
    store = cache(durable, engine, clock, max_entries=2)
    for i, user in enumerate(("a", "b", "c")):
        store.track(user, [click(i, user=user)], engine.apply)
    assert len(store) == 3  # nothing flushed yet, nothing evicted
    store.flush()
    store.track("d", [click(9, user="d")], engine.apply)
    assert len(store) <= 3
    assert all(brand(store, engine, user) for user in "abcd")  # evicted ones reload from the store


def test_delete_drops_cache_queue_and_store(engine):
    durable, clock = CountingStore(), Clock()
    store = cache(durable, engine, clock)
    store.track("u", [click(0)], engine.apply)
    store.flush()
    store.track("u", [click(1)], engine.apply)
    assert store.delete("u") is True
    assert store.read("u", len) is None and durable.read("u", len) is None
    assert store.flush() == 0


def test_a_failing_store_is_not_asked_again_until_a_probe_succeeds(engine):
    durable, clock = CountingStore(), Clock()
    reads = []
    original = durable.read
    durable.read = lambda user_id, view: reads.append(user_id) or original(user_id, view)
    store = cache(durable, engine, clock, max_staleness_s=0.1)
    store.track("u", [click(0)], engine.apply)
    store.flush()
    durable.down = True
    clock.now += 1.0
    assert brand(store, engine) == pytest.approx(expected(engine, [click(0)]))  # one failed read
    assert store.health()["status"] == "degraded"
    asked = len(reads)
    for _ in range(5):
        clock.now += 1.0
        brand(store, engine)
        assert store.read("stranger", len) is None  # unknown while down: plain results, no wait
    assert len(reads) == asked  # no store I/O on the request path while it is failing
    assert store.probe() is False
    durable.down = False
    assert store.probe() is True and store.health()["status"] == "healthy"


def test_idle_profiles_expire_and_bytes_are_bounded(engine):
    durable, clock = CountingStore(), Clock()
    store = cache(durable, engine, clock, ttl_s=60, max_bytes=10_000)
    for i in range(20):
        store.track(f"u{i}", [click(i, user=f"u{i}")], engine.apply)
    assert len(store) == 20  # all unflushed: kept whatever the bounds
    store.flush()
    store.track("late", [click(99, user="late")], engine.apply)
    assert store.cached_bytes() <= 10_000 + 2_000 and len(store) < 21
    clock.now += 61
    store.flush()
    store.track("fresh", [click(100, user="fresh")], engine.apply)
    store.flush()
    assert set(store._entries) == {"fresh"}  # the idle ones expired
    assert brand(store, engine, "u3") == pytest.approx(expected(engine, [click(3, user="u3")]))  # reloads


def dead_pid() -> int:
    finished = subprocess.Popen(["true"])
    finished.wait()
    return finished.pid


def test_events_of_a_failed_write_are_spooled_and_replayed_by_the_next_instance(engine, tmp_path):
    durable, clock = CountingStore(), Clock()
    spool_path = tmp_path / "spool.sqlite3"
    first = cache(durable, engine, clock, spool=SqliteEventSpool(spool_path, owner=dead_pid()), apply=engine.apply)
    first.track("u", [click(0)], engine.apply)
    first.flush()
    durable.down = True
    first.track("u", [click(1), click(2)], engine.apply)
    assert first.flush() == 0
    first.track("u", [click(3)], engine.apply)
    assert first.flush() == 0  # a second failure spools only what is new
    assert len(SqliteEventSpool(spool_path)) == 3
    # The instance dies; the store comes back; the next instance on the host replays the spool.
    durable.down = False
    second = cache(durable, engine, clock, spool=SqliteEventSpool(spool_path), apply=engine.apply)
    assert second.pending_events() == 3
    assert second.flush() == 3
    assert len(SqliteEventSpool(spool_path)) == 0
    assert brand(durable, engine) == pytest.approx(expected(engine, [click(i) for i in range(4)]))


def test_a_successful_write_clears_its_spooled_events(engine, tmp_path):
    durable, clock = CountingStore(), Clock()
    spool = SqliteEventSpool(tmp_path / "spool.sqlite3")
    store = cache(durable, engine, clock, spool=spool, apply=engine.apply)
    durable.down = True
    store.track("u", [click(0)], engine.apply)
    store.flush()
    assert len(spool) == 1
    durable.down = False
    store.track("u", [click(1)], engine.apply)
    assert store.flush() == 2 and len(spool) == 0
    assert brand(durable, engine) == pytest.approx(expected(engine, [click(0), click(1)]))
