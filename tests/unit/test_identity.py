"""Token verification: HMAC tokens, and Google-signed ones (Firebase ID tokens, service OIDC tokens)
checked by google-auth against signing certificates served from loopback, as Google serves them."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from shared.adapters.identity.google import GoogleTokenVerifier
from shared.adapters.identity.hmac import HmacVerifier, local_secret
from shared.ports.identity import InvalidToken

SECRET = "s" * 48
NOW = datetime.now(UTC)


def test_hmac_tokens_prove_their_subject_and_nothing_else():
    verifier = HmacVerifier(SECRET, "shop")
    caller = verifier.verify(verifier.issue("ann"))
    assert (caller.subject, caller.service) == ("ann", False)
    assert caller.may_act_for("ann") and not caller.may_act_for("bob")
    assert verifier.verify(verifier.issue("support", service=True)).may_act_for("bob")
    assert verifier.verify(verifier.issue("ann")).nonce != caller.nonce


@pytest.mark.parametrize(
    ("token", "code"),
    [
        (HmacVerifier("x" * 48, "shop").issue("ann"), "token_invalid"),  # another key: forged
        (HmacVerifier(SECRET, "other-shop").issue("ann"), "token_invalid"),  # another audience
        (HmacVerifier(SECRET, "shop").issue("ann", ttl_s=60, now=NOW - timedelta(minutes=5)), "token_expired"),
        (HmacVerifier(SECRET, "shop").issue("ann", ttl_s=7200), "token_invalid"),  # lives too long
        (jwt.encode({"sub": "ann", "aud": "shop", "iss": "leafloaf"}, None, algorithm="none"), "token_invalid"),
        (jwt.encode({"sub": "ann", "aud": "shop"}, SECRET, algorithm="HS256"), "token_invalid"),  # no exp, jti
        ("not.a.token", "token_invalid"),
    ],
)
def test_hmac_refuses_forged_foreign_expired_and_unsigned_tokens(token, code):
    with pytest.raises(InvalidToken) as refused:
        HmacVerifier(SECRET, "shop", max_age_s=3600).verify(token)
    assert refused.value.code == code


def test_hmac_tampered_claims_break_the_signature():
    token = HmacVerifier(SECRET, "shop").issue("ann")
    header, _, signature = token.split(".")
    other = jwt.utils.base64url_encode(json.dumps({**jwt.decode(token, options={"verify_signature": False}),
                                                   "sub": "bob"}).encode()).decode()  # fmt: skip
    with pytest.raises(InvalidToken):
        HmacVerifier(SECRET, "shop").verify(f"{header}.{other}.{signature}")


def test_local_secret_is_generated_once_and_private(tmp_path):
    path = tmp_path / "var" / "auth-secret"
    first = local_secret(path)
    assert local_secret(path) == first and len(first) >= 32
    assert path.stat().st_mode & 0o077 == 0


# -- Google-signed tokens ------------------------------------------------------------------------


def keypair(name: str) -> tuple[rsa.RSAPrivateKey, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=1)).sign(key, hashes.SHA256())
    )  # fmt: skip
    return key, cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="module")
def google():
    """Signing keys and a loopback server publishing their certificates by key id."""
    keys = {"firebase-kid": keypair("securetoken"), "google-kid": keypair("accounts")}
    certs = {"/firebase": {"firebase-kid": keys["firebase-kid"][1]}, "/google": {"google-kid": keys["google-kid"][1]}}

    class Certs(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(certs.get(self.path, {})).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            """Quiet: the test speaks through its assertions."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Certs)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    verifier = GoogleTokenVerifier("my-shop", frozenset({"support@my-shop.iam.gserviceaccount.com"}),
                                   f"{base}/firebase", f"{base}/google")  # fmt: skip
    yield verifier, {kid: key for kid, (key, _) in keys.items()}
    server.shutdown()


def sign(key, kid: str, **claims) -> str:
    base = {"iat": NOW - timedelta(minutes=1), "exp": NOW + timedelta(minutes=30)}
    return jwt.encode(base | claims, key, algorithm="RS256", headers={"kid": kid})


def firebase(keys, **claims) -> str:
    base = {"iss": "https://securetoken.google.com/my-shop", "aud": "my-shop", "sub": "ann"}
    return sign(keys["firebase-kid"], "firebase-kid", **(base | claims))


def test_firebase_id_tokens_name_the_shopper(google):
    verifier, keys = google
    caller = verifier.verify(firebase(keys))
    assert (caller.subject, caller.service) == ("ann", False) and len(caller.nonce) == 64


@pytest.mark.parametrize(
    ("claims", "code"),
    [
        ({"aud": "other-shop", "iss": "https://securetoken.google.com/other-shop"}, "token_invalid"),
        ({"iss": "https://securetoken.google.com/other-shop"}, "token_invalid"),
        ({"iat": NOW - timedelta(hours=3), "exp": NOW - timedelta(hours=2)}, "token_expired"),
    ],
)
def test_firebase_tokens_for_another_project_or_expired_are_refused(google, claims, code):
    verifier, keys = google
    with pytest.raises(InvalidToken) as refused:
        verifier.verify(firebase(keys, **claims))
    assert refused.value.code == code


def test_a_token_signed_by_anyone_else_is_refused(google):
    verifier, _ = google
    stranger, _ = keypair("stranger")
    forged = jwt.encode({"iss": "https://securetoken.google.com/my-shop", "aud": "my-shop", "sub": "ann",
                         "iat": NOW, "exp": NOW + timedelta(minutes=5)}, stranger, algorithm="RS256",
                        headers={"kid": "firebase-kid"})  # fmt: skip
    with pytest.raises(InvalidToken):
        verifier.verify(forged)


def test_service_identities_must_be_listed_and_verified(google):
    verifier, keys = google

    def oidc(email: str, verified: bool = True) -> str:
        return sign(keys["google-kid"], "google-kid", iss="https://accounts.google.com", aud="my-shop",
                    sub="1234", email=email, email_verified=verified)  # fmt: skip

    caller = verifier.verify(oidc("support@my-shop.iam.gserviceaccount.com"))
    assert caller.service and caller.may_act_for("anyone")
    for token in (oidc("intruder@example.com"), oidc("support@my-shop.iam.gserviceaccount.com", verified=False)):
        with pytest.raises(InvalidToken):
            verifier.verify(token)
