"""One suite for every Warehouse adapter; BigQuery runs on bqemulator."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import UTC, datetime

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
