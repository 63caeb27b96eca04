"""Ranking artifacts as objects in the archive: `models/<version>.json`, and `models/CURRENT` naming
the version to serve (written last). A folder locally, Cloud Storage in production."""

from __future__ import annotations

from shared.ports.archive import Archive
from shared.ports.ranking_model import ModelStore

PREFIX = "models/"
CURRENT = f"{PREFIX}CURRENT"


class ArchiveModelStore(ModelStore):
    def __init__(self, archive: Archive) -> None:
        self.archive = archive

    def publish(self, version: str, data: bytes) -> None:
        self.archive.put(f"{PREFIX}{version}.json", data)
        self.archive.put(CURRENT, version.encode())

    def current(self) -> tuple[str, bytes] | None:
        name = self.archive.get(CURRENT)
        if name is None:
            return None
        version = name.decode()
        data = self.archive.get(f"{PREFIX}{version}.json")
        return None if data is None else (version, data)
