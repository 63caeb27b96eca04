"""The merchandising admin API through functions-framework, with authentication on: only a service
identity may call it, a bad rule is a 400 naming the field, and search shows what the rules did."""

from __future__ import annotations

import pytest
from functions_framework import create_app

from shared import bootstrap
from shared.domain.merchandising import MerchandisingError
from tests.conftest import ROOT, installed_services

MAIN = str(ROOT / "main.py")
SECRET = "test-secret-" + "x" * 40
RULES = {
    "version": 1,
    "strength": {"search": 1},
    "rules": [
        {"id": "milk-pin", "kind": "pin", "query": "milk", "product_id": "skim-milk", "position": 0},
        {"id": "ad", "kind": "promote", "query": "milk", "product_id": "original-chips", "position": 1},
        {"id": "no-oat", "kind": "hide", "product_id": "oat-milk"},
    ],
}


@pytest.fixture()
def services(tmp_path):
    services = installed_services(tmp_path, auth="hmac", auth_secret=SECRET)
    yield services
    services.close()
    bootstrap.install(None)


def client(target: str):
    return create_app(target, MAIN).test_client()


def token(services, subject: str, service: bool = False) -> dict[str, str]:
    return {"Authorization": f"Bearer {services.identity.issue(subject, service=service)}"}


def test_only_a_service_identity_may_call_the_admin_api(services):
    admin = client("manage_merchandising_rules")
    assert admin.get("/").status_code == 401
    assert admin.put("/", json=RULES).status_code == 401
    shopper = admin.put("/", json=RULES, headers=token(services, "ann"))
    assert shopper.status_code == 403 and shopper.get_json()["error"]["code"] == "forbidden"
    assert admin.delete("/milk-pin", headers=token(services, "ann")).status_code == 403
    assert services.merchandising.current()[1].rules == ()  # nothing changed


def test_a_bad_rule_is_a_400_naming_the_field(services):
    bad = RULES | {"rules": [*RULES["rules"][:2], {"id": "p", "kind": "pin", "query": "q", "product_id": "a",
                                                    "position": -1}]}  # fmt: skip
    answer = client("manage_merchandising_rules").put("/", json=bad, headers=token(services, "ops", service=True))
    assert answer.status_code == 400
    assert [f["field"] for f in answer.get_json()["error"]["fields"]] == ["rules.2.position"]
    emptied = client("manage_merchandising_rules").put("/", json=None, headers=token(services, "ops", service=True))
    assert emptied.status_code == 400  # `null` is not "no rules"


def test_a_bad_rules_file_stops_the_start(tmp_path):
    path = tmp_path / "merch.yaml"
    path.write_text("version: 1\nrules:\n  - {id: a, kind: hide}\n")
    with pytest.raises(MerchandisingError, match=r"rules\.0\.product_id: Field required \(line 3\)"):
        installed_services(tmp_path, merchandising_rules_path=path)
    bootstrap.install(None)


def test_published_rules_show_in_search_and_one_can_be_deleted(services):
    admin, ops = client("manage_merchandising_rules"), token(services, "ops", service=True)
    put = admin.put("/", json=RULES, headers=ops)
    assert put.status_code == 200 and put.get_json()["rules"]["rules"][0]["id"] == "milk-pin"
    assert admin.get("/", headers=ops).get_json()["version"] == put.get_json()["version"]
    results = client("search_personalized").post("/", json={"query": "Milk"}).get_json()["results"]
    shown = [(r["product_id"], r["rule"], r["badges"][:1], r["promoted"]) for r in results[:2]]
    assert shown == [("skim-milk", "milk-pin", ["Pinned"], False), ("original-chips", "ad", ["Promoted"], True)]
    assert "oat-milk" not in [r["product_id"] for r in results]
    assert admin.delete("/no-oat", headers=ops).status_code == 200
    assert admin.delete("/no-oat", headers=ops).status_code == 404
    results = client("search_personalized").post("/", json={"query": "milk"}).get_json()["results"]
    assert "oat-milk" in [r["product_id"] for r in results]
