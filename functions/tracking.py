"""HTTP: POST /api/interactions/track: one event or a batch, applied to live profiles."""

from __future__ import annotations

import flask
import functions_framework

from functions.http import RequestError, endpoint, json_body, proves, validate
from shared.bootstrap import container
from shared.domain.events import Interaction
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
    # A user id counts only with a token proving it; an anonymous caller has no profile to learn into.
    proven = {user_id for user_id in {e.user_id for e in events} if proves(request, user_id)}
    result = services.tracking.track([e for e in events if e.user_id in proven])
    refused = {e.event_id: "unauthenticated" for e in events if e.user_id not in proven} | result.refused
    accepted = set(result.accepted)
    record_lag(services.telemetry, [e for e in events if e.event_id in accepted], "profile")
    return 202, {
        "accepted": result.accepted,
        "duplicates": result.duplicates,
        "refused": [{"event_id": event_id, "reason": reason} for event_id, reason in refused.items()],
    }
