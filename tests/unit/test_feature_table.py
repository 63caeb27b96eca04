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
    return np.array(table.rows_of(ids), dtype=np.int64)


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
