"""Load test with locust against the local server, in steps of more simulated shoppers until the
knee (throughput stops growing while latency climbs).

    python -m bench.load [--steps 5,10,20,40,80] [--seconds 20]     (writes docs/LOAD.md)

One `shared.cli serve` process on loopback with the embedded backends (SQLite profiles behind the
instance cache, the embedded bus, DuckDB, the local archive, Kuzu), a 5,000-product demo catalog,
authentication off (locust sends no tokens; bench.auth measures their cost), and without the local
scheduler (LEAFLOAF_LOCAL_SCHEDULE=false, unless set): a serving instance, as deployed. Each step runs
locust headless for `--seconds` and reads its CSV: requests/s and p50/p95/p99 per endpoint.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.__main__ import ROOT, machine, start_server

ENDPOINTS = ("track", "search", "preferences", "order")


def step(port: str, users: int, seconds: int, out: Path) -> dict[str, dict[str, float]]:
    prefix = out / f"users{users}"
    subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(ROOT / "bench" / "locustfile.py"), "--headless",
         "-u", str(users), "-r", str(users), "-t", f"{seconds}s", "--host", f"http://127.0.0.1:{port}",
         "--csv", str(prefix), "--only-summary", "--loglevel", "WARNING"],
        check=False, timeout=seconds + 60, capture_output=True,
    )  # fmt: skip
    stats: dict[str, dict] = {}
    with open(f"{prefix}_failures.csv") as handle:  # what failed, and how often
        failures = {f"{row['Name']}: {row['Error']}": int(row["Occurrences"]) for row in csv.DictReader(handle)}
    with open(f"{prefix}_stats.csv") as handle:
        for row in csv.DictReader(handle):
            stats[row["Name"]] = {
                "requests": float(row["Request Count"]),
                "failures": float(row["Failure Count"]),
                "rps": float(row["Requests/s"]),
                "p50": float(row["50%"]),
                "p95": float(row["95%"]),
                "p99": float(row["99%"]),
            }
    stats["Aggregated"]["errors"] = failures
    return stats


def knee(results: list[tuple[int, dict]]) -> int | None:
    """The first step whose throughput grew under 10 % over the previous one's."""
    for (_, before), (users, after) in itertools.pairwise(results):
        if after["Aggregated"]["rps"] < 1.1 * before["Aggregated"]["rps"]:
            return users
    return None


def report(results: list[tuple[int, dict]], seconds: int) -> str:
    lines = [
        "# Load test (locust)",
        "",
        f"`python -m bench.load` on {machine()}: one local server process (embedded backends, 5,000-product",
        "demo catalog, authentication off, local scheduler "
        f"{'off' if os.environ.get('LEAFLOAF_LOCAL_SCHEDULE') == 'false' else 'on'}), locust on the same machine,",
        f"{seconds} s per step. Mix per simulated",
        "shopper (1,000 shopper ids): track 10, search 6, preferences 2, order 1; 0.05-0.3 s between calls.",
        "Latencies in ms as locust measures them (client side, loopback).",
        "",
        "| shoppers | req/s | failures | " + " | ".join(f"{e} p50 / p95 / p99" for e in ENDPOINTS) + " |",
        "|---|---|---|" + "---|" * len(ENDPOINTS),
    ]
    for users, stats in results:
        total = stats["Aggregated"]
        cells = [
            f"{stats[e]['p50']:.0f} / {stats[e]['p95']:.0f} / {stats[e]['p99']:.0f}" if e in stats else "-"
            for e in ENDPOINTS
        ]
        lines.append(f"| {users} | {total['rps']:.0f} | {total['failures']:.0f} | " + " | ".join(cells) + " |")
    errors = [f"- {users} shoppers: {error} ({count})" for users, stats in results
              for error, count in stats["Aggregated"]["errors"].items()]  # fmt: skip
    if errors:
        lines += ["", "Failures (locust's own words):", *errors]
    bend = knee(results)
    lines += [
        "",
        f"Knee: {f'{bend} shoppers' if bend else 'not reached'} (throughput grew under 10 % over the step before).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="5,10,20,40,80", help="simulated shoppers per step")
    parser.add_argument("--seconds", type=int, default=20, help="length of each step")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "LOAD.md")
    args = parser.parse_args()
    # A serving instance, as in the cloud, where the scheduled jobs are functions of their own.
    os.environ.setdefault("LEAFLOAF_LOCAL_SCHEDULE", "false")
    server, port = start_server(5_000)
    results = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for users in (int(n) for n in args.steps.split(",")):
                stats = step(port, users, args.seconds, Path(tmp))
                results.append((users, stats))
                total = stats["Aggregated"]
                print(f"{users:4} shoppers: {total['rps']:.0f} req/s, p95 {total['p95']:.0f} ms, "
                      f"{total['failures']:.0f} failures", flush=True)  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=30)
    args.out.write_text(report(results, args.seconds))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
