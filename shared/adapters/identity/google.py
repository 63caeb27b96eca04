"""Google-signed ID tokens (google-auth): shoppers' Firebase / Identity Platform ID tokens, and
service identities' Google OIDC tokens (e.g. a store's support backend) for listed accounts."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import google.auth.exceptions
import jwt
from google.auth.transport import requests as google_requests
from google.oauth2 import id_token

from shared.config import Settings
from shared.ports.identity import Caller, IdentityVerifier, InvalidToken

GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
GOOGLE_ISSUERS = ("https://accounts.google.com", "accounts.google.com")


class GoogleTokenVerifier(IdentityVerifier):
    # Deployed, the private functions (the scheduled jobs) admit only identities with run.invoker
    # (Terraform): Cloud Scheduler's token is checked there, for the function's URL as audience.
    platform_checks_private_callers = True

    def __init__(
        self,
        project: str,
        service_accounts: frozenset[str],
        firebase_certs_url: str,
        google_certs_url: str = GOOGLE_CERTS_URL,
    ) -> None:
        self.project = project
        self.service_accounts = service_accounts
        self.firebase_certs_url = firebase_certs_url
        self.google_certs_url = google_certs_url
        self.request = google_requests.Request()  # google-auth caches the certificates it fetches

    @classmethod
    def from_settings(cls, settings: Settings) -> GoogleTokenVerifier:
        accounts = frozenset(a.strip() for a in settings.auth_service_accounts.split(",") if a.strip())
        return cls(settings.auth_audience, accounts, settings.firebase_certs_url)

    def verify(self, token: str) -> Caller:
        try:
            issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")  # routing only
        except jwt.PyJWTError as exc:
            raise InvalidToken("token_invalid", f"the token is not valid: {exc}") from None
        if issuer in GOOGLE_ISSUERS:
            claims = self._check(self.google_certs_url, token)
            email = claims.get("email")
            if not claims.get("email_verified") or email not in self.service_accounts:
                raise InvalidToken("token_invalid", "the service identity is not allowed")
            return self._caller(str(email), True, token, claims)
        claims = self._check(self.firebase_certs_url, token)
        if claims.get("iss") != f"https://securetoken.google.com/{self.project}":
            raise InvalidToken("token_invalid", "the token was issued for another project")
        return self._caller(str(claims["sub"]), False, token, claims)

    def _check(self, certs_url: str, token: str) -> Mapping[str, Any]:
        try:
            return id_token.verify_token(
                token, self.request, audience=self.project, certs_url=certs_url, clock_skew_in_seconds=30
            )
        except (ValueError, google.auth.exceptions.GoogleAuthError) as exc:
            code = "token_expired" if "expired" in str(exc).lower() else "token_invalid"
            raise InvalidToken(code, f"the token is not valid: {exc}") from None

    @staticmethod
    def _caller(subject: str, service: bool, token: str, claims: Mapping[str, Any]) -> Caller:
        # Google ID tokens carry no jti: the token's digest is its nonce.
        nonce = hashlib.sha256(token.encode()).hexdigest()
        return Caller(subject, service, nonce, datetime.fromtimestamp(int(claims["exp"]), UTC))
