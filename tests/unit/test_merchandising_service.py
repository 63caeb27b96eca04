"""The served merchandising rules: the file's until rules are published; a publication served at once
by the instance that made it, and by another after its refresh; versions never move back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.adapters.archive.local import LocalFolderArchive
from shared.domain.merchandising import parse_merchandising
from shared.services.merchandising import CURRENT, FILE_VERSION, MerchandisingService

FILE = parse_merchandising({"version": 1, "rules": [{"id": "from-file", "kind": "hide", "product_id": "a"}]})
API = parse_merchandising({"version": 1, "rules": [{"id": "from-api", "kind": "hide", "product_id": "b"}]})


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def instance(archive, clock, now=lambda: datetime(2026, 1, 1, tzinfo=UTC)) -> MerchandisingService:
    return MerchandisingService(lambda: archive, FILE, refresh_s=10, clock=clock, now=now)


def test_the_file_is_served_until_a_publication_which_another_instance_sees_after_its_refresh(tmp_path):
    archive, clock = LocalFolderArchive(tmp_path), Clock()
    one, two = instance(archive, clock), instance(archive, clock)
    assert two.current() == (FILE_VERSION, FILE)  # nothing published: the file's
    two.refresh()
    version = one.publish(API)
    assert one.current() == (version, API)  # the publisher serves it at once
    assert two.current()[1] == FILE  # the other, within its refresh period, not yet
    clock.t = 11
    two.current()  # the period passed: looked for in the background
    two.refresh()  # (waits for that look)
    assert two.current() == (version, API)
    three = instance(archive, clock)
    three.refresh()
    assert three.current() == (version, API)  # a new instance: the published rules win over the file


def test_a_publisher_with_a_clock_behind_never_moves_current_back(tmp_path):
    archive, clock = LocalFolderArchive(tmp_path), Clock()
    ahead = instance(archive, clock, now=lambda: datetime(2026, 1, 2, tzinfo=UTC))
    behind = instance(archive, clock, now=lambda: datetime(2026, 1, 2, tzinfo=UTC) - timedelta(hours=1))
    first = ahead.publish(FILE)
    second = behind.publish(API)
    assert second > first and archive.get(CURRENT) == second.encode()
    ahead.refresh()
    assert ahead.current() == (second, API)


def test_a_broken_publication_is_refused_and_the_served_rules_stay(tmp_path):
    archive, clock = LocalFolderArchive(tmp_path), Clock()
    served = instance(archive, clock)
    archive.put("merchandising/9.json", b'{"version": 1, "rules": [{"id": "x", "kind": "pin"}]}')
    archive.put(CURRENT, b"9")
    served.refresh()
    assert served.current() == (FILE_VERSION, FILE)
