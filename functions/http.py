"""What every HTTP function shares: CORS, size limits, JSON parsing and error mapping."""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import flask
from pydantic import BaseModel, ValidationError

from shared.bootstrap import container
from shared.domain.events import Id
from shared.observability import reset_trace, set_trace, trace_fields
from shared.pacing import REQUESTS
from shared.ports.identity import Caller, InvalidToken

log = logging.getLogger(__name__)
Handler = Callable[[flask.Request], tuple[int, Any]]
M = TypeVar("M", bound=BaseModel)


class UserRef(BaseModel):
    """A user id taken from a path, validated like any other."""

    user_id: Id


class RequestError(Exception):
    """Bad input: answered with 400 and a machine-readable error naming the fields."""

    def __init__(
        self,
        code: str,
        message: str,
        fields: list[dict] | None = None,
        status: int = 400,
        headers: dict[str, str] | None = None,  # e.g. a 405's Allow
    ) -> None:
        super().__init__(message)
        self.code, self.message, self.fields, self.status = code, message, fields or [], status
        self.headers = headers or {}


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


def caller(request: flask.Request) -> Caller | None:
    """The caller a bearer token proves; None without a token (or with authentication off).

    Raises:
        InvalidToken: for a malformed, forged or expired token (`endpoint` answers 401): a client
            sending one wants to know, rather than be served as anonymous.
    """
    header = request.headers.get("Authorization")
    verifier = container().identity
    if header is None or verifier is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("token_invalid", "send the token as 'Authorization: Bearer <token>'")
    return verifier.verify(token.strip())


def proves(request: flask.Request, user_id: str) -> bool:
    """Whether the request may speak for `user_id` (always, with authentication off)."""
    if container().identity is None:
        return True
    who = caller(request)
    return who is not None and who.may_act_for(user_id)


def authenticated(request: flask.Request) -> Caller | None:
    """The caller, who must prove who they are; None only with authentication off.

    Raises:
        RequestError: 401 without a valid token.
    """
    who = caller(request)
    if who is None and container().identity is not None:
        raise RequestError(
            "unauthenticated", "send a token proving who you are: 'Authorization: Bearer <token>'", status=401
        )
    return who


def authorize(request: flask.Request, *user_ids: str) -> Caller | None:
    """Only the shoppers themselves (or a service identity) may go on.

    Returns:
        The caller (None with authentication off): a change spends its token through the service
        that applies it (PrivacyService.spend), once the change is known to be valid.

    Raises:
        RequestError: 401 without a valid token, 403 for someone else's.
    """
    who = authenticated(request)
    if who is not None:
        acts_for(who, user_ids)
    return who


def acts_for(who: Caller, user_ids: Iterable[str]) -> None:
    """Raises RequestError 403 unless `who` may act for every one of `user_ids`."""
    if not all(who.may_act_for(user_id) for user_id in user_ids):
        raise RequestError("forbidden", "the token does not belong to this user", status=403)


def scheduled(request: flask.Request) -> None:
    """Only a service identity may run a scheduled function (Cloud Scheduler's); see `service_only`."""
    service_only(request, "run the scheduled jobs")


def service_only(request: flask.Request, action: str) -> None:
    """Only a service identity may go on (locally `python -m shared.cli token NAME --service`), as
    for the scheduled functions and the admin API. Where the platform checks the callers of private
    functions itself (Cloud Run IAM, deployed), it is trusted: Cloud Scheduler's token is made for
    the function's URL, not for the verifier's audience.

    Raises:
        RequestError: 401 without a valid token, 403 for a shopper's.
    """
    verifier = container().identity
    if verifier is None or verifier.platform_checks_private_callers:
        return
    who = authenticated(request)
    if who is not None and not who.service:
        raise RequestError("forbidden", f"only a service identity may {action}", status=403)


DEGRADED_HEADER = "X-LeafLoaf-Degraded"  # the backends an answer had to do without


def _cors_headers(request: flask.Request, methods: tuple[str, ...], origins: str) -> dict[str, str]:
    allowed = [o.strip() for o in origins.split(",") if o.strip()]
    origin = request.headers.get("Origin")
    if "*" in allowed:
        allow = "*"
    elif origin in allowed:
        allow = origin
    else:
        return {}
    return {
        "Access-Control-Allow-Origin": allow,
        "Access-Control-Allow-Methods": ", ".join((*methods, "OPTIONS")),
        "Access-Control-Allow-Headers": "Content-Type, Authorization",
        "Access-Control-Expose-Headers": DEGRADED_HEADER,
        "Access-Control-Max-Age": "3600",
        "Vary": "Origin",
    }


def _json(status: int, payload: Any, headers: dict[str, str]) -> flask.Response:
    response = flask.Response(json.dumps(payload, separators=(",", ":")), status=status, mimetype="application/json")
    response.headers.update(headers)
    return response


def error_response(status: int, code: str, message: str, fields: list[dict], headers: dict[str, str]) -> flask.Response:
    return _json(status, {"error": {"code": code, "message": message, "fields": fields}}, headers)


def endpoint(*methods: str) -> Callable[[Handler], Callable[[flask.Request], flask.Response]]:
    """Wrap a handler returning (status, payload): CORS, allowed methods, errors as JSON."""

    def wrap(handler: Handler) -> Callable[[flask.Request], flask.Response]:
        @functools.wraps(handler)
        def serve(request: flask.Request) -> flask.Response:
            services = container()
            headers = _cors_headers(request, methods, services.settings.cors_origins)
            if request.method == "OPTIONS":
                return flask.Response(status=204, headers=headers)
            if request.method not in methods:
                message = f"use {' or '.join(methods)}"
                return error_response(405, "method_not_allowed", message, [], headers | {"Allow": ", ".join(methods)})
            started = time.perf_counter()
            headers_in = request.headers
            fields = trace_fields(
                headers_in.get("traceparent"),
                headers_in.get("X-Cloud-Trace-Context"),
                services.settings.trace_project,
            )
            trace = set_trace(fields)
            try:
                with REQUESTS.serving():  # a background build gives way meanwhile (shared/pacing.py)
                    status, payload = handler(request)
                response = _json(status, payload, headers)
            except RequestError as exc:
                response = error_response(exc.status, exc.code, exc.message, exc.fields, headers | exc.headers)
            except InvalidToken as exc:  # e.g. a token already spent on a change (token_replayed)
                response = error_response(401, exc.code, str(exc), [], headers)
            except Exception:
                log.exception("unhandled error", extra={"path": request.path})
                response = error_response(500, "internal", "internal error; it has been logged", [], headers)
            finally:
                reset_trace(trace)
            if degraded := services.degraded():  # answered, but without these backends
                response.headers[DEGRADED_HEADER] = ",".join(degraded)
            elapsed_ms = (time.perf_counter() - started) * 1000
            services.telemetry.request_duration.record(
                elapsed_ms, {"function": handler.__name__, "status": response.status_code}
            )
            return response

        return serve

    return wrap
