"""Port: where privacy settings, deletion requests, tombstones and used token nonces are kept."""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime

from shared.config import Settings
from shared.domain.privacy import DeletionRequest, PrivacySettings


class PrivacyStore(ABC):
    """Durable and shared by every instance (Firestore in production, SQLite locally)."""

    @classmethod
    @abstractmethod
    def from_settings(cls, settings: Settings) -> PrivacyStore:
        """Build the store from configuration (collections or tables created on first use)."""

    @abstractmethod
    def settings(self, user_id: str) -> PrivacySettings | None:
        """The user's saved settings, or None when they never saved any."""

    @abstractmethod
    def save_settings(self, user_id: str, settings: PrivacySettings) -> None:
        """Replace the user's settings."""

    @abstractmethod
    def forget_settings(self, user_id: str) -> None:
        """Remove the user's settings (a missing document is not an error)."""

    @abstractmethod
    def record_deletion(self, request: DeletionRequest) -> DeletionRequest:
        """Save a new deletion request and the user's tombstone (its requested_at), atomically.

        Returns:
            `request`, or the user's unfinished request when there is one (nothing new is saved
            then, but the tombstone moves forward to `request.requested_at`).
        """

    @abstractmethod
    def deletion(self, request_id: str) -> DeletionRequest | None:
        """The request, or None when there is no such id."""

    @abstractmethod
    def save_deletion(self, request: DeletionRequest) -> None:
        """Overwrite the request's progress (steps, attempts, status)."""

    @abstractmethod
    def pending_deletions(self, limit: int = 100) -> list[DeletionRequest]:
        """Unfinished requests, oldest first."""

    @abstractmethod
    def deleted_at(self, user_id: str) -> datetime | None:
        """When the user's latest deletion was requested (the tombstone), or None."""

    @abstractmethod
    def retention_overrides(self, below: int) -> dict[str, int]:
        """{user id: data_retention_days} of every user whose saved window is shorter than `below`."""

    @abstractmethod
    def claim_nonce(self, nonce: str, expires_at: datetime) -> bool:
        """Mark a token as used; False when it was used before (a replay). Atomic across instances.

        Claims may be forgotten after `expires_at` (the token is refused as expired by then).
        """

    def health(self) -> dict:
        return {"status": "healthy", "kind": type(self).__name__}
