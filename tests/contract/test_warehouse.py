"""One suite for every Warehouse adapter; BigQuery runs on bqemulator."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta

import pytest

from shared.adapters.warehouse.duckdb import DuckDbWarehouse
from shared.domain.catalog import Catalog
from shared.domain.events import Interaction, as_utc
from shared.domain.pipeline import EVENT_TABLES, warehouse_rows
from shared.ports.warehouse import Warehouse, WarehouseUnavailable
from shared.services.jobs import JobRunner
from tests.conftest import SMALL_CATALOG
from tests.emulator_fixtures import new_warehouse


@pytest.fixture(params=["duckdb", "bigquery"])
def warehouse(request, tmp_path):
    store = new_warehouse(request, tmp_path, request.param, "test")
    yield store
    store.close()


def rows(rules, n: int, start: int = 0, user: str = "u1"):
    """Per 4 events: a click, a cart add, a purchase and a search, each with its own search_id (so
    3 outcome rows and one impression), on days 1 to 4 of November."""
    events = [
        Interaction(
            event_id=f"e{i:05d}",
            event_type=("click_product", "add_to_cart", "purchase", "search")[i % 4],
            user_id=user,
            product_id="oat-milk",
            timestamp=datetime(2026, 11, 1 + i % 20, 8, tzinfo=UTC),
            context={"search_query": "milk", "results_shown": ["oat-milk"], "position": 1, "search_id": f"s{i:05d}"},
        )
        for i in range(start, start + n)
    ]
    return warehouse_rows(events, Catalog(SMALL_CATALOG), rules, datetime(2026, 11, 22, tzinfo=UTC))


def count(warehouse: Warehouse, table: str) -> int:
    return int(warehouse.query(f"SELECT COUNT(*) AS n FROM {table}")[0]["n"])


def test_inserts_are_idempotent_on_event_id(warehouse, rules):
    assert warehouse.insert(rows(rules, 8)) == 24  # 8 raw rows + 8 in the kind tables + 2 impressions + 6 outcomes
    assert warehouse.insert(rows(rules, 8)) == 0
    assert warehouse.insert(rows(rules, 8, start=4)) == 12  # half new
    assert count(warehouse, "raw_user_actions") == 12
    assert {t.name: count(warehouse, t.name) for t in EVENT_TABLES[1:]} == {
        "search_events": 3,
        "product_interaction_events": 3,
        "cart_events": 3,
        "order_events": 3,
        "search_impressions": 3,
        "search_outcome_events": 9,
    }


def test_queries_take_named_parameters_and_json_columns(warehouse, rules):
    warehouse.insert(rows(rules, 4, user="a"))
    warehouse.insert(rows(rules, 6, start=10, user="b"))
    found = warehouse.query(
        "SELECT user_id, COUNT(*) AS n FROM raw_user_actions WHERE user_id = @user GROUP BY user_id", {"user": "b"}
    )
    assert found == [{"user_id": "b", "n": 6}]
    shown = warehouse.query(
        "SELECT JSON_VALUE(interaction_context, '$.search_query') AS q FROM raw_user_actions"
        " WHERE event_type = 'search' AND user_id = @user",
        {"user": "a"},
    )
    assert shown == [{"q": "milk"}]
    days = warehouse.query("SELECT COUNT(DISTINCT DATE(event_timestamp)) AS d FROM raw_user_actions")
    assert days == [{"d": 10}]


def test_delete_by_user(warehouse, rules):
    warehouse.insert(rows(rules, 4, user="a"))
    warehouse.insert(rows(rules, 4, start=4, user="b"))
    warehouse.query("DELETE FROM raw_user_actions WHERE user_id = @user", {"user": "a"})
    assert count(warehouse, "raw_user_actions") == 4


NEXT_BASKET = (("user_id", "STRING"), ("position", "INT64"), ("product_id", "STRING"), ("made_on", "DATE"))


def two_users(warehouse: Warehouse, rules) -> None:
    """Users a and b in every event table and in two job outputs; pairs has no user_id column."""
    warehouse.insert(rows(rules, 4, user="a"))
    warehouse.insert(rows(rules, 4, start=20, user="b"))  # the same days as a's
    basket = [{"user_id": u, "position": 0, "product_id": "oat-milk", "made_on": date(2026, 11, 22)} for u in "ab"]
    warehouse.replace_table("next_basket", NEXT_BASKET, [basket])
    warehouse.replace_table("pairs", [("product_id", "STRING")], [[{"product_id": "oat-milk"}]])
    warehouse.query(
        "CREATE OR REPLACE TABLE segments AS SELECT user_id, COUNT(*) AS n FROM raw_user_actions GROUP BY 1"
    )


EVERY_TABLE = {t.name for t in EVENT_TABLES} | {"next_basket", "segments"}


def test_user_rows_gathers_the_user_everywhere_as_json(warehouse, rules):
    two_users(warehouse, rules)
    found = warehouse.user_rows("a")
    assert set(found) == EVERY_TABLE
    assert {r["user_id"] for table_rows in found.values() for r in table_rows} == {"a"}
    assert json.loads(json.dumps(found)) == found  # no datetimes, dates or decimals left
    assert len(found["raw_user_actions"]) == 4 and len(found["cart_events"]) == 1
    assert found["next_basket"] == [{"user_id": "a", "position": 0, "product_id": "oat-milk", "made_on": "2026-11-22"}]
    assert found["segments"] == [{"user_id": "a", "n": 4}]
    first = min(found["raw_user_actions"], key=lambda r: r["event_id"])
    assert first["event_timestamp"] == "2026-11-01T08:00:00+00:00"
    assert first["interaction_context"]["search_query"] == "milk"  # JSON columns parsed
    assert len(warehouse.user_rows("a", limit=2)["raw_user_actions"]) == 2
    assert warehouse.user_rows("nobody") == {}


def test_delete_users_removes_only_them_from_every_table(warehouse, rules):
    two_users(warehouse, rules)
    assert warehouse.delete_users([]) == {}
    assert warehouse.delete_users({"a", "nobody"}) == {
        "raw_user_actions": 4,
        "search_events": 1,
        "product_interaction_events": 1,
        "cart_events": 1,
        "order_events": 1,
        "search_impressions": 1,
        "search_outcome_events": 3,
        "next_basket": 1,
        "segments": 1,
    }
    assert warehouse.user_rows("a") == {}
    assert {t: len(r) for t, r in warehouse.user_rows("b").items()} == {
        t: {"raw_user_actions": 4, "search_outcome_events": 3}.get(t, 1) for t in EVERY_TABLE
    }
    assert count(warehouse, "pairs") == 1
    assert warehouse.delete_users(["a"]) == {}  # idempotent


def test_delete_events_before_a_cutoff_for_everyone_or_some_users(warehouse, rules):
    two_users(warehouse, rules)  # each user: a click on Nov 1, a cart add on Nov 2, a purchase and a search after
    cutoff = datetime(2026, 11, 3, tzinfo=UTC)
    assert warehouse.delete_events_before(cutoff, []) == 0
    assert warehouse.delete_events_before(cutoff, ["a"]) == 6  # 2 raw rows, 1 interaction, 1 cart row, 2 outcomes
    assert count(warehouse, "raw_user_actions") == 6
    assert len(warehouse.user_rows("b")["raw_user_actions"]) == 4
    assert warehouse.delete_events_before(cutoff) == 6  # b's
    assert warehouse.delete_events_before(cutoff) == 0
    assert {t.name: count(warehouse, t.name) for t in EVENT_TABLES} == {
        "raw_user_actions": 4,
        "search_events": 2,
        "product_interaction_events": 0,
        "cart_events": 0,
        "order_events": 2,
        "search_impressions": 2,
        "search_outcome_events": 2,
    }
    assert count(warehouse, "next_basket") == 2  # job outputs are not events


def searched_then_bought(user: str, search_id: str, at: datetime) -> list[Interaction]:
    """A search showing three milks, then a click and a purchase of the second, tagged with its id."""
    context = {"search_query": "milk", "search_id": search_id, "results_shown": ["oat-milk", "whole-milk", "skim-milk"]}
    tagged = {"user_id": user, "product_id": "whole-milk", "context": {"search_id": search_id, "position": 1}}
    return [
        Interaction(event_id=f"{search_id}-q", event_type="search", user_id=user, timestamp=at, context=context),
        Interaction(
            event_id=f"{search_id}-c", event_type="click_product", timestamp=at + timedelta(minutes=1), **tagged
        ),
        Interaction(event_id=f"{search_id}-p", event_type="purchase", timestamp=at + timedelta(hours=1), **tagged),
    ]


def test_impressions_and_their_outcomes_join_per_search_and_product(warehouse, rules):
    """The attribution tables, and the daily job's search_outcomes table (its SQL written once)."""
    catalog, loaded = Catalog(SMALL_CATALOG), datetime(2026, 11, 6, tzinfo=UTC)
    first, second = datetime(2026, 11, 2, 9, tzinfo=UTC), datetime(2026, 11, 4, 9, tzinfo=UTC)
    events = searched_then_bought("a", "S1", first) + searched_then_bought("b", "S2", second)
    assert warehouse.insert(warehouse_rows(events, catalog, rules, loaded)) == 22  # 12 as before, 6 shown, 4 outcomes
    again = events[0].model_copy(update={"event_id": "S1-again"})  # the same search tracked under another id
    stranger = Interaction(
        event_id="x-c", event_type="click_product", user_id="b", product_id="oat-milk", timestamp=first,
        context={"search_id": "S1"},
    )  # fmt: skip
    assert warehouse.insert(warehouse_rows([again, stranger], catalog, rules, loaded)) == 5  # no impression
    assert count(warehouse, "search_impressions") == 6 and count(warehouse, "search_outcome_events") == 5

    JobRunner(warehouse, clock=lambda: loaded).run("daily", only=["search_outcomes"])
    found = {(r["search_id"], r["position"]): r for r in warehouse.query("SELECT * FROM search_outcomes")}
    flags = {key: (r["product_id"], r["clicked"], r["added_to_cart"], r["purchased"]) for key, r in found.items()}
    assert flags == {
        ("S1", 0): ("oat-milk", False, False, False),  # b's click tagged with a's search is not a's
        ("S1", 1): ("whole-milk", True, False, True),
        ("S1", 2): ("skim-milk", False, False, False),
        ("S2", 0): ("oat-milk", False, False, False),
        ("S2", 1): ("whole-milk", True, False, True),
        ("S2", 2): ("skim-milk", False, False, False),
    }
    row = found[("S1", 1)]
    assert (row["user_id"], row["search_query"], as_utc(row["searched_at"])) == ("a", "milk", first)
    assert (row["clicks"], row["cart_adds"], row["purchases"]) == (1, 0, 1)

    window = datetime(2026, 11, 4, 9, 30, tzinfo=UTC)  # the window ends at midnight: S2 is not in it yet
    JobRunner(warehouse, clock=lambda: window).run("daily", only=["search_outcomes"])
    assert {r["search_id"] for r in warehouse.query("SELECT search_id FROM search_outcomes")} == {"S1"}

    deleted = warehouse.delete_users(["a"])
    assert (deleted["search_impressions"], deleted["search_outcome_events"], deleted["search_outcomes"]) == (3, 2, 3)


def test_duckdb_held_by_another_process_is_unavailable_until_released(tmp_path, rules):
    path = tmp_path / "held.duckdb"
    hold = f"import duckdb, sys; c = duckdb.connect({str(path)!r}); print('held', flush=True); sys.stdin.read()"
    holder = subprocess.Popen([sys.executable, "-c", hold], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        warehouse = DuckDbWarehouse(path)
        with pytest.raises(WarehouseUnavailable, match="lock"):
            warehouse.insert(rows(rules, 2))
    finally:
        holder.communicate("", timeout=30)  # EOF: the holder exits and lets go
    assert warehouse.insert(rows(rules, 2)) == 6
    warehouse.close()


def test_duckdb_closed_is_closed_for_good(tmp_path, rules):
    warehouse = DuckDbWarehouse(tmp_path / "w.duckdb")
    assert warehouse.insert(rows(rules, 2)) == 6
    warehouse.close()
    with pytest.raises(WarehouseUnavailable, match="closed"):  # a late delivery does not reopen it
        warehouse.insert(rows(rules, 3))
    reopened = DuckDbWarehouse(tmp_path / "w.duckdb")  # the file is free for the next instance
    assert count(reopened, "raw_user_actions") == 2
    reopened.close()
