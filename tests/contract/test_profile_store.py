"""One suite for every ProfileStore adapter; Firestore runs against Google's emulator."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from shared.adapters.event_spool.sqlite import SqliteEventSpool
from shared.adapters.profile_store.memory import MemoryProfileStore
from shared.domain.profile import Profile
from shared.emulators import FirestoreEmulator
from shared.ports.profile_store import ProfileStore
from shared.services.profile_cache import CachedProfileStore
from tests.conftest import ROOT
from tests.contract.workload import T0, engine, event, open_store

NOW = (T0.timestamp()) + 21 * 86_400


@pytest.fixture(scope="session")
def firestore() -> Iterator[FirestoreEmulator]:
    with FirestoreEmulator() as emulator:
        previous = os.environ.get("FIRESTORE_EMULATOR_HOST")
        os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.host
        try:
            yield emulator
        finally:
            if previous is None:
                os.environ.pop("FIRESTORE_EMULATOR_HOST", None)
            else:
                os.environ["FIRESTORE_EMULATOR_HOST"] = previous
            emulator.reset("contract")


@pytest.fixture()
def firestore_host(firestore) -> str:
    return firestore.host


@pytest.fixture(params=["memory", "sqlite", "firestore"])
def kind(request) -> str:
    return request.param


@pytest.fixture()
def target(kind, tmp_path, request) -> str:
    if kind == "firestore":
        host = request.getfixturevalue("firestore_host")
        FirestoreEmulator.reset_host(host, "contract")
        return host
    return str(tmp_path / "profiles.sqlite3")


@pytest.fixture()
def codec():
    return engine()


@pytest.fixture()
def store(kind, target, codec) -> ProfileStore:
    return MemoryProfileStore() if kind == "memory" else open_store(kind, target, codec)


def scores(codec, store: ProfileStore, user: str) -> dict[str, float]:
    return store.read(user, lambda p: codec.read(p, NOW).scores)


def expected(codec, user: str, indices) -> dict[str, float]:
    profile = Profile(user)
    for i in indices:
        codec.apply(profile, event(user, i))
    return codec.read(profile, NOW).scores


def assert_scores(actual: dict[str, float], wanted: dict[str, float]) -> None:
    assert actual.keys() == wanted.keys()
    for key, value in wanted.items():
        assert math.isclose(actual[key], value, rel_tol=1e-9, abs_tol=1e-12), key


def test_unknown_user_has_no_profile(store):
    assert store.read("nobody", len) is None
    assert store.delete("nobody") is False


def test_update_creates_returns_and_persists(store, codec):
    outcome = store.update("u1", lambda p: codec.apply(p, event("u1", 0)))
    assert outcome.applied
    assert_scores(scores(codec, store, "u1"), expected(codec, "u1", [0]))


def test_state_round_trips_exactly(store, codec):
    for i in range(40):
        store.update("u1", lambda p, i=i: codec.apply(p, event("u1", i)))
    assert_scores(scores(codec, store, "u1"), expected(codec, "u1", range(40)))
    duplicate = store.update("u1", lambda p: codec.apply(p, event("u1", 39)))
    assert duplicate.applied is False  # the idempotency window is stored with the profile


def test_delete(store, codec):
    store.update("u1", lambda p: codec.apply(p, event("u1", 0)))
    store.update("u2", lambda p: codec.apply(p, event("u2", 0)))
    assert store.delete("u1") is True
    assert store.read("u1", len) is None
    assert store.read("u2", len) is not None


def test_reserved_looking_user_ids(store, codec):
    for user in ("..", "__name__", "a.b:c@d-e_f"):
        store.update(user, lambda p, user=user: codec.apply(p, event(user, 1)))
        assert store.read(user, lambda p: p.user_id) == user


def test_concurrent_threads_lose_nothing(store, codec):
    def writer(offset: int) -> None:
        for i in range(offset, 200, 4):
            store.update("u1", lambda p, i=i: codec.apply(p, event("u1", i)))

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert_scores(scores(codec, store, "u1"), expected(codec, "u1", range(200)))


@pytest.mark.parametrize(("kind", "batch"), [("sqlite", "1"), ("sqlite", "cached"), ("firestore", "cached")])
def test_two_processes_by_1000_events_converge(kind, batch, target, codec):
    """Two instances update one shopper at once; the result equals one instance applying all.

    "1": one SQLite transaction per event. "cached": event by event through each process's
    instance cache, whose write-behind coalesces them into a few transactions, as the servers do
    (one Firestore transaction per event would crawl on the emulator, which resolves every write
    conflict on a document by a ~2 s lock timeout).
    """
    command = [sys.executable, "-m", "tests.contract.workload", kind, target, "shared-user"]
    writers = [
        subprocess.Popen(
            [*command, str(start), str(start + 1000), batch],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for start in (0, 1000)
    ]
    outputs = [w.communicate(timeout=600)[0] for w in writers]
    assert all(w.returncode == 0 for w in writers), outputs
    assert [o.strip().splitlines()[-1] for o in outputs] == ["done 1000", "done 1000"]
    store = open_store(kind, target, codec)
    assert_scores(scores(codec, store, "shared-user"), expected(codec, "shared-user", range(2000)))


def test_cache_over_a_frozen_firestore_serves_and_loses_nothing(firestore, codec):
    """Firestore stops answering (the emulator is frozen with SIGSTOP) while a shopper keeps
    clicking: every request is answered from the instance cache, the store shows as degraded,
    and once Firestore is back every event is stored exactly once."""
    FirestoreEmulator.reset_host(firestore.host, "contract")
    durable = open_store("firestore", firestore.host, codec)
    cached = CachedProfileStore(durable, codec, flush_interval_s=0.1, max_staleness_s=0.05)
    cached.track("frozen", [event("frozen", i) for i in range(5)], codec.apply)
    cached.flush()
    firestore.pause()
    try:
        for i in range(5, 10):
            cached.track("frozen", [event("frozen", i)], codec.apply)
            time.sleep(0.06)  # past max staleness: each read wants to reload
            assert_scores(scores(codec, cached, "frozen"), expected(codec, "frozen", range(i + 1)))
        deadline = time.monotonic() + 10
        while cached.health()["status"] != "degraded" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cached.health()["status"] == "degraded"
        assert_scores(scores(codec, cached, "frozen"), expected(codec, "frozen", range(10)))
    finally:
        firestore.resume()
    deadline = time.monotonic() + 120
    while (cached.pending_events() or not cached.healthy) and time.monotonic() < deadline:
        time.sleep(0.1)
    cached.close()
    assert cached.health()["status"] == "healthy"
    assert_scores(scores(codec, durable, "frozen"), expected(codec, "frozen", range(10)))


def test_cache_rides_out_a_firestore_stop_and_restart(codec, tmp_path):
    """Firestore goes away and comes back (the emulator is stopped, then restarted from an export
    of its data): requests are served meanwhile, failed writes are spooled, and after the restart
    every event is stored exactly once."""
    emulator = FirestoreEmulator().start()
    previous = os.environ.get("FIRESTORE_EMULATOR_HOST")
    os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.host
    try:
        durable = open_store("firestore", emulator.host, codec)
        spool = SqliteEventSpool(tmp_path / "spool.sqlite3")
        cached = CachedProfileStore(
            durable, codec, flush_interval_s=0.1, max_staleness_s=0.05, spool=spool, apply=codec.apply
        )
        cached.track("restart", [event("restart", i) for i in range(5)], codec.apply)
        cached.flush()
        exported = emulator.export("contract", tmp_path / "export")
        emulator.stop()
        for i in range(5, 10):
            cached.track("restart", [event("restart", i)], codec.apply)
            time.sleep(0.06)
            assert_scores(scores(codec, cached, "restart"), expected(codec, "restart", range(i + 1)))
        deadline = time.monotonic() + 30
        while len(spool) < 5 and time.monotonic() < deadline:  # the flusher's failed writes spool them
            time.sleep(0.05)
        assert len(spool) == 5 and cached.health()["status"] == "degraded"
        emulator.start(import_data=exported)
        deadline = time.monotonic() + 120
        while (cached.pending_events() or not cached.healthy) and time.monotonic() < deadline:
            time.sleep(0.1)
        cached.close()
        assert len(spool) == 0 and cached.health()["status"] == "healthy"
        assert_scores(scores(codec, durable, "restart"), expected(codec, "restart", range(10)))
    finally:
        emulator.stop()
        if previous is not None:
            os.environ["FIRESTORE_EMULATOR_HOST"] = previous
