"""Port: the bus that fans tracked events out to the event functions (Pub/Sub in production)."""

from __future__ import annotations

import base64
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from cloudevents.http import CloudEvent

from shared.config import Settings
from shared.domain.pipeline import EventBatch

# An event function: takes the CloudEvent Pub/Sub (through Eventarc) would deliver; raising means "retry".
EventHandler = Callable[[CloudEvent], object]


class BusUnavailable(RuntimeError):
    """The bus did not take the message; the publisher keeps it and tries again later."""


class EventBus(ABC):
    """Publishes event batches to the topic; subscriptions deliver them to the event functions."""

    @classmethod
    @abstractmethod
    def from_settings(cls, settings: Settings) -> EventBus:
        """Build the bus from configuration."""

    @abstractmethod
    def publish(self, batch: EventBatch) -> str:
        """Publish one batch as one message; returns its message id.

        Raises:
            BusUnavailable: the message was not (or not surely) taken; publishing it again is safe.
        """

    @abstractmethod
    def dead_letter(self, subscription: str, data: bytes, attributes: Mapping[str, str], reason: str) -> None:
        """Keep a message no retry can fix, with why, where an operator can inspect and replay it."""

    @abstractmethod
    def connect(self, handlers: Mapping[str, EventHandler], push_base_url: str | None = None) -> None:
        """Deliver the topic's messages to `handlers` (subscription name -> event function).

        The embedded bus delivers in-process; Pub/Sub gets push subscriptions to
        `push_base_url`/<subscription>, as Eventarc would in production.
        """

    @abstractmethod
    def close(self) -> None:
        """Stop delivering and release resources."""

    def health(self) -> dict:
        return {"status": "healthy", "kind": type(self).__name__}


def pubsub_cloud_event(
    project: str,
    topic: str,
    subscription: str,
    message_id: str,
    data: bytes,
    attributes: Mapping[str, str],
    publish_time: datetime,
) -> CloudEvent:
    """The CloudEvent Eventarc delivers for a Pub/Sub message (type messagePublished)."""
    when = publish_time.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return CloudEvent(
        {
            "id": message_id,
            "type": "google.cloud.pubsub.topic.v1.messagePublished",
            "source": f"//pubsub.googleapis.com/projects/{project}/topics/{topic}",
            "specversion": "1.0",
            "time": when,
        },
        {
            "message": {
                "data": base64.b64encode(data).decode(),
                "attributes": dict(attributes),
                "messageId": message_id,
                "publishTime": when,
            },
            "subscription": f"projects/{project}/subscriptions/{subscription}",
        },
    )
