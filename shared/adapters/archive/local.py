"""The archive in a local folder: object names are relative paths."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from shared.config import Settings
from shared.ports.archive import Archive, ArchiveUnavailable, StoredObject


class LocalFolderArchive(Archive):
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalFolderArchive:
        return cls(settings.archive_path)

    def prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, name: str) -> Path:
        path = (self.root / name).resolve()
        if not path.is_relative_to(self.root.resolve()) or name.endswith("/"):
            raise ValueError(f"bad object name {name!r}")
        return path

    def put(self, name: str, data: bytes, if_absent: bool = False) -> bool:
        path = self._path(name)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Written aside then linked/renamed into place: readers never see half an object.
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as file:
                    file.write(data)
                    file.flush()
                    os.fsync(file.fileno())
                if not if_absent:
                    os.replace(tmp, path)
                    return True
                try:
                    os.link(tmp, path)  # atomic create-if-absent
                except FileExistsError:
                    return False
                return True
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        except OSError as exc:
            raise ArchiveUnavailable(f"cannot write {name}: {exc}") from exc

    def get(self, name: str) -> bytes | None:
        try:
            return self._path(name).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ArchiveUnavailable(f"cannot read {name}: {exc}") from exc

    def list(self, prefix: str) -> list[StoredObject]:
        base = self.root / prefix.rpartition("/")[0]
        if not base.is_dir():
            return []
        found = []
        try:
            for path in base.rglob("*"):
                name = path.relative_to(self.root).as_posix()
                if path.is_file() and name.startswith(prefix) and not path.name.startswith(".tmp-"):
                    stat = path.stat()
                    found.append(StoredObject(name, stat.st_size, stat.st_mtime))
        except FileNotFoundError:  # deleted while listing: another flush got there first
            pass
        except OSError as exc:
            raise ArchiveUnavailable(f"cannot list {prefix}: {exc}") from exc
        return sorted(found, key=lambda o: o.name)

    def delete(self, name: str) -> None:
        try:
            self._path(name).unlink(missing_ok=True)
        except OSError as exc:
            raise ArchiveUnavailable(f"cannot delete {name}: {exc}") from exc
