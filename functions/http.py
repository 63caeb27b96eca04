"""What every HTTP function shares: CORS, size limits, JSON parsing and error mapping."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import flask
from pydantic import BaseModel, ValidationError

from shared.bootstrap import container

log = logging.getLogger(__name__)
Handler = Callable[[flask.Request], tuple[int, Any]]
M = TypeVar("M", bound=BaseModel)


class RequestError(Exception):
    """Bad input: answered with 400 and a machine-readable error naming the fields."""

    def __init__(self, code: str, message: str, fields: list[dict] | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.fields, self.status = code, message, fields or [], status


def field_errors(exc: ValidationError, prefix: str = "") -> list[dict]:
    """Pydantic errors as [{field, message}] with dotted paths ("events.0.event_type")."""
    out = []
    for err in exc.errors(include_url=False):
        path = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "")
        out.append({"field": path or "<body>", "message": err["msg"]})
    return out


def validate(model: type[M], data: object, prefix: str = "") -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestError(
            "invalid_request", "the request does not match the schema", field_errors(exc, prefix)
        ) from None


def json_body(request: flask.Request) -> Any:
    """The parsed JSON body, refusing oversized or malformed ones with a clear 400."""
    limit = container().settings.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise RequestError("payload_too_large", f"the body is larger than {limit} bytes")
    raw = request.stream.read(limit + 1)
    if len(raw) > limit:
        raise RequestError("payload_too_large", f"the body is larger than {limit} bytes")
    if not raw.strip():
        raise RequestError("invalid_json", "the body is empty: send a JSON document")
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise RequestError("invalid_json", f"the body is not valid JSON: {exc}") from None


def _cors_headers(request: flask.Request) -> dict[str, str]:
    allowed = [o.strip() for o in container().settings.cors_origins.split(",") if o.strip()]
    origin = request.headers.get("Origin")
    if "*" in allowed:
        allow = "*"
    elif origin in allowed:
        allow = origin
    else:
        return {}
    return {
        "Access-Control-Allow-Origin": allow,
        "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
        "Access-Control-Allow-Headers": "Content-Type, Authorization",
        "Access-Control-Max-Age": "3600",
        "Vary": "Origin",
    }


def _json(status: int, payload: Any, headers: dict[str, str]) -> flask.Response:
    response = flask.Response(json.dumps(payload, separators=(",", ":")), status=status, mimetype="application/json")
    response.headers.update(headers)
    return response


def _error(status: int, code: str, message: str, fields: list[dict], headers: dict[str, str]) -> flask.Response:
    return _json(status, {"error": {"code": code, "message": message, "fields": fields}}, headers)


def endpoint(*methods: str) -> Callable[[Handler], Callable[[flask.Request], flask.Response]]:
    """Wrap a handler returning (status, payload): CORS, allowed methods, errors as JSON."""

    def wrap(handler: Handler) -> Callable[[flask.Request], flask.Response]:
        @functools.wraps(handler)
        def serve(request: flask.Request) -> flask.Response:
            headers = _cors_headers(request)
            if request.method == "OPTIONS":
                return flask.Response(status=204, headers=headers)
            if request.method not in methods:
                message = f"use {' or '.join(methods)}"
                return _error(405, "method_not_allowed", message, [], headers | {"Allow": ", ".join(methods)})
            try:
                status, payload = handler(request)
            except RequestError as exc:
                return _error(exc.status, exc.code, exc.message, exc.fields, headers)
            except Exception:
                log.exception("unhandled error", extra={"path": request.path})
                return _error(500, "internal", "internal error; it has been logged", [], headers)
            return _json(status, payload, headers)

        return serve

    return wrap
