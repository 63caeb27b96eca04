"""Warehouse adapters (DuckDB, BigQuery); their rows become JSON through shared.domain.jsonable."""
