"""HTTP: shoppers own their data. Their privacy settings, an export of everything held about
them, deletion with a status to follow, and the scheduled deletion queue (Cloud Scheduler calls
it with an OIDC token; the function is private; with authentication on it needs a service identity)."""

from __future__ import annotations

import re

import flask
import functions_framework
from pydantic import BaseModel, ConfigDict

from functions.http import (
    RequestError,
    UserRef,
    authenticated,
    authorize,
    endpoint,
    json_body,
    scheduled,
    validate,
)
from shared.bootstrap import container
from shared.domain.events import Timestamp
from shared.domain.privacy import DeletionRequest, PrivacyUpdate
from shared.services.privacy import InvalidPrivacySettings

_USER = re.compile(r"/users/(?P<user_id>[^/]*)(?P<rest>/privacy|/data)?/?$")
_DELETION = re.compile(r"/deletions/(?P<request_id>[^/]*)/?$")


class QueueRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: Timestamp | None = None  # a run of the future would erase before the grace period


def _user_id(request: flask.Request, rest: str | None) -> str:
    match = _USER.search(request.path)
    if not match or match.group("rest") != rest:
        raise RequestError("invalid_request", f"give the user as /api/users/{{user_id}}{rest or ''}")
    return validate(UserRef, {"user_id": match.group("user_id")}).user_id


def _status(deletion: DeletionRequest) -> dict:
    return deletion.model_dump(mode="json", exclude={"user_id"}) | {
        "remaining": deletion.remaining(),
        "status_url": f"/api/deletions/{deletion.request_id}",
    }


@functions_framework.http
@endpoint("GET", "PUT")
def manage_privacy(request: flask.Request) -> tuple[int, dict]:
    """GET or PUT /api/users/{user_id}/privacy: PUT changes the fields it gives."""
    user_id = _user_id(request, "/privacy")
    privacy = container().privacy
    if request.method == "GET":
        authorize(request, user_id)
        return 200, {"user_id": user_id} | privacy.of(user_id).settings.model_dump()
    who = authorize(request, user_id)
    change = validate(PrivacyUpdate, json_body(request))
    try:
        settings = privacy.update(user_id, change, token=who)  # spends the token only on a valid change
    except InvalidPrivacySettings as exc:
        raise RequestError(
            "invalid_request", str(exc), [{"field": "data_retention_days", "message": str(exc)}]
        ) from None
    return 200, {"user_id": user_id} | settings.model_dump()


@functions_framework.http
@endpoint("GET")
def export_user_data(request: flask.Request) -> tuple[int, dict]:
    """GET /api/users/{user_id}/data: everything held about the shopper, with what it is used for."""
    user_id = _user_id(request, "/data")
    authorize(request, user_id)
    services = container()
    return 200, services.erasure.export(user_id, services.preferences)


@functions_framework.http
@endpoint("DELETE")
def delete_user_data(request: flask.Request) -> tuple[int, dict]:
    """DELETE /api/users/{user_id}: gone from live serving at once, everywhere within 72 hours."""
    user_id = _user_id(request, None)
    who = authorize(request, user_id)
    return 202, _status(container().privacy.request_deletion(user_id, token=who))


@functions_framework.http
@endpoint("GET")
def get_deletion_status(request: flask.Request) -> tuple[int, dict]:
    """GET /api/deletions/{request_id}: the erasure's progress (for the shopper or a service)."""
    match = _DELETION.search(request.path)
    if not match:
        raise RequestError("invalid_request", "give the request as /api/deletions/{request_id}")
    who = authenticated(request)
    deletion = container().privacy.deletion(match.group("request_id"))
    if deletion is None or (who is not None and not who.may_act_for(deletion.user_id)):
        raise RequestError("not_found", "no such deletion request", status=404)  # someone else's looks absent
    return 200, _status(deletion)


@functions_framework.http
@endpoint("POST")
def process_deletion_queue(request: flask.Request) -> tuple[int, dict]:
    """Scheduled hourly: erase requested users from the graph, warehouse, archive and features,
    then remove raw events past their retention window."""
    scheduled(request)
    body = validate(QueueRequest, json_body(request) if request.content_length else {})
    return 200, container().erasure.run(body.at)
