"""HTTP: POST /api/recommendations: a surface without a query (home, product page, cart), ranked for the shopper."""

from __future__ import annotations

import flask
import functions_framework

from functions.http import endpoint, json_body, proves, validate
from shared.bootstrap import container
from shared.domain.recommendations import RecommendationRequest


@functions_framework.http
@endpoint("POST")
def recommend_products(request: flask.Request) -> tuple[int, dict]:
    asked = validate(RecommendationRequest, json_body(request))
    if asked.user_id is not None and not proves(request, asked.user_id):
        asked = asked.model_copy(update={"user_id": None})  # served as anonymous: this session's signals only
    return 200, container().search.recommend(asked)
