"""POST /api/rank over the served local stack (`python -m shared.cli serve`), beside search."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.e2e.stack import serving
from tests.e2e.test_local_stack import raw


@pytest.fixture(scope="module")
def server_url(tmp_path_factory) -> Iterator[str]:
    state = tmp_path_factory.mktemp("state")
    env = {
        "LEAFLOAF_CATALOG_PATH": str(state / "absent.jsonl"),
        "LEAFLOAF_SQLITE_PATH": str(state / "profiles.sqlite3"),
        "LEAFLOAF_PROFILE_SPOOL_PATH": str(state / "spool.sqlite3"),
    }
    with serving(env) as url:
        yield url


def test_the_stores_list_is_reordered_for_a_shopper_who_clicked_one(server_url):
    status, _, body = raw(server_url, "POST", "/api/search/personalized", {"query": "milk", "limit": 10})
    assert status == 200
    store = [r["product_id"] for r in json.loads(body)["results"]]
    click = {"event_type": "click_product", "user_id": "e2e-rank", "product_id": store[1]}
    assert raw(server_url, "POST", "/api/interactions/track", click)[0] == 202
    items = [{"product_id": p} for p in store] + [{"product_id": "store-only", "category": "milk"}]
    status, _, body = raw(server_url, "POST", "/api/rank", {"user_id": "e2e-rank", "items": items})
    answer = json.loads(body)
    assert status == 200 and answer["personalization"]["applied"] is True
    ranked = [r["product_id"] for r in answer["results"]]
    assert ranked[0] == store[1] and sorted(ranked) == sorted([*store, "store-only"])
    status, _, body = raw(server_url, "POST", "/api/rank", {"items": [{"product_id": "a"}] * 2})
    assert status == 400 and [f["field"] for f in json.loads(body)["error"]["fields"]] == ["items.1.product_id"]
