"""A catalog import source: the rows of a BigQuery table, or of a query's result, for parse_products.

Columns are the catalog file's (id, name, category, department, brand, attributes, price, size,
unit, in_stock); others are ignored. attributes may be an ARRAY<STRING> or an "a|b" string, and an
INT64 id is read as its digits. A NULL means "not given", as an empty cell of a CSV file does.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from google.cloud import bigquery

from shared.adapters.warehouse.bigquery import TRANSIENT, BigQueryWarehouse
from shared.config import Settings
from shared.ports.catalog_store import CatalogUnavailable


def bigquery_products(
    client_or_settings: bigquery.Client | Settings, table: str | None = None, query: str | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(row number from 1, row) for each row of `table` or of `query`'s result: give one of them.

    Args:
        client_or_settings: a BigQuery client, or settings to build one as the warehouse does
            (warehouse_project, and bigquery_endpoint for the emulator); with settings, a bare table
            name and the query's unqualified names are in warehouse_dataset.
        table: "project.dataset.table" or "dataset.table" (or a bare name, with settings), read as
            stored; a query with ORDER BY numbers its rows the same at every import.
        query: GoogleSQL whose columns are the catalog's.

    Raises:
        CatalogUnavailable: BigQuery failed (the service or the network); try again.
        google.api_core.exceptions.GoogleAPICallError: its other errors as they are (no such table,
            bad SQL, no permission).
    """
    if (table is None) == (query is None):
        raise ValueError("give a table or a query, not both or neither")
    client, dataset = _client(client_or_settings)
    try:
        if table is not None:
            name = table if dataset is None or "." in table else f"{dataset}.{table}"
            rows: Iterator[Any] = iter(client.list_rows(name))
        else:
            config = bigquery.QueryJobConfig(default_dataset=dataset) if dataset else None
            rows = iter(client.query(str(query), job_config=config).result())
        for number, row in enumerate(rows, start=1):
            yield number, _product_row(dict(row.items()))
    except TRANSIENT as exc:
        raise CatalogUnavailable(f"BigQuery: {exc}") from exc


def _client(client_or_settings: bigquery.Client | Settings) -> tuple[bigquery.Client, str | None]:
    """The client, and the dataset of unqualified names (None for a client given as it is)."""
    if isinstance(client_or_settings, Settings):
        warehouse = BigQueryWarehouse.from_settings(client_or_settings)  # builds no more than its client
        return warehouse.client, warehouse.dataset
    return client_or_settings, None


def _product_row(row: dict[str, Any]) -> dict[str, Any]:
    found = {column: value for column, value in row.items() if value is not None}
    if isinstance(found.get("id"), int):
        found["id"] = str(found["id"])
    return found
