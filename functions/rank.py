"""HTTP: POST /api/rank: the store's own results re-ordered for the shopper, with explanations."""

from __future__ import annotations

import flask
import functions_framework

from functions.http import RequestError, endpoint, json_body, proves, validate
from shared.bootstrap import container
from shared.domain.search import RankRequest


@functions_framework.http
@endpoint("POST")
def rank_personalized(request: flask.Request) -> tuple[int, dict]:
    ranking = validate(RankRequest, json_body(request))
    if conflicts := ranking.conflicts():
        fields = [{"field": field, "message": message} for field, message in conflicts]
        raise RequestError("invalid_request", "the request does not match the schema", fields)
    if ranking.user_id is not None and not proves(request, ranking.user_id):
        ranking = ranking.model_copy(update={"user_id": None})  # served as anonymous: this session's signals only
    return 200, container().search.rank(ranking)
