"""In-process profile store: a dict guarded by per-user locks (threads of one instance)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from shared.adapters.profile_store.locks import StripedLocks
from shared.domain.profile import Profile
from shared.ports.profile_store import ProfileStore

T = TypeVar("T")


class MemoryProfileStore(ProfileStore):
    """Profiles live in this process only; they are gone when it stops."""

    shares_profiles = True

    def __init__(self) -> None:
        self._profiles: dict[str, Profile] = {}
        self._lock = StripedLocks()

    def update(self, user_id: str, change: Callable[[Profile], T]) -> T:
        with self._lock(user_id):
            profile = self._profiles.get(user_id)
            if profile is None:
                profile = self._profiles[user_id] = Profile(user_id)
            return change(profile)

    def read(self, user_id: str, view: Callable[[Profile], T]) -> T | None:
        with self._lock(user_id):
            profile = self._profiles.get(user_id)
            return None if profile is None else view(profile)

    def delete(self, user_id: str) -> bool:
        with self._lock(user_id):
            return self._profiles.pop(user_id, None) is not None

    def __len__(self) -> int:
        return len(self._profiles)
