"""Benchmarks of the real-time core, each beside a baseline measured in the same run.

python -m bench                 full run, writes docs/BENCHMARKS.md
python -m bench --only search   one section (engine, memory, search, http; repeatable): rewrites
                                only that section of docs/BENCHMARKS.md, saying it was rerun alone
python -m bench --quick         small sizes, a smoke run (prints only)
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import os
import platform
import queue
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from unittest import mock

import numpy as np

from bench.workload import NOW, QUERIES, purchase_histories, shoppers
from shared.adapters.product_search.bm25s import Bm25sProductSearch
from shared.adapters.profile_store.memory import MemoryProfileStore
from shared.bootstrap import settle_heap
from shared.domain import ranker_training
from shared.domain.catalog import Catalog
from shared.domain.catalog_generator import generate_catalog
from shared.domain.engine import ProfileEngine
from shared.domain.profile import Profile
from shared.domain.ranker import FeatureTable, LearntModel, Ranker
from shared.domain.ranker_training import build_artifact
from shared.domain.rules import HISTORY, Rules, load_rules
from shared.domain.search import Hits, RankItem, RankRequest, SearchFilters, SearchRequest
from shared.services.search import SearchService
from shared.services.tracking import TrackingService

ROOT = Path(__file__).resolve().parents[1]


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    return {"p50": pct(values, 50), "p95": pct(values, 95), "p99": pct(values, 99), "n": len(values)}


def say(text: str) -> None:
    print(text, flush=True)


# -- engine --------------------------------------------------------------------------------------
def bench_engine(engine: ProfileEngine, catalog: Catalog, users: int, per_user: int, baseline_users: int) -> dict:
    """Each shopper's events are generated just before they are applied, as a request parses them."""
    now = NOW.timestamp()
    for stream in shoppers(catalog, users, per_user, seed=11):  # warm-up: a long-lived instance knows the products
        warm = Profile("warm-up")
        for event in stream:
            engine.apply(warm, event)
    latencies: list[float] = []
    applying = 0.0
    for stream in shoppers(catalog, users, per_user, seed=11):
        profile = Profile(stream[0].user_id)
        for event in stream:
            start = time.perf_counter_ns()
            engine.apply(profile, event)
            latencies.append((time.perf_counter_ns() - start) / 1000)
        profile = Profile(stream[0].user_id)
        begun = time.perf_counter()  # throughput: the same events again, untimed one by one
        for event in stream:
            engine.apply(profile, event)
        applying += time.perf_counter() - begun
    baseline = []  # the reference: recompute the profile from the whole history at each event
    for stream in shoppers(catalog, baseline_users, per_user, seed=11):
        for i in range(len(stream)):
            start = time.perf_counter_ns()
            engine.reference(stream[: i + 1], now)
            baseline.append((time.perf_counter_ns() - start) / 1000)
    return {
        "apply_us": summary(latencies),
        "events_per_s": len(latencies) / applying,
        "reference_us": summary(baseline),
        "events": len(latencies),
    }


# -- memory --------------------------------------------------------------------------------------
def bench_memory(engine: ProfileEngine, catalog: Catalog, profiles: int, per_user: int) -> dict:
    streams = list(shoppers(catalog, 1000, per_user, seed=12))
    for stream in streams:  # warm the shared facet index so it is not counted per profile
        warm = Profile("warm")
        for event in stream:
            engine.apply(warm, event)
    store = MemoryProfileStore()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept: list[Profile] = []
    for i in range(profiles):
        profile = Profile(f"user-{i:07d}")
        for event in streams[i % len(streams)]:
            engine.apply(profile, event)
        kept.append(profile)
    after_profiles = tracemalloc.get_traced_memory()[0]
    for profile in kept:
        store._profiles[profile.user_id] = profile
    after_store = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    accumulators = statistics.mean(len(p) for p in kept)
    sample = kept[len(kept) // 2]  # one profile of the run, to show where the bytes go
    window = sys.getsizeof(sample._recent)
    arrays = sum(sys.getsizeof(a) for a in (sample._ids, sample._values, sample._refs))
    return {
        "parts": {"accumulator arrays": arrays, "idempotency window": window},
        "profiles": profiles,
        "events_per_profile": per_user,
        "bytes_per_profile": (after_profiles - before) / profiles,
        "bytes_per_profile_in_store": (after_store - before) / profiles,
        "accumulators_per_profile": accumulators,
        "baseline_bytes_per_profile": dict_profile_bytes(engine, kept[: min(2000, len(kept))]),
    }


def dict_profile_bytes(engine: ProfileEngine, profiles: list[Profile]) -> float:
    """Baseline: the same profiles as plain dicts {facet key: {decay class: [value, ref]}}."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = []
    classes = [*engine.rules.decay, HISTORY]  # the engine's classes: the live ones, then the ranking's memory
    for profile in profiles:
        doc: dict = {}
        for acc_id, value, ref in profile.accumulators():
            fid, cls = divmod(acc_id, len(classes))
            doc.setdefault(engine.facets.key_of(fid), {})[classes[cls]] = [value, ref]
        kept.append(doc)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return used / len(profiles)


# -- search --------------------------------------------------------------------------------------
class TimedModel(LearntModel):
    """The learnt model, adding up the time it spends scoring and explaining (its share of a search)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.scoring = self.explaining = 0.0  # ms since the last reset

    def reset(self) -> None:
        self.scoring = self.explaining = 0.0

    def scores(self, x: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        try:
            return super().scores(x)
        finally:
            self.scoring += (time.perf_counter() - start) * 1000

    def contributions(self, x: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        try:
            return super().contributions(x)
        finally:
            self.explaining += (time.perf_counter() - start) * 1000


def train_ranker(catalog: Catalog, rules: Rules, products: Bm25sProductSearch, users: int, orders: int) -> dict:
    """A ranker with a model trained as the daily job trains it (build_artifact), on synthetic
    purchase histories with planted preferences over the catalog."""
    histories = purchase_histories(catalog, users, orders, seed=17)
    pool = rules.ranking.candidate_pool

    def search(query: str, own: Sequence[int]) -> Hits:
        return products.search(query, SearchFilters(), pool, own)

    engine = ProfileEngine(rules, catalog)  # a replay's own facet index, as the job's
    fitted: list[str] = []  # the text of every model training builds, so a refused one can be timed too

    def capture(text: str) -> LearntModel:
        fitted.append(text)
        return LearntModel(text)

    start = time.perf_counter()
    with mock.patch.object(ranker_training, "LearntModel", capture):
        artifact = build_artifact("bench", histories, engine, search, progress=lambda m: say(f"  {m}"))
    seconds = time.perf_counter() - start
    table = FeatureTable(catalog, rules.ranking, artifact.stats)
    text = artifact.model
    if text is None:  # refused by the guard: the model it refused is timed all the same, and the report says so
        if not fitted:
            raise RuntimeError(f"no model was trained: {artifact.metrics}")
        say("  the guard refused the model; timing the refused model all the same")
        text = fitted[-1]
    model = TimedModel(text)
    return {
        "ranker": Ranker(table, model, artifact.version),
        "published": artifact.model is not None,
        "seconds": seconds,
        "shoppers": len(histories),
        "orders": sum(len(b) for b in histories.values()),
        "metrics": dict(artifact.metrics),
        "trees": model.booster.num_trees(),
    }


def bench_search(engine: ProfileEngine, catalog: Catalog, queries: int, users: int, trained: dict) -> dict:
    """Plain, rules-ranked and model-ranked search of the same queries by the same shoppers, the three
    in turn for each query (in a rotating order), so that differences are paired per query."""
    store = MemoryProfileStore()
    TrackingService(engine, store).track([e for s in shoppers(catalog, users, 20, seed=13) for e in s])
    products = trained["products"]
    learnt: Ranker = trained["ranker"]
    model = learnt.model
    assert isinstance(model, TimedModel)
    rules = Ranker(learnt.table, None, learnt.version)  # the same store stats: only the model differs
    services = {
        "rules": SearchService(engine, products, store, clock=NOW.timestamp, ranker=lambda: rules),
        "learnt": SearchService(engine, products, store, clock=NOW.timestamp, ranker=lambda: learnt),
    }
    # Rank (200 items) runs in a loop of its own after these: interleaved, the garbage it leaves slowed
    # the plain baseline about twofold (p50 0.95 against 0.41 ms alone).
    variants = ("plain", "rules", "learnt")
    expected = {"plain": None, "rules": "rules", "learnt": "learnt", "rank": "rules"}  # what each says ranked it
    timings: dict[str, list[float]] = defaultdict(list)
    served: dict[str, int] = defaultdict(int)
    lists = {query: store_list(products, query, catalog) for query in QUERIES}
    for i in range(queries + 100):
        query = QUERIES[i % len(QUERIES)]
        user = f"user-{i % users}"
        total: dict[str, float] = {}
        answers: dict[str, dict] = {}
        scoring = explaining = 0.0
        for name in variants[i % 3 :] + variants[: i % 3]:
            model.reset()
            start = time.perf_counter()
            request = SearchRequest(query=query) if name == "plain" else SearchRequest(query=query, user_id=user)
            answers[name] = services["rules" if name == "plain" else name].search(request)
            total[name] = (time.perf_counter() - start) * 1000
            if name == "learnt":
                scoring, explaining = model.scoring, model.explaining
        if i < 100:  # warm-up
            continue
        for name in variants:
            timings[f"{name}.total"].append(total[name])
            served[name] += answers[name]["personalization"]["ranking"] == expected[name]
        for name in ("rules", "learnt"):
            timings[f"{name}.overhead"].append(total[name] - total["plain"])
            for part in ("base_search", "rerank", "compile"):
                timings[f"{name}.{part}"].append(answers[name]["timing_ms"][part])
        timings["learnt.over_rules"].append(total["learnt"] - total["rules"])
        timings["learnt.scoring"].append(scoring)
        timings["learnt.explaining"].append(explaining)
        timings["learnt.model"].append(scoring + explaining)
    for i in range(queries + 100):  # the store's own 200 results of each query, re-ordered for the shopper
        query, user = QUERIES[i % len(QUERIES)], f"user-{i % users}"
        start = time.perf_counter()
        answer = services["rules"].rank(RankRequest(user_id=user, items=lists[query]))
        if i >= 100:  # warm-up
            timings["rank.total"].append((time.perf_counter() - start) * 1000)
            timings["rank.rerank"].append(answer["timing_ms"]["rerank"])
            served["rank"] += answer["personalization"]["ranking"] == expected["rank"]
    return (
        {k: summary(v) for k, v in timings.items()}
        | {"served": dict(served), "queries": queries, "shoppers": users, "catalog": len(catalog)}
        | {f"training.{k}": v for k, v in trained.items() if k not in ("ranker", "products")}
    )


def store_list(products: Bm25sProductSearch, query: str, catalog: Catalog, size: int = 200) -> tuple[RankItem, ...]:
    """A store's own results for the query, as /api/rank gets them: its best `size` matches with
    their scores, one in ten a product the catalog does not hold (given by its facts)."""
    hits = products.search(query, SearchFilters(), size, [])
    items = []
    for n, (row, score) in enumerate(zip(hits.rows, hits.relevance, strict=True)):
        p = catalog.products[row]
        pid = p.id if n % 10 else f"store-only-{n}"  # same facts, an id the catalog lacks
        facts = {"brand": p.brand, "category": p.category, "attributes": p.attributes, "price": p.price}
        items.append(RankItem(product_id=pid, score=float(score), name=p.name, **facts))
    return tuple(items)


# -- HTTP ----------------------------------------------------------------------------------------
def _keep(output, log: Path) -> None:
    with log.open("w") as sink:
        for line in output:
            sink.write(line)
            sink.flush()


def start_server(catalog_size: int, overrides: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """A local server on fresh stores (but those `overrides` name), and its port."""
    state = Path(tempfile.mkdtemp(prefix="leafloaf-bench-"))  # fresh stores, unless the caller set them
    defaults = {
        "LEAFLOAF_SQLITE_PATH": str(state / "profiles.sqlite3"),
        "LEAFLOAF_PROFILE_SPOOL_PATH": str(state / "spool.sqlite3"),
        "LEAFLOAF_BUS_PATH": str(state / "bus.sqlite3"),
        "LEAFLOAF_PUBLISH_SPOOL_PATH": str(state / "publish-spool.sqlite3"),
        "LEAFLOAF_DUCKDB_PATH": str(state / "warehouse.duckdb"),
        "LEAFLOAF_ARCHIVE_PATH": str(state / "archive"),
        "LEAFLOAF_KUZU_PATH": str(state / "graph.kuzu"),
        "LEAFLOAF_PRIVACY_PATH": str(state / "privacy.sqlite3"),
        "LEAFLOAF_CATALOG_STORE_PATH": str(state / "catalog.sqlite3"),
        # The load generator sends no tokens; bench.auth measures what verifying one costs.
        "LEAFLOAF_AUTH": "off",
    }
    env = (
        defaults
        | os.environ
        | {
            "LEAFLOAF_CATALOG_PATH": str(ROOT / "var" / "bench-no-catalog.jsonl"),
            "LEAFLOAF_DEMO_CATALOG": "true",  # a local server on the generated catalog
            "LEAFLOAF_DEMO_CATALOG_SIZE": str(catalog_size),
            "LEAFLOAF_LOG_LEVEL": "WARNING",
        }
        | (overrides or {})
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "shared.cli", "serve", "--port", "0"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    for line in process.stdout:
        if match := re.search(r"http://127\.0\.0\.1:(\d+)", line):
            log = state / "server.log"  # what the server says under load (read it when something fails)
            threading.Thread(target=_keep, args=(process.stdout, log), daemon=True).start()
            print(f"  server output: {log}", file=sys.stderr)
            return process, match.group(1)
    raise RuntimeError(f"server exited with {process.wait()}")


def open_loop(port: str, rate: float, seconds: float, make_request, workers: int = 16) -> dict:
    """Send `rate` requests/s for `seconds` on a fixed schedule; latency counts from the scheduled time."""
    total = int(rate * seconds)
    schedule: queue.Queue = queue.Queue()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()

    def connect() -> http.client.HTTPConnection:
        connection = http.client.HTTPConnection("127.0.0.1", int(port), timeout=10)
        connection.connect()
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as browsers do
        return connection

    def worker() -> None:
        connection = connect()
        while (item := schedule.get()) is not None:
            index, due = item
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            method, path, body = make_request(index)
            try:
                connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                connection.close()
                connection = connect()
                status = 0
            elapsed = (time.perf_counter() - due) * 1000
            with lock:
                latencies.append(elapsed)
                statuses[status] = statuses.get(status, 0) + 1

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    start = time.perf_counter() + 0.05
    for i in range(total):
        schedule.put((i, start + i / rate))
    for _ in threads:
        schedule.put(None)
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return summary(latencies) | {"achieved_rps": total / wall, "statuses": statuses}


def bench_http(catalog_size: int, rate: float, seconds: float, users: int) -> dict:
    gc.collect()
    gc.freeze()  # the load generator must not pause for collections of the earlier sections' heap
    process, port = start_server(catalog_size)
    products = [f"p{i:05d}" for i in range(min(catalog_size, 5000))]

    def track(i: int) -> tuple[str, str, str]:
        event = {
            "event_type": "click_product",
            "user_id": f"user-{i % users}",
            "product_id": products[i * 7 % len(products)],
        }
        return "POST", "/api/interactions/track", json.dumps(event)

    def search(i: int) -> tuple[str, str, str]:
        body = {"query": QUERIES[i % len(QUERIES)], "user_id": f"user-{i % users}"}
        return "POST", "/api/search/personalized", json.dumps(body)

    def plain(i: int) -> tuple[str, str, str]:
        return "POST", "/api/search/personalized", json.dumps({"query": QUERIES[i % len(QUERIES)]})

    def null(i: int) -> tuple[str, str, None]:
        return "GET", "/api/not-an-endpoint", None

    try:
        open_loop(port, rate, min(seconds, 5), track)  # warm-up, and gives every user a profile
        results = {}
        for name, make in (
            ("null (404) baseline", null),
            ("track", track),
            ("search plain", plain),
            ("search personalized", search),
        ):
            say(f"  HTTP {name}: {rate:g} req/s for {seconds:g} s ...")
            results[name] = open_loop(port, rate, seconds, make)
        return results
    finally:
        process.terminate()
        process.wait(timeout=10)


# -- report --------------------------------------------------------------------------------------
def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        models = [
            line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")
        ]
        cpu = models[0] if models else cpu
    system = f"{platform.system()} {platform.release()}"
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {system}"


def fmt(s: dict, unit: str, digits: int = 2) -> str:
    parts = ", ".join(f"{q} {s[q]:.{digits}f} {unit}" for q in ("p50", "p95", "p99"))
    return f"{parts} (n={s['n']})"


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min) when it started"


def engine_section(e: dict) -> list[str]:
    speedup = e["reference_us"]["p50"] / e["apply_us"]["p50"]
    return [
        "## Real-time engine (in-process, one thread)",
        f"- event apply: {fmt(e['apply_us'], 'µs')}; {e['events_per_s']:,.0f} events/s "
        f"({e['events']:,} events of simulated shoppers, 50k-product catalog, each applied right after it is made)",
        f"- baseline, reference batch recomputation of the profile at each event: {fmt(e['reference_us'], 'µs')}"
        f" -> incremental apply is {speedup:.0f}x faster at p50",
        f"- targets: apply p99 ≤ 20 µs {verdict(e['apply_us']['p99'] <= 20)}; "
        f"≥ 100,000 events/s {verdict(e['events_per_s'] >= 100_000)}",
    ]


def memory_section(m: dict, args: argparse.Namespace) -> list[str]:
    return [
        f"## Profile memory (tracemalloc, {m['profiles']:,} profiles of {m['events_per_profile']} events each)",
        f"- {m['bytes_per_profile']:.0f} bytes per profile "
        f"({m['accumulators_per_profile']:.1f} accumulators on average, "
        f"idempotency window of {args.dedup_window} event ids included); "
        f"{m['bytes_per_profile_in_store']:.0f} bytes with the in-memory store's dict entry",
        "- of which, for one sample profile: "
        + ", ".join(f"{name} {size} B" for name, size in m["parts"].items())
        + "; the rest is the object, its user id and preferred quantities",
        f"- baseline, the same profiles as plain dicts: {m['baseline_bytes_per_profile']:.0f} bytes per profile "
        f"({m['baseline_bytes_per_profile'] / m['bytes_per_profile']:.1f}x)",
        f"- target ≤ 1 KB per active user: {verdict(m['bytes_per_profile'] <= 1024)}",
    ]


def search_section(s: dict) -> list[str]:
    t = {k[len("training.") :]: v for k, v in s.items() if k.startswith("training.")}
    metrics = t["metrics"]
    guard = "guard on held-out shoppers' replays: " + ", ".join(
        f"{k.removeprefix('guard_')} {v}" for k, v in metrics.items() if k.startswith("guard_")
    )
    trained = (
        "published by the guard"
        if t["published"]
        else f"**refused by the guard** ({metrics.get('outcome')}); the refused model is loaded all the same, "
        "so that these timings are of a real model"
    )
    rows = [
        ("plain search (baseline, no shopper)", "plain.total"),
        ("**personalized, rules ranking**: total", "rules.total"),
        ("  base search", "rules.base_search"),
        ("  re-rank", "rules.rerank"),
        ("  compile", "rules.compile"),
        ("  overhead over plain (paired per query)", "rules.overhead"),
        ("**personalized, learnt model loaded**: total", "learnt.total"),
        ("  base search", "learnt.base_search"),
        ("  re-rank (features, rules, model scoring and explaining)", "learnt.rerank"),
        ("  compile", "learnt.compile"),
        ("  model: scoring (LightGBM raw scores of the rules' best `model_depth`)", "learnt.scoring"),
        ("  model: explaining (LightGBM pred_contrib of the shown results)", "learnt.explaining"),
        ("  model: scoring + explaining", "learnt.model"),
        ("  overhead over plain (paired per query)", "learnt.overhead"),
        ("  overhead over the rules ranking (paired per query)", "learnt.over_rules"),
        ("**rank of 200 items** (`/api/rank`, rules ranking): total", "rank.total"),
        ("  re-rank (features, one in ten from the item's own facts)", "rank.rerank"),
    ]
    served = s["served"]
    lines = [
        f"## Personalized search, {s['catalog']:,} products (in-process)",
        f"Each of {s['queries']:,} queries (after 100 of warm-up) is searched plain, personalized with the rules "
        "ranking and personalized with the learnt model, in a rotating order, by the same shopper "
        f"({s['shoppers']:,} simulated shoppers of 20 events each). Answers ranked as asked: "
        f"plain {served['plain']:,}, rules {served['rules']:,}, learnt {served['learnt']:,}, "
        f"rank {served['rank']:,} (the rest fell back, e.g. over budget). Rank re-orders the query's best 200 "
        "matches with their scores as a store would send them (one in ten under an id the catalog lacks, "
        "with its facts), for the same shoppers, in a loop of its own after the searches (interleaved, the "
        "garbage it leaves slowed the plain baseline about twofold).",
        "",
        f"The model: LightGBM LambdaRank, {t['trees']} trees, trained with `build_artifact` (as the daily job "
        f"trains) on synthetic purchase histories over this catalog ({t['shoppers']:,} shoppers, "
        f"{t['orders']:,} orders: planted favourite categories and staples, plus Zipf best sellers) in "
        f"{t['seconds']:.1f} s; {metrics.get('training_queries', 0):,} training queries "
        f"({metrics.get('training_rows', 0):,} rows); {guard}; {trained}.",
        "",
        "| ms | p50 | p95 | p99 | n |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, key in rows:
        x = s[key]
        label = label.replace("  ", "&nbsp;&nbsp;– ", 1) if label.startswith("  ") else label
        lines.append(f"| {label} | {x['p50']:.3f} | {x['p95']:.3f} | {x['p99']:.3f} | {x['n']} |")
    lines += [
        "",
        f"Targets: personalized p95 ≤ 10 ms: rules {verdict(s['rules.total']['p95'] <= 10)}, "
        f"learnt {verdict(s['learnt.total']['p95'] <= 10)}; "
        f"overhead p95 ≤ 1 ms with the rules {verdict(s['rules.overhead']['p95'] <= 1)}; "
        f"overhead p95 ≤ 2 ms with the model loaded {verdict(s['learnt.overhead']['p95'] <= 2)}; "
        f"rank of 200 items p95 ≤ 5 ms {verdict(s['rank.total']['p95'] <= 5)}.",
    ]
    return lines


def http_section(h: dict, args: argparse.Namespace) -> list[str]:
    lines = [
        f"## HTTP round trips, local server (`shared.cli serve`, {args.http_catalog:,} products), "
        f"open loop at {args.rate:g} req/s",
        "Latency is measured from each request's scheduled send time (no coordinated omission).",
        "",
        "| endpoint | p50 ms | p95 ms | p99 ms | requests | achieved req/s | statuses |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, x in h.items():
        cells = [
            name,
            *(f"{x[q]:.2f}" for q in ("p50", "p95", "p99")),
            x["n"],
            f"{x['achieved_rps']:.0f}",
            x["statuses"],
        ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines += [
        "",
        f"Targets: track p99 ≤ 5 ms {verdict(h['track']['p99'] <= 5)}; "
        f"search p99 ≤ 25 ms {verdict(h['search personalized']['p99'] <= 25)}.",
    ]
    return lines


SECTIONS = ("engine", "memory", "search", "http")
HEADINGS = {  # how each section's heading starts, to find it in an earlier report
    "engine": "## Real-time engine",
    "memory": "## Profile memory",
    "search": "## Personalized search",
    "http": "## HTTP round trips",
}


def report(r: dict, args: argparse.Namespace) -> tuple[str, dict[str, str]]:
    """The report's header and the text of each section that ran."""
    header = "\n".join(
        [
            "# Benchmarks",
            "",
            f"Machine: {machine()}. Run: {args.command} on {time.strftime('%Y-%m-%d')}, {args.load}.",
            "Every figure comes from that one run; baselines were measured in the same run.",
            "",
            OTHER_BENCHMARKS,
        ]
    )
    render = {
        "engine": lambda: engine_section(r["engine"]),
        "memory": lambda: memory_section(r["memory"], args),
        "search": lambda: search_section(r["search"]),
        "http": lambda: http_section(r["http"], args),
    }
    return header, {name: "\n".join(render[name]()) for name in SECTIONS if name in r}


OTHER_BENCHMARKS = (
    "Benchmarks with their own command and file: [CATALOG_BENCHMARKS.md](CATALOG_BENCHMARKS.md) "
    "(`python -m bench.catalog`: imports, swaps, freshness of the live catalog), "
    "[RECOMMENDATIONS_BENCHMARKS.md](RECOMMENDATIONS_BENCHMARKS.md) (`python -m bench.recommendations`: every "
    "recommendation surface, suggestions and the context engine, beside plain and personalized search), "
    "[LOAD.md](LOAD.md), [JOBS.md](JOBS.md), [GRAPH.md](GRAPH.md), [PIPELINE.md](PIPELINE.md), "
    "[FRESHNESS.md](FRESHNESS.md), [FIRST_REQUEST.md](FIRST_REQUEST.md), [STORES.md](STORES.md)."
)


def merged(earlier: str, fresh: dict[str, str], note: str) -> str:
    """The earlier report with the fresh sections in place of theirs (each with `note` under its
    heading), the other sections kept as they were."""
    head, *blocks = (b.strip("\n") for b in re.split(r"(?m)^(?=## )", earlier))
    found = {name: i for i, b in enumerate(blocks) for name, h in HEADINGS.items() if b.startswith(h)}
    for name, text in fresh.items():
        heading, _, body = text.partition("\n")
        text = f"{heading}\n{note}\n{body}"
        if name in found:
            blocks[found[name]] = text
        else:
            blocks.append(text)
    return "\n\n".join([head, *blocks]) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes; prints only")
    parser.add_argument("--rate", type=float, default=200.0, help="HTTP requests per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="HTTP run length per endpoint")
    parser.add_argument(
        "--only", action="append", choices=SECTIONS, help="run only this section (repeatable); default: all"
    )
    args = parser.parse_args()
    run = set(args.only or SECTIONS)
    only = " ".join(f"--only {name}" for name in SECTIONS if name in run and run != set(SECTIONS))
    args.command = f"`python -m bench {only}`" if only else "`./dev bench` (`python -m bench`)"
    args.dedup_window = 32
    args.load = load()
    big = 2_000 if args.quick else 50_000
    args.http_catalog = big
    if args.quick:
        args.seconds = 1.0
    rules = load_rules(ROOT / "personalization_rules.yaml")
    say(f"Generating a {big:,}-product catalog ...")
    catalog = Catalog(generate_catalog(big))
    engine = ProfileEngine(rules, catalog, dedup_window=args.dedup_window)
    settle_heap()  # as bootstrap does after building an instance's services
    results = {}
    if "engine" in run:
        say("Engine: apply vs reference recomputation ...")
        results["engine"] = bench_engine(engine, catalog, 200 if args.quick else 5_000, 20, 20 if args.quick else 200)
    if "memory" in run:
        say("Memory per profile ...")
        results["memory"] = bench_memory(engine, catalog, 2_000 if args.quick else 100_000, 20)
    if "search" in run:
        products = Bm25sProductSearch(catalog)
        shoppers_, orders = (60, 8) if args.quick else (400, 12)
        say(f"Search: training a ranking model on {shoppers_} synthetic shoppers' orders ...")
        trained = train_ranker(catalog, rules, products, shoppers_, orders) | {"products": products}
        settle_heap()
        say("Search: plain vs personalized with the rules vs with the learnt model, and rank of 200 items ...")
        results["search"] = bench_search(engine, catalog, 200 if args.quick else 3_000, 1_000, trained)
    if "http" in run:
        say("HTTP round trips ...")
        results["http"] = bench_http(big, args.rate, args.seconds, 1_000)
    header, sections = report(results, args)
    say("\n" + "\n\n".join([header, *sections.values()]) + "\n")
    if not args.quick:
        target = ROOT / "docs" / "BENCHMARKS.md"
        target.parent.mkdir(exist_ok=True)
        if run == set(SECTIONS) or not target.exists():
            target.write_text("\n\n".join([header, *sections.values()]) + "\n")
        else:
            note = f"_Rerun alone with {args.command} on {time.strftime('%Y-%m-%d')}: {machine()}, {args.load}._"
            target.write_text(merged(target.read_text(), sections, note))
        say(f"wrote {target.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
