"""The rules file fails fast with a clear message; events are validated by type."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import yaml
from pydantic import ValidationError

from shared.domain.events import Interaction
from shared.domain.rules import RulesError, load_rules, parse_rules
from tests.conftest import ROOT


def rules_data() -> dict:
    return yaml.safe_load((ROOT / "personalization_rules.yaml").read_text())


def test_project_rules_carry_the_design_values(rules):
    assert rules.signals["repeat"].weight == 1.0
    assert rules.signals["subscription"].weight == 1.5
    assert rules.signals["returned"].weight == -0.8
    assert rules.decay["view"].factor == 0.98 and rules.decay["view"].memory_days == 30
    assert rules.decay["purchase"].factor == 0.85 and rules.decay["purchase"].memory_days == 180
    dwell = rules.signals["time_on_product"]
    assert [dwell.weight_for(s) for s in (5, 10, 29, 30, 59, 60, 600)] == [0.0, 0.1, 0.1, 0.25, 0.25, 0.3, 0.3]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["signals"]["add_to_cart"].update(decay="weekly"), "undefined decay classes: ['weekly']"),
        (lambda d: d["decay"]["view"].update(factor=1.5), "decay.view.factor"),
        (lambda d: d["signals"].pop("repeat"), "missing: ['repeat']"),
        (lambda d: d["signals"]["click_product"].pop("weight"), "signals.click_product"),
        (lambda d: d["ranking"].update(budget_ms="soon"), "ranking.budget_ms"),
        (lambda d: d.update(typo_key=1), "typo_key"),
    ],
)
def test_bad_rules_name_the_offending_key(mutate, expected):
    data = rules_data()
    mutate(data)
    with pytest.raises(RulesError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        parse_rules(data)


def test_unreadable_or_malformed_rules_file(tmp_path):
    with pytest.raises(RulesError, match="cannot read rules file"):
        load_rules(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("signals: [unclosed")
    with pytest.raises(RulesError, match="not valid YAML"):
        load_rules(bad)


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"event_type": "click_product", "user_id": "u"}, "needs product_id"),
        ({"event_type": "search", "user_id": "u"}, "needs context.search_query"),
        ({"event_type": "time_on_product", "user_id": "u", "product_id": "p"}, "time_on_page"),
        (
            {"event_type": "click_product", "user_id": "u", "product_id": "p", "purchase_kind": "repeat"},
            "only allowed on purchase",
        ),
        ({"event_type": "click_product", "user_id": "u", "product_id": "p", "colour": "red"}, "Extra inputs"),
        ({"event_type": "click_product", "user_id": "u u", "product_id": "p"}, "pattern"),
        ({"event_type": "purchase", "user_id": "u", "product_id": "p", "quantity": 0}, "greater than or equal to 1"),
    ],
)
def test_invalid_events_are_refused(event, message):
    with pytest.raises(ValidationError, match=message):
        Interaction.model_validate(event)


def test_timestamps_are_utc_and_not_in_the_future():
    naive = Interaction(event_type="view_details", user_id="u", product_id="p", timestamp=datetime(2026, 1, 1, 12))
    assert naive.timestamp.tzinfo is UTC
    with pytest.raises(ValidationError, match="future"):
        Interaction(
            event_type="view_details", user_id="u", product_id="p", timestamp=datetime.now(UTC) + timedelta(hours=1)
        )


def test_event_id_is_generated_when_absent():
    a = Interaction(event_type="view_details", user_id="u", product_id="p")
    b = Interaction(event_type="view_details", user_id="u", product_id="p")
    assert a.event_id and a.event_id != b.event_id
