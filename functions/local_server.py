"""Every HTTP function on one local port, at the paths a frontend calls."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import threading
from collections.abc import Callable

import flask
import functions_framework
import gunicorn.app.base
import gunicorn.util
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.serving import BaseWSGIServer, make_server

from functions.api import openapi
from functions.catalog import manage_catalog
from functions.health import check_health
from functions.http import error_response
from functions.jobs import run_daily_jobs, run_hourly_jobs
from functions.memory import add_memory_note, get_shopper_memory
from functions.merchandising import manage_merchandising_rules
from functions.orders import confirm_order
from functions.pipeline import archive_events, ingest_graph_memory, load_events_bigquery
from functions.preferences import get_live_preferences
from functions.privacy import (
    delete_user_data,
    export_user_data,
    get_deletion_status,
    manage_privacy,
    process_deletion_queue,
)
from functions.rank import rank_personalized
from functions.recommendations import recommend_products
from functions.search import search_personalized
from functions.suggest import suggest_queries
from functions.tracking import track_interaction
from shared.bootstrap import container
from shared.ports.event_bus import EventHandler
from shared.services.jobs import RUN_ORDER

ROUTES = {
    "/api/interactions/track": track_interaction,
    "/api/orders/confirm": confirm_order,
    "/api/search/personalized": search_personalized,
    "/api/rank": rank_personalized,
    "/api/recommendations": recommend_products,
    "/api/suggest": suggest_queries,
    "/api/users/<user_id>/preferences/live": get_live_preferences,
    "/api/users/<user_id>/memory": get_shopper_memory,
    "/api/users/<user_id>/memory/notes": add_memory_note,
    "/api/users/<user_id>/privacy": manage_privacy,
    "/api/users/<user_id>/data": export_user_data,
    "/api/users/<user_id>": delete_user_data,
    "/api/deletions/<request_id>": get_deletion_status,
    "/api/merchandising/rules": manage_merchandising_rules,  # the admin API (a service identity)
    "/api/merchandising/rules/<rule_id>": manage_merchandising_rules,
    "/api/catalog/products": manage_catalog,  # the catalog's admin API (a service identity)
    "/api/catalog/products/<product_id>": manage_catalog,
    "/health": check_health,
    "/jobs/hourly": run_hourly_jobs,  # what Cloud Scheduler calls
    "/jobs/daily": run_daily_jobs,
    "/jobs/deletions": process_deletion_queue,
}
ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
# Event functions, by subscription name: the bus delivers the topic's messages to them.
EVENT_HANDLERS: dict[str, EventHandler] = {
    f.__name__: f for f in (load_events_bigquery, archive_events, ingest_graph_memory)
}
ARCHIVE_FLUSH_CHECK_S = 5.0
SCHEDULE_CHECK_S = 60.0
EVENTS_PATH = "/_events"  # push endpoints: /_events/<function>/projects/<p>/topics/<topic>
MAIN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "main.py")

log = logging.getLogger(__name__)


def create_local_app() -> flask.Flask:
    """A Flask app routing each path to its function, as Cloud Functions URLs would."""
    app = flask.Flask("leafloaf-local")
    named: set[str] = set()
    for path, function in ROUTES.items():
        app.add_url_rule(
            path,
            endpoint=path if function.__name__ in named else function.__name__,  # one function, two paths
            view_func=lambda function=function, **_: function(flask.request),
            methods=ALL_METHODS,
            provide_automatic_options=False,
        )
        named.add(function.__name__)

    app.add_url_rule("/openapi.json", endpoint="openapi", view_func=_openapi, methods=["GET"])
    app.add_url_rule("/metrics", endpoint="metrics", view_func=_metrics, methods=["GET"])
    # Unknown paths get a plain view rather than Flask's NotFound exception, whose traceback
    # cycles would pile up as garbage for the collector on every stray request.
    for path in ("/", "/<path:anything>"):
        app.add_url_rule(path, endpoint=f"not-found{path}", view_func=_not_found, methods=ALL_METHODS)
    app.register_error_handler(HTTPException, _http_error)  # e.g. TRACE: werkzeug's 405 page is HTML
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, _event_apps())  # type: ignore[method-assign]
    return app


def _event_apps() -> dict[str, Callable]:
    """Event functions behind functions-framework itself, which turns a Pub/Sub push into the
    CloudEvent Eventarc would deliver (the topic comes from the push URL's path)."""
    apps = {}
    for name in EVENT_HANDLERS:
        app = functions_framework.create_app(name, MAIN, "cloudevent")
        app.register_error_handler(HTTPException, _http_error)
        app.register_error_handler(500, _event_failed)
        apps[f"{EVENTS_PATH}/{name}"] = _rooted(app.wsgi_app)
    return apps


def _rooted(app: Callable) -> Callable:
    """The mount point itself (`/_events/<name>`, no slash) is the function's root: werkzeug would
    answer it with a 308 redirect to the path with a slash."""

    def serve(environ: dict, start_response: Callable) -> object:
        environ["PATH_INFO"] = environ.get("PATH_INFO") or "/"
        return app(environ, start_response)

    return serve


def _error_code(status: int, reason: str) -> str:
    """Our code for an HTTP error answered outside our functions: the codes they use, else the reason."""
    return {400: "invalid_request", 500: "internal"}.get(status) or reason.lower().replace(" ", "_")


def _http_error(exc: HTTPException) -> flask.Response:
    """werkzeug's and functions-framework's errors (405, 415, 400) in our JSON error format."""
    status = exc.code or 500
    headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}  # keeps 405's Allow
    return error_response(status, _error_code(status, exc.name), exc.description or exc.name, [], headers)


def _event_failed(exc: Exception) -> flask.Response:
    """An event function that raised (a backend down: the bus redelivers), as JSON, with
    functions-framework's crash header."""
    response = error_response(500, "internal", "the event function failed; it has been logged", [], {})
    response.headers.update(functions_framework.crash_handler(exc)[2])
    return response


def _write_json_error(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's own answer to a request it refuses before any app sees it (a request line over
    its limit: 414, a malformed request: 400, headers too large: 431), in our JSON error format
    instead of its HTML page."""
    body = error_response(status_int, _error_code(status_int, reason), mesg or reason, [], {}).get_data()
    head = f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
    gunicorn.util.write_nonblock(sock, f"{head}Content-Length: {len(body)}\r\n\r\n".encode("latin1") + body)


def endpoints(app: flask.Flask) -> list[str]:
    """Every endpoint `app` serves, as "METHODS /path": its URL map's paths, the functions' methods
    as the OpenAPI document gives them (fuzzed against the functions), then the event functions'
    push paths."""
    documented = openapi()["paths"]
    lines = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("not-found") or rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        methods = [m.upper() for m in documented.get(path, {})] or sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
        lines.append(f"{'|'.join(methods)} {path}")
    return lines + [f"POST {EVENTS_PATH}/{name}  (Pub/Sub push: event function)" for name in EVENT_HANDLERS]


def _openapi() -> flask.Response:
    return flask.Response(json.dumps(openapi()), mimetype="application/json")


def _metrics() -> flask.Response:
    """This process's OpenTelemetry metrics as JSON (in the cloud they go to Cloud Monitoring)."""
    return flask.Response(json.dumps(container().telemetry.snapshot()), mimetype="application/json")


def _not_found(**_: str) -> flask.Response:
    return error_response(404, "not_found", f"no endpoint at {flask.request.path}", [], {})


def start_pipeline(push_base_url: str | None = None) -> threading.Event:
    """Deliver bus messages to the event functions, flush the archive when due, and run the
    scheduled jobs when their window has passed (what Cloud Scheduler does in the cloud).

    In the cloud an archive flush rides on the next invocation (no CPU in between); a local
    instance has a CPU, so a timer also flushes. Returns an event that stops the timers.
    """
    services = container()
    services.archive.prepare()
    services.bus.connect(EVENT_HANDLERS, push_base_url)
    stop = threading.Event()

    def flush_when_due() -> None:
        while not stop.wait(ARCHIVE_FLUSH_CHECK_S):
            try:
                services.archiver.flush()
            except Exception:
                log.exception("archive flush failed; will retry")

    def run_schedules() -> None:  # Cloud Scheduler's part: each schedule once per window
        while not stop.wait(SCHEDULE_CHECK_S):
            for schedule in RUN_ORDER:
                try:
                    services.jobs.run(schedule)
                except Exception:
                    log.exception("scheduled %s jobs failed; the next check resumes them", schedule)
            try:
                services.erasure.run()  # the deletion queue (hourly in the cloud) and retention
            except Exception:
                log.exception("the deletion queue failed; the next check resumes it")

    threading.Thread(target=flush_when_due, name="archive-flush", daemon=True).start()
    if services.settings.local_schedule:
        threading.Thread(target=run_schedules, name="local-scheduler", daemon=True).start()
    return stop


def local_server(host: str = "127.0.0.1", port: int = 8080) -> BaseWSGIServer:
    """A threaded server in this process (werkzeug; one connection per request): for the demo and tests."""
    return make_server(host, port, create_local_app(), threaded=True)


def _start_worker(push_url: str) -> None:
    """The worker's background work: deliveries and timers, and the first round of health probes
    (opening every backend), so the first /health finds answers instead of "unknown"."""
    start_pipeline(push_url)
    container().health.start()


class _Gunicorn(gunicorn.app.base.BaseApplication):
    def __init__(self, app: flask.Flask, options: dict) -> None:
        self.app, self.options = app, options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> flask.Flask:
        return self.app


def serve(host: str, port: int, on_ready: Callable[[int, flask.Flask], None], threads: int | None = None) -> None:
    """Serve the local app with gunicorn's threaded worker, as functions-framework does in the cloud.

    One worker process, so every request sees the same instance state (the in-memory profiles);
    keep-alive connections. The socket is bound here, so port 0 picks a free port that
    `on_ready` is told (with the app) before requests are accepted.
    """
    listener = socket.create_server((host, port))
    listener.set_inheritable(True)
    bound = listener.getsockname()[1]
    push_host = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
    app = create_local_app()
    on_ready(bound, app)
    options = {
        "bind": f"fd://{listener.fileno()}",
        "workers": 1,
        "worker_class": "gthread",
        "threads": threads or (os.cpu_count() or 1) * 4,
        # gthread closes a keep-alive connection idle longer than this even when a request has just
        # arrived on it unread (a busy moment): at 5 s locust saw connection resets in 4 of 5 runs
        # at 20 simulated shoppers, at 65 s none in 3 (bench/load.py).
        "keepalive": 65,
        "loglevel": "warning",
        "timeout": 0,
        # Threads do not survive the fork into the worker: start deliveries there. Pub/Sub
        # (the emulator) pushes to this server's event paths, as Eventarc would.
        "post_worker_init": lambda worker: _start_worker(f"http://{push_host}:{bound}{EVENTS_PATH}"),
        # Stop in order once serving ends, before the interpreter's exit shuts down thread pools
        # the backends use (Kuzu's failed a graph delivery at exit); the atexit close is then a no-op.
        "worker_exit": lambda server, worker: container().close(),
    }
    # gunicorn writes those answers through this one function (its only hook for them).
    gunicorn.util.write_error = _write_json_error
    _Gunicorn(app, options).run()
