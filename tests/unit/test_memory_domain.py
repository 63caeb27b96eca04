"""Graph memory facts derived from order histories: cycles, timelines, reconciliation."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.domain.memory import (
    AVOIDS,
    FREQUENTLY_BUYS,
    PREFERS,
    REORDER_CYCLE,
    OrderLine,
    OrderRecord,
    SignalRecord,
    cycle_of,
    due_items,
    reconcile,
    user_facts,
    usual_items,
)

T0 = datetime(2026, 1, 1, 9, tzinfo=UTC)


def order(n: int, day: float, *products: str, qty: int = 1) -> OrderRecord:
    return OrderRecord(f"o{n}", "u1", T0 + timedelta(days=day), tuple(OrderLine(p, qty) for p in products))


def test_cycle_is_the_median_gap_with_confidence_from_regularity_and_support():
    days = [T0 + timedelta(days=d) for d in (0, 7, 14, 21)]
    assert cycle_of(days) == (7.0, 0.6)  # regular: 3 gaps / (3 + 2)
    irregular = [T0 + timedelta(days=d) for d in (0, 2, 14, 16)]
    cycle_days, confidence = cycle_of(irregular)
    assert cycle_days == 2.0 and confidence == 0.0  # mean deviation 4 >= median 2
    assert cycle_of(days[:1]) is None


def test_frequently_buys_and_a_cycle_per_purchase_day_each_ending_at_the_next():
    history = [
        order(1, 0, "milk", "eggs", qty=2),
        order(2, 7, "milk"),
        order(3, 14, "milk", "eggs"),
        order(4, 21, "milk"),
    ]
    facts = user_facts("u1", history)
    frequent = {f.attributes["product_id"]: f.attributes for f in facts if f.name == FREQUENTLY_BUYS}
    assert frequent["milk"]["frequency"] == 4 and frequent["eggs"]["frequency"] == 2
    assert (
        frequent["eggs"]["quantity"] == 1 and frequent["milk"]["last_purchase"] == (T0 + timedelta(days=21)).isoformat()
    )
    cycles = [f for f in facts if f.name == REORDER_CYCLE and f.attributes["product_id"] == "milk"]
    assert [f.valid_at for f in cycles] == [T0 + timedelta(days=d) for d in (7, 14, 21)]
    assert [f.invalid_at for f in cycles] == [T0 + timedelta(days=14), T0 + timedelta(days=21), None]
    assert cycles[-1].attributes["next_expected"] == (T0 + timedelta(days=28)).isoformat()
    assert all(f.episodes[0] for f in cycles)  # provenance: the order that established it


def test_same_day_orders_are_one_trip():
    history = [order(1, 0, "milk"), order(2, 0.1, "milk"), order(3, 10, "milk")]
    [cycle] = [f for f in user_facts("u1", history) if f.name == REORDER_CYCLE]
    assert cycle.attributes["cycle_days"] == 10.0


def test_usual_and_due_at_a_date():
    history = [order(1, 0, "milk", "bread"), order(2, 7, "milk", "bread"), order(3, 14, "milk")]
    facts = user_facts("u1", history)
    at = T0 + timedelta(days=15)
    assert [i.product_id for i in usual_items(facts, at)] == ["milk", "bread"]
    # bread was expected on day 14 (every 7 days since day 7), milk on day 21
    assert [i.product_id for i in due_items(facts, at)] == ["bread"]
    assert due_items(facts, at, min_confidence=0.5) == []
    assert [i.product_id for i in due_items(facts, T0 + timedelta(days=22))] == ["bread", "milk"]


def test_preferences_switch_with_the_latest_strong_signal():
    signals = [
        SignalRecord("e1", "u1", "chips", "add_to_cart", 0.5, T0),
        SignalRecord("e2", "u1", "chips", "quantity_increase", 0.6, T0 + timedelta(days=1)),
        SignalRecord("e3", "u1", "chips", "returned", -0.8, T0 + timedelta(days=3)),
    ]
    facts = user_facts("u1", [], signals)
    assert [(f.name, f.valid_at, f.invalid_at) for f in facts] == [
        (PREFERS, T0, T0 + timedelta(days=3)),
        (AVOIDS, T0 + timedelta(days=3), None),
    ]


def test_reconcile_inserts_invalidates_and_retracts():
    now = T0 + timedelta(days=100)
    first = user_facts("u1", [order(1, 0, "milk"), order(2, 7, "milk")])
    changes = reconcile([], first, now)
    assert len(changes.insert) == len(first) and not changes.update
    stored = changes.insert
    # A later order: the day-7 cycle ends, a new one starts, the counter changes.
    later = user_facts("u1", [order(1, 0, "milk"), order(2, 7, "milk"), order(3, 21, "milk")])
    changes = reconcile(stored, later, now)
    ended = [f for f in changes.update if f.name == REORDER_CYCLE]
    assert len(ended) == 1 and ended[0].invalid_at == T0 + timedelta(days=21) and ended[0].expired_at == now
    assert [f.name for f in changes.insert] == [REORDER_CYCLE]
    # A late order on day 3 proves the day-7 cycle of 7 days was never true: it is retracted.
    stored = [f for f in stored if f.name != REORDER_CYCLE] + ended + changes.insert
    late = user_facts("u1", [order(1, 0, "milk"), order(9, 3, "milk"), order(2, 7, "milk"), order(3, 21, "milk")])
    changes = reconcile(stored, late, now)
    retracted = [f for f in changes.update if f.retracted]
    assert retracted and all(not f.holds_at(f.valid_at) for f in retracted)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 90), st.sampled_from(["a", "b", "c"])), min_size=1, max_size=12), st.randoms())
def test_the_derived_facts_do_not_depend_on_delivery_order(purchases, rnd: random.Random):
    history = [order(i, day, product) for i, (day, product) in enumerate(purchases)]
    shuffled = history[:]
    rnd.shuffle(shuffled)
    assert user_facts("u1", history) == user_facts("u1", shuffled)
    # Converging through any sequence of partial histories gives the same current facts.
    now = T0 + timedelta(days=365)
    stored: dict[str, object] = {}
    for k in range(1, len(shuffled) + 1):
        changes = reconcile(stored.values(), user_facts("u1", shuffled[:k]), now)  # type: ignore[arg-type]
        for fact in changes.insert + changes.update:
            stored[fact.uuid] = fact
    final = user_facts("u1", history)
    live = {uid: f for uid, f in stored.items() if not f.retracted}  # type: ignore[attr-defined]
    assert sorted(live) == sorted(f.uuid for f in final)


def test_facts_of_some_products_are_those_of_the_full_derivation():
    history = [order(1, 0, "milk", "eggs"), order(2, 7, "milk", "bread"), order(3, 15, "milk", "eggs", "bread")]
    signals = [SignalRecord("e1", "u1", "eggs", "returned", -0.8, T0 + timedelta(days=16))]
    everything = user_facts("u1", history, signals)
    only_eggs = user_facts("u1", history, signals, products={"eggs"})
    assert only_eggs == [f for f in everything if f.attributes["product_id"] == "eggs"]
    assert {f.name for f in only_eggs} == {FREQUENTLY_BUYS, REORDER_CYCLE, AVOIDS}
