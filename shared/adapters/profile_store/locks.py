"""Per-user locks for the threads of one instance, striped so memory stays bounded."""

from __future__ import annotations

import threading
import zlib


class StripedLocks:
    def __init__(self, stripes: int = 64) -> None:
        self._locks = [threading.Lock() for _ in range(stripes)]

    def __call__(self, user_id: str) -> threading.Lock:
        return self._locks[zlib.crc32(user_id.encode()) % len(self._locks)]
