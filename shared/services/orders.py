"""Use case: confirm an order: purchases apply to the live profile at once, then go to the bus."""

from __future__ import annotations

from shared.domain.orders import Order
from shared.services.tracking import TrackingService


class OrderService:
    def __init__(self, tracking: TrackingService) -> None:
        self.tracking = tracking

    def confirm(self, order: Order) -> dict:
        """Apply the order's purchase signals (first_time / repeat / bulk_purchase per line) and
        publish them; nothing downstream is waited on. A re-sent order changes nothing."""
        events = order.purchase_events()
        result = self.tracking.track(events)
        duplicate = set(result.duplicates)
        return {
            "order_id": order.order_id,
            "status": _status(events, duplicate, result.refused),
            "items": [
                {
                    "product_id": event.product_id,
                    "quantity": event.quantity,
                    "purchase_kind": None if event.event_id in duplicate else result.signals.get(event.event_id),
                    **({"refused": result.refused[event.event_id]} if event.event_id in result.refused else {}),
                }
                for event in events
            ],
        }


def _status(events: list, duplicate: set[str], refused: dict[str, str]) -> str:
    if len(refused) == len(events):
        return "not_recorded"  # the shopper's privacy settings (or deletion) exclude purchases
    return "already_confirmed" if len(duplicate) == len(events) - len(refused) else "confirmed"
