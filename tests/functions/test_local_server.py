"""The local server's startup banner lists every endpoint it serves, from its URL map."""

from __future__ import annotations

from functions.local_server import EVENT_HANDLERS, ROUTES, create_local_app, endpoints


def test_the_banner_lists_every_endpoint_with_its_methods():
    lines = endpoints(create_local_app())
    paths = [line.split(" ")[1] for line in lines]
    served = [path.replace("<", "{").replace(">", "}") for path in ROUTES]
    assert paths == [*served, "/openapi.json", "/metrics", *(f"/_events/{name}" for name in EVENT_HANDLERS)]
    assert "GET /api/users/{user_id}/memory" in lines and "POST /jobs/hourly" in lines
    assert "GET|PUT /api/users/{user_id}/privacy" in lines and "DELETE /api/users/{user_id}" in lines
    assert not [line for line in lines if "OPTIONS" in line], "every function's methods come from its OpenAPI entry"
