"""One conversion of stored values to JSON data, for the warehouse adapters' rows and the data export."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any


def jsonable(value: Any) -> Any:
    """`value` as JSON data: times as ISO strings (aware ones in UTC), decimals as floats, sets as
    sorted lists, dataclasses and pydantic models as their fields, containers throughout, and any
    other object as its text."""
    if value is None or isinstance(value, str | int | float):
        return value
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((jsonable(v) for v in value), key=str)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return str(value)
