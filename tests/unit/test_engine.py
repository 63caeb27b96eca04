"""Engine behaviour on hand-picked histories."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.engine import ProfileEngine
from shared.domain.events import Interaction
from shared.domain.profile import Profile

T0 = datetime(2026, 3, 1, tzinfo=UTC)
DAY = 86_400


@pytest.fixture()
def engine(rules, small_catalog) -> ProfileEngine:
    return ProfileEngine(rules, small_catalog, dedup_window=8)


def ev(event_type: str, product_id: str = "oat-milk", days: float = 0, **extra) -> Interaction:
    return Interaction(
        event_type=event_type, user_id="u", product_id=product_id, timestamp=T0 + timedelta(days=days), **extra
    )


def test_a_click_touches_every_facet_with_its_weight(engine):
    profile = Profile("u")
    engine.apply(profile, ev("click_product"))
    scores = engine.read(profile, T0.timestamp()).scores
    assert scores == pytest.approx(
        {
            "product:oat-milk": 0.2,
            "brand:oatly": 0.2,
            "category:milk": 0.2,
            "attribute:vegan": 0.2,
            "attribute:plant-based": 0.2,
            "attribute:dairy-free": 0.2,
        }
    )


def test_decay_follows_the_class_factor(engine):
    profile = Profile("u")
    engine.apply(profile, ev("add_to_cart"))
    later = engine.read(profile, T0.timestamp() + 10 * DAY)
    assert later.of("brand:oatly") == pytest.approx(0.5 * 0.90**10)


def test_duplicate_event_ids_apply_once(engine):
    profile = Profile("u")
    first = engine.apply(profile, ev("click_product", event_id="same"))
    again = engine.apply(profile, ev("click_product", event_id="same"))
    assert first.applied and not again.applied
    assert engine.read(profile, T0.timestamp()).of("brand:oatly") == pytest.approx(0.2)


def test_dedup_window_is_bounded(engine):
    profile = Profile("u")
    for i in range(20):
        engine.apply(profile, ev("view_details", event_id=f"e{i}"))
    assert len(profile._recent) == engine.dedup_window


def test_purchase_kind_is_inferred(engine):
    profile = Profile("u")
    assert engine.apply(profile, ev("purchase")).signal == "first_time"
    assert engine.apply(profile, ev("purchase", days=7)).signal == "repeat"
    assert engine.apply(profile, ev("purchase", days=14, quantity=4)).signal == "bulk_purchase"
    assert engine.apply(profile, ev("purchase", days=21, purchase_kind="subscription")).signal == "subscription"
    assert engine.preferred_quantities(profile) == {"oat-milk": 1}


def test_last_purchased_quantity_is_preferred(engine):
    profile = Profile("u")
    engine.apply(profile, ev("purchase", "whole-milk", quantity=2))
    assert engine.preferred_quantities(profile) == {"whole-milk": 2}


def test_scrolling_past_speaks_only_about_product_and_attributes(engine):
    profile = Profile("u")
    engine.apply(profile, ev("displayed_but_scrolled", "spicy-chips"))
    scores = engine.read(profile, T0.timestamp()).scores
    assert scores == pytest.approx({"product:spicy-chips": -0.05, "attribute:spicy": -0.05})


def test_scores_are_capped_symmetrically(engine):
    profile = Profile("u")
    for i in range(5):
        engine.apply(profile, ev("purchase", "oat-milk", days=i, event_id=f"buy{i}"))
        engine.apply(profile, ev("returned", "spicy-chips", days=i, event_id=f"ret{i}"))
    scores = engine.read(profile, T0.timestamp() + 5 * DAY).scores
    assert scores["brand:oatly"] == 1.0
    assert scores["brand:doritos"] == -1.0


def test_memory_ends_after_memory_days_without_reinforcement(engine):
    profile = Profile("u")
    engine.apply(profile, ev("view_details"))
    assert engine.read(profile, T0.timestamp() + 30 * DAY).of("brand:oatly") == pytest.approx(0.15 * 0.98**30)
    assert engine.read(profile, T0.timestamp() + 31 * DAY).of("brand:oatly") == 0.0


def test_late_events_are_discounted_to_their_own_time(engine):
    profile = Profile("u")
    engine.apply(profile, ev("click_product", days=10, event_id="new"))
    engine.apply(profile, ev("click_product", days=0, event_id="old"))
    now = T0.timestamp() + 10 * DAY
    assert engine.read(profile, now).of("brand:oatly") == pytest.approx(0.2 + 0.2 * 0.95**10)


def test_dwell_below_ten_seconds_changes_nothing(engine):
    profile = Profile("u")
    outcome = engine.apply(profile, ev("time_on_product", context={"time_on_page": 4}))
    assert outcome.applied and outcome.weight == 0.0
    assert engine.read(profile, T0.timestamp()).empty


def test_unknown_products_use_the_facts_the_event_carries(engine):
    profile = Profile("u")
    engine.apply(
        profile,
        ev(
            "click_product",
            "new-kombucha",
            product_brand="Humm",
            product_category="Kombucha",
            product_attributes=["Organic"],
        ),
    )
    scores = engine.read(profile, T0.timestamp()).scores
    assert scores.keys() == {"product:new-kombucha", "brand:humm", "category:kombucha", "attribute:organic"}


def test_attributes_differing_only_in_case_count_once(engine):
    profile = Profile("u")
    engine.apply(profile, ev("click_product", "new-tea", product_attributes=["Organic", "organic", "ORGANIC"]))
    assert engine.read(profile, T0.timestamp()).of("attribute:organic") == pytest.approx(0.2)


def test_price_preference_leans_to_what_the_shopper_buys(engine, small_catalog):
    profile = Profile("u")
    for i in range(6):
        engine.apply(profile, ev("purchase", "skim-milk", days=i, event_id=f"b{i}"))  # the cheapest milk
    preference = engine.read(profile, T0.timestamp() + 6 * DAY).price_preference
    assert preference is not None and preference < 0
    assert not math.isnan(preference)


def test_search_events_are_accepted_without_touching_the_profile(engine):
    profile = Profile("u")
    outcome = engine.apply(profile, Interaction(event_type="search", user_id="u", context={"search_query": "milk"}))
    assert outcome.applied and outcome.signal is None and len(profile) == 0
    with_product = Interaction(event_type="search", user_id="u", product_id="oat-milk", context={"search_query": "oat"})
    assert engine.apply(profile, with_product).applied and len(profile) == 0
    assert engine.reference([with_product], T0.timestamp()).empty
