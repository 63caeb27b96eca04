"""Token verifiers: HMAC-signed JWTs locally, Google-signed ID tokens in production."""
