"""Warehouse adapters (DuckDB, BigQuery) and what they share without importing each other's backend."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any


def jsonable(value: Any) -> Any:
    """A warehouse value as JSON: times as ISO strings (UTC for timestamps), decimals as floats."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value
