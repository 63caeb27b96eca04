"""HTTP, the admin API of the store's merchandising rules (private; a service identity's token):
GET /api/merchandising/rules (the served rules and their version), PUT (replace them all: the body
is a whole rules document, as merchandising_rules.yaml), DELETE /api/merchandising/rules/{rule_id}."""

from __future__ import annotations

import flask
import functions_framework

from functions.http import RequestError, endpoint, json_body, service_only
from shared.bootstrap import container
from shared.domain.merchandising import MerchandisingError, parse_merchandising

PATH = "/api/merchandising/rules"


@functions_framework.http
@endpoint("GET", "PUT", "DELETE")
def manage_merchandising_rules(request: flask.Request) -> tuple[int, dict]:
    service_only(request, "change the merchandising rules")
    service = container().merchandising
    rule_id = _rule_id(request)
    if request.method == "GET" and rule_id is None:
        return 200, service.describe()
    if request.method == "PUT" and rule_id is None:
        try:
            rules = parse_merchandising(json_body(request), "merchandising rules")
        except MerchandisingError as exc:
            fields = [{"field": field, "message": message} for field, message in exc.fields]
            raise RequestError("invalid_request", "the rules do not match the schema", fields) from None
        service.publish(rules)
        return 200, service.describe()
    if request.method == "DELETE" and rule_id is not None:
        try:
            service.publish(service.current()[1].without(rule_id))
        except KeyError:
            raise RequestError("not_found", f"no merchandising rule {rule_id!r}", status=404) from None
        return 200, service.describe()
    allow = "GET, PUT" if rule_id is None else "DELETE"
    raise RequestError("method_not_allowed", f"use {allow} here", status=405, headers={"Allow": allow})


def _rule_id(request: flask.Request) -> str | None:
    """The rule id after the path (or after `/` alone, as functions-framework serves a function at /)."""
    path = request.path.rstrip("/")
    tail = path[len(PATH) :] if path.startswith(PATH) else path
    return tail.strip("/") or None
