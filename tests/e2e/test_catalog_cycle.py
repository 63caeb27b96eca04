"""The live catalog's whole cycle over HTTP: two instances on one catalog store; a price and a stock
change through the first one's admin API; the second picks the new version up without a restart,
and its search and rank honour it."""

from __future__ import annotations

import http.client
import json
import time
import urllib.parse

from tests.e2e.stack import serving


def call(url: str, method: str, path: str, body: object | None = None) -> tuple[int, dict]:
    connection = http.client.HTTPConnection(urllib.parse.urlsplit(url).netloc, timeout=30)
    try:
        data = None if body is None else json.dumps(body)
        connection.request(method, path, data, {} if body is None else {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


def test_a_price_and_stock_change_reaches_another_instance_and_both_doors(tmp_path):
    shared_store = {"LEAFLOAF_CATALOG_STORE_PATH": str(tmp_path / "catalog.sqlite3"), "LEAFLOAF_CATALOG_REFRESH_S": "2"}

    def instance(name: str) -> dict[str, str]:
        state = tmp_path / name
        return shared_store | {
            "LEAFLOAF_CATALOG_PATH": str(state / "absent.jsonl"),
            "LEAFLOAF_PROFILE_STORE": "memory",
            "LEAFLOAF_BUS_PATH": str(state / "bus.sqlite3"),
            "LEAFLOAF_PUBLISH_SPOOL_PATH": str(state / "publish-spool.sqlite3"),
            "LEAFLOAF_PRIVACY_PATH": str(state / "privacy.sqlite3"),
            "LEAFLOAF_ARCHIVE_PATH": str(state / "archive"),
            "LEAFLOAF_LOCAL_SCHEDULE": "false",
        }

    with serving(instance("a")) as first, serving(instance("b")) as second:
        status, found = call(second, "POST", "/api/search/personalized", {"query": "milk", "limit": 10})
        assert status == 200 and len(found["results"]) >= 2
        gone, cheaper = (r["product_id"] for r in found["results"][:2])
        patch = {"products": [{"id": gone, "in_stock": False}, {"id": cheaper, "price": 0.99}]}
        status, written = call(first, "PATCH", "/api/catalog/products", patch)
        assert status == 200 and written["patched"] == 2, written
        started = time.monotonic()
        while call(second, "GET", f"/api/catalog/products/{cheaper}")[1]["version"] < written["version"]:
            assert time.monotonic() - started < 60, "the second instance did not pick the version up"
            time.sleep(0.2)

        status, found = call(second, "POST", "/api/search/personalized", {"query": "milk", "limit": 10})
        shown = {r["product_id"]: r for r in found["results"]}
        assert gone not in shown and shown[cheaper]["price"] == 0.99
        body = {"query": "milk", "limit": 10, "filters": {"include_out_of_stock": True}}
        asked = {r["product_id"]: r for r in call(second, "POST", "/api/search/personalized", body)[1]["results"]}
        assert asked[gone]["in_stock"] is False

        items = [{"product_id": gone}, {"product_id": cheaper}, {"product_id": "store-only", "category": "milk"}]
        status, ranked = call(second, "POST", "/api/rank", {"items": items})
        assert status == 200 and ranked["filtered_out"] == [gone]
        assert [r["product_id"] for r in ranked["results"]] == [cheaper, "store-only"]
        assert ranked["results"][0]["price"] == 0.99
        health = call(second, "GET", "/health")[1]["backends"]["catalog"]
        assert health["status"] == "healthy" and health["version"] == written["version"]


def test_a_failed_import_changes_nothing(tmp_path):
    import os
    import subprocess
    import sys

    from shared.adapters.catalog.sqlite import SqliteCatalogStore
    from tests.conftest import ROOT

    env = os.environ | {"LEAFLOAF_CATALOG_STORE_PATH": str(tmp_path / "catalog.sqlite3")}
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    good.write_text("id,name,brand,category,department,price,in_stock\np1,Milk,Acme,milk,dairy,1.5,false\n")
    bad.write_text("id,name,brand,category,department,price\np2,Bread,Acme,bread,bakery,1\np3,Jam,Acme,jam,pantry,x\n")

    def run(path) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "shared.cli", "import-catalog", str(path)]
        return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)

    assert run(good).returncode == 0
    refused = run(bad)
    assert refused.returncode == 1 and "line 3: price" in refused.stderr
    store = SqliteCatalogStore(tmp_path / "catalog.sqlite3")
    assert store.latest() == 1 and [(p.id, p.in_stock) for p in store.load().products] == [("p1", False)]
