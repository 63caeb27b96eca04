"""HTTP: GET /health: whether this instance can serve, and the state of its backends (no I/O)."""

from __future__ import annotations

import flask
import functions_framework

from functions.http import endpoint
from shared.bootstrap import container


@functions_framework.http
@endpoint("GET")
def check_health(request: flask.Request) -> tuple[int, dict]:
    store = container().profiles.health()
    # Degraded still answers (from the cache, or plain results): 200 either way, the body says which.
    status = "healthy" if store["status"] == "healthy" else "degraded"
    return 200, {"status": status, "backends": {"profile_store": store}}
