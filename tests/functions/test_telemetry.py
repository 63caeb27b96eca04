"""Metrics: what the functions record is readable locally (GET /metrics) with the numbers they
did: request durations per function, the personalization hit rate, signal lag per stage, the
publisher's and the cache's counters; percentiles come from the histograms' buckets."""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime, timedelta

import pytest
from functions_framework import create_app
from opentelemetry.sdk.metrics.export import HistogramDataPoint

from functions.local_server import create_local_app
from shared import bootstrap
from shared.observability import JsonFormatter
from shared.telemetry import quantile
from tests.conftest import ROOT, installed_services

MAIN = str(ROOT / "main.py")


@pytest.fixture()
def services(tmp_path):
    services = installed_services(
        tmp_path, profile_store="sqlite", sqlite_path=tmp_path / "p.sqlite3", profile_spool_path=tmp_path / "s.sqlite3"
    )
    yield services
    services.close()
    bootstrap.install(None)


def points(metrics: dict, name: str, **attributes) -> list[dict]:
    return [p for p in metrics.get(name, []) if p["attributes"].items() >= attributes.items()]


def test_the_functions_record_what_they_did(services):
    track = create_app("track_interaction", MAIN).test_client()
    search = create_app("search_personalized", MAIN).test_client()
    an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    for n in range(3):
        event = {"event_type": "click_product", "user_id": "ann", "product_id": "oat-milk", "timestamp": an_hour_ago}
        assert track.post("/", json=event | {"event_id": f"e{n}"}).status_code == 202
    assert search.post("/", json={"query": "milk", "user_id": "ann"}).get_json()["personalization"]["applied"]
    search.post("/", json={"query": "milk"})  # anonymous: not personalized
    track.post("/", json={"event_type": "nonsense"})  # a 400 is timed too
    services.publisher.flush()

    metrics = create_local_app().test_client().get("/metrics").get_json()
    accepted = points(metrics, "leafloaf.request.duration", function="track_interaction", status=202)[0]
    assert accepted["count"] == 3 and 0 < accepted["p50"] <= accepted["p99"] <= accepted["max"]
    assert points(metrics, "leafloaf.request.duration", function="track_interaction", status=400)[0]["count"] == 1
    personalized = points(metrics, "leafloaf.search.requests", personalized="true")
    anonymous = points(metrics, "leafloaf.search.requests", personalized="false", reason="anonymous")
    assert personalized[0]["value"] == 1 and anonymous[0]["value"] == 1  # a 50 % hit rate
    lag = points(metrics, "leafloaf.signal.lag", stage="profile")[0]
    assert lag["count"] == 3 and 3500 < lag["p50"] < 3700  # an hour, from the event's own time
    assert points(metrics, "leafloaf.events", outcome="published")[0]["value"] >= 3
    lookups = {p["attributes"]["result"]: p["value"] for p in metrics["leafloaf.profile_cache.lookups"]}
    assert lookups["miss"] >= 1 and lookups["hit"] >= 3
    assert metrics["leafloaf.profile_cache.profiles"][0]["value"] == 1
    assert metrics["leafloaf.profile_cache.bytes_per_profile"][0]["value"] > 0


def test_quantiles_interpolate_inside_the_bucket():
    point = HistogramDataPoint(
        attributes={}, start_time_unix_nano=0, time_unix_nano=0, count=100, sum=0, bucket_counts=[50, 40, 10, 0],
        explicit_bounds=[10, 20, 50], min=1, max=45, exemplars=[],
    )  # fmt: skip
    assert quantile(point, 0.5) == 10  # the 50th value closes the first bucket
    assert quantile(point, 0.7) == pytest.approx(15)  # halfway through (10, 20]
    assert quantile(point, 0.99) == pytest.approx(20 + 25 * 0.9)  # the last bucket is capped at max


def test_log_lines_carry_the_requests_trace(services):
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logging.getLogger().addHandler(handler)
    try:
        search = create_app("search_personalized", MAIN).test_client()
        trace = "4bf92f3577b34da6a3ce929d0e0e4736"
        services.search.search = lambda request: logging.getLogger("t").warning("searching") or 1 / 0
        search.post("/", json={"query": "milk"}, headers={"traceparent": f"00-{trace}-00f067aa0ba902b7-01"})
        search.post("/", json={"query": "milk"}, headers={"X-Cloud-Trace-Context": f"{trace.upper()}/123;o=1"})
        search.post("/", json={"query": "milk"})
    finally:
        logging.getLogger().removeHandler(handler)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    logged = [(line["message"], line.get("logging.googleapis.com/trace"), line.get("logging.googleapis.com/spanId"))
              for line in lines if line["message"] in ("searching", "unhandled error")]  # fmt: skip
    expected = f"projects/leafloaf-local/traces/{trace}"
    assert logged == [
        ("searching", expected, "00f067aa0ba902b7"), ("unhandled error", expected, "00f067aa0ba902b7"),
        ("searching", expected, "123"), ("unhandled error", expected, "123"),
        ("searching", None, None), ("unhandled error", None, None),
    ]  # fmt: skip
