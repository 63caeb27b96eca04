"""HTTP: a shopper's graph memory: what they usually buy, what is due, the facts as of a date;
and free-text notes, which need a configured LLM."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import flask
import functions_framework
from pydantic import BaseModel, ConfigDict, Field

from functions.http import RequestError, authorize, endpoint, json_body, validate
from shared.bootstrap import container
from shared.domain.events import Id, Timestamp, UtcTime
from shared.ports.graph_memory import TextMemoryUnavailable
from shared.services.memory import PersonalizationDisabled

_PATH = re.compile(r"/users/(?P<user_id>[^/]*)/memory(?P<notes>/notes)?/?$")


class MemoryQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: Id
    # Any date, future ones included ("what will be due on Friday"); naive means UTC.
    at: UtcTime = Field(default_factory=lambda: datetime.now(UTC))


class Note(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=10_000)
    source: str = Field(default="note", pattern=r"^(review|chat|note)$")
    timestamp: Timestamp = Field(default_factory=lambda: datetime.now(UTC))


def _user_id(request: flask.Request) -> str:
    match = _PATH.search(request.path)
    if not match:
        raise RequestError("invalid_request", "give the user as /api/users/{user_id}/memory")
    return match.group("user_id")


@functions_framework.http
@endpoint("GET")
def get_shopper_memory(request: flask.Request) -> tuple[int, dict]:
    query = validate(MemoryQuery, {"user_id": _user_id(request), **request.args.to_dict()})
    authorize(request, query.user_id)
    return 200, container().memory.shopper_memory(query.user_id, query.at)


@functions_framework.http
@endpoint("POST")
def add_memory_note(request: flask.Request) -> tuple[int, dict]:
    user_id = validate(MemoryQuery, {"user_id": _user_id(request)}).user_id
    authorize(request, user_id)
    note = validate(Note, json_body(request))
    try:
        container().memory.add_note(user_id, note.text, note.source, note.timestamp)
    except PersonalizationDisabled as exc:
        raise RequestError("personalization_disabled", str(exc), status=409) from None
    except TextMemoryUnavailable as exc:
        raise RequestError("llm_not_configured", str(exc), status=501) from None
    return 202, {"user_id": user_id, "status": "remembered"}
