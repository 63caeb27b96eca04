"""One suite for every PrivacyStore adapter; Firestore runs against Google's emulator."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.cloud import firestore

from shared.adapters.privacy_store.firestore import FirestorePrivacyStore
from shared.adapters.privacy_store.sqlite import SqlitePrivacyStore
from shared.config import Settings
from shared.domain.privacy import ERASURE_STEPS, DeletionRequest, PrivacyFeatures, PrivacySettings
from shared.emulators import FirestoreEmulator
from shared.ports.privacy_store import PrivacyStore

PROJECT = "contract-privacy"
T0 = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def firestore_emulator() -> Iterator[FirestoreEmulator]:
    with FirestoreEmulator() as emulator:
        try:
            yield emulator
        finally:
            emulator.reset(PROJECT)


@pytest.fixture(params=["sqlite", "firestore"])
def kind(request) -> str:
    return request.param


@pytest.fixture()
def open_store(kind, tmp_path, request, monkeypatch) -> Iterator[Callable[[], PrivacyStore]]:
    """Opens stores (as separate instances would) on one test's own data."""
    opened: list[PrivacyStore] = []
    if kind == "sqlite":
        settings = Settings(privacy_path=tmp_path / "privacy.sqlite3")
        factory: Callable[[], PrivacyStore] = lambda: SqlitePrivacyStore.from_settings(settings)  # noqa: E731
    else:
        monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", request.getfixturevalue("firestore_emulator").host)
        # The stores read with a 2 s deadline; a cold emulator's first answer may take longer on a
        # busy machine (seen once with both cores taken): warm it up without one.
        firestore.Client(project=PROJECT).collection("warm-up").document("up").get(timeout=60)
        prefix = f"privacy_{uuid.uuid4().hex[:12]}_"  # each test sees only its own documents
        settings = Settings(firestore_project=PROJECT, privacy_collection_prefix=prefix)
        factory = lambda: FirestorePrivacyStore.from_settings(settings)  # noqa: E731

    def open_one() -> PrivacyStore:
        store = factory()
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        if isinstance(store, SqlitePrivacyStore):
            store.close()
        elif isinstance(store, FirestorePrivacyStore):
            store.client.close()


@pytest.fixture()
def store(open_store) -> PrivacyStore:
    return open_store()


def assert_utc(at: datetime | None) -> None:
    assert at is not None and at.tzinfo is not None and at.utcoffset() == timedelta(0)


def test_settings_round_trip(store):
    assert store.settings("nobody") is None
    mine = PrivacySettings(
        personalization_enabled=False,
        features=PrivacyFeatures(search_history=False, household_inference=False),
        data_retention_days=30,
    )
    store.save_settings("u1", mine)
    assert store.settings("u1") == mine
    store.save_settings("u1", PrivacySettings())
    assert store.settings("u1") == PrivacySettings()
    assert store.settings("u2") is None


def test_settings_of_reserved_looking_user_ids(store):
    for i, user in enumerate(("..", ".", "__name__", "a.b:c@d-e_f")):
        store.save_settings(user, PrivacySettings(data_retention_days=10 + i))
    for i, user in enumerate(("..", ".", "__name__", "a.b:c@d-e_f")):
        assert store.settings(user) == PrivacySettings(data_retention_days=10 + i)


def test_forget_settings(store):
    store.save_settings("u1", PrivacySettings(personalization_enabled=False))
    store.save_settings("u2", PrivacySettings(personalization_enabled=False))
    store.forget_settings("u1")
    store.forget_settings("nobody")  # not an error
    assert store.settings("u1") is None
    assert store.settings("u2") == PrivacySettings(personalization_enabled=False)


def test_retention_overrides(store):
    assert store.retention_overrides(below=90) == {}
    store.save_settings("short", PrivacySettings(data_retention_days=7))
    store.save_settings("..", PrivacySettings(data_retention_days=30))
    store.save_settings("default", PrivacySettings())
    store.save_settings("long", PrivacySettings(data_retention_days=365))
    store.save_settings("edge", PrivacySettings(data_retention_days=89))
    assert store.retention_overrides(below=90) == {"short": 7, "..": 30, "edge": 89}
    assert store.retention_overrides(below=30) == {"short": 7}
    store.forget_settings("short")
    assert store.retention_overrides(below=30) == {}


def test_record_deletion_saves_request_and_tombstone(store):
    first = DeletionRequest.new("u1", T0)
    assert store.record_deletion(first) == first
    assert store.deletion(first.request_id) == first
    assert store.deleted_at("u1") == T0
    assert store.deleted_at("u2") is None
    assert store.deletion("no-such-request") is None


def test_record_deletion_returns_the_pending_request_and_moves_the_tombstone(store):
    first = DeletionRequest.new("u1", T0)
    store.record_deletion(first)
    again = DeletionRequest.new("u1", T0 + timedelta(hours=1))
    assert store.record_deletion(again) == first  # nothing new saved
    assert store.deletion(again.request_id) is None
    assert store.deleted_at("u1") == T0 + timedelta(hours=1)
    earlier = DeletionRequest.new("u1", T0 - timedelta(hours=1))
    assert store.record_deletion(earlier) == first
    assert store.deleted_at("u1") == T0 + timedelta(hours=1)  # forward only
    assert [r.request_id for r in store.pending_deletions()] == [first.request_id]


def test_record_deletion_after_a_finished_one_saves_a_new_request(store):
    first = DeletionRequest.new("u1", T0)
    store.record_deletion(first)
    done = first.model_copy(update={"status": "complete", "completed_at": T0 + timedelta(hours=2)})
    store.save_deletion(done)
    second = DeletionRequest.new("u1", T0 + timedelta(days=3))
    assert store.record_deletion(second) == second
    assert store.deletion(first.request_id) == done
    assert store.deletion(second.request_id) == second
    assert store.deleted_at("u1") == T0 + timedelta(days=3)
    assert store.pending_deletions() == [second]


def test_save_deletion_progress(store):
    request = store.record_deletion(DeletionRequest.new("u1", T0))
    progress = request.model_copy(
        update={
            "steps": {"graph": T0 + timedelta(minutes=20), "warehouse": T0 + timedelta(minutes=21)},
            "attempts": 2,
            "last_error": "archive: unavailable",
        }
    )
    store.save_deletion(progress)
    saved = store.deletion(request.request_id)
    assert saved == progress
    assert saved.remaining() == [step for step in ERASURE_STEPS if step not in ("graph", "warehouse")]
    assert store.pending_deletions() == [progress]
    steps = {step: T0 + timedelta(hours=1) for step in ERASURE_STEPS} | progress.steps
    done = progress.model_copy(
        update={"steps": steps, "attempts": 3, "last_error": None, "status": "complete", "completed_at": T0}
    )
    store.save_deletion(done)
    assert store.deletion(request.request_id) == done
    assert store.pending_deletions() == []


def test_pending_deletions_oldest_first_without_finished_ones(store):
    offsets = {"u1": 5, "u2": 1, "u3": 3, "u4": 2, "u5": 4}
    requests = {
        user: store.record_deletion(DeletionRequest.new(user, T0 + timedelta(minutes=m))) for user, m in offsets.items()
    }
    store.save_deletion(requests["u4"].model_copy(update={"status": "complete", "completed_at": T0}))
    pending = store.pending_deletions()
    assert [r.user_id for r in pending] == ["u2", "u3", "u5", "u1"]
    assert pending[0] == requests["u2"]
    assert [r.user_id for r in store.pending_deletions(limit=2)] == ["u2", "u3"]


def test_datetimes_come_back_in_utc(store):
    paris = timezone(timedelta(hours=2))
    at = datetime(2026, 10, 1, 14, 0, 0, 123456, tzinfo=paris)
    request = DeletionRequest.new("u1", at).model_copy(update={"steps": {"graph": at}})
    store.record_deletion(request)
    for read in (store.deletion(request.request_id), store.pending_deletions()[0]):
        assert read == request
        for value in (read.requested_at, read.due_by, read.steps["graph"]):
            assert_utc(value)
    deleted = store.deleted_at("u1")
    assert_utc(deleted)
    assert deleted == at


def test_claim_nonce(store):
    expires = datetime.now(UTC) + timedelta(minutes=5)
    assert store.claim_nonce("n1", expires) is True
    assert store.claim_nonce("n1", expires) is False
    assert store.claim_nonce("n2", expires) is True
    assert store.claim_nonce("n/with/slashes and spaces", expires) is True
    assert store.claim_nonce("n/with/slashes and spaces", expires) is False


def test_claim_nonce_is_atomic_across_threads_and_instances(open_store):
    stores = [open_store() for _ in range(4)]
    expires = datetime.now(UTC) + timedelta(minutes=5)
    for round_ in range(3):
        start = threading.Barrier(8)

        def claim(i: int, nonce: str = f"nonce-{round_}", start: threading.Barrier = start) -> bool:
            start.wait()
            return stores[i % len(stores)].claim_nonce(nonce, expires)

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(claim, range(8)))
        assert results.count(True) == 1


def test_record_deletion_is_atomic_across_instances(open_store):
    stores = [open_store() for _ in range(4)]
    requests = [DeletionRequest.new("u1", T0 + timedelta(seconds=i)) for i in range(4)]
    start = threading.Barrier(4)

    def record(i: int) -> DeletionRequest:
        start.wait()
        return stores[i].record_deletion(requests[i])

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(record, range(4)))
    assert len({r.request_id for r in results}) == 1
    assert [r.request_id for r in stores[0].pending_deletions()] == [results[0].request_id]
    assert stores[0].deleted_at("u1") == T0 + timedelta(seconds=3)
