"""Port: where live profiles are kept."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Protocol, TypeVar

from shared.config import Settings
from shared.domain.events import Interaction
from shared.domain.profile import Profile

T = TypeVar("T")
A = TypeVar("A")


class ProfileCodec(Protocol):
    """Turns profiles into portable bytes and back (the engine is one)."""

    def encode(self, profile: Profile) -> bytes: ...

    def decode(self, user_id: str, data: bytes) -> Profile: ...


class ProfileStore(ABC):
    """Keeps one Profile per user; every access is atomic per user."""

    # True when `update`/`read` hand callbacks the stored object itself (so callers that keep a
    # profile must copy it); durable stores hand out freshly decoded copies.
    shares_profiles = False

    @classmethod
    def from_settings(cls, settings: Settings, codec: ProfileCodec) -> ProfileStore:
        """Build the store from configuration; durable stores keep profiles as `codec` bytes."""
        return cls()

    @abstractmethod
    def update(self, user_id: str, change: Callable[[Profile], T]) -> T:
        """Run `change` on the user's profile (created empty if absent) atomically.

        Args:
            user_id: whose profile.
            change: mutates the profile in place; called once per attempt.

        Returns:
            What `change` returned.
        """

    def track(self, user_id: str, events: list[Interaction], apply: Callable[[Profile, Interaction], A]) -> list[A]:
        """Apply events to the user's profile with `apply` (the engine's); one atomic update."""
        return self.update(user_id, lambda profile: [apply(profile, event) for event in events])

    @abstractmethod
    def read(self, user_id: str, view: Callable[[Profile], T]) -> T | None:
        """Run `view` on a consistent snapshot of the user's profile.

        Returns:
            What `view` returned, or None when the user has no profile.
        """

    def health(self) -> dict:
        """What the health endpoint reports about this store (cached: no I/O)."""
        return {"status": "healthy", "kind": type(self).__name__}

    @abstractmethod
    def delete(self, user_id: str) -> bool:
        """Remove the user's profile. Returns whether there was one."""
