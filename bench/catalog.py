"""The live catalog at scale: imports, how soon a change is served, and search while a version swaps in.

    python -m bench.catalog [--products 1000000] [--serving 50000] [--swaps 20]   (writes docs/CATALOG_BENCHMARKS.md)

1. Import: a JSON Lines file of `--products` generated products through what `import-catalog` does
   (parse and validate every row, then one `replace` into the embedded SQLite store), then what an
   instance does to serve it (read the version, build the catalog's lookups, the search index, the
   ranker's feature table and the engine's facet ids). Memory per product: the process's resident
   memory after serving it, less before, over the number of products.
2. Visibility: an instance serving `--serving` products commits a 1,000-product upsert (half new
   products, half price and stock changes) through its live catalog; the time until its own search
   serves the new version, and until a second instance on the same store (default refresh period)
   does.
3. Swap: search latency (in-process, a personalized search per request, as bench's search section)
   steady, and while each of `--swaps` new versions is built and swapped in; p99 of each and the ratio.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import os
import random
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from bench.__main__ import ROOT, load, machine, pct, say, start_server, summary
from bench.workload import QUERIES
from shared import bootstrap
from shared.adapters.catalog.files import load_catalog_file, write_catalog_file
from shared.adapters.catalog.sqlite import SqliteCatalogStore
from shared.config import Settings
from shared.domain.catalog import CatalogChange, Product
from shared.domain.catalog_generator import generate_catalog
from shared.domain.events import Interaction
from shared.domain.search import SearchRequest
from shared.pacing import REQUESTS

UPSERT = 1_000


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def settings_in(state: Path, **overrides: object) -> Settings:
    files = {
        "catalog_path": state / "no-seed.jsonl",
        "catalog_store_path": state / "catalog.sqlite3",
        "sqlite_path": state / "profiles.sqlite3",
        "profile_spool_path": state / "profile-spool.sqlite3",
        "bus_path": state / "bus.sqlite3",
        "publish_spool_path": state / "publish-spool.sqlite3",
        "duckdb_path": state / "warehouse.duckdb",
        "archive_path": state / "archive",
        "features_cache_path": state / "features",
        "privacy_path": state / "privacy.sqlite3",
        "kuzu_path": state / "graph.kuzu",
    }
    return Settings(**(files | {"auth": "off", "log_level": "WARNING", "local_schedule": False} | overrides))


def many_products(n: int) -> list[Product]:
    """`n` distinct products: the generator's (at most about 60,000), then multipacks of them."""
    base = generate_catalog(min(n, 50_000))
    out = list(base)
    pack = 2
    while len(out) < n:
        out += [
            p.model_copy(update={"id": f"{p.id}-x{pack}", "name": f"{p.name} ({pack} pack)",
                                 "price": round((p.price or 1.0) * pack * 0.9, 2)})
            for p in base[: n - len(out)]
        ]  # fmt: skip
        pack += 1
    return out


def bench_import(products: int, state: Path) -> dict:
    catalog = many_products(products)
    file = state / "import.jsonl"
    write_catalog_file(catalog, file)
    del catalog
    gc.collect()
    started = time.perf_counter()
    parsed = load_catalog_file(file)
    parse_s = time.perf_counter() - started
    store = SqliteCatalogStore(state / "import.sqlite3")
    started = time.perf_counter()
    store.replace(parsed)
    store_s = time.perf_counter() - started
    del parsed
    gc.collect()
    before = rss_bytes()
    started = time.perf_counter()
    services = bootstrap.build(settings_in(state, catalog_store_path=state / "import.sqlite3"))
    serve_s = time.perf_counter() - started
    gc.collect()
    per_product = (rss_bytes() - before) / products
    served = len(services.catalog)
    services.close()
    say(f"  import of {products:,}: parse {parse_s:.1f} s, store {store_s:.1f} s, serve {serve_s:.1f} s")
    return {"products": served, "parse_s": parse_s, "store_s": store_s, "serve_s": serve_s, "bytes": per_product,
            "file_mb": file.stat().st_size / 2**20}  # fmt: skip


def upsert(catalog: list[Product], round_: int) -> CatalogChange:
    """Half new products, half existing ones with a new price and stock."""
    rng = random.Random(round_)
    changed = [
        p.model_copy(update={"price": round(rng.uniform(0.5, 20), 2), "in_stock": rng.random() > 0.2})
        for p in rng.sample(catalog, UPSERT // 2)
    ]
    new = [p.model_copy(update={"id": f"new-{round_}-{i}"}) for i, p in enumerate(rng.sample(catalog, UPSERT // 2))]
    return CatalogChange(upserts=tuple(changed + new))


def wait_for(version: int, shelf_version, every_s: float = 0.01, timeout_s: float = 120.0) -> float:
    # Every 10 ms, not more often: each look takes the interpreter from the searches being measured.
    started = time.perf_counter()
    while shelf_version() < version:
        if time.perf_counter() - started > timeout_s:
            raise TimeoutError(f"version {version} not served after {timeout_s} s")
        time.sleep(every_s)
    return time.perf_counter() - started


class OpenLoop(threading.Thread):
    """Searches at `rate` per second from a thread of their own, each timed from its scheduled start
    (a search that waits behind a late one counts the wait), as a serving instance's load arrives."""

    def __init__(self, one_search, rate: float) -> None:
        super().__init__(daemon=True)
        self.one_search, self.period = one_search, 1.0 / rate
        self.done: list[tuple[float, float]] = []  # (scheduled at, milliseconds)
        self.stop = threading.Event()

    def run(self) -> None:
        due = time.perf_counter()
        while not self.stop.is_set():
            if (wait := due - time.perf_counter()) > 0:
                time.sleep(wait)
            self.one_search()
            self.done.append((due, (time.perf_counter() - due) * 1000))
            due += self.period

    def between(self, windows: list[tuple[float, float]], inside: bool) -> list[float]:
        def within(at: float) -> bool:
            return any(start <= at <= end for start, end in windows)

        return [ms for at, ms in self.done if within(at) == inside]


def other_instance(store: Path) -> tuple[subprocess.Popen, str]:
    """Another instance on the same catalog store: a local server process of its own."""
    return start_server(1, {"LEAFLOAF_CATALOG_STORE_PATH": str(store), "LEAFLOAF_LOCAL_SCHEDULE": "false",
                            "LEAFLOAF_PROFILE_STORE": "memory"})  # fmt: skip


def served_version(port: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", int(port), timeout=10)
    connection.request("GET", "/health")
    version = json.loads(connection.getresponse().read())["backends"]["catalog"]["version"]
    connection.close()
    return int(version)


def bench_live(serving: int, swaps: int, rate: float, state: Path) -> dict:
    first = bootstrap.build(settings_in(state, demo_catalog=True, demo_catalog_size=serving))
    process, port = other_instance(state / "catalog.sqlite3")
    bootstrap.settle_heap()
    catalog = list(first.catalog.products)
    users = [f"shopper-{i}" for i in range(200)]
    rng = random.Random(3)
    for user in users:  # profiles to personalize with
        for product in rng.sample(catalog, 20):
            first.tracking.track([Interaction(event_type="click_product", user_id=user, product_id=product.id)])

    def one_search() -> None:
        with REQUESTS.serving():  # as functions.http.endpoint serves each request
            first.search.search(SearchRequest(query=rng.choice(QUERIES), user_id=rng.choice(users)))

    for _ in range(300):  # warm
        one_search()
    load = OpenLoop(one_search, rate)
    load.start()
    own, other, windows, excluded, commits = [], [], [], [], []
    try:
        time.sleep(10)  # steady
        for round_ in range(swaps):
            change = upsert(catalog, round_)
            started = time.perf_counter()
            version = first.live.commit(change)
            commits.append((started, time.perf_counter()))
            wait_for(version, lambda: first.live.catalog.version)
            own.append(time.perf_counter() - started)
            while first.live.building:  # what follows the swap (a collector pass) belongs to it too
                time.sleep(0.01)
            windows.append((started, time.perf_counter()))
            other.append(own[-1] + wait_for(version, lambda: served_version(port), every_s=0.05))
            # The other instance built meanwhile on this machine's other core: neither steady nor a swap here.
            excluded.append((windows[-1][1], time.perf_counter() + 0.5))
            say(
                f"  version {version}: served here after {own[-1]:.2f} s, on the other instance after {other[-1]:.2f} s"
            )
            time.sleep(4)  # steady again before the next change
    finally:
        load.stop.set()
        load.join()
        process.terminate()
        process.wait(timeout=60)
        first.close()
    steady, during = load.between(windows + excluded, inside=False), load.between(windows, inside=True)
    builds = [(committed, built) for (_, committed), (_, built) in zip(commits, windows, strict=True)]
    return {"serving": serving, "own_s": own, "other_s": other, "steady": summary(steady), "during": summary(during),
            "building": summary(load.between(builds, inside=True)),
            "refresh_s": first.settings.catalog_refresh_s, "rate": rate}  # fmt: skip


def report(imported: dict, live: dict, args: argparse.Namespace, started_load: str) -> str:
    steady, during, building = live["steady"], live["during"], live["building"]
    return "\n".join([
        "# The live catalog: benchmarks",
        "",
        f"Machine: {machine()}; {started_load}. Run: `python -m bench.catalog --products {args.products} "
        f"--serving {args.serving} --swaps {args.swaps} --rate {args.rate:g}` on {time.strftime('%Y-%m-%d')}.",
        "",
        f"## Import of {imported['products']:,} products (target: 5 minutes)",
        "",
        "| step | seconds |",
        "|---|---:|",
        f"| parse and validate the JSON Lines file ({imported['file_mb']:.0f} MB) | {imported['parse_s']:.1f} |",
        f"| one `replace` into the SQLite store | {imported['store_s']:.1f} |",
        f"| an instance builds it to serve (read, lookups, search index, feature table, facet ids) | "
        f"{imported['serve_s']:.1f} |",
        f"| **total** | **{imported['parse_s'] + imported['store_s'] + imported['serve_s']:.1f}** |",
        "",
        f"Memory of a served product: {imported['bytes']:,.0f} bytes (resident memory after serving, less before, "
        f"per product). While a new version is built the old one still serves: an instance needs room for two.",
        "",
        f"## A {UPSERT:,}-product upsert on a {live['serving']:,}-product catalog (targets: 1 s here, 60 s elsewhere)",
        "",
        "| served | p50 (s) | max (s) |",
        "|---|---:|---:|",
        f"| by the instance that committed it | {pct(live['own_s'], 50):.2f} | {max(live['own_s']):.2f} |",
        f"| by another instance, a server process of its own (refresh every {live['refresh_s']:g} s) | "
        f"{pct(live['other_s'], 50):.2f} | "
        f"{max(live['other_s']):.2f} |",
        "",
        "## Search while a new version swaps in (target: p99 at most 2x steady)",
        "",
        "| searches | n | p50 (ms) | p95 (ms) | p99 (ms) |",
        "|---|---:|---:|---:|---:|",
        f"| steady | {steady['n']} | {steady['p50']:.2f} | {steady['p95']:.2f} | {steady['p99']:.2f} |",
        f"| during a swap, from the commit | {during['n']} | {during['p50']:.2f} | {during['p95']:.2f} | "
        f"{during['p99']:.2f} |",
        f"| of which after the commit returned (the build alone) | {building['n']} | {building['p50']:.2f} | "
        f"{building['p95']:.2f} | {building['p99']:.2f} |",
        "",
        f"p99 during a swap / steady p99: **{during['p99'] / steady['p99']:.2f}x** from the commit, "
        f"**{building['p99'] / steady['p99']:.2f}x** for the build alone. Personalized searches arrive at "
        f"{live['rate']:g} per second (open loop, in-process, each timed from its scheduled start); \"during\" are "
        "those scheduled from a commit until its version is served and the build has ended (with the collector pass "
        "after it). The commit is the admin request's own work (validating and writing 1,000 products); the version "
        "is then built in a background thread of the same process, so those searches share the interpreter with it.",
        "",
    ])  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.catalog", description=__doc__)
    parser.add_argument("--products", type=int, default=1_000_000, help="products to import")
    parser.add_argument("--serving", type=int, default=50_000, help="products served while changes come")
    parser.add_argument("--swaps", type=int, default=20, help="versions committed while searching")
    parser.add_argument("--rate", type=float, default=100.0, help="personalized searches per second meanwhile")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "CATALOG_BENCHMARKS.md")
    args = parser.parse_args()
    started_load = load()
    with tempfile.TemporaryDirectory(prefix="leafloaf-catalog-") as scratch:
        state = Path(scratch)
        say(f"live catalog: {args.serving:,} products served, {args.swaps} versions swapped in ...")
        live = bench_live(args.serving, args.swaps, args.rate, state / "live")
        if not args.products:  # a quick look at the live part only
            say(f"  steady {live['steady']}\n  during {live['during']}\n  building {live['building']}")
            return 0
        say(f"import of {args.products:,} products ...")
        imported = bench_import(args.products, state / "import")
    text = report(imported, live, args, started_load)
    args.out.write_text(text)
    say(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
