"""HTTP: POST /api/interactions/track: one event or a batch, applied to live profiles."""

from __future__ import annotations

import flask
import functions_framework

from functions.http import RequestError, acts_for, caller, endpoint, json_body, validate
from shared.bootstrap import container
from shared.domain.events import Interaction
from shared.services.tracking import TrackResult
from shared.telemetry import record_lag


def parse_events(body: object, max_batch: int) -> list[Interaction]:
    """One event object, {"events": [...]}, or a JSON array; every bad field is reported."""
    if isinstance(body, dict) and "events" in body:
        if set(body) != {"events"}:
            raise RequestError("invalid_request", "a batch body has only the key 'events'")
        body = body["events"]
        prefix = "events"
    elif isinstance(body, list):
        prefix = "events"
    else:
        return [validate(Interaction, body)]
    if not isinstance(body, list) or not body:
        raise RequestError(
            "invalid_request",
            "events must be a non-empty list",
            [{"field": "events", "message": "not a non-empty list"}],
        )
    if len(body) > max_batch:
        raise RequestError("batch_too_large", f"at most {max_batch} events per request")
    events, fields = [], []
    for index, item in enumerate(body):
        try:
            events.append(validate(Interaction, item, f"{prefix}.{index}"))
        except RequestError as exc:
            fields.extend(exc.fields)
    if fields:
        raise RequestError("invalid_request", "some events are invalid; none was applied", fields)
    return events


@functions_framework.http
@endpoint("POST")
def track_interaction(request: flask.Request) -> tuple[int, dict]:
    services = container()
    events = parse_events(json_body(request), services.settings.max_batch_events)
    who = caller(request)
    if who is None and services.identity is not None:
        # Without a token a user id counts for nothing: an anonymous caller has no profile to learn into.
        result = TrackResult(refused={e.event_id: "unauthenticated" for e in events})
    else:
        if who is not None:
            acts_for(who, {e.user_id for e in events})  # 403 for an event of someone else's
        result = services.tracking.track(events)
    accepted = set(result.accepted)
    record_lag(services.telemetry, [e for e in events if e.event_id in accepted], "profile")
    return 202, {
        "accepted": result.accepted,
        "duplicates": result.duplicates,
        "refused": [{"event_id": event_id, "reason": reason} for event_id, reason in result.refused.items()],
    }
