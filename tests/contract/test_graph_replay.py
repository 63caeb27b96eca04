"""Replay real order histories (the Instacart sample) into graph memory and check the reorder
cycles and frequencies against a computation straight from the CSV."""

from __future__ import annotations

import csv
import itertools
import statistics
from collections import defaultdict
from datetime import timedelta

import pytest

from shared.config import Settings
from shared.datasets import EPOCH, instacart_sample, order_records, purchase_events, read_order_rows
from shared.domain.catalog import Catalog
from shared.domain.memory import FREQUENTLY_BUYS, REORDER_CYCLE
from shared.domain.pipeline import EventBatch
from shared.ports.graph_memory import GraphMemory
from shared.services.memory import GraphMemoryService

USERS = 25


def expected_from_csv(users: set[str]) -> tuple[dict, dict]:
    """(user, product) -> median gap in days between distinct order days; -> number of orders."""
    orders: dict[str, dict[int, tuple[float, set[str]]]] = defaultdict(dict)
    with instacart_sample().open() as file:
        for row in csv.DictReader(file):
            if row["user_id"] in users:
                number = int(row["order_number"])
                days = float(row["days_since_prior_order"] or 0)
                orders[row["user_id"]].setdefault(number, (days, set()))[1].add(row["product_id"])
    cycles, frequency = {}, {}
    for user, by_number in orders.items():
        day, days_of = 0.0, defaultdict(set)
        for number in sorted(by_number):
            gap, products = by_number[number]
            day += gap if number > 1 else 0
            for product in products:
                days_of[product].add(day)
                frequency[(user, product)] = frequency.get((user, product), 0) + 1
        for product, days in days_of.items():
            ordered = sorted(days)
            gaps = [b - a for a, b in itertools.pairwise(ordered)]
            if gaps and statistics.median(gaps) > 0:
                cycles[(user, product)] = round(statistics.median(gaps), 2)
    return cycles, frequency


@pytest.fixture(scope="module", params=["kuzu", "falkordb"])
def replayed(request, tmp_path_factory, rules):
    from shared.adapters.graph_memory.falkordb import FalkorGraphMemory
    from shared.adapters.graph_memory.kuzu import KuzuGraphMemory

    rows = list(read_order_rows(instacart_sample()))
    users = sorted({r.user_id for r in rows}, key=int)[:USERS]
    records = order_records(r for r in rows if r.user_id in set(users))
    folder = tmp_path_factory.mktemp("replay")
    graph: GraphMemory = (
        KuzuGraphMemory(folder / "graph.kuzu")
        if request.param == "kuzu"
        else FalkorGraphMemory.from_settings(Settings(falkordb_path=folder / "falkordb"))
    )
    service = GraphMemoryService(graph, lambda: Catalog([]), rules, clock=lambda: EPOCH + timedelta(days=400))
    for user in users:
        events = [e for r in records if r.user_id == user for e in purchase_events(r)]
        service.ingest(EventBatch(tuple(events)))
    yield graph, set(users), records
    graph.close()


def test_reorder_cycles_match_the_csv(replayed):
    graph, users, _ = replayed
    cycles, _ = expected_from_csv(users)
    found = {}
    for user in users:
        for fact in graph.facts(user):
            if fact.name == REORDER_CYCLE and fact.invalid_at is None and not fact.retracted:
                found[(user, fact.attributes["product_id"])] = fact.attributes["cycle_days"]
    assert len(found) > 500
    assert found == cycles


def test_frequencies_match_the_csv(replayed):
    graph, users, _ = replayed
    _, frequency = expected_from_csv(users)
    found = {
        (user, f.attributes["product_id"]): f.attributes["frequency"]
        for user in users
        for f in graph.facts(user)
        if f.name == FREQUENTLY_BUYS
    }
    assert found == {key: n for key, n in frequency.items() if n >= 2}
