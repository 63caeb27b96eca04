"""What access control and privacy screening cost on the request path.

    python -m bench.auth [--requests 3000]     (prints; the figures are quoted in docs/PRIVACY.md)

The same track and search requests through the functions (functions-framework's test client, in
process: no network), on the embedded stack with the SQLite privacy store: once with
authentication off (the baseline: no token, no privacy lookups) and once with HMAC tokens, where
every request verifies a token and screens its events against the shopper's settings (cached per
instance) and tombstone. Shoppers rotate over 200, so the privacy cache is warm after the first
round, as on a serving instance.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from functions_framework import create_app

from bench.__main__ import ROOT, fmt, machine, summary
from shared import bootstrap
from shared.config import Settings

SHOPPERS = 200


def measure(auth: str, requests: int, state: Path) -> dict[str, dict]:
    settings = Settings(
        auth=auth,
        auth_secret="bench-" + "k" * 40,
        catalog_path=state / "no-catalog.jsonl",
        profile_store="sqlite",
        sqlite_path=state / f"{auth}-profiles.sqlite3",
        profile_spool_path=state / f"{auth}-spool.sqlite3",
        privacy_path=state / f"{auth}-privacy.sqlite3",
        bus_path=state / f"{auth}-bus.sqlite3",
        publish_spool_path=state / f"{auth}-publish.sqlite3",
        local_schedule=False,
        log_level="WARNING",
    )
    services = bootstrap.build(settings)
    bootstrap.install(services)
    try:
        tokens = {f"u{i}": services.identity.issue(f"u{i}", ttl_s=3600) if services.identity else None
                  for i in range(SHOPPERS)}  # fmt: skip
        main = str(ROOT / "main.py")
        track = create_app("track_interaction", main).test_client()
        search = create_app("search_personalized", main).test_client()
        product = services.catalog.products[0].id
        timings: dict[str, list[float]] = {"track": [], "search": []}
        for i in range(requests):
            user = f"u{i % SHOPPERS}"
            headers = {"Authorization": f"Bearer {tokens[user]}"} if tokens[user] else {}
            event = {"event_type": "click_product", "user_id": user, "product_id": product}
            started = time.perf_counter()
            answer = track.post("/", json=event, headers=headers)
            timings["track"].append((time.perf_counter() - started) * 1000)
            assert answer.status_code == 202 and answer.get_json()["accepted"], answer.get_json()
            started = time.perf_counter()
            answer = search.post("/", json={"query": "milk", "user_id": user}, headers=headers)
            timings["search"].append((time.perf_counter() - started) * 1000)
            assert answer.get_json()["personalization"]["applied"], answer.get_json()["personalization"]
        warm = SHOPPERS  # the first round fills the profile and privacy caches
        return {name: summary(values[warm:]) for name, values in timings.items()}
    finally:
        services.close()
        bootstrap.install(None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
    print(f"machine: {machine()}; {args.requests} requests of each kind per mode, {SHOPPERS} shoppers", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        off = measure("off", args.requests, Path(tmp))
        hmac = measure("hmac", args.requests, Path(tmp))
    for name in ("track", "search"):
        ratio = hmac[name]["p50"] / off[name]["p50"]
        print(f"{name:6} auth off (baseline): {fmt(off[name], 'ms', 3)}")
        print(f"{name:6} HMAC token + privacy: {fmt(hmac[name], 'ms', 3)}  -> p50 x{ratio:.2f}, "
              f"+{hmac[name]['p50'] - off[name]['p50']:.3f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
