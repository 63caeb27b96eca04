"""The served merchandising rules: the file given at start until rules are published through the
admin API, then the newest published version.

Published rules are JSON objects in the archive's object store: `merchandising/<version>.json`, and
`merchandising/CURRENT` names the one to serve. Versions are UTC times (sortable names), and neither
CURRENT nor an instance ever moves back: a publisher whose clock is behind the current version names
its own after it. The instance that publishes serves its version at once; the others look at CURRENT
in the background at most every `refresh_s` seconds (BackgroundRefresh, as for the features and the
ranking model). Published rules win over the file: the file seeds a store that has none, and an
admin's later change must survive a restart (to go back to the file, PUT its contents).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from shared.domain.merchandising import MerchandisingError, MerchandisingRules, Surface, apply, parse_merchandising
from shared.ports.archive import Archive
from shared.refresh import BackgroundRefresh

log = logging.getLogger(__name__)
PREFIX = "merchandising/"
CURRENT = f"{PREFIX}CURRENT"
FILE_VERSION = "file"  # the version of the rules read from the file (no published version yet)


class MerchandisingService:
    """The store's rules as served by this instance; `publish` replaces them for every instance."""

    def __init__(
        self,
        archive: Callable[[], Archive],
        initial: MerchandisingRules,
        refresh_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """
        Args:
            archive: opens the object store (called in the background on the first refresh).
            initial: the rules file's, served until a published version is found.
            refresh_s: how often CURRENT is looked at.
            clock: monotonic time, for the refresh period.
            now: wall-clock time, to name versions.
        """
        self._archive_factory = archive
        self._archive: Archive | None = None
        self.now = now
        self._rules, self._version = initial, FILE_VERSION
        self._refresh = BackgroundRefresh(self._load, refresh_s, clock, "merchandising-refresh")

    def current(self) -> tuple[str, MerchandisingRules]:
        """(version, rules) served now; never waits on the store."""
        self._refresh.due()
        return self._version, self._rules

    def publish(self, rules: MerchandisingRules) -> str:
        """Store `rules` as the newest version, serve it here at once, and return its version."""
        with self._refresh.lock:
            archive = self._store()
            current = _current(archive)
            version = self.now().strftime("%Y%m%dT%H%M%S%fZ")
            if current is not None and version <= current:
                version = f"{current}+"  # sorts after it: CURRENT never moves back
            archive.put(_object(version), rules.model_dump_json().encode())
            archive.put(CURRENT, version.encode())  # written last: readers never see half a version
            self._rules, self._version = rules, version
        return version

    def refresh(self) -> None:
        """Load the current version when newer than the one served (tests)."""
        self._refresh.now()

    def apply(
        self, query: str, surface: str, results: list[dict], limit: int, bring: Callable[[str], dict | None]
    ) -> list[dict]:
        """The results with the served rules applied (shared.domain.merchandising.apply)."""
        del surface  # every rule kind applies to any surface today; strength is read by strength_for
        return apply(self.current()[1], query, results, limit, bring)

    def strength_for(self, surface: Surface) -> float:
        return self.current()[1].strength_for(surface)

    def _store(self) -> Archive:
        if self._archive is None:
            self._archive = self._archive_factory()
        return self._archive

    def _load(self) -> None:
        try:
            archive = self._store()
            version = _current(archive)
            if version is None or (self._version != FILE_VERSION and version <= self._version):
                return
            data = archive.get(_object(version))
            if data is None:
                return
            rules = parse_merchandising(json.loads(data), f"merchandising rules {version}")
        except MerchandisingError as exc:  # written by an older or broken publisher: keep what is served
            log.error("merchandising rules %s refused; serving %s: %s", version, self._version, exc)
            return
        except Exception:  # any store failure: keep serving, look again at the next refresh
            log.warning("could not refresh the merchandising rules; serving %s", self._version, exc_info=True)
            return
        self._rules, self._version = rules, version

    def describe(self) -> dict[str, Any]:
        """The served rules as the admin API answers them."""
        version, rules = self.current()
        return {"version": version, "rules": rules.model_dump(mode="json")}


def _current(archive: Archive) -> str | None:
    current = archive.get(CURRENT)
    return current.decode() if current else None


def _object(version: str) -> str:
    return f"{PREFIX}{version}.json"
