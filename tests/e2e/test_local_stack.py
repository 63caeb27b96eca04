"""The local stack end to end: `python -m shared.cli serve` in its own process, driven over HTTP."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

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


def test_cli_help_for_every_command():
    for command in ("serve", "demo", "import-catalog"):
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
