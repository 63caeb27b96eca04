"""Every HTTP function on one local port, at the paths a frontend calls."""

from __future__ import annotations

import json

import flask
from werkzeug.serving import BaseWSGIServer, make_server

from functions.preferences import get_live_preferences
from functions.search import search_personalized
from functions.tracking import track_interaction

ROUTES = {
    "/api/interactions/track": track_interaction,
    "/api/search/personalized": search_personalized,
    "/api/users/<user_id>/preferences/live": get_live_preferences,
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

    @app.errorhandler(404)
    def not_found(_error):
        body = {"error": {"code": "not_found", "message": f"no endpoint at {flask.request.path}", "fields": []}}
        return flask.Response(json.dumps(body), status=404, mimetype="application/json")

    return app


def local_server(host: str = "127.0.0.1", port: int = 8080) -> BaseWSGIServer:
    """A threaded WSGI server for the local app (port 0 picks a free port)."""
    return make_server(host, port, create_local_app(), threaded=True)
