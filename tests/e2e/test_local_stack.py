"""The local stack end to end: `python -m shared.cli serve` in its own process, driven over HTTP."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.cli import parser
from shared.demo import SCENARIOS, Api
from tests.conftest import ROOT
from tests.e2e.stack import serving


@pytest.fixture(scope="module")
def server_url(tmp_path_factory) -> Iterator[str]:
    state = tmp_path_factory.mktemp("state")
    env = {
        "LEAFLOAF_CATALOG_PATH": str(state / "absent.jsonl"),
        "LEAFLOAF_SQLITE_PATH": str(state / "profiles.sqlite3"),
        "LEAFLOAF_PROFILE_SPOOL_PATH": str(state / "spool.sqlite3"),
    }
    with serving(env) as url:  # the default stores: SQLite behind the instance cache
        yield url


def test_sqlite_profiles_survive_a_restart(tmp_path):
    env = {
        "LEAFLOAF_CATALOG_PATH": str(tmp_path / "absent.jsonl"),
        "LEAFLOAF_PROFILE_STORE": "sqlite",
        "LEAFLOAF_SQLITE_PATH": str(tmp_path / "profiles.sqlite3"),
        "LEAFLOAF_PROFILE_SPOOL_PATH": str(tmp_path / "spool.sqlite3"),
    }
    with serving(env) as url:
        Api(url).track({"event_type": "purchase", "user_id": "keeper", "product_id": "p00000", "quantity": 2})
    with serving(env) as url:
        prefs = Api(url).preferences("keeper")
    assert prefs["known"] is True and prefs["preferred_quantities"] == {"p00000": 2}


def test_a_crash_loses_at_most_the_last_flush_interval(tmp_path):
    """Write-behind bound: events tracked more than one flush interval (0.25 s) before a SIGKILL
    are in the store; only younger ones may be lost."""
    env = {
        "LEAFLOAF_CATALOG_PATH": str(tmp_path / "absent.jsonl"),
        "LEAFLOAF_PROFILE_STORE": "sqlite",
        "LEAFLOAF_SQLITE_PATH": str(tmp_path / "profiles.sqlite3"),
        "LEAFLOAF_PROFILE_SPOOL_PATH": str(tmp_path / "spool.sqlite3"),
    }
    with serving(env, crash=True) as url:
        Api(url).track({"event_type": "purchase", "user_id": "crash", "product_id": "p00000", "quantity": 3})
        time.sleep(1.0)  # four flush intervals
    with serving(env) as url:
        prefs = Api(url).preferences("crash")
    assert prefs["preferred_quantities"] == {"p00000": 3}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_acceptance_scenario(server_url, scenario):
    steps: list[str] = []
    outcome = scenario(Api(server_url), steps.append, user=f"e2e-{scenario.__name__}")
    assert outcome.passed, "\n".join([outcome.detail, *steps])


def test_demo_command_against_the_server(server_url):
    done = subprocess.run(
        [sys.executable, "-m", "shared.cli", "demo", "--url", server_url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 of 3 scenarios behaved as the design says." in done.stdout


def test_unknown_path_is_a_json_404(server_url):
    status, body = Api(server_url).call("GET", "/api/nothing-here")
    assert status == 404 and body["error"]["code"] == "not_found"


def cli_commands() -> list[str]:
    commands = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    return list(commands.choices)


def test_the_readme_names_every_cli_command():
    line = next(line for line in (ROOT / "README.md").read_text().splitlines() if "shared.cli --help" in line)
    named = [name.strip() for name in line.partition("#")[2].split(", each")[0].split("|")]
    assert named == cli_commands()


def test_cli_help_for_every_command():
    for command in cli_commands():
        done = subprocess.run(
            [sys.executable, "-m", "shared.cli", command, "--help"], cwd=ROOT, capture_output=True, text=True
        )
        assert done.returncode == 0 and "usage:" in done.stdout


def test_import_catalog_reports_bad_rows_and_installs_good_files(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("id,name,brand,category,department,price\np1,Milk,Acme,milk,dairy,oops\n")
    out = tmp_path / "catalog.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "shared.cli", "import-catalog", str(bad), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and "line 2: price" in done.stderr and not out.exists()
    done = subprocess.run(
        [sys.executable, "-m", "shared.cli", "import-catalog", "--generate", "300", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and len(out.read_text().splitlines()) == 300


def raw(url: str, method: str, path: str, body: object | None = None) -> tuple[int, str, str]:
    """One request over a socket to the served stack: (status, Content-Type, body)."""
    connection = http.client.HTTPConnection(urllib.parse.urlsplit(url).netloc, timeout=10)
    try:
        data = None if body is None else json.dumps(body)
        connection.request(method, path, data, {} if body is None else {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read().decode()
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/api/search/" + "x" * 5000, 414, "uri_too_long"),  # gunicorn's request-line limit
        ("TRACE", "/health", 405, "method_not_allowed"),
        ("POST", "/_events/archive_events", 400, "invalid_request"),  # not a 308 redirect to the slash
        ("GET", "/_events/archive_events/", 405, "method_not_allowed"),
    ],
    ids=["uri-too-long", "trace", "event-mount-point", "event-get"],
)
def test_every_error_is_json_in_our_format(server_url, method, path, status, code):
    answer = raw(server_url, method, path, {} if method == "POST" else None)
    assert answer[:2] == (status, "application/json") and json.loads(answer[2])["error"]["code"] == code, answer


def test_an_event_function_is_served_at_its_mount_point_without_a_slash(server_url):
    push = {"message": {"data": "e30=", "messageId": "m-1", "attributes": {}}, "subscription": "projects/p/s"}
    status, _, _ = raw(server_url, "POST", "/_events/archive_events", push)
    assert status == 200  # delivered (a poison message: dead-lettered and acknowledged)


@pytest.mark.parametrize("given", [True, False], ids=["--catalog", "installed"])
def test_serve_reports_a_bad_catalog_line_by_line_as_import_catalog_does(tmp_path, given):
    bad = tmp_path / "bad.csv"
    bad.write_text("id,name,brand,category,department,price\np1,Milk,Acme,milk,dairy,oops\np2,,Acme,milk,dairy,1\n")
    # Given on the command line, or the installed catalog (LEAFLOAF_CATALOG_PATH) gone bad.
    own_store = os.environ | {"LEAFLOAF_CATALOG_STORE_PATH": str(tmp_path / "catalog.sqlite3")}  # empty: seeded
    flags, env = (
        (["--catalog", str(bad)], own_store) if given else ([], own_store | {"LEAFLOAF_CATALOG_PATH": str(bad)})
    )
    done = subprocess.run(
        [sys.executable, "-m", "shared.cli", "serve", "--port", "0", *flags],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.splitlines() == [
        "error: 2 invalid catalog row(s):",
        "line 2: price: Input should be a valid number, unable to parse string as a number",
        "line 3: name: Field required",
    ]


def demo_on(catalog: Path, state: Path) -> subprocess.CompletedProcess:
    """`shared.cli demo` (its own server in its process) on `catalog`."""
    env = os.environ | {
        "LEAFLOAF_CATALOG_PATH": str(catalog),
        "LEAFLOAF_CATALOG_STORE_PATH": str(state / "catalog.sqlite3"),
        "LEAFLOAF_PROFILE_STORE": "memory",
        "LEAFLOAF_PRIVACY_PATH": str(state / "privacy.sqlite3"),
        "LEAFLOAF_PUBLISH_SPOOL_PATH": str(state / "publish-spool.sqlite3"),
        "LEAFLOAF_BUS_PATH": str(state / "bus.sqlite3"),
    }
    command = [sys.executable, "-m", "shared.cli", "demo"]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_the_demo_says_plainly_that_it_needs_the_demo_catalog(tmp_path):
    catalog = tmp_path / "bakery.csv"
    catalog.write_text("id,name,brand,category,department,price\nb1,Sourdough Bread,Acme,bread,bakery,4\n")
    done = demo_on(catalog, tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "the server's catalog has no oat milk" in done.stderr
    assert "import-catalog --generate 5000" in done.stderr


def test_the_demo_finds_its_products_in_a_bigger_catalog(tmp_path):
    """50,000 generated products: oat milk is not among the first 100 'milk' results (StopIteration)."""
    catalog = tmp_path / "catalog.jsonl"
    generate = [sys.executable, "-m", "shared.cli", "import-catalog", "--generate", "50000", "--out", str(catalog)]
    subprocess.run(generate, cwd=ROOT, check=True, capture_output=True, timeout=120)
    done = demo_on(catalog, tmp_path)
    assert "Traceback" not in done.stderr, done.stderr
    assert "searches 'oat milk'" in done.stdout and "of 3 scenarios behaved as the design says." in done.stdout


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


def test_a_shoppers_pages_without_a_query_and_their_suggestions_over_http(server_url):
    status, _, body = raw(server_url, "POST", "/api/search/personalized", {"query": "milk", "limit": 5})
    milk = json.loads(body)["results"][0]
    order = {"user_id": "e2e-recs", "items": [{"product_id": milk["product_id"], "quantity": 3}]}
    assert raw(server_url, "POST", "/api/orders/confirm", order | {"weather": {"condition": "rain"}})[0] == 200
    asked = {"surface": "buy_it_again", "user_id": "e2e-recs", "context": {"local_time": "2026-12-06T09:00:00+09:00"}}
    status, _, body = raw(server_url, "POST", "/api/recommendations", asked)
    again = json.loads(body)
    assert status == 200 and again["fallback"] is None
    assert again["context"]["weekday"] == "sunday" and again["context"]["meal"] == "breakfast"
    assert again["results"][0]["product_id"] == milk["product_id"] and again["results"][0]["suggested_quantity"] == 3
    status, _, body = raw(server_url, "POST", "/api/recommendations", {"surface": "trending", "limit": 5})
    assert status == 200 and json.loads(body)["fallback"] == {"to": "popular", "reason": "no_features"}
    status, _, body = raw(server_url, "POST", "/api/recommendations", {"surface": "elsewhere"})
    assert status == 400 and [f["field"] for f in json.loads(body)["error"]["fields"]] == ["surface"]
    word = milk["name"].split()[-1][:4].lower()
    status, _, body = raw(server_url, "GET", f"/api/suggest?q={urllib.parse.quote(word)}&user_id=e2e-recs")
    suggestions = json.loads(body)["suggestions"]
    assert status == 200 and suggestions and suggestions[0]["personal"] is True
    assert raw(server_url, "GET", "/api/suggest?q=milk&limit=99")[0] == 400
