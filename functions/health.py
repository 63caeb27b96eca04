"""HTTP: GET /health: whether this instance can serve, and the state of its backends (no I/O)."""

from __future__ import annotations

import flask
import functions_framework

from functions.http import endpoint
from shared.bootstrap import container


@functions_framework.http
@endpoint("GET")
def check_health(request: flask.Request) -> tuple[int, dict]:
    services = container()
    backends = {
        "profile_store": services.profiles.health(),
        "event_bus": services.bus.health() | {"publisher": services.publisher.health()},
    }
    # Degraded still answers (from the cache, or plain results): 200 either way, the body says which.
    healthy = all(b["status"] == "healthy" and b.get("publisher", b)["status"] == "healthy" for b in backends.values())
    return 200, {"status": "healthy" if healthy else "degraded", "backends": backends}
