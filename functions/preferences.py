"""HTTP: GET /api/users/{user_id}/preferences/live: the current decayed profile."""

from __future__ import annotations

import re

import flask
import functions_framework

from functions.http import RequestError, UserRef, authorize, endpoint, validate
from shared.bootstrap import container

_PATH = re.compile(r"/users/(?P<user_id>[^/]*)/preferences(?:/live)?/?$")


@functions_framework.http
@endpoint("GET")
def get_live_preferences(request: flask.Request) -> tuple[int, dict]:
    match = _PATH.search(request.path)
    user_id = match.group("user_id") if match else request.args.get("user_id")
    if user_id is None:
        raise RequestError(
            "invalid_request",
            "give the user as /api/users/{user_id}/preferences/live",
            [{"field": "user_id", "message": "missing"}],
        )
    ref = validate(UserRef, {"user_id": user_id})
    authorize(request, ref.user_id)
    return 200, container().preferences.live(ref.user_id)
