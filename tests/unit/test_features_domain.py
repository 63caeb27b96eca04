"""What search does with the jobs' features: badges, due dates, and a lift that never promotes a poor match."""

from __future__ import annotations

from datetime import date

from shared.domain.catalog import Catalog
from shared.domain.features import REORDER, USUAL, ShopperFeatures, complements, learned_badges, lift_learned
from shared.domain.ranking import Ranked
from tests.conftest import SMALL_CATALOG

SHOPPER = ShopperFeatures.of(
    {
        "usual": ["skim-milk"],
        "reorder": {
            "skim-milk": {"cycle_days": 7, "confidence": 0.6, "next_expected": "2026-03-01"},
            "oat-milk": {"cycle_days": 7, "confidence": 0.1, "next_expected": "2026-03-01"},
        },
        "quantities": {"skim-milk": "2"},
    }
)


def ranked(*pairs: tuple[str, float]) -> list[Ranked]:
    catalog = Catalog(SMALL_CATALOG)
    return [Ranked(catalog.get(pid), rel, i, rel) for i, (pid, rel) in enumerate(pairs)]  # type: ignore[arg-type]


def test_due_needs_the_date_and_enough_confidence():
    assert not SHOPPER.due("skim-milk", date(2026, 2, 28), 0.3)
    assert SHOPPER.due("skim-milk", date(2026, 3, 1), 0.3)
    assert not SHOPPER.due("oat-milk", date(2026, 3, 5), 0.3)  # an irregular cycle is not announced
    assert SHOPPER.quantities == {"skim-milk": 2}


def test_badges_say_usual_due_and_what_it_goes_with():
    goes_with = complements([("Oatly Oat Milk", ["oat-yogurt", "skim-milk"]), ("Chips", ["oat-yogurt"])])
    assert goes_with == {"oat-yogurt": "Oatly Oat Milk", "skim-milk": "Oatly Oat Milk"}
    assert learned_badges("skim-milk", SHOPPER, date(2026, 3, 2), goes_with, 0.3) == [
        USUAL,
        REORDER,
        "Goes well with Oatly Oat Milk",
    ]
    assert learned_badges("whole-milk", SHOPPER, date(2026, 3, 2), goes_with, 0.3) == []


def test_the_lift_reorders_good_matches_only(rules):
    good = ranked(("whole-milk", 1.0), ("oat-milk", 0.95), ("skim-milk", 0.9))
    assert [r.product.id for r in lift_learned(good, SHOPPER, date(2026, 3, 2), rules.ranking)] == [
        "skim-milk",
        "whole-milk",
        "oat-milk",
    ]
    poor = ranked(("whole-milk", 1.0), ("skim-milk", 0.1))  # below min_relevance of the best
    assert lift_learned(poor, SHOPPER, date(2026, 3, 2), rules.ranking) == poor
    assert lift_learned(good, ShopperFeatures(), date(2026, 3, 2), rules.ranking) == good
