"""The ranker's features per (shopper, candidate), checked by hand on the small catalog."""

from __future__ import annotations

import numpy as np
import pytest

from shared.domain.profile import Affinities
from shared.domain.ranker import COLUMN, NEVER, FeatureTable, Session


@pytest.fixture()
def table(rules, small_catalog) -> FeatureTable:
    return FeatureTable(small_catalog, rules.ranking)


def rows(table: FeatureTable, *ids: str) -> np.ndarray:
    return np.array(table.catalog.rows_of(ids), dtype=np.int64)


def test_attribute_affinity_is_the_sum_over_the_products_attributes(table):
    affinities = Affinities({"attribute:vegan": 0.5, "attribute:dairy-free": 0.25, "attribute:organic": -0.5}, {}, None)
    candidates = rows(table, "oat-milk", "whole-milk", "skim-milk")
    x = table.features(candidates, np.ones(3), affinities)
    # oat milk: vegan + plant-based (no affinity) + dairy-free; whole milk: organic; skim milk: none
    assert x[:, COLUMN["attribute"]].tolist() == [0.75, -0.5, 0.0]
    weight = table.rules.facet_weights["attribute"]
    assert x[:, COLUMN["personal"]].tolist() == [weight * 0.75, weight * -0.5, 0.0]


def test_session_flags_mark_the_candidates_viewed_or_in_the_cart(table):
    candidates = rows(table, "oat-milk", "whole-milk", "skim-milk", "greek-yogurt")
    session = Session(viewed=frozenset({"whole-milk", "not-in-the-catalog"}), cart=frozenset({"oat-milk", "skim-milk"}))
    x = table.features(candidates, np.ones(4), None, session)
    assert x[:, COLUMN["viewed_now"]].tolist() == [0.0, 1.0, 0.0, 0.0]
    assert x[:, COLUMN["in_cart"]].tolist() == [1.0, 0.0, 1.0, 0.0]
    assert x[:, COLUMN["own_days"]].tolist() == [NEVER] * 4  # nothing remembered without a profile


def test_no_candidates_give_an_empty_matrix(table):
    x = table.features(np.zeros(0, dtype=np.int64), np.zeros(0), None, Session(viewed=frozenset({"oat-milk"})))
    assert x.shape == (0, len(COLUMN))


def test_due_is_days_since_the_latest_purchase_over_the_jobs_cycle(table):
    history = {"product:oat-milk": (3.0, 14.0), "product:skim-milk": (1.0, 3.0)}
    affinities = Affinities({}, {}, None, history)
    cycles = {"oat-milk": (7.0, 0.6), "skim-milk": (10.0, 0.2), "whole-milk": (5.0, 0.9), "gone": (4.0, 1.0)}
    candidates = rows(table, "oat-milk", "skim-milk", "whole-milk", "greek-yogurt")
    x = table.features(candidates, np.ones(4), affinities, Session(cycles=cycles))
    # oat milk: 14 days since, a 7-day cycle: twice due; skim milk: 3 of 10; whole milk: a cycle but no
    # remembered purchase: capped at 10 cycles overdue; greek yogurt: no cycle.
    assert x[:, COLUMN["due"]].tolist() == [2.0, 0.3, 10.0, 0.0]
    assert x[:, COLUMN["cycle_confidence"]].tolist() == [0.6, 0.2, 0.9, 0.0]


def test_purchase_days_give_the_jobs_cycle_one_trip_a_day():
    from datetime import UTC, datetime, timedelta

    from shared.domain.events import Interaction
    from shared.domain.memory import cycle_of
    from shared.domain.ranker_training import PurchaseDays

    start = datetime(2026, 1, 1, 9, tzinfo=UTC)
    bought = PurchaseDays()
    for day, hour in ((0, 0), (0, 5), (7, 0), (14, 0), (22, 0)):  # two orders on day 0 are one trip
        at = start + timedelta(days=day, hours=hour)
        bought.add(Interaction(event_type="purchase", user_id="u", product_id="oat-milk", timestamp=at))
    bought.add(Interaction(event_type="click_product", user_id="u", product_id="skim-milk", timestamp=start))
    days = [start + timedelta(days=d) for d in (0, 7, 14, 22)]
    assert bought.cycles() == {"oat-milk": cycle_of(days)} and bought.cycles()["oat-milk"][0] == 7.0
