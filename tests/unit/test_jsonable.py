"""One conversion to JSON data for warehouse rows and the data export."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

from shared.domain.jsonable import jsonable
from shared.domain.privacy import PrivacySettings


@dataclass(frozen=True)
class Line:
    product_id: str
    at: datetime
    tags: tuple[str, ...]


def test_warehouse_values_and_export_documents_become_json_data():
    paris = timezone(timedelta(hours=1))
    value = {
        "loaded": datetime(2026, 11, 20, 11, tzinfo=paris),  # an aware time is given in UTC
        "day": date(2026, 11, 20),
        "price": Decimal("2.50"),
        "features": {"b", "a"},
        "lines": [Line("p1", datetime(2026, 11, 20, 10, tzinfo=UTC), ("x", "y"))],
        "settings": PrivacySettings(),
        "count": 3,
        "missing": None,
        "other": object,
    }
    converted = jsonable(value)
    assert json.loads(json.dumps(converted)) == converted  # plain JSON data throughout
    assert converted["loaded"] == "2026-11-20T10:00:00+00:00"
    assert (converted["day"], converted["price"], converted["features"]) == ("2026-11-20", 2.5, ["a", "b"])
    assert converted["lines"] == [{"product_id": "p1", "at": "2026-11-20T10:00:00+00:00", "tags": ["x", "y"]}]
    assert converted["settings"] == PrivacySettings().model_dump(mode="json")
    assert (converted["count"], converted["missing"], converted["other"]) == (3, None, str(object))
