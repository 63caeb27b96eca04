"""Merchandising rules, pure: each rule kind on a hand-made result list, and bad files refused with
the offending key and its line."""

from __future__ import annotations

import pytest

from shared.domain.merchandising import (
    MerchandisingError,
    MerchandisingRules,
    apply,
    load_merchandising,
    parse_merchandising,
)
from tests.conftest import ROOT


def result(pid: str, score: float, brand: str = "B", category: str = "milk", attributes=()) -> dict:
    return {"product_id": pid, "brand": brand, "category": category, "attributes": list(attributes),
            "score": score, "badges": [], "rank": 0, "position": 0, "base_rank": 0, "moved": 0}  # fmt: skip


def ranked() -> list[dict]:
    out = [
        result("a", 1.0, brand="Acme"),
        result("b", 0.8, category="yogurt"),
        result("c", 0.6, attributes=("vegan",)),
        result("d", 0.4, brand="Oatly"),
    ]
    for i, r in enumerate(out):
        r.update(rank=i, position=i, base_rank=i)
    return out


def rules(*items: dict, **extra) -> MerchandisingRules:
    return parse_merchandising({"version": 1, "rules": list(items), **extra})


def run(merch: MerchandisingRules, query: str = "milk", limit: int = 10, catalog=None) -> list[dict]:
    known = catalog or {}
    return apply(merch, query, ranked(), limit, lambda pid: known.get(pid))


def ids(results: list[dict]) -> list[str]:
    return [r["product_id"] for r in results]


def test_a_pin_puts_the_product_at_its_0_based_position_for_its_query_only():
    merch = rules({"id": "p1", "kind": "pin", "query": "Milk", "product_id": "d", "position": 0})
    pinned = run(merch, query="  MILK ")  # case and whitespace do not matter
    assert ids(pinned) == ["d", "a", "b", "c"]
    assert pinned[0]["rule"] == "p1" and pinned[0]["badges"] == ["Pinned"] and pinned[0]["moved"] == 3
    assert [r["rank"] for r in pinned] == [r["position"] for r in pinned] == [0, 1, 2, 3]
    assert all(r["rule"] is None for r in pinned[1:])
    assert ids(run(merch, query="milk chocolate")) == ["a", "b", "c", "d"]  # exact match only


def test_a_pinned_product_beyond_the_matches_is_brought_in_and_the_limit_holds():
    merch = rules({"id": "p1", "kind": "pin", "query": "milk", "product_id": "z", "position": 1},
                  {"id": "p2", "kind": "pin", "query": "milk", "product_id": "unknown", "position": 0})  # fmt: skip
    out = run(merch, limit=4, catalog={"z": result("z", 0.0)})
    assert ids(out) == ["a", "z", "b", "c"]  # the unknown product is skipped, "d" falls off the end
    assert out[1]["base_rank"] == -1 and out[1]["moved"] == 0


def test_boost_and_bury_move_by_facet_within_bounds():
    merch = rules(
        {"id": "up", "kind": "boost", "facet": "brand", "value": "oatly", "amount": 0.5},
        {"id": "down", "kind": "bury", "facet": "attribute", "value": "VEGAN", "amount": 1},
    )
    out = run(merch)
    assert ids(out) == ["a", "d", "b", "c"]  # amounts are times the best score, 1.0: d 0.9, c -0.4
    assert out[1]["rule"] == "up" and out[-1]["rule"] == "down" and out[-1]["score"] == pytest.approx(-0.4)
    assert [r["moved"] for r in out] == [0, 2, -1, -1]
    with pytest.raises(MerchandisingError) as refused:
        rules({"id": "x", "kind": "boost", "facet": "brand", "value": "a", "amount": 1.5})
    assert refused.value.fields[0][0] == "rules.0.amount"


def test_hide_removes_the_product_even_when_pinned():
    merch = rules({"id": "h", "kind": "hide", "product_id": "b"},
                  {"id": "p", "kind": "pin", "query": "milk", "product_id": "b", "position": 0})  # fmt: skip
    assert ids(run(merch)) == ["a", "c", "d"]


def test_a_promoted_slot_is_labelled():
    merch = rules({"id": "ad", "kind": "promote", "product_id": "c", "position": 0, "label": "Sponsored"},
                  {"id": "pin", "kind": "pin", "query": "milk", "product_id": "d", "position": 0})  # fmt: skip
    out = run(merch)
    assert ids(out) == ["d", "c", "a", "b"]  # the pin wins position 0; the promotion takes the next free one
    assert (out[1]["promoted"], out[1]["badges"], out[1]["rule"]) == (True, ["Sponsored"], "ad")
    assert out[0]["promoted"] is False and out[0]["badges"] == ["Pinned"]


def test_strength_is_per_known_surface():
    assert rules(strength={"search": 0}).strength_for("search") == 0
    assert rules().strength_for("rank") == 1
    with pytest.raises(MerchandisingError) as refused:
        rules(strength={"checkout": 0.5})
    assert refused.value.fields[0][0] == "strength.checkout"


def test_the_api_names_the_field_without_the_rule_kind():
    with pytest.raises(MerchandisingError) as refused:
        rules({"id": "ok", "kind": "hide", "product_id": "a"}, {"id": "p", "kind": "pin", "query": "q",
                                                                 "product_id": "a", "position": -2})  # fmt: skip
    assert [f for f, _ in refused.value.fields] == ["rules.1.position"]
    with pytest.raises(MerchandisingError, match="used twice"):
        rules({"id": "h", "kind": "hide", "product_id": "a"}, {"id": "h", "kind": "hide", "product_id": "b"})


def test_a_bad_file_is_refused_with_the_key_and_its_line(tmp_path):
    path = tmp_path / "merch.yaml"
    path.write_text(
        "version: 1\n"
        "rules:\n"
        "  - {id: ok, kind: hide, product_id: a}\n"
        "  - id: p\n"
        "    kind: pin\n"
        "    query: milk\n"
        "    product_id: a\n"
        "    position: first\n"
    )
    with pytest.raises(MerchandisingError) as refused:
        load_merchandising(path)
    assert "rules.1.position" in str(refused.value) and "(line 8)" in str(refused.value)
    path.write_text("version: 1\nrules:\n  - id: p\n    kind: pin\n    product_id: a\n    position: 0\n")
    with pytest.raises(MerchandisingError, match=r"rules\.0\.query: Field required \(line 3\)"):
        load_merchandising(path)


def test_the_shipped_file_is_valid_and_empty():
    shipped = load_merchandising(ROOT / "merchandising_rules.yaml")
    assert shipped.rules == () and shipped.strength == {}
