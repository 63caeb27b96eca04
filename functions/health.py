"""HTTP: GET /health: whether this instance can serve, and the state of every backend: healthy,
degraded or disabled, with the reason. The backends are probed in the background
(shared/services/health.py); this answers from the last probes without waiting on any."""

from __future__ import annotations

import flask
import functions_framework

from functions.http import endpoint
from shared.bootstrap import container
from shared.services.health import worst


@functions_framework.http
@endpoint("GET")
def check_health(request: flask.Request) -> tuple[int, dict]:
    services = container()
    live = {  # no I/O: what this instance knows now (queues, counters, the store's last known state)
        "profile_store": services.profiles.health(),
        "event_bus": services.bus.health() | {"publisher": services.publisher.health()},
        "ranking_model": services.rankers.health(),
        "catalog": services.live.health(),
    }
    backends = services.health.report(live)
    # Degraded still answers (from the cache, or plain results): 200, the body says which.
    # "unknown" is a backend still answering its first probe (a cold instance opening it).
    # Unhealthy cannot serve what it is for (no catalog: every search would be empty): 503.
    status = worst("healthy", *(b["status"] for b in backends.values() if b["status"] != "unknown"))
    if status == "disabled":
        status = "healthy"
    return (503 if status == "unhealthy" else 200), {"status": status, "backends": backends}
