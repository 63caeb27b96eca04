"""Attribution: a search answer's id and places, events carrying it, and the warehouse rows they make."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from shared.adapters.product_search.bm25s import Bm25sProductSearch
from shared.adapters.profile_store.memory import MemoryProfileStore
from shared.domain.catalog import Catalog
from shared.domain.engine import ProfileEngine
from shared.domain.events import Interaction
from shared.domain.pipeline import EVENT_TABLES, SEARCH_IMPRESSIONS, table_ddl, warehouse_rows
from shared.domain.search import SearchRequest
from shared.services.search import SearchService
from tests.conftest import SMALL_CATALOG

NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)


def searched(search_id: str, shown: list[str], event_id: str = "s1") -> Interaction:
    context = {"search_query": "milk", "search_id": search_id, "results_shown": shown}
    return Interaction(
        event_id=event_id, event_type="search", user_id="u1", session_id="x", timestamp=NOW, context=context
    )


def followed(event_type: str, product_id: str, search_id: str | None = "S1", **fields) -> Interaction:
    context = {"position": 1} | ({"search_id": search_id} if search_id is not None else {})
    return Interaction(
        event_type=event_type, user_id="u1", product_id=product_id, timestamp=NOW, context=context, **fields
    )


def test_a_search_with_an_id_is_one_impression_per_product_shown_and_its_outcomes_are_linked(rules):
    events = [
        searched("S1", ["oat-milk", "whole-milk", "skim-milk"]),
        followed("click_product", "whole-milk"),
        followed("add_to_cart", "whole-milk", quantity=2),
        followed("purchase", "whole-milk", quantity=2),
        followed("click_product", "oat-milk", search_id=None),  # not from a search: not an outcome
    ]
    rows = warehouse_rows(events, Catalog(SMALL_CATALOG), rules, NOW)
    assert [(r["search_id"], r["position"], r["product_id"]) for r in rows["search_impressions"]] == [
        ("S1", 0, "oat-milk"),
        ("S1", 1, "whole-milk"),
        ("S1", 2, "skim-milk"),
    ]
    first = rows["search_impressions"][0]
    assert (first["event_id"], first["user_id"], first["session_id"], first["search_query"]) == (
        "s1",
        "u1",
        "x",
        "milk",
    )
    assert first["event_timestamp"] == NOW.isoformat()
    outcomes = [
        (r["event_type"], r["product_id"], r["search_id"], r["quantity"]) for r in rows["search_outcome_events"]
    ]
    assert outcomes == [
        ("click_product", "whole-milk", "S1", None),
        ("add_to_cart", "whole-milk", "S1", 2),
        ("purchase", "whole-milk", "S1", 2),
    ]
    assert rows["search_outcome_events"][0]["result_position"] == 1
    assert len(rows["raw_user_actions"]) == 5  # the events themselves are kept as before
    for table in EVENT_TABLES:  # rows carry exactly the table's columns; required ones are set
        for row in rows[table.name]:
            assert list(row) == [c.name for c in table.columns]
            assert all(row[c.name] is not None for c in table.columns if c.mode == "REQUIRED"), row


def test_a_search_tracked_twice_in_a_batch_is_shown_once_and_one_without_an_id_has_no_impressions(rules):
    again = searched("S1", ["oat-milk"], event_id="s2")
    no_id = Interaction(event_type="search", user_id="u1", context={"search_query": "milk", "results_shown": ["a"]})
    rows = warehouse_rows([searched("S1", ["oat-milk"]), again, no_id], Catalog(SMALL_CATALOG), rules, NOW)
    assert [(r["event_id"], r["position"]) for r in rows["search_impressions"]] == [("s1", 0)]
    assert len(rows["search_events"]) == 3 and rows["search_outcome_events"] == []


def test_impressions_are_keyed_by_search_and_place():
    assert SEARCH_IMPRESSIONS.key == ("search_id", "position")
    assert "PRIMARY KEY (search_id, position) NOT ENFORCED" in table_ddl(SEARCH_IMPRESSIONS, "ds")
    assert "CLUSTER BY user_id, search_id" in table_ddl(SEARCH_IMPRESSIONS, "ds")


@pytest.mark.parametrize("bad", ["", "has space", "x" * 129, 7, "semi;colon"])
def test_context_search_id_is_validated_as_an_id(bad):
    with pytest.raises(ValidationError) as raised:
        followed("click_product", "oat-milk", search_id=bad)
    assert [e["loc"] for e in raised.value.errors()] == [("context", "search_id")]


def test_every_answer_has_a_fresh_search_id_and_places_and_publishes_it_with_what_it_showed(rules):
    catalog = Catalog(SMALL_CATALOG)
    published: list[Interaction] = []
    service = SearchService(
        ProfileEngine(rules, catalog),
        Bm25sProductSearch(catalog),
        MemoryProfileStore(),
        clock=NOW.timestamp,
        publish=published.extend,
    )
    first = service.search(SearchRequest(query="milk", user_id="u1", session_id="x"))
    second = service.search(SearchRequest(query="milk"))  # anonymous: answered with an id, nothing published
    assert first["search_id"] != second["search_id"]
    click = {
        "event_type": "click_product",
        "user_id": "u1",
        "product_id": "p",
        "context": {"search_id": first["search_id"]},
    }
    assert Interaction.model_validate(click).context.search_id == first["search_id"]  # a valid Id to track with
    assert [r["position"] for r in first["results"]] == list(range(len(first["results"])))
    assert all(r["position"] == r["rank"] for r in first["results"])
    [event] = published
    assert event.context.search_id == first["search_id"] and event.session_id == "x"
    assert event.context.results_shown == [r["product_id"] for r in first["results"]]
