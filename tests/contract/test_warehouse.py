"""One suite for every Warehouse adapter; BigQuery runs on bqemulator."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import UTC, date, datetime

import pytest

from shared.adapters.warehouse.duckdb import DuckDbWarehouse
from shared.config import Settings
from shared.domain.catalog import Catalog
from shared.domain.events import Interaction
from shared.domain.pipeline import EVENT_TABLES, warehouse_rows
from shared.ports.warehouse import Warehouse, WarehouseUnavailable
from tests.conftest import SMALL_CATALOG


@pytest.fixture(params=["duckdb", "bigquery"])
def warehouse(request, tmp_path):
    if request.param == "duckdb":
        store: Warehouse = DuckDbWarehouse(tmp_path / "warehouse.duckdb")
    else:
        emulator = request.getfixturevalue("bigquery_emulator")
        from shared.adapters.warehouse.bigquery import BigQueryWarehouse

        dataset = f"test_{uuid.uuid4().hex[:10]}"
        store = BigQueryWarehouse.from_settings(
            Settings(bigquery_endpoint=emulator.url, warehouse_project=emulator.project, warehouse_dataset=dataset)
        )
    yield store
    store.close()


def rows(rules, n: int, start: int = 0, user: str = "u1"):
    events = [
        Interaction(
            event_id=f"e{i:05d}",
            event_type=("click_product", "add_to_cart", "purchase", "search")[i % 4],
            user_id=user,
            product_id="oat-milk",
            timestamp=datetime(2026, 11, 1 + i % 20, 8, tzinfo=UTC),
            context={"search_query": "milk", "results_shown": ["oat-milk"], "position": 1},
        )
        for i in range(start, start + n)
    ]
    return warehouse_rows(events, Catalog(SMALL_CATALOG), rules, datetime(2026, 11, 22, tzinfo=UTC))


def count(warehouse: Warehouse, table: str) -> int:
    return int(warehouse.query(f"SELECT COUNT(*) AS n FROM {table}")[0]["n"])


def test_inserts_are_idempotent_on_event_id(warehouse, rules):
    assert warehouse.insert(rows(rules, 8)) == 16  # 8 raw rows + 8 rows in the kind tables
    assert warehouse.insert(rows(rules, 8)) == 0
    assert warehouse.insert(rows(rules, 8, start=4)) == 8  # half new
    assert count(warehouse, "raw_user_actions") == 12
    assert {t.name: count(warehouse, t.name) for t in EVENT_TABLES[1:]} == {
        "search_events": 3,
        "product_interaction_events": 3,
        "cart_events": 3,
        "order_events": 3,
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
        "next_basket": 1,
        "segments": 1,
    }
    assert warehouse.user_rows("a") == {}
    assert {t: len(r) for t, r in warehouse.user_rows("b").items()} == {
        t: 4 if t == "raw_user_actions" else 1 for t in EVERY_TABLE
    }
    assert count(warehouse, "pairs") == 1
    assert warehouse.delete_users(["a"]) == {}  # idempotent


def test_delete_events_before_a_cutoff_for_everyone_or_some_users(warehouse, rules):
    two_users(warehouse, rules)  # each user: a click on Nov 1, a cart add on Nov 2, a purchase and a search after
    cutoff = datetime(2026, 11, 3, tzinfo=UTC)
    assert warehouse.delete_events_before(cutoff, []) == 0
    assert warehouse.delete_events_before(cutoff, ["a"]) == 4  # 2 raw rows, 1 interaction, 1 cart row
    assert count(warehouse, "raw_user_actions") == 6
    assert len(warehouse.user_rows("b")["raw_user_actions"]) == 4
    assert warehouse.delete_events_before(cutoff) == 4  # b's
    assert warehouse.delete_events_before(cutoff) == 0
    assert {t.name: count(warehouse, t.name) for t in EVENT_TABLES} == {
        "raw_user_actions": 4,
        "search_events": 2,
        "product_interaction_events": 0,
        "cart_events": 0,
        "order_events": 2,
    }
    assert count(warehouse, "next_basket") == 2  # job outputs are not events


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
    assert warehouse.insert(rows(rules, 2)) == 4
    warehouse.close()


def test_duckdb_closed_is_closed_for_good(tmp_path, rules):
    warehouse = DuckDbWarehouse(tmp_path / "w.duckdb")
    assert warehouse.insert(rows(rules, 2)) == 4
    warehouse.close()
    with pytest.raises(WarehouseUnavailable, match="closed"):  # a late delivery does not reopen it
        warehouse.insert(rows(rules, 3))
    reopened = DuckDbWarehouse(tmp_path / "w.duckdb")  # the file is free for the next instance
    assert count(reopened, "raw_user_actions") == 2
    reopened.close()
