"""Explanations for a whole answer at once: the same reasons and confidence as product by product."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from shared.domain.catalog import Product
from shared.domain.profile import Affinities
from shared.domain.ranking import GROUPS, confidence, confidences, explained, reasons, rounded

AFFINITIES = Affinities(
    scores={"brand:oatly": 0.8, "attribute:vegan": 0.5, "attribute:organic": -0.4, "category:milk": 0.3},
    dominant={"brand:oatly": "click", "category:milk": "purchase"},
    price_preference=-0.5,
)
# An item the catalog does not hold, given by its facts: priced against the catalog's medians.
STORE_ONLY = Product.model_construct(
    id="store-only", name="Oatly Barista", brand="Oatly", category="milk", department="", attributes=(), price=6.0
)


def one_by_one(products, contributions, affinities, catalog, least):
    return [
        tuple(c for c in reasons(p, row, affinities, catalog) if abs(c.contribution) >= least)
        for p, row in zip(products, contributions, strict=True)
    ]


@pytest.mark.parametrize("affinities", [AFFINITIES, None])
def test_explained_gives_each_row_the_reasons_reasons_gives(small_catalog, rules, affinities):
    rng = np.random.default_rng(7)
    products = [*small_catalog.products, STORE_ONLY] * 8
    # Quarters: ties in size (with either sign) must keep the groups' order; zeros give no reason.
    contributions = rng.integers(-4, 5, size=(len(products), len(GROUPS))) / 4 * (rng.random((len(products), 1)) < 0.9)
    contributions[::5] *= 0.01  # some rows all below min_reason
    for least in (0.0, rules.ranking.min_reason, 0.5):
        want = one_by_one(products, contributions, affinities, small_catalog, least)
        assert explained(products, contributions, affinities, small_catalog, least) == want
    every = explained(products, contributions, affinities, small_catalog)
    assert {c.facet for found in every for c in found} == {*GROUPS[:-2], "session"}
    assert any(len({abs(c.contribution) for c in found}) < len(found) for found in every)  # ties were met
    assert explained([], np.zeros((0, len(GROUPS))), affinities, small_catalog) == []


def test_confidences_are_those_of_all_the_reasons_bit_for_bit(small_catalog, rules):
    rng = np.random.default_rng(11)
    products = small_catalog.products * 30
    shape = (len(products), len(GROUPS))
    contributions = rng.normal(0, 0.2, size=shape) * (rng.random(shape) < 0.7)
    contributions[0] = 0.0
    found = [reasons(p, row, AFFINITIES, small_catalog) for p, row in zip(products, contributions, strict=True)]
    want = [confidence(f, rules.ranking) for f in found]
    assert confidences(contributions, rules.ranking) == want  # exactly: answers round them to 3 places
    assert want[0] == 0.0


@pytest.mark.parametrize("digits", [3, 4])
def test_rounded_is_round_bit_for_bit_even_at_halves(digits):
    rng = random.Random(5)
    plain = [rng.uniform(-3, 3) for _ in range(20_000)] + [
        rng.uniform(-1, 1) * 10 ** rng.uniform(-9, 8) for _ in range(20_000)
    ]
    # Decimal halves (2.0005 is a little above or below its double), their neighbours, and binary
    # fractions that are exact ties (0.03125): where multiplying by 10**digits may round either way.
    halves = [(k + 0.5) / 10**digits for k in range(-5_000, 5_000)]
    near = [math.nextafter(h, towards) for h in halves for towards in (math.inf, -math.inf)]
    exact = [k / 2**n for n in range(1, 20) for k in range(-50, 50)]
    special = [0.0, -0.0, -1e-9, math.inf, -math.inf, math.nan, 1e300, -1e305, 2.0**52, 5e-324]
    values = plain + halves + near + exact + special
    assert [v.hex() for v in rounded(values, digits)] == [round(v, digits).hex() for v in values]
    assert rounded([], digits) == []
    assert [v.hex() for v in rounded(halves[:5], digits)] == [round(v, digits).hex() for v in halves[:5]]
