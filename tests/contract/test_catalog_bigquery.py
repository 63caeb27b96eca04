"""Catalog imports from BigQuery (bqemulator): a table or a query's rows through parse_products."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from google.cloud import bigquery

from shared.adapters.catalog.bigquery import bigquery_products
from shared.adapters.warehouse.bigquery import BigQueryWarehouse
from shared.config import Settings
from shared.domain.catalog import CatalogError, Product, parse_products

COLUMNS = [
    ("id", "STRING", "NULLABLE"),
    ("name", "STRING", "NULLABLE"),
    ("category", "STRING", "NULLABLE"),
    ("department", "STRING", "NULLABLE"),
    ("brand", "STRING", "NULLABLE"),
    ("attributes", "STRING", "REPEATED"),
    ("price", "FLOAT64", "NULLABLE"),
    ("size", "FLOAT64", "NULLABLE"),
    ("unit", "STRING", "NULLABLE"),
    ("in_stock", "BOOL", "NULLABLE"),
]
OAT = {"id": "oat-milk", "name": "Oatly Oat Milk", "category": "milk", "department": "dairy", "brand": "Oatly",
       "attributes": ["Vegan", "dairy-free"], "price": 4.5, "size": 0.5, "unit": "gal", "in_stock": True}  # fmt: skip
CHIPS = {"id": "chips", "name": "Lay's Chips", "category": "chips", "department": "snacks", "brand": None,
         "attributes": [], "price": None, "size": None, "unit": None, "in_stock": False}  # fmt: skip


@pytest.fixture()
def settings(bigquery_emulator) -> Settings:
    settings = Settings(
        bigquery_endpoint=bigquery_emulator.url,
        warehouse_project=bigquery_emulator.project,
        warehouse_dataset=f"catalog_{uuid.uuid4().hex[:10]}",
    )
    client(settings).create_dataset(f"{settings.warehouse_project}.{settings.warehouse_dataset}", timeout=30)
    return settings


def client(settings: Settings) -> bigquery.Client:
    return BigQueryWarehouse.from_settings(settings).client


def make_table(settings: Settings, name: str, rows: list[dict[str, Any]], columns=COLUMNS) -> str:
    table = f"{settings.warehouse_project}.{settings.warehouse_dataset}.{name}"
    schema = [bigquery.SchemaField(column, kind, mode=mode) for column, kind, mode in columns]
    bq = client(settings)
    bq.create_table(bigquery.Table(table, schema=schema), timeout=30)
    bq.load_table_from_json(rows, table, job_config=bigquery.LoadJobConfig(schema=schema)).result(timeout=30)
    return table


def test_a_table_yields_its_products(settings):
    table = make_table(settings, "products", [OAT, CHIPS])
    products = parse_products(bigquery_products(client(settings), table=table))
    assert sorted(products, key=lambda p: p.id) == [
        Product(id="chips", name="Lay's Chips", category="chips", department="snacks", in_stock=False),
        Product.model_validate(OAT),
    ]
    assert next(p for p in products if p.id == "oat-milk").attributes == ("dairy-free", "vegan")
    by_name = parse_products(bigquery_products(settings, table="products"))  # the warehouse's dataset
    assert sorted(p.id for p in by_name) == ["chips", "oat-milk"]


def test_a_bad_row_is_reported_by_its_row_number(settings):
    bad = OAT | {"id": "bad", "name": None, "price": -1.0}
    make_table(settings, "products", [OAT | {"id": "a"}, bad, CHIPS | {"id": "c"}])
    rows = bigquery_products(settings, query="SELECT * FROM products ORDER BY id")
    with pytest.raises(CatalogError) as raised:
        parse_products(rows)
    assert sorted(str(e) for e in raised.value.errors) == [
        "line 2: name: Field required",
        "line 2: price: Input should be greater than or equal to 0",
    ]


def test_a_query_with_string_attributes_and_integer_ids(settings):
    columns = [("product_id", "INT64", "NULLABLE"), ("title", "STRING", "NULLABLE"), ("tags", "STRING", "NULLABLE")]
    make_table(settings, "instacart", [{"product_id": 7, "title": "Tea", "tags": "organic|Green"}], columns)
    sql = (
        "SELECT product_id AS id, title AS name, 'tea' AS category, 'drinks' AS department, tags AS attributes "
        "FROM instacart"
    )
    assert parse_products(bigquery_products(settings, query=sql)) == [
        Product(id="7", name="Tea", category="tea", department="drinks", attributes=("green", "organic"))
    ]


def test_give_a_table_or_a_query(settings):
    with pytest.raises(ValueError, match="a table or a query"):
        list(bigquery_products(settings))
    with pytest.raises(ValueError, match="a table or a query"):
        list(bigquery_products(settings, table="t", query="SELECT 1"))


def test_import_catalog_from_bigquery_makes_a_version_and_a_bad_table_changes_nothing(settings, tmp_path):
    import os
    import subprocess
    import sys

    from shared.adapters.catalog.sqlite import SqliteCatalogStore
    from tests.conftest import ROOT

    make_table(settings, "products", [OAT, CHIPS])
    make_table(settings, "broken", [OAT | {"id": "x", "name": None}])
    env = os.environ | {
        "LEAFLOAF_BIGQUERY_ENDPOINT": str(settings.bigquery_endpoint),
        "LEAFLOAF_WAREHOUSE_PROJECT": settings.warehouse_project,
        "LEAFLOAF_WAREHOUSE_DATASET": settings.warehouse_dataset,
        "LEAFLOAF_CATALOG_STORE_PATH": str(tmp_path / "catalog.sqlite3"),
    }

    def run(*flags: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "shared.cli", "import-catalog", *flags]
        return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)

    done = run("--bigquery-table", "products")
    assert done.returncode == 0 and "imported 2 products as catalog version 1" in done.stdout, done.stderr
    refused = run("--bigquery-table", "broken")
    assert refused.returncode == 1 and "row 1: name: Field required" in refused.stderr, refused.stderr
    store = SqliteCatalogStore(tmp_path / "catalog.sqlite3")
    assert store.latest() == 1 and sorted(p.id for p in store.load().products) == ["chips", "oat-milk"]
