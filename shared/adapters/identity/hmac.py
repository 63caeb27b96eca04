"""HMAC-signed JWTs (HS256, PyJWT): the embedded default. The key comes from configuration
(LEAFLOAF_AUTH_SECRET, from Secret Manager in production), or is generated once into a local file."""

from __future__ import annotations

import os
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt

from shared.config import Settings
from shared.ports.identity import Caller, IdentityVerifier, InvalidToken

ISSUER = "leafloaf"
LEEWAY_S = 30  # clock skew between the token's issuer and this instance


def local_secret(path: Path) -> str:
    """The key in `path`, created (readable by this user only) on first use."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


class HmacVerifier(IdentityVerifier):
    def __init__(self, secret: str, audience: str, max_age_s: int = 3600) -> None:
        if len(secret) < 32:
            raise ValueError("the HMAC secret must be at least 32 characters")
        self.secret = secret
        self.audience = audience
        self.max_age_s = max_age_s

    @classmethod
    def from_settings(cls, settings: Settings) -> HmacVerifier:
        secret = settings.auth_secret or local_secret(settings.auth_secret_path)
        return cls(secret, settings.auth_audience, settings.auth_max_token_age_s)

    def issue(self, subject: str, ttl_s: int = 900, service: bool = False, now: datetime | None = None) -> str:
        """A token for `subject` (what a store's backend does after its own login)."""
        now = now or datetime.now(UTC)
        claims = {
            "iss": ISSUER,
            "aud": self.audience,
            "sub": subject,
            "iat": now,
            "exp": now + timedelta(seconds=ttl_s),
            "jti": uuid.uuid4().hex,
            "role": "service" if service else "shopper",
        }
        return jwt.encode(claims, self.secret, algorithm="HS256")

    def verify(self, token: str) -> Caller:
        try:
            claims = jwt.decode(
                token,
                self.secret,
                algorithms=["HS256"],  # never "none", never a key the token chooses
                audience=self.audience,
                issuer=ISSUER,
                leeway=LEEWAY_S,
                options={"require": ["exp", "iat", "sub", "jti", "aud", "iss"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("token_expired", "the token has expired") from None
        except jwt.PyJWTError as exc:
            raise InvalidToken("token_invalid", f"the token is not valid: {exc}") from None
        if claims["exp"] - claims["iat"] > self.max_age_s:
            raise InvalidToken("token_invalid", f"the token lives longer than {self.max_age_s} s")
        return Caller(
            subject=str(claims["sub"]),
            service=claims.get("role") == "service",
            nonce=str(claims["jti"]),
            expires_at=datetime.fromtimestamp(claims["exp"], UTC),
        )
