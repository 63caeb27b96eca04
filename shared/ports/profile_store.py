"""Port: where live profiles are kept."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TypeVar

from shared.domain.profile import Profile

T = TypeVar("T")


class ProfileStore(ABC):
    """Keeps one Profile per user; every access is atomic per user."""

    @abstractmethod
    def update(self, user_id: str, change: Callable[[Profile], T]) -> T:
        """Run `change` on the user's profile (created empty if absent) atomically.

        Args:
            user_id: whose profile.
            change: mutates the profile in place; called once per attempt.

        Returns:
            What `change` returned.
        """

    @abstractmethod
    def read(self, user_id: str, view: Callable[[Profile], T]) -> T | None:
        """Run `view` on a consistent snapshot of the user's profile.

        Returns:
            What `view` returned, or None when the user has no profile.
        """

    @abstractmethod
    def delete(self, user_id: str) -> bool:
        """Remove the user's profile. Returns whether there was one."""
