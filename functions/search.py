"""HTTP: POST /api/search/personalized: ranked results with explanations."""

from __future__ import annotations

import flask
import functions_framework

from functions.http import endpoint, json_body, proves, validate
from shared.bootstrap import container
from shared.domain.search import SearchRequest


@functions_framework.http
@endpoint("POST")
def search_personalized(request: flask.Request) -> tuple[int, dict]:
    body = json_body(request)
    search = validate(SearchRequest, body)
    if search.user_id is not None and not proves(request, search.user_id):
        search = search.model_copy(update={"user_id": None})  # served as anonymous: this session's signals only
    services = container()
    answer = services.search.search(search)
    personalization = answer["personalization"]
    personalized = "true" if personalization["applied"] else "false"  # labels are strings in Cloud Monitoring
    attributes = {"personalized": personalized, "reason": personalization["reason"] or "applied"}
    services.telemetry.search_requests.add(1, attributes)  # the hit rate: personalized / all
    return 200, answer
