"""Event pipeline throughput and lag, on the embedded backends and on the emulators.

    python -m bench.pipeline            full run, writes docs/PIPELINE.md
    python -m bench.pipeline --quick    small sizes, prints only

Measured, each beside a baseline from the same run:
- publish: events/s through EventPublisher (batches of 100) to the bus; baseline: one event per message;
- load: events/s through WarehouseLoader (batches of 100); baseline: one event per load;
- archive: events/s through Archiver (stage + flush every 100 events); baseline: one event per batch;
- lag: event time -> warehouse row (ingested_at), p50/p99, for events tracked over HTTP at a steady
  rate through a served stack (publisher -> bus -> load_events_bigquery).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path

from bench.__main__ import ROOT, fmt, machine, open_loop, say, start_server, summary
from shared.adapters.archive.local import LocalFolderArchive
from shared.adapters.event_bus.sqlite import SqliteEventBus
from shared.adapters.event_spool.sqlite import SqliteEventSpool
from shared.adapters.warehouse.duckdb import DuckDbWarehouse
from shared.config import Settings
from shared.domain.catalog import Catalog
from shared.domain.catalog_generator import generate_catalog
from shared.domain.events import Interaction
from shared.domain.pipeline import EventBatch
from shared.domain.rules import load_rules
from shared.emulators import BigQueryEmulator, GcsEmulator, PubSubEmulator, install_bigquery_emulator
from shared.ports.archive import Archive
from shared.ports.event_bus import EventBus
from shared.ports.warehouse import Warehouse
from shared.services.pipeline import Archiver, WarehouseLoader
from shared.services.publisher import EventPublisher

CATALOG = Catalog(generate_catalog(500))
RULES = load_rules(ROOT / "personalization_rules.yaml")


def events(n: int, run: str) -> list[Interaction]:
    kinds = ("click_product", "view_details", "add_to_cart", "purchase", "displayed_but_scrolled")
    return [
        Interaction(event_id=f"{run}-{i}", event_type=kinds[i % 5], user_id=f"u{i % 200}", product_id=f"p{i % 500:05d}")
        for i in range(n)
    ]


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


# -- throughput ------------------------------------------------------------------------------------


def publish_rate(bus: EventBus, spool: Path, n: int, batch: int) -> float:
    publisher = EventPublisher(bus, SqliteEventSpool(spool), batch_events=batch, max_latency_s=3600)
    stream = events(n, uuid.uuid4().hex[:6])

    def work() -> None:
        publisher.publish(stream)
        publisher.flush()

    seconds = timed(work)
    assert publisher.pending() == 0, "every event reached the bus"
    return rate(n, seconds)


def load_rate(warehouse: Warehouse, n: int, batch: int) -> float:
    loader = WarehouseLoader(warehouse, lambda: CATALOG, RULES)
    stream = events(n, uuid.uuid4().hex[:6])
    batches = [EventBatch(tuple(stream[i : i + batch])) for i in range(0, n, batch)]
    seconds = timed(lambda: [loader.load(b) for b in batches])
    return rate(n, seconds)


def archive_rate(archive: Archive, n: int, batch: int) -> float:
    archiver = Archiver(archive, flush_events=100)
    stream = events(n, uuid.uuid4().hex[:6])
    batches = [EventBatch(tuple(stream[i : i + batch])) for i in range(0, n, batch)]

    def work() -> None:
        for b in batches:
            archiver.archive_batch(b)
        archiver.flush(force=True)

    return rate(n, timed(work))


def throughput(quick: bool, emulators: dict) -> dict:
    n, n_single = (2_000, 200) if quick else (20_000, 1_000)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        say("publish: embedded SQLite bus")
        sqlite_bus = SqliteEventBus(state / "bus.sqlite3")
        results["publish (SQLite bus)"] = {
            "batched": publish_rate(sqlite_bus, state / "s1.sqlite3", n, 100),
            "baseline": publish_rate(sqlite_bus, state / "s2.sqlite3", n_single, 1),
        }
        say("load: DuckDB")
        duck = DuckDbWarehouse(state / "warehouse.duckdb")
        results["load (DuckDB)"] = {"batched": load_rate(duck, n, 100), "baseline": load_rate(duck, n_single, 1)}
        duck.close()
        say("archive: local folder")
        local = LocalFolderArchive(state / "archive")
        results["archive (local folder)"] = {
            "batched": archive_rate(local, n, 100),
            "baseline": archive_rate(local, n_single // 2, 1),
        }
        if emulators:
            from shared.adapters.archive.gcs import GcsArchive
            from shared.adapters.event_bus.pubsub import PubSubEventBus
            from shared.adapters.warehouse.bigquery import BigQueryWarehouse

            say("publish: Pub/Sub emulator")
            pubsub = PubSubEventBus("bench-project")
            pubsub.ensure_topics()
            results["publish (Pub/Sub emulator)"] = {
                "batched": publish_rate(pubsub, state / "s3.sqlite3", n, 100),
                "baseline": publish_rate(pubsub, state / "s4.sqlite3", n_single, 1),
            }
            pubsub.close()
            say("load: BigQuery emulator")
            bq = emulators["bigquery"]
            bigquery = BigQueryWarehouse.from_settings(
                Settings(bigquery_endpoint=bq.url, warehouse_project=bq.project, warehouse_dataset="bench")
            )
            results["load (BigQuery emulator)"] = {
                "batched": load_rate(bigquery, n // 4, 100),
                "baseline": load_rate(bigquery, n_single // 10, 1),
            }
            bigquery.close()
            say("archive: Cloud Storage emulator")
            gcs = GcsArchive.from_settings(Settings(archive_bucket="bench-archive"))
            gcs.prepare()
            results["archive (Cloud Storage emulator)"] = {
                "batched": archive_rate(gcs, n // 4, 100),
                "baseline": archive_rate(gcs, n_single // 10, 1),
            }
    return results


# -- lag -------------------------------------------------------------------------------------------


def track_steadily(port: str, events_per_s: float, seconds: float, run: str) -> dict:
    """Open loop of one-event track requests; returns the HTTP latency summary."""

    def request(i: int) -> tuple[str, str, str]:
        body = {"event_id": f"{run}-{i}", "event_type": "click_product", "user_id": f"u{i % 300}"}
        body["product_id"] = f"p{i % 500:05d}"
        return "POST", "/api/interactions/track", json.dumps(body)

    return open_loop(port, events_per_s, seconds, request)


def lags(warehouse: Warehouse, run: str) -> list[float]:
    rows = warehouse.query(
        "SELECT event_timestamp, ingested_at FROM raw_user_actions WHERE STARTS_WITH(event_id, @run)",
        {"run": run + "-"},
    )
    return [(_utc(r["ingested_at"]) - _utc(r["event_timestamp"])).total_seconds() * 1000 for r in rows]


def _utc(value: object) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    previous = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def lag(events_per_s: float, seconds: float, env: dict[str, str], open_warehouse: Callable[[], Warehouse]) -> dict:
    run = uuid.uuid4().hex[:8]
    with environment(env):
        server, port = start_server(500)
    try:
        http = track_steadily(port, events_per_s, seconds, run)
        time.sleep(5)  # the last batches: publish latency + delivery
    finally:
        server.terminate()
        server.wait(timeout=60)
    warehouse = open_warehouse()
    try:
        values = lags(warehouse, run)
    finally:
        warehouse.close()
    return {"lag_ms": summary(values), "rows": len(values), "sent": int(events_per_s * seconds), "http": http}


def lag_runs(quick: bool, emulators: dict) -> dict:
    events_per_s, seconds = (100, 5) if quick else (200, 20)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        env = {
            "LEAFLOAF_BUS_PATH": str(state / "bus.sqlite3"),
            "LEAFLOAF_PUBLISH_SPOOL_PATH": str(state / "publish-spool.sqlite3"),
            "LEAFLOAF_DUCKDB_PATH": str(state / "warehouse.duckdb"),
            "LEAFLOAF_ARCHIVE_PATH": str(state / "archive"),
        }
        say(f"lag: embedded stack, {events_per_s} events/s for {seconds} s")
        results["embedded (SQLite bus -> DuckDB)"] = lag(
            events_per_s, seconds, env, lambda: DuckDbWarehouse(state / "warehouse.duckdb")
        )
        if emulators:
            from shared.adapters.warehouse.bigquery import BigQueryWarehouse

            bq = emulators["bigquery"]
            cloud = env | emulators["pubsub"].environment() | bq.environment() | emulators["gcs"].environment()
            cloud |= {"LEAFLOAF_EVENT_BUS": "pubsub", "LEAFLOAF_PUBSUB_PROJECT": "bench-lag"}
            cloud |= {"LEAFLOAF_WAREHOUSE": "bigquery", "LEAFLOAF_WAREHOUSE_DATASET": "bench_lag"}
            cloud |= {"LEAFLOAF_ARCHIVE": "gcs", "LEAFLOAF_ARCHIVE_BUCKET": "bench-lag"}
            settings = Settings(bigquery_endpoint=bq.url, warehouse_project=bq.project, warehouse_dataset="bench_lag")
            say(f"lag: emulators, {events_per_s} events/s for {seconds} s")
            results["emulators (Pub/Sub push -> BigQuery emulator)"] = lag(
                events_per_s, seconds, cloud, lambda: BigQueryWarehouse.from_settings(settings)
            )
    return results


# -- report ----------------------------------------------------------------------------------------

# docs/PIPELINE.md after this marker is written by hand (the warehouse tables): a run keeps it.
HAND_WRITTEN = "<!-- Written by hand below; python -m bench.pipeline keeps it. -->"


def hand_written(path: Path) -> str:
    """The hand-written part of an existing report, marker included ("" when there is none)."""
    text = path.read_text() if path.exists() else ""
    return text[text.index(HAND_WRITTEN) :] if HAND_WRITTEN in text else ""


def report(rates: dict, lag_results: dict, quick: bool) -> str:
    lines = [
        "# Event pipeline benchmark",
        "",
        f"Generated by `python -m bench.pipeline{' --quick' if quick else ''}` on {machine()}, "
        f"{datetime.now(UTC):%Y-%m-%d}. Emulators are single local processes: their figures say how the "
        "code behaves, not what the cloud services would do.",
        "",
        "## Throughput (events/s), batches of 100 beside one event per message/load/batch",
        "",
        "| path | batched | one at a time (baseline) | ratio |",
        "|---|---:|---:|---:|",
    ]
    for name, r in rates.items():
        lines.append(f"| {name} | {r['batched']:,.0f} | {r['baseline']:,.0f} | {r['batched'] / r['baseline']:.1f}x |")
    lines += [
        "",
        "## Lag: event time to warehouse row",
        "",
        "One-event track requests at a steady rate over HTTP to a served stack; lag = `ingested_at - "
        "event_timestamp` of each row (publish batching waits up to 1 s by default).",
        "",
        "| stack | rows / sent | lag | track request latency |",
        "|---|---:|---|---|",
    ]
    for name, r in lag_results.items():
        lines.append(f"| {name} | {r['rows']} / {r['sent']} | {fmt(r['lag_ms'], 'ms', 0)} | {fmt(r['http'], 'ms')} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes; prints the report only")
    parser.add_argument("--no-emulators", action="store_true", help="embedded backends only")
    args = parser.parse_args()
    with ExitStack() as stack:
        emulators: dict = {}
        if not args.no_emulators:
            install_bigquery_emulator()
            emulators = {
                "pubsub": stack.enter_context(PubSubEmulator()),
                "bigquery": stack.enter_context(BigQueryEmulator()),
                "gcs": stack.enter_context(GcsEmulator()),
            }
            stack.enter_context(environment(emulators["pubsub"].environment() | emulators["gcs"].environment()))
        rates = throughput(args.quick, emulators)
        lag_results = lag_runs(args.quick, emulators)
    text = report(rates, lag_results, args.quick)
    print(text)
    if not args.quick:
        path = ROOT / "docs" / "PIPELINE.md"
        kept = hand_written(path)
        path.write_text(text + ("\n" + kept if kept else ""))
        say("wrote docs/PIPELINE.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
