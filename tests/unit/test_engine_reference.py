"""The incremental profile equals the batch reference formula over any event history."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.domain.catalog import Catalog
from shared.domain.engine import ProfileEngine
from shared.domain.events import EventType, Interaction
from shared.domain.profile import Profile
from shared.domain.rules import load_rules
from tests.conftest import ROOT, SMALL_CATALOG

RULES = load_rules(ROOT / "personalization_rules.yaml")
NOW = datetime(2026, 6, 1, tzinfo=UTC)
EVENT_TYPES = list(EventType)


@st.composite
def events(draw) -> Interaction:
    event_type = draw(st.sampled_from(EVENT_TYPES))
    known = draw(st.booleans())
    product_id = draw(st.sampled_from([p.id for p in SMALL_CATALOG])) if known else "unknown-1"
    extra = {}
    if not known:
        extra = {"product_category": "milk", "product_brand": "Store", "product_attributes": ["local"], "price": 2.0}
    context = {}
    if event_type is EventType.SEARCH:
        context["search_query"] = "milk"
    if event_type is EventType.TIME_ON_PRODUCT:
        context["time_on_page"] = draw(st.floats(0, 120))
    return Interaction(
        event_id=f"e{draw(st.integers(0, 40))}",  # small id space: duplicates happen
        event_type=event_type,
        user_id="u1",
        product_id=product_id,
        timestamp=NOW - timedelta(seconds=draw(st.integers(0, 200 * 86_400))),
        quantity=draw(st.integers(1, 4)),
        context=context,
        **extra,
    )


def assert_same(a, b) -> None:
    assert a.scores.keys() == b.scores.keys()
    for key, value in a.scores.items():
        assert math.isclose(value, b.scores[key], rel_tol=1e-9, abs_tol=1e-9), key
    assert (a.price_preference is None) == (b.price_preference is None)
    if a.price_preference is not None:
        assert math.isclose(a.price_preference, b.price_preference, rel_tol=1e-7, abs_tol=1e-9)


def applied(history: list[Interaction]) -> tuple[ProfileEngine, Profile]:
    engine = ProfileEngine(RULES, Catalog(SMALL_CATALOG), dedup_window=64)  # window > history: exact dedup
    profile = Profile("u1")
    for event in history:
        engine.apply(profile, event)
    return engine, profile


@settings(max_examples=300, deadline=None)
@given(st.lists(events(), max_size=60), st.integers(0, 30 * 86_400))
def test_incremental_equals_reference(history, later_seconds):
    engine, profile = applied(history)
    now = NOW.timestamp() + later_seconds
    assert_same(engine.read(profile, now), engine.reference(history, now))


@settings(max_examples=100, deadline=None)
@given(st.lists(events(), max_size=40), st.integers(0, 400 * 86_400))
def test_compaction_changes_no_score(history, later_seconds):
    engine, profile = applied(history)
    now = NOW.timestamp() + later_seconds
    before = engine.read(profile, now)
    engine.compact(profile, now)
    assert_same(engine.read(profile, now), before)
