"""The scheduled jobs at scale on the embedded warehouse (DuckDB), and the next-basket evaluation.

    python -m bench.jobs                    10 million raw events (2 million order lines), writes docs/JOBS.md
    python -m bench.jobs --events 1000000   a smaller run, prints only

The events are generated inside DuckDB (20,000 shoppers, 20,000 products with skewed popularity,
180 days; a fifth of the events are purchase lines in orders of 10, 60 % of each basket from the
shopper's 12 staples), then the hourly and the daily
schedules run once each, as Cloud Scheduler would call them. Reported: each job's time, the
totals, and the peak memory (resident set) of the process that ran them against the events' size on disk; baseline:
a plain full scan (COUNT and SUM over every raw event), the least any job over the table costs.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import tempfile
import time
from datetime import UTC, datetime, timedelta
from multiprocessing.queues import Queue
from pathlib import Path

from bench.__main__ import ROOT, machine, say
from shared.adapters.warehouse.duckdb import DuckDbWarehouse
from shared.services.jobs import JobRunner

END = datetime(2026, 11, 1, tzinfo=UTC)
USERS, PRODUCTS, LINES_PER_ORDER, STAPLES = 20_000, 20_000, 10, 12
KINDS = ["view_details", "click_product", "add_to_cart", "search"]


def generate(warehouse: DuckDbWarehouse, events: int) -> None:
    """`events` raw events: a fifth are purchase lines (also in order_events), the rest views, clicks,
    carts and searches."""
    db = warehouse._connection()
    lines = events // 5
    db.execute("SELECT setseed(0.42)")
    db.execute(
        f"""
        CREATE TEMP TABLE lines AS
        SELECT 'o' || (i // {LINES_PER_ORDER}) AS order_id,
               'u' || ((i // {LINES_PER_ORDER}) % {USERS}) AS user_id,
               CASE WHEN random() < 0.6  -- half the basket from the shopper's staples, the rest by popularity
                 THEN 'p' || (hash((i // {LINES_PER_ORDER}) % {USERS}, CAST(floor(random() * {STAPLES}) AS BIGINT))
                              % {PRODUCTS})
                 ELSE 'p' || CAST(floor({PRODUCTS} * pow(random(), 3)) AS BIGINT) END AS product_id,
               TIMESTAMP '{(END - timedelta(days=180)):%Y-%m-%d %H:%M:%S}'
                 + to_seconds(CAST(((i // {LINES_PER_ORDER}) * 15552000.0 / {lines // LINES_PER_ORDER}) AS BIGINT))
                 AS ts,
               1 + CAST(random() < 0.15 AS INTEGER) AS quantity,
               round(1 + 9 * random(), 2) AS price,
               i
        FROM range({lines}) t(i)
        """
    )
    category = "'c' || (CAST(substr(product_id, 2) AS BIGINT) % 200)"
    attrs = "CASE WHEN CAST(substr(product_id, 2) AS BIGINT) % 7 = 0 THEN '[\"organic\"]' ELSE '[]' END"
    db.execute(
        f"""
        INSERT OR IGNORE INTO order_events
        SELECT 'e' || i, ts, user_id, NULL, 'purchase', order_id, product_id, {category}, quantity, price, 'repeat', ts
        FROM lines
        """
    )
    db.execute(
        f"""
        INSERT OR IGNORE INTO raw_user_actions
        SELECT 'e' || i, ts, user_id, NULL, 'purchase', product_id, {category}, {attrs}, 1.0,
               '{{}}', NULL, NULL, NULL, '{{}}', ts
        FROM lines
        """
    )
    others = events - lines
    db.execute(
        f"""
        INSERT OR IGNORE INTO raw_user_actions
        SELECT 'x' || i, TIMESTAMP '{END:%Y-%m-%d}' - to_seconds(CAST(random() * 15552000 AS BIGINT)),
               'u' || CAST(floor(random() * {USERS}) AS BIGINT), NULL, {KINDS!r}[1 + i % 4],
               p, 'c' || (CAST(substr(p, 2) AS BIGINT) % 200), '[]', [0.15, 0.2, 0.5, NULL][1 + i % 4],
               '{{}}', NULL, NULL, NULL, '{{}}', now()
        FROM (SELECT i, 'p' || CAST(floor({PRODUCTS} * pow(random(), 3)) AS BIGINT) AS p FROM range({others}) t(i))
        """
    )
    db.execute("DROP TABLE lines")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_jobs(path: str, results: Queue) -> None:
    """Both schedules in a process of their own, so its peak memory is theirs alone."""
    warehouse = DuckDbWarehouse(path)
    scan = "SELECT COUNT(*) AS n, SUM(interaction_strength) AS s FROM raw_user_actions"
    warehouse.query(scan)  # opens the file; the second scan is the baseline
    started = time.perf_counter()
    warehouse.query(scan)
    scan_s = time.perf_counter() - started
    runner = JobRunner(warehouse, clock=lambda: END)
    hourly, daily = runner.run("hourly"), runner.run("daily")
    counts = warehouse.query(
        "SELECT (SELECT COUNT(*) FROM raw_user_actions) AS raw, (SELECT COUNT(*) FROM order_lines) AS lines, "
        "(SELECT COUNT(DISTINCT user_id) FROM order_lines) AS shoppers"
    )[0]
    warehouse.close()
    results.put({"scan_s": scan_s, "hourly": hourly, "daily": daily, "rss_peak_mb": peak_rss_mb()} | counts)


def run(events: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "warehouse.duckdb")
        warehouse = DuckDbWarehouse(path)
        started = time.perf_counter()
        say(f"generating {events:,} raw events")
        generate(warehouse, events)
        generated_s = time.perf_counter() - started
        warehouse.query("CHECKPOINT")
        warehouse.close()
        disk_mb = Path(path).stat().st_size / 2**20
        say("running the hourly and the daily schedules in a fresh process")
        context = multiprocessing.get_context("spawn")
        results: Queue = context.Queue()
        worker = context.Process(target=run_jobs, args=(path, results))
        worker.start()
        measured = results.get()
        worker.join()
    return measured | {
        "events": int(measured["raw"]),
        "lines": int(measured["lines"]),
        "shoppers": int(measured["shoppers"]),
        "generated_s": generated_s,
        "disk_mb": disk_mb,
    }


def report(r: dict, command: str) -> str:
    total = r["hourly"]["seconds"] + r["daily"]["seconds"]
    lines = [
        "# Scheduled jobs at scale (embedded warehouse: DuckDB)",
        "",
        f"Generated by `python -m bench.jobs{command}` on {machine()}, {datetime.now(UTC):%Y-%m-%d}.",
        "",
        f"- Data: {r['events']:,} raw events ({r['lines']:,} purchase lines of {r['shoppers']:,} shoppers), "
        f"{r['disk_mb']:,.0f} MB on disk, generated in {r['generated_s']:.0f} s.",
        f"- Hourly schedule: **{r['hourly']['seconds']:.0f} s**; daily schedule: **{r['daily']['seconds']:.0f} s**; "
        f"both: {total:.0f} s ({total / 60:.1f} min).",
        f"- Baseline: one full scan of raw_user_actions (COUNT + SUM) takes {r['scan_s'] * 1000:.0f} ms; "
        f"the two schedules cost {total / r['scan_s']:,.0f} such scans.",
        f"- Peak memory of the process running the jobs: {r['rss_peak_mb']:,.0f} MB (DuckDB's memory limit is "
        f"2 GB, beyond which it spills to disk; the next-basket job keeps each shopper's scores, not their orders); "
        f"the events take {r['disk_mb']:,.0f} MB on disk.",
        "",
        "| schedule | job | rows | seconds |",
        "|---|---|---:|---:|",
    ]
    for schedule in ("hourly", "daily"):
        for job in r[schedule]["jobs"]:
            if job["status"] == "skipped":
                lines.append(f"| {schedule} | {job['job']} | skipped: {job['reason']} | |")
            else:
                lines.append(f"| {schedule} | {job['job']} | {job['rows']:,} | {job['seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000_000, help="raw events to generate (default 10 million)")
    args = parser.parse_args()
    text = report(run(args.events), "" if args.events == 10_000_000 else f" --events {args.events}")
    print(text)
    if args.events == 10_000_000:
        (ROOT / "docs" / "JOBS.md").write_text(text)
        say("wrote docs/JOBS.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
