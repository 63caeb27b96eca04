"""Profile store benchmark: reads on cache hit and miss, write-behind throughput, cached memory.

    python -m bench.stores [--quick]     (writes docs/STORES.md unless --quick)

Each figure is beside its baseline, measured in the same run: the in-memory store (no durability).
SQLite runs on a temporary file; Firestore on Google's emulator, started and stopped here.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from bench.__main__ import ROOT, fmt, machine, summary
from bench.workload import shoppers
from shared.adapters.profile_store.memory import MemoryProfileStore
from shared.adapters.profile_store.sqlite import SqliteProfileStore
from shared.domain.catalog import Catalog
from shared.domain.catalog_generator import generate_catalog
from shared.domain.engine import ProfileEngine
from shared.domain.rules import load_rules
from shared.ports.profile_store import ProfileStore
from shared.services.profile_cache import CachedProfileStore

sys.path.insert(0, str(ROOT))
from shared.emulators import FirestoreEmulator


def timed(calls, repeat: int = 1) -> dict:
    latencies = []
    for call in calls:
        start = time.perf_counter()
        call()
        latencies.append((time.perf_counter() - start) * 1e6)
    return summary(latencies)


def reads(store: ProfileStore, engine: ProfileEngine, users: list[str], now: float) -> dict:
    """Cache hit: users read twice in a row (the second read is timed); miss: first reads."""
    view = lambda p: engine.read(p, now)  # noqa: E731
    miss = timed([lambda u=u: store.read(u, view) for u in users])
    hit = timed([lambda u=u: store.read(u, view) for u in users])
    return {"miss": miss, "hit": hit}


def populate(store: ProfileStore, engine: ProfileEngine, streams) -> None:
    for stream in streams:
        store.track(stream[0].user_id, stream, engine.apply)


def throughput(make_store, engine: ProfileEngine, streams, flush) -> float:
    """Events per second through `track`, one event per call, including the final flush."""
    store = make_store()
    events = [e for s in streams for e in s]
    start = time.perf_counter()
    for event in events:
        store.track(event.user_id, [event], engine.apply)
    flush(store)
    return len(events) / (time.perf_counter() - start)


def memory_per_profile(make_store, engine: ProfileEngine, streams, profiles: int) -> float:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    store = make_store()
    for i in range(profiles):
        stream = streams[i % len(streams)]
        store.track(f"m{i:07d}", stream, engine.apply)
    if isinstance(store, CachedProfileStore):
        store.flush()  # steady state: nothing queued
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del store
    return used / profiles


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stores", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    users, profiles = (200, 2_000) if args.quick else (2_000, 100_000)
    catalog = Catalog(generate_catalog(5_000))
    engine = ProfileEngine(load_rules(ROOT / "personalization_rules.yaml"), catalog)
    streams = list(shoppers(catalog, users, 20, seed=21))
    ids = [s[0].user_id for s in streams]
    now = streams[0][0].timestamp.timestamp() + 86_400
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp, FirestoreEmulator() as emulator:
        os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.host
        from google.cloud import firestore

        from shared.adapters.profile_store.firestore import FirestoreProfileStore

        def sqlite() -> SqliteProfileStore:
            return SqliteProfileStore(Path(tmp) / f"p{time.monotonic_ns()}.sqlite3", engine)

        def fire() -> FirestoreProfileStore:
            return FirestoreProfileStore(firestore.Client(project=f"bench{time.monotonic_ns()}"), engine)

        durables = {"in-memory (baseline)": MemoryProfileStore, "SQLite": sqlite, "Firestore emulator": fire}
        for name, make in durables.items():
            print(f"{name}: reads ...", flush=True)
            durable = make()
            populate(durable, engine, streams)  # stored, not cached
            if name.startswith("in-memory"):
                rows[name] = reads(durable, engine, ids, now)
            else:
                cached = CachedProfileStore(durable, engine, max_staleness_s=3600, start_flusher=False)
                rows[name] = reads(cached, engine, ids, now)
        print("write-behind throughput ...", flush=True)
        sample = streams[: max(20, users // 4)]
        rates = {
            "in-memory store, apply only (baseline)": throughput(MemoryProfileStore, engine, sample, lambda s: None),
            "SQLite, one transaction per event": throughput(sqlite, engine, sample[:20], lambda s: None),
            "SQLite behind the cache (write-behind)": throughput(
                lambda: CachedProfileStore(sqlite(), engine, start_flusher=False), engine, sample, lambda s: s.flush()
            ),
            "Firestore emulator behind the cache (write-behind)": throughput(
                lambda: CachedProfileStore(fire(), engine, start_flusher=False), engine, sample, lambda s: s.flush()
            ),
        }
        print("memory per cached profile ...", flush=True)
        memory = {
            "in-memory store (baseline)": memory_per_profile(MemoryProfileStore, engine, streams, profiles),
            # over SQLite, so the durable copies are on disk and only the cache is counted
            "instance cache entry (over SQLite)": memory_per_profile(
                lambda: CachedProfileStore(sqlite(), engine, start_flusher=False), engine, streams, profiles
            ),
        }
    lines = [
        "# Profile stores",
        "",
        f"Machine: {machine()}. Run: `python -m bench.stores` on {time.strftime('%Y-%m-%d')}; "
        f"{users:,} shoppers of 20 events each, 5k-product catalog.",
        "",
        "## Profile read (µs), through the instance cache; baseline: the in-memory store",
        "",
    ]
    for name, r in rows.items():
        if name.startswith("in-memory"):
            lines.append(f"- {name}: {fmt(r['hit'], 'µs', 1)}")
        else:
            lines.append(f"- {name}, cache hit: {fmt(r['hit'], 'µs', 1)}")
            lines.append(f"- {name}, cache miss (load from the store): {fmt(r['miss'], 'µs', 1)}")
    lines += ["", "## Tracking throughput, one event per call, one thread (events/s)", ""]
    lines += [f"- {name}: {rate:,.0f}" for name, rate in rates.items()]
    lines += ["", f"## Memory per cached profile, {profiles:,} shoppers (tracemalloc)", ""]
    lines += [f"- {name}: {size:,.0f} bytes" for name, size in memory.items()]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.quick:
        (ROOT / "docs" / "STORES.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
