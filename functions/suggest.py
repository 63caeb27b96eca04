"""HTTP: GET /api/suggest?q=...: instant query completions, the shopper's own first."""

from __future__ import annotations

import flask
import functions_framework

from functions.http import endpoint, proves, validate
from shared.bootstrap import container
from shared.domain.suggest import SuggestRequest


@functions_framework.http
@endpoint("GET")
def suggest_queries(request: flask.Request) -> tuple[int, dict]:
    asked = validate(SuggestRequest, request.args.to_dict(flat=True))
    if asked.user_id is not None and not proves(request, asked.user_id):
        asked = asked.model_copy(update={"user_id": None})  # anyone's suggestions: nothing of theirs
    return 200, container().suggestions.suggest(asked)
