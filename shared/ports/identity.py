"""Port: who is calling. A verified bearer token names a shopper or a service identity."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from shared.config import Settings


class InvalidToken(Exception):
    """The token is not accepted; `code` says why (token_invalid, token_expired)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Caller:
    subject: str  # the shopper's user id, or the service's name or email
    service: bool  # a service identity may act on any shopper's data
    nonce: str  # unique per token: what a replay check remembers
    expires_at: datetime

    def may_act_for(self, user_id: str) -> bool:
        return self.service or self.subject == user_id


class IdentityVerifier(ABC):
    # Whether the platform checks the callers of private functions before they run (Cloud Run IAM
    # in front of the deployed functions): the scheduled functions then trust it.
    platform_checks_private_callers: ClassVar[bool] = False

    @classmethod
    @abstractmethod
    def from_settings(cls, settings: Settings) -> IdentityVerifier:
        """Build the verifier from configuration (its secret or key source)."""

    @abstractmethod
    def verify(self, token: str) -> Caller:
        """The caller a token proves, checking signature, issuer, audience and lifetime.

        Raises:
            InvalidToken: forged, malformed, expired, not yet valid, or for another audience.
        """
