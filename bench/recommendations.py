"""Recommendations and suggestions, in-process: each surface's and suggest's latency beside plain and
personalized search.

    python -m bench.recommendations [--products 50000] [--requests 2000] [--shoppers 500]
    (writes docs/RECOMMENDATIONS_BENCHMARKS.md)

Shoppers are simulated as in bench's search section (20 events each, tracked into a memory profile
store). What the jobs would publish for them comes from their purchase histories (bench.workload's
planted favourites and staples): each shopper's next-basket list (the recommender, shared.domain.nextbasket)
and bought products, the products bought together and item neighbours (co-occurrence in the same
histories), and the store's trending list. Each request is timed whole, in the service, as the HTTP
function calls it; plain and personalized searches by the same shoppers run in the same loop.
"""

from __future__ import annotations

import argparse
import random
import time
from collections import Counter, defaultdict
from datetime import timedelta, timezone
from itertools import combinations
from pathlib import Path

from bench.__main__ import ROOT, load, machine, say, summary
from bench.workload import NOW, QUERIES, purchase_histories, shoppers
from shared.adapters.product_search.bm25s import Bm25sProductSearch
from shared.adapters.profile_store.memory import MemoryProfileStore
from shared.domain.catalog import Catalog
from shared.domain.catalog_generator import generate_catalog
from shared.domain.context import ContextCounter, Moment, lifts_document
from shared.domain.engine import ProfileEngine
from shared.domain.nextbasket import Params, global_top, recommend_from, usual_scores
from shared.domain.ranker import FeatureTable, Ranker, StoreStats
from shared.domain.recommendations import RecommendationRequest
from shared.domain.rules import load_rules
from shared.domain.search import SearchRequest
from shared.domain.suggest import SuggestRequest
from shared.search_evaluation import MemoryFeatureStore, without_context
from shared.services.search import SearchService
from shared.services.suggest import SuggestService
from shared.services.tracking import TrackingService

SURFACES = ("for_you", "buy_it_again", "goes_with", "similar", "trending", "new_for_you")


def published(catalog: Catalog, users: int) -> tuple[MemoryFeatureStore, dict[str, float]]:
    """What the jobs would publish from simulated purchase histories, and the store's order counts."""
    histories = purchase_histories(catalog, users, 12, seed=7)
    histories = {f"user-{n}": h for n, h in enumerate(histories.values())}
    params = Params()
    scores = {u: usual_scores(h, params) for u, h in histories.items()}
    lists = dict(recommend_from(scores, sorted(histories), 20, global_top(histories, 20), params))
    counts: Counter[str] = Counter()
    together: dict[str, Counter[str]] = defaultdict(Counter)
    for history in histories.values():
        for basket in history:
            counts.update(basket.products)
            for a, b in combinations(sorted(set(basket.products))[:30], 2):
                together[a][b] += 1
                together[b][a] += 1
    users_docs = {
        u: {"usual": [p for p in lists[u] if p in scores[u]][:10], "next_basket": lists[u], "bought": sorted(scores[u])}
        for u in histories
    }
    products = {p: {"goes_with": [o for o, _ in c.most_common(10)], "similar": [o for o, _ in c.most_common(20)][10:]}
                for p, c in together.items()}  # fmt: skip
    store = MemoryFeatureStore()
    trending = [p for p, _ in counts.most_common(150)][50:]
    queries = [{"query": q, "searches": 100 - n, "shoppers": 10} for n, q in enumerate(QUERIES)]
    context = moment_lifts(catalog, histories, users_docs)
    stored = [("trending", {"products": trending}), ("queries", {"queries": queries}), ("context", context)]
    store.publish("bench", [("user", users_docs.items()), ("product", products.items()), ("store", stored)])
    return store, {p: float(n) for p, n in counts.items()}


def moment_lifts(catalog: Catalog, histories: dict, users_docs: dict) -> dict:
    """The context_patterns job's output for the simulated orders, each placed at a random weekday
    and hour (each shopper's own lifts go into their document), with a weight of 0.05 so every
    request pays for applying it (tuned on random moments, the job would publish 0 and skip it)."""
    rng = random.Random(11)
    counter = ContextCounter()
    for user, history in histories.items():
        for basket in history:
            moment = Moment(rng.randrange(7), rng.randrange(24), rng.randrange(1, 13))
            for product in basket.products:
                counter.add(user, catalog.get(product).category, moment)  # type: ignore[union-attr]
        users_docs[user]["context"] = lifts_document(counter.take_shoppers()[user])
    return {"lifts": lifts_document(counter.store_lifts()), "weight": 0.05, "tuning": {}}


def local_times(rng: random.Random, n: int = 1_000) -> list[str]:
    """Shoppers' local times over a year, with their offsets."""
    start = NOW - timedelta(days=365)
    return [
        (start + timedelta(minutes=rng.randrange(365 * 24 * 60)))
        .astimezone(timezone(timedelta(hours=rng.randint(-8, 9))))
        .isoformat()
        for _ in range(n)
    ]


def typing_inputs(catalog: Catalog, rng: random.Random, n: int = 1_000) -> list[str]:
    """What shoppers type: 1 to 8 letters of a product's name or a search query, one in five with a typo."""
    out = []
    for _ in range(n):
        text = rng.choice(QUERIES) if rng.random() < 0.5 else rng.choice(catalog.products).name.lower()
        typed = text[: rng.randint(1, 8)].strip() or text[:1]
        if len(typed) >= 4 and rng.random() < 0.2:
            at = rng.randrange(1, len(typed))
            typed = typed[:at] + rng.choice("aeiourstn") + typed[at + 1 :]
        out.append(typed)
    return out


def bench(products: int, requests: int, users: int) -> dict:
    rules = load_rules(ROOT / "personalization_rules.yaml")
    catalog = Catalog(generate_catalog(products))
    engine = ProfileEngine(rules, catalog)
    profiles = MemoryProfileStore()
    TrackingService(engine, profiles).track([e for s in shoppers(catalog, users, 20, seed=13) for e in s])
    features, popularity = published(catalog, users)
    ranker = Ranker(FeatureTable(catalog, rules.ranking, StoreStats(popularity)))
    service = SearchService(engine, Bm25sProductSearch(catalog), profiles, clock=NOW.timestamp, ranker=lambda: ranker)
    timeless = SearchService(
        ProfileEngine(without_context(rules), catalog),
        service.shelf().products,
        profiles,
        clock=NOW.timestamp,
        ranker=lambda: ranker,
    )
    service.features = timeless.features = lambda: features
    moments = local_times(random.Random(9))
    suggestions = SuggestService(lambda: catalog, lambda _: ranker.table.orders, engine, profiles, lambda: features)
    typed = typing_inputs(catalog, random.Random(5))
    rng = random.Random(3)
    anchors = [p for p in popularity if catalog.get(p) is not None]
    timings: dict[str, list[float]] = defaultdict(list)
    fallbacks: Counter[str] = Counter()
    for i in range(requests + 100):
        user = f"user-{rng.randrange(users)}"
        context = {"local_time": moments[i % len(moments)]}
        searched = SearchRequest.model_validate({"query": rng.choice(QUERIES), "user_id": user, "context": context})
        asked = {
            "plain search": lambda: service.search(SearchRequest(query=rng.choice(QUERIES))),
            "personalized search": lambda searched=searched: service.search(searched),
            "personalized search, context off": lambda searched=searched: timeless.search(searched),
        }
        for surface in SURFACES:
            body = {"surface": surface, "user_id": user, "limit": 20, "context": context}
            if surface in ("goes_with", "similar"):
                body["product_id"] = rng.choice(anchors)
            request = RecommendationRequest.model_validate(body)
            asked[surface] = lambda request=request: service.recommend(request)
        typing = SuggestRequest(q=typed[i % len(typed)], user_id=user)
        asked["suggest"] = lambda typing=typing: suggestions.suggest(typing)
        names = list(asked)
        rng.shuffle(names)  # no surface always runs after the same one
        for name in names:
            started = time.perf_counter()
            answer = asked[name]()
            took = (time.perf_counter() - started) * 1000
            if i >= 100:  # warm-up
                timings[name].append(took)
                fallbacks[name] += bool(answer.get("fallback"))
    return {"catalog": len(catalog), "requests": requests, "shoppers": users,
            "timings": {k: summary(v) for k, v in timings.items()}, "fallbacks": dict(fallbacks)}  # fmt: skip


def report(result: dict, args: argparse.Namespace, started_load: str) -> str:
    t = result["timings"]
    lines = [
        "# Recommendations and suggestions: latency (in-process)",
        "",
        f"Machine: {machine()}; {started_load}. Run: `python -m bench.recommendations --products {args.products} "
        f"--requests {args.requests} --shoppers {args.shoppers}` on {time.strftime('%Y-%m-%d')}.",
        "",
        f"{result['catalog']:,} products; {result['shoppers']:,} simulated shoppers (20 events each); what the jobs "
        "publish is computed from simulated purchase histories (next-basket lists, bought products, bought-together "
        "and neighbours by co-occurrence, a trending list, and the context engine's category lifts by moment with "
        "each order at a random weekday and hour, applied at a weight of 0.05). Each of "
        f"{result['requests']:,} rounds (after 100 of warm-up) asks every surface and a plain and a personalized "
        "search, in a shuffled order, for one shopper at a random local time; each request is timed whole through "
        "the service. `personalized search, context off` is the same request with the context engine's weight "
        "set to 0 (its reasons are still looked up).",
        "",
        "| ms | p50 | p95 | p99 | n | served popular instead |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in ("plain search", "personalized search", "personalized search, context off", *SURFACES, "suggest"):
        x = t[name]
        lines.append(
            f"| {name} | {x['p50']:.3f} | {x['p95']:.3f} | {x['p99']:.3f} | {x['n']} | "
            f"{result['fallbacks'].get(name, 0) if name in SURFACES else ''} |"
        )
    worst = max(t[s]["p95"] for s in SURFACES)
    suggest_p95 = t["suggest"]["p95"]
    lines += [
        "",
        f"Targets: every surface p95 ≤ 20 ms: {'met' if worst <= 20 else 'NOT MET'} (worst {worst:.2f} ms); "
        "suggest (`GET /api/suggest`: 1 to 8 letters of a product name or a store query, one in five with a "
        f"typo, for a known shopper) p95 ≤ 5 ms: {'met' if suggest_p95 <= 5 else 'NOT MET'} ({suggest_p95:.2f} ms).",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.recommendations", description=__doc__)
    parser.add_argument("--products", type=int, default=50_000)
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--shoppers", type=int, default=500)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "RECOMMENDATIONS_BENCHMARKS.md")
    args = parser.parse_args()
    started_load = load()
    say(f"recommendations: {args.products:,} products, {args.requests:,} rounds ...")
    text = report(bench(args.products, args.requests, args.shoppers), args, started_load)
    args.out.write_text(text)
    say(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
