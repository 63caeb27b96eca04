"""The first requests a fresh local server answers: does any of them wait on a backend?

    python -m bench.first_request [--runs 5] [--catalog-size 5000]     (writes docs/FIRST_REQUEST.md)

Each run starts `shared.cli serve` on fresh stores (as bench.load does) and, the moment it listens,
sends one `GET /health`, then one unknown path (the HTTP floor: gunicorn, Flask, our JSON 404), then
/health again. Reported per run and as p50 / max over the runs: process start to listening, the first
/health, the first 404 and a warm /health, and how many backends the first /health still called
`unknown` (a probe that had not answered yet: /health reports it rather than wait for it).
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import time

from bench.__main__ import ROOT, load, machine, start_server


def get(port: str, path: str) -> tuple[float, int, dict]:
    """One request on a new connection: (milliseconds, status, JSON body)."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", int(port), timeout=30)
    connection.request("GET", path)
    response = connection.getresponse()
    body = json.loads(response.read() or b"{}")
    connection.close()
    return (time.perf_counter() - started) * 1000, response.status, body


def one_run(catalog_size: int) -> dict[str, float]:
    started = time.perf_counter()
    process, port = start_server(catalog_size)
    try:
        listening_ms = (time.perf_counter() - started) * 1000
        first_ms, status, health = get(port, "/health")
        assert status == 200, health
        floor_ms, status, _ = get(port, "/no-such-endpoint")
        assert status == 404
        warm_ms, _, _ = get(port, "/health")
        unknown = sum(1 for b in health["backends"].values() if b.get("status") == "unknown")
        return {"listening_ms": listening_ms, "first_health_ms": first_ms, "first_404_ms": floor_ms,
                "warm_health_ms": warm_ms, "unknown_backends": unknown}  # fmt: skip
    finally:
        process.terminate()
        process.wait(timeout=60)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.first_request", description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--catalog-size", type=int, default=5000)
    args = parser.parse_args()
    started_load = load()
    runs = []
    for n in range(args.runs):
        runs.append(one_run(args.catalog_size))
        print(f"run {n + 1}/{args.runs}: {runs[-1]}", flush=True)
    keys = ("listening_ms", "first_health_ms", "first_404_ms", "warm_health_ms")
    p50 = {k: statistics.median(r[k] for r in runs) for k in keys}
    worst = {k: max(r[k] for r in runs) for k in keys}
    text = "\n".join(
        [
            "# The first requests of a fresh local server",
            "",
            f"Machine: {machine()}; {started_load}. Run: `python -m bench.first_request --runs {args.runs} "
            f"--catalog-size {args.catalog_size}` on {time.strftime('%Y-%m-%d')}.",
            "",
            "| measure | p50 | max |",
            "|---|---:|---:|",
            *(f"| {k.removesuffix('_ms').replace('_', ' ')} (ms) | {p50[k]:.1f} | {worst[k]:.1f} |" for k in keys),
            "",
            f"- first /health ÷ first 404 (the HTTP floor), p50: {p50['first_health_ms'] / p50['first_404_ms']:.2f}",
            f"- first /health ÷ warm /health, p50: {p50['first_health_ms'] / p50['warm_health_ms']:.2f}",
            f"- backends the first /health reported `unknown` (still probing): "
            f"{', '.join(str(r['unknown_backends']) for r in runs)} per run",
            "",
        ]
    )
    print(text)
    (ROOT / "docs" / "FIRST_REQUEST.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
