"""Every HTTP function on one local port, at the paths a frontend calls."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable

import flask
import gunicorn.app.base
from werkzeug.serving import BaseWSGIServer, make_server

from functions.health import check_health
from functions.preferences import get_live_preferences
from functions.search import search_personalized
from functions.tracking import track_interaction

ROUTES = {
    "/api/interactions/track": track_interaction,
    "/api/search/personalized": search_personalized,
    "/api/users/<user_id>/preferences/live": get_live_preferences,
    "/health": check_health,
}
ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def create_local_app() -> flask.Flask:
    """A Flask app routing each path to its function, as Cloud Functions URLs would."""
    app = flask.Flask("leafloaf-local")
    for path, function in ROUTES.items():
        app.add_url_rule(
            path,
            endpoint=function.__name__,
            view_func=lambda function=function, **_: function(flask.request),
            methods=ALL_METHODS,
            provide_automatic_options=False,
        )

    # Unknown paths get a plain view rather than Flask's NotFound exception, whose traceback
    # cycles would pile up as garbage for the collector on every stray request.
    for path in ("/", "/<path:anything>"):
        app.add_url_rule(path, endpoint=f"not-found{path}", view_func=_not_found, methods=ALL_METHODS)
    return app


def _not_found(**_: str) -> flask.Response:
    body = {"error": {"code": "not_found", "message": f"no endpoint at {flask.request.path}", "fields": []}}
    return flask.Response(json.dumps(body), status=404, mimetype="application/json")


def local_server(host: str = "127.0.0.1", port: int = 8080) -> BaseWSGIServer:
    """A threaded server in this process (werkzeug; one connection per request): for the demo and tests."""
    return make_server(host, port, create_local_app(), threaded=True)


class _Gunicorn(gunicorn.app.base.BaseApplication):
    def __init__(self, app: flask.Flask, options: dict) -> None:
        self.app, self.options = app, options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> flask.Flask:
        return self.app


def serve(host: str, port: int, on_ready: Callable[[int], None], threads: int | None = None) -> None:
    """Serve the local app with gunicorn's threaded worker, as functions-framework does in the cloud.

    One worker process, so every request sees the same instance state (the in-memory profiles);
    keep-alive connections. The socket is bound here, so port 0 picks a free port that
    `on_ready` is told before requests are accepted.
    """
    listener = socket.create_server((host, port))
    listener.set_inheritable(True)
    on_ready(listener.getsockname()[1])
    options = {
        "bind": f"fd://{listener.fileno()}",
        "workers": 1,
        "worker_class": "gthread",
        "threads": threads or (os.cpu_count() or 1) * 4,
        "keepalive": 5,
        "loglevel": "warning",
        "timeout": 0,
    }
    _Gunicorn(create_local_app(), options).run()
