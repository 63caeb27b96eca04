"""One suite for every GraphMemory adapter (through the service); Spanner runs on Google's emulator."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from shared.config import Settings
from shared.domain.catalog import Catalog
from shared.domain.events import Interaction
from shared.domain.memory import AVOIDS, BOUGHT_WITH, FREQUENTLY_BUYS, PREFERS, REORDER_CYCLE, user_facts
from shared.domain.pipeline import EventBatch
from shared.ports.graph_memory import GraphMemory, TextMemoryUnavailable
from shared.services.memory import GraphMemoryService
from tests.conftest import SMALL_CATALOG

T0 = datetime(2026, 1, 1, 9, tzinfo=UTC)
NOW = T0 + timedelta(days=200)


@pytest.fixture(params=["kuzu", "falkordb", "spanner"])
def graph(request, tmp_path):
    if request.param == "kuzu":
        from shared.adapters.graph_memory.kuzu import KuzuGraphMemory

        store: GraphMemory = KuzuGraphMemory(tmp_path / "graph.kuzu")
    elif request.param == "falkordb":
        from shared.adapters.graph_memory.falkordb import FalkorGraphMemory

        store = FalkorGraphMemory.from_settings(Settings(falkordb_path=tmp_path / "falkordb"))
    else:
        request.getfixturevalue("spanner_emulator")
        from google.cloud import spanner

        from shared.adapters.graph_memory.spanner import SpannerGraphMemory

        settings = Settings(
            spanner_project="contract", spanner_instance="memory", spanner_database=f"t{uuid.uuid4().hex[:20]}"
        )
        SpannerGraphMemory.create_database(
            spanner.Client(project=settings.spanner_project, disable_builtin_metrics=True),
            settings.spanner_instance,
            settings.spanner_database,
        )
        store = SpannerGraphMemory.from_settings(settings)
    yield store
    store.close()


@pytest.fixture()
def memory(graph, rules):
    return GraphMemoryService(graph, lambda: Catalog(SMALL_CATALOG), rules, clock=lambda: NOW)


def purchase(order: str, user: str, product: str, day: float, qty: int = 1) -> Interaction:
    return Interaction(
        event_id=f"{order}:{product}",
        event_type="purchase",
        user_id=user,
        product_id=product,
        quantity=qty,
        timestamp=T0 + timedelta(days=day),
        context={"order_id": order},
    )


def orders(user: str = "ann") -> list[Interaction]:
    """Milk every 7 days (x2), yogurt in every other order, chips twice."""
    events = []
    for k, day in enumerate((0, 7, 14, 21, 28)):
        events.append(purchase(f"{user}-o{k}", user, "oat-milk", day, qty=2))
        if k % 2 == 0:
            events.append(purchase(f"{user}-o{k}", user, "greek-yogurt", day))
        if k in (1, 3):
            events.append(purchase(f"{user}-o{k}", user, "original-chips", day))
    return events


def test_usual_with_quantities_and_cycles(memory):
    memory.ingest(EventBatch(tuple(orders())))
    usual = {i.product_id: i for i in memory.usual("ann", T0 + timedelta(days=29))}
    assert set(usual) == {"oat-milk", "greek-yogurt", "original-chips"}
    milk = usual["oat-milk"]
    assert (milk.frequency, milk.quantity, milk.cycle_days) == (5, 2, 7.0)
    assert milk.next_expected == (T0 + timedelta(days=35)).isoformat()
    assert usual["greek-yogurt"].cycle_days == 14.0


def test_due_for_reorder_at_a_date(memory):
    memory.ingest(EventBatch(tuple(orders())))
    assert [i.product_id for i in memory.due_for_reorder("ann", T0 + timedelta(days=34))] == []
    due = memory.due_for_reorder("ann", T0 + timedelta(days=36))
    assert [i.product_id for i in due] == ["oat-milk", "original-chips"]  # both expected on day 35; yogurt on 42
    assert {i.product_id for i in memory.due_for_reorder("ann", T0 + timedelta(days=60))} == {
        "oat-milk", "greek-yogurt", "original-chips"
    }  # fmt: skip


def test_bought_with_counts_baskets_across_shoppers(memory):
    memory.ingest(EventBatch(tuple(orders("ann") + orders("bob"))))
    assert memory.bought_with("oat-milk") == [("greek-yogurt", 6), ("original-chips", 4)]
    assert memory.bought_with("original-chips") == [("oat-milk", 4)]


def test_facts_as_of_a_date_keep_history(memory):
    memory.ingest(EventBatch(tuple(orders())))

    def cycles(day: float) -> list[tuple[str, float]]:
        facts = memory.facts_as_of("ann", T0 + timedelta(days=day))
        return [(f.attributes["product_id"], f.attributes["cycle_days"]) for f in facts if f.name == REORDER_CYCLE]

    assert cycles(3) == []
    assert cycles(8) == [("oat-milk", 7.0)]
    assert sorted(cycles(22)) == [("greek-yogurt", 14.0), ("oat-milk", 7.0), ("original-chips", 14.0)]
    stored = [f for f in memory.graph.facts("ann") if f.name == REORDER_CYCLE]
    ended = [f for f in stored if f.invalid_at is not None]
    assert ended and all(f.expired_at is not None for f in ended)  # invalidated, not overwritten


def test_redelivery_and_out_of_order_delivery_converge(memory, graph):
    events = orders()
    memory.ingest(EventBatch(tuple(events)))
    first = sorted((f.uuid, f.invalid_at, f.attributes.get("frequency")) for f in graph.facts("ann"))
    memory.ingest(EventBatch(tuple(events)))  # the same message again
    assert sorted((f.uuid, f.invalid_at, f.attributes.get("frequency")) for f in graph.facts("ann")) == first
    assert memory.bought_with("oat-milk") == [("greek-yogurt", 3), ("original-chips", 2)]


def test_shuffled_split_delivery_gives_the_same_current_facts(graph, rules):
    service = GraphMemoryService(graph, lambda: Catalog(SMALL_CATALOG), rules, clock=lambda: NOW)
    events = orders("cat")
    random.Random(7).shuffle(events)
    for i in range(0, len(events), 3):  # orders arrive split across messages and out of order
        service.ingest(EventBatch(tuple(events[i : i + 3])))
    history, _ = graph.history("cat")
    live = sorted(f.uuid for f in graph.facts("cat") if not f.retracted)
    assert live == sorted(f.uuid for f in user_facts("cat", history))
    assert service.bought_with("oat-milk") == [("greek-yogurt", 3), ("original-chips", 2)]


def test_strong_signals_become_prefers_then_avoids(memory):
    at = T0 + timedelta(days=1)
    signals = [
        Interaction(event_id="s1", event_type="add_to_cart", user_id="dan", product_id="spicy-chips", timestamp=at),
        Interaction(event_id="s2", event_type="click_product", user_id="dan", product_id="spicy-chips", timestamp=at),
        Interaction(
            event_id="s3",
            event_type="returned",
            user_id="dan",
            product_id="spicy-chips",
            timestamp=at + timedelta(days=2),
        ),
    ]
    memory.ingest(EventBatch(tuple(signals)))
    names = lambda day: [f.name for f in memory.facts_as_of("dan", T0 + timedelta(days=day))]  # noqa: E731
    assert names(1.5) == [PREFERS] and names(5) == [AVOIDS]
    _, stored = memory.graph.history("dan")
    assert [s.event_id for s in sorted(stored, key=lambda s: s.at)] == ["s1", "s3"]  # clicks are not strong


def test_delete_user_erases_every_fact_and_uncounts_baskets(memory, graph):
    memory.ingest(EventBatch(tuple(orders("ann") + orders("bob"))))
    assert memory.forget("ann") > 0
    assert graph.facts("ann") == [] and graph.history("ann") == ([], [])
    assert memory.usual("ann") == []
    assert memory.bought_with("oat-milk") == [("greek-yogurt", 3), ("original-chips", 2)]  # bob's only
    assert memory.forget("ann") == 0
    assert [f.name for f in graph.facts("bob") if f.name == FREQUENTLY_BUYS]


def test_search_finds_the_users_facts(memory, graph):
    memory.ingest(EventBatch(tuple(orders("ann") + orders("bob"))))
    found = graph.search_facts("ann", "oat-milk every days", limit=3)
    assert found and all(f.group_id == graph.facts("ann")[0].group_id for f in found)
    assert any(f.attributes.get("product_id") == "oat-milk" for f in found)


def test_free_text_needs_a_configured_llm(graph):
    with pytest.raises(TextMemoryUnavailable, match="LLM"):
        graph.add_text("ann", "I love the oat milk", "review", NOW)


def test_bought_with_is_stored_as_relationships(memory, graph):
    memory.ingest(EventBatch(tuple(orders())))
    assert BOUGHT_WITH not in {f.name for f in graph.facts("ann")}  # a store fact, not the shopper's


def test_a_configured_llm_must_be_usable_or_the_adapter_refuses_to_start(monkeypatch):
    from shared.adapters.graph_memory.kuzu import configured_llm

    assert configured_llm(Settings()) is None
    with pytest.raises(ValueError, match="only 'gemini'"):
        configured_llm(Settings(graph_llm="gpt"))
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    with pytest.raises(ValueError, match="GOOGLE_API_KEY"):
        configured_llm(Settings(graph_llm="gemini"))
    monkeypatch.setenv("GOOGLE_API_KEY", "test-key")
    with pytest.raises(ValueError, match="google-genai"):  # the extra is not installed here
        configured_llm(Settings(graph_llm="gemini"))


def test_a_killed_engine_is_started_again_and_every_order_is_there_once(tmp_path, rules):
    """The embedded FalkorDB dies (SIGKILL) between two deliveries: the next one starts it again on
    its append-only file, and the graph holds each order once, the first delivery's included."""
    import os
    import signal

    from shared.adapters.graph_memory.falkordb import FalkorGraphMemory

    graph = FalkorGraphMemory.from_settings(Settings(falkordb_path=tmp_path / "falkordb"))
    memory = GraphMemoryService(graph, lambda: Catalog(SMALL_CATALOG), rules, clock=lambda: NOW)
    try:
        events = orders()
        memory.ingest(EventBatch(tuple(events[:4])))
        assert graph.server is not None and graph.server.pid is not None
        os.kill(graph.server.pid, signal.SIGKILL)
        memory.ingest(EventBatch(tuple(events)))  # redelivered in full, after the crash
        recorded, _ = graph.history("ann")
        assert sorted(o.order_id for o in recorded) == [f"ann-o{k}" for k in range(5)]
        assert {i.product_id: i.frequency for i in memory.usual("ann", T0 + timedelta(days=29))}["oat-milk"] == 5
    finally:
        graph.close()
