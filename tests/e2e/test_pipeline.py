"""N events tracked over HTTP become exactly N warehouse rows and N archive lines.

On the embedded stack (SQLite bus, DuckDB, local folder), and on the cloud topology with the
emulators (Pub/Sub pushing to the served event functions, BigQuery, Cloud Storage), including
redelivery and backends that are down for a while.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from shared.adapters.archive.local import LocalFolderArchive
from shared.adapters.event_bus.sqlite import SqliteEventBus
from shared.adapters.warehouse.duckdb import DuckDbWarehouse
from shared.demo import Api
from shared.emulators import Emulator
from shared.ports.archive import Archive
from shared.ports.warehouse import Warehouse
from tests.e2e.stack import serving

TYPES = ("click_product", "view_details", "add_to_cart", "purchase", "displayed_but_scrolled", "search")


def stack_env(state: Path) -> dict[str, str]:
    return {
        "LEAFLOAF_CATALOG_PATH": str(state / "absent.jsonl"),
        "LEAFLOAF_DEMO_CATALOG_SIZE": "500",
        "LEAFLOAF_SQLITE_PATH": str(state / "profiles.sqlite3"),
        "LEAFLOAF_PROFILE_SPOOL_PATH": str(state / "profile-spool.sqlite3"),
        "LEAFLOAF_BUS_PATH": str(state / "bus.sqlite3"),
        "LEAFLOAF_PUBLISH_SPOOL_PATH": str(state / "publish-spool.sqlite3"),
        "LEAFLOAF_DUCKDB_PATH": str(state / "warehouse.duckdb"),
        "LEAFLOAF_ARCHIVE_PATH": str(state / "archive"),
        "LEAFLOAF_KUZU_PATH": str(state / "graph.kuzu"),
        "LEAFLOAF_PUBLISH_MAX_LATENCY_S": "0.2",
        "LEAFLOAF_PUBLISH_RETRY_INTERVAL_S": "0.5",
        "LEAFLOAF_DELIVERY_MIN_BACKOFF_S": "0.2",
        "LEAFLOAF_DELIVERY_MAX_BACKOFF_S": "1",
        "LEAFLOAF_DELIVERY_MAX_ATTEMPTS": "1000",  # an outage of minutes must not dead-letter anything
        "LEAFLOAF_WAREHOUSE_TIMEOUT_S": "3",
    }


def event(i: int, run: str) -> dict:
    kind = TYPES[i % len(TYPES)]
    body = {"event_id": f"{run}-{i}", "event_type": kind, "user_id": f"shopper-{i % 37}"}
    if kind == "search":
        return body | {"context": {"search_query": "milk"}}
    return body | {"product_id": f"p{i % 500:05d}"}


def track(url: str, n: int, run: str) -> set[str]:
    api, ids = Api(url), set()
    for start in range(0, n, 25):
        body = api.track(*(event(i, run) for i in range(start, min(n, start + 25))))
        assert not body["duplicates"]
        ids.update(body["accepted"])
    return ids


def wait_until(condition, timeout: float = 120.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def published(url: str) -> int:
    publisher = Api(url).call("GET", "/health")[1]["backends"]["event_bus"]["publisher"]
    return int(publisher["published"]) if publisher["queued"] == 0 else -1


def drained(bus_path: Path) -> bool:
    return not any(SqliteEventBus(bus_path).backlog().values())


def archived_ids(archive: Archive) -> list[str]:
    assert archive.list("staging/") == [], "a graceful stop archives what is staged"
    lines = []
    for item in archive.list("events/"):
        lines += (archive.get(item.name) or b"").decode().splitlines()
    return [json.loads(line)["event_id"] for line in lines]


def warehouse_ids(warehouse: Warehouse) -> list[str]:
    return [row["event_id"] for row in warehouse.query("SELECT event_id FROM raw_user_actions")]


def assert_exactly(sent: set[str], archive: Archive, warehouse: Warehouse) -> None:
    in_archive, in_warehouse = archived_ids(archive), warehouse_ids(warehouse)
    assert len(in_warehouse) == len(sent) and set(in_warehouse) == sent
    assert len(in_archive) == len(sent) and set(in_archive) == sent


# -- embedded stack ------------------------------------------------------------------------------


def test_embedded_n_events_give_n_rows_and_n_lines_even_when_redelivered(tmp_path):
    env = stack_env(tmp_path)
    bus = tmp_path / "bus.sqlite3"
    with serving(env) as url:
        sent = track(url, 600, "plain")
        wait_until(lambda: published(url) >= len(sent), what="publishing")
        wait_until(lambda: drained(bus), what="delivery")
        assert SqliteEventBus(bus).seek(0) > 0  # the bus delivers everything once more
        wait_until(lambda: drained(bus), what="redelivery")
    warehouse = DuckDbWarehouse(tmp_path / "warehouse.duckdb")
    assert_exactly(sent, LocalFolderArchive(tmp_path / "archive"), warehouse)
    assert warehouse.query("SELECT COUNT(*) AS n FROM search_events")[0]["n"] == 100
    warehouse.close()


def hold_file(script: str, within_s: float = 30.0) -> subprocess.Popen:
    """A process running `script`, which prints "held" once it holds a file; tried again while the
    server holds it for a moment itself (DuckDB allows one writing process)."""
    deadline = time.monotonic() + within_s
    while True:
        holder = subprocess.Popen(
            [sys.executable, "-c", script],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert holder.stdout is not None
        if holder.stdout.readline().strip() == "held":
            return holder
        holder.wait(timeout=10)
        assert time.monotonic() < deadline, "could not take the warehouse file from the server"
        time.sleep(0.2)


def test_embedded_backends_down_for_a_while_lose_nothing(tmp_path):
    env = stack_env(tmp_path)
    bus, archive_root = tmp_path / "bus.sqlite3", tmp_path / "archive"
    database = str(tmp_path / "warehouse.duckdb")
    hold = f"import duckdb, sys; c = duckdb.connect({database!r}); print('held', flush=True); sys.stdin.read()"
    with serving(env) as url:
        # The warehouse file is held by another process and the archive folder is gone.
        holder = hold_file(hold)
        archive_root.rename(tmp_path / "archive-away")
        archive_root.write_text("not a folder")
        sent = track(url, 300, "outage")
        wait_until(lambda: published(url) >= len(sent), what="publishing")
        time.sleep(3)  # deliveries fail and back off meanwhile
        assert SqliteEventBus(bus).backlog()["load_events_bigquery"] > 0
        holder.communicate("", timeout=30)
        archive_root.unlink()
        (tmp_path / "archive-away").rename(archive_root)
        wait_until(lambda: drained(bus), what="delivery after the outage")
    warehouse = DuckDbWarehouse(tmp_path / "warehouse.duckdb")
    assert_exactly(sent, LocalFolderArchive(archive_root), warehouse)
    assert SqliteEventBus(bus).dead_letters() == []
    warehouse.close()


# -- the cloud topology on the emulators -------------------------------------------------------------


@pytest.fixture()
def cloud(request, tmp_path):
    """Settings for the server: Pub/Sub, BigQuery and Cloud Storage emulators; a fresh project each time."""
    bigquery = request.getfixturevalue("bigquery_emulator")
    pubsub, gcs = request.getfixturevalue("pubsub_emulator"), request.getfixturevalue("gcs_emulator")
    return cloud_env(tmp_path, pubsub, bigquery, gcs), bigquery


def cloud_env(state: Path, pubsub: Emulator, bigquery: Emulator, gcs: Emulator) -> dict[str, str]:
    name = f"e2e{uuid.uuid4().hex[:8]}"
    env = stack_env(state) | pubsub.environment() | bigquery.environment() | gcs.environment()
    return env | {
        "LEAFLOAF_EVENT_BUS": "pubsub",
        "LEAFLOAF_PUBSUB_PROJECT": name,
        "LEAFLOAF_WAREHOUSE": "bigquery",
        "LEAFLOAF_WAREHOUSE_DATASET": name,
        "LEAFLOAF_ARCHIVE": "gcs",
        "LEAFLOAF_ARCHIVE_BUCKET": name,
    }


def cloud_backends(env: dict[str, str]):
    from shared.adapters.archive.gcs import GcsArchive
    from shared.adapters.warehouse.bigquery import BigQueryWarehouse
    from shared.config import Settings

    settings = Settings(
        warehouse_dataset=env["LEAFLOAF_WAREHOUSE_DATASET"],
        bigquery_endpoint=env["LEAFLOAF_BIGQUERY_ENDPOINT"],
        warehouse_project=env["LEAFLOAF_WAREHOUSE_PROJECT"],
        archive_bucket=env["LEAFLOAF_ARCHIVE_BUCKET"],
    )
    return GcsArchive.from_settings(settings), BigQueryWarehouse.from_settings(settings)


def rows_in(warehouse: Warehouse) -> int:
    try:
        return int(warehouse.query("SELECT COUNT(*) AS n FROM raw_user_actions")[0]["n"])
    except Exception:  # the table is created by the first load
        return 0


def test_cloud_topology_n_events_give_n_rows_and_n_lines(cloud):
    env, _ = cloud
    archive, warehouse = cloud_backends(env)
    with serving(env) as url:
        sent = track(url, 400, "cloud")
        wait_until(lambda: published(url) >= len(sent), what="publishing to Pub/Sub")
        wait_until(lambda: rows_in(warehouse) >= len(sent), what="BigQuery rows")
    assert_exactly(sent, archive, warehouse)


def test_cloud_topology_a_frozen_warehouse_delays_but_loses_nothing(cloud):
    env, bigquery = cloud
    archive, warehouse = cloud_backends(env)
    with serving(env) as url:
        first = track(url, 50, "before")
        wait_until(lambda: rows_in(warehouse) >= len(first), what="first rows")
        bigquery.pause()  # unresponsive: loads time out, Pub/Sub redelivers with backoff
        try:
            sent = first | track(url, 250, "frozen")
            wait_until(lambda: published(url) >= len(sent), what="publishing")
            time.sleep(4)
        finally:
            bigquery.resume()
        wait_until(lambda: rows_in(warehouse) >= len(sent), what="rows after the outage")
    assert_exactly(sent, archive, warehouse)
