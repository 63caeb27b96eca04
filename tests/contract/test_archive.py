"""One suite for every Archive adapter and the archiver over it; Cloud Storage runs on fake-gcs-server."""

from __future__ import annotations

import threading
import uuid

import pytest

from shared.adapters.archive.local import LocalFolderArchive
from shared.config import Settings
from shared.domain.events import Interaction
from shared.domain.pipeline import EventBatch
from shared.ports.archive import Archive, ArchiveUnavailable
from shared.services.pipeline import Archiver


@pytest.fixture(params=["local", "gcs"])
def archive(request, tmp_path) -> Archive:
    if request.param == "local":
        return LocalFolderArchive(tmp_path / "archive")
    request.getfixturevalue("gcs_emulator")
    from shared.adapters.archive.gcs import GcsArchive

    store = GcsArchive.from_settings(Settings(archive_bucket=f"test-{uuid.uuid4().hex[:12]}"))
    store.prepare()
    return store


def batch(n: int, start: int = 0) -> EventBatch:
    return EventBatch(
        tuple(
            Interaction(event_id=f"e{i:05d}", event_type="view_details", user_id=f"u{i % 4}", product_id="p")
            for i in range(start, start + n)
        )
    )


def test_put_get_list_delete(archive):
    assert archive.get("a/x.jsonl") is None
    assert archive.put("a/x.jsonl", b"one\n") is True
    assert archive.put("a/x.jsonl", b"two\n") is True  # plain put overwrites
    assert archive.get("a/x.jsonl") == b"two\n"
    assert archive.put("a/x.jsonl", b"three\n", if_absent=True) is False
    assert archive.get("a/x.jsonl") == b"two\n"
    archive.put("a/y.jsonl", b"")
    archive.put("b/z.jsonl", b"z")
    listed = archive.list("a/")
    assert [o.name for o in listed] == ["a/x.jsonl", "a/y.jsonl"]
    assert [o.size for o in listed] == [4, 0] and all(o.created > 0 for o in listed)
    archive.delete("a/x.jsonl")
    archive.delete("a/x.jsonl")  # missing: no error
    assert [o.name for o in archive.list("a/")] == ["a/y.jsonl"]


def test_create_if_absent_has_one_winner(archive):
    wins = []

    def race(i: int) -> None:
        if archive.put("lock", str(i).encode(), if_absent=True):
            wins.append(i)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(wins) == 1 and archive.get("lock") == str(wins[0]).encode()


def lines(archiver: Archiver) -> list[str]:
    found = []
    for item in archiver.archive.list("events/"):
        found += (archiver.archive.get(item.name) or b"").decode().splitlines()
    return found


def test_flush_by_count_by_age_and_by_force(archive):
    archiver = Archiver(archive, flush_events=100, flush_interval_s=60)
    assert archiver.archive_batch(batch(60)) == 0  # 60 < 100 and young: stays staged
    assert archiver.archive_batch(batch(50, start=60)) == 110  # due by count
    names = [o.name for o in archive.list("events/")]
    assert len(names) == 1 and names[0].endswith("_0_events.jsonl")
    assert len(lines(archiver)) == 110
    archiver.stage(batch(5, start=200))
    staged_at = archive.list("staging/")[0].created
    assert archiver.flush(now=staged_at + 30) == 0
    assert archiver.flush(now=staged_at + 61) == 5  # due by age
    archiver.stage(batch(1, start=300))
    assert archiver.flush(force=True) == 1
    assert archive.list("staging/") == [] and archiver.archived_lines() == 116


def test_a_redelivered_batch_is_archived_once(archive):
    archiver = Archiver(archive, flush_events=10)
    first = batch(10)
    assert archiver.archive_batch(first) == 10
    assert archiver.archive_batch(first) == 0  # after its flush
    second = batch(3, start=10)
    archiver.archive_batch(second)
    archiver.archive_batch(second)  # before its flush
    archiver.flush(force=True)
    assert sorted(line for line in lines(archiver)) == sorted(e.model_dump_json() for e in first.events + second.events)


def test_a_held_lock_defers_the_flush_and_a_stale_one_is_broken(archive):
    archiver = Archiver(archive, flush_events=1, lock_expiry_s=300)
    archive.put(Archiver.LOCK, b"1e12", if_absent=True)  # held, far from stale
    assert archiver.archive_batch(batch(2)) == 0
    archive.delete(Archiver.LOCK)
    archive.put(Archiver.LOCK, b"0", if_absent=True)  # its holder died long ago
    assert archiver.flush() == 2
    assert archive.get(Archiver.LOCK) is None


class LosesTheLockRelease:
    """The archive, failing (once) to delete the flush lock: as when it fails mid-flush."""

    def __init__(self, archive: Archive) -> None:
        self.archive, self.failed = archive, False

    def __getattr__(self, name: str):
        return getattr(self.archive, name)

    def delete(self, name: str) -> None:
        if name == Archiver.LOCK and not self.failed:
            self.failed = True
            raise ArchiveUnavailable("the archive went away")
        self.archive.delete(name)


def test_a_lock_its_own_failed_release_left_is_taken_back_and_another_instances_is_not(archive):
    failing = LosesTheLockRelease(archive)
    archiver = Archiver(failing, flush_events=1, lock_expiry_s=300)  # type: ignore[arg-type]
    with pytest.raises(ArchiveUnavailable):
        archiver.archive_batch(batch(2))  # flushed, but the lock stayed
    assert archive.get(Archiver.LOCK) is not None
    other = Archiver(archive, flush_events=1, lock_expiry_s=300)
    other.stage(batch(3, start=2))
    assert other.flush(force=True) == 0  # another instance's lock, not stale: it waits
    assert archiver.flush(force=True) == 3  # its own: taken back at once, no 300 s wait
    assert archive.get(Archiver.LOCK) is None and archiver.archived_lines() == 5


class FailsAtStep:
    """The archive, failing its `step`-th write or delete; `after` makes that call take effect
    first (the archive did it, its answer was lost), as when it goes away mid-call."""

    def __init__(self, archive: Archive, step: int, after: bool) -> None:
        self.archive, self.step, self.after, self.calls = archive, step, after, 0

    def __getattr__(self, name: str):
        return getattr(self.archive, name)

    def _maybe_fail(self, call):
        self.calls += 1
        if self.calls != self.step:
            return call()
        if self.after:
            call()
        raise ArchiveUnavailable(f"went away at step {self.step}")

    def put(self, name: str, data: bytes, if_absent: bool = False) -> bool:
        return self._maybe_fail(lambda: self.archive.put(name, data, if_absent=if_absent))

    def delete(self, name: str) -> None:
        self._maybe_fail(lambda: self.archive.delete(name))


def test_a_flush_failing_at_any_step_is_finished_by_the_next_with_every_event_once(tmp_path):
    sent = [batch(4), batch(3, start=4), batch(5, start=7)]
    expected = sorted(e.model_dump_json() for b in sent for e in b.events)
    steps = 0
    while True:  # every write and delete of a flush, failing before and after it takes effect
        steps += 1
        outcomes = []
        for after in (False, True):
            archive = LocalFolderArchive(tmp_path / f"a{steps}{after}")
            failing = FailsAtStep(archive, step=10**6, after=after)
            archiver = Archiver(failing, flush_events=6)  # type: ignore[arg-type]
            for b in sent:
                archiver.stage(b)
            failing.calls, failing.step = 0, steps
            try:
                archiver.flush(force=True)
                outcomes.append(False)
            except ArchiveUnavailable:
                outcomes.append(True)
                archiver.flush(force=True)  # the next flush, with the archive back
            assert sorted(lines(archiver)) == expected, (steps, after)
            assert archive.list("staging/") == [], (steps, after)
        if not any(outcomes):  # past the last step: the flush no longer fails
            break
    assert steps > 10


def test_chunks_hold_whole_batches_of_about_flush_events(archive):
    archiver = Archiver(archive, flush_events=100)
    for i in range(5):
        archiver.stage(batch(40, start=i * 40))
    assert archiver.flush(force=True) == 200
    sizes = sorted(len((archive.get(o.name) or b"").splitlines()) for o in archive.list("events/"))
    assert sizes == [80, 120]
