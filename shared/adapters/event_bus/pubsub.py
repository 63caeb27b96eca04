"""The bus on Google Cloud Pub/Sub: one message per event batch on the user-events topic.

In production Terraform creates the topics and Eventarc triggers; `connect` is for the cloud
topology on one machine (the emulator), where it creates push subscriptions to the locally
served event functions with the same retry and dead-letter policy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

from google.api_core import exceptions as google_exceptions
from google.api_core.retry import Retry
from google.cloud import pubsub_v1

from shared.config import Settings
from shared.domain.pipeline import DEAD_LETTER_TOPIC, TOPIC, EventBatch
from shared.ports.event_bus import BusUnavailable, EventBus, EventHandler


class PubSubEventBus(EventBus):
    def __init__(
        self,
        project: str,
        publish_timeout_s: float = 10.0,
        max_attempts: int = 5,
        min_backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
    ) -> None:
        self.project = project
        self.publish_timeout_s = publish_timeout_s
        self.max_attempts = max_attempts
        self.min_backoff_s = min_backoff_s
        self.max_backoff_s = max_backoff_s
        self.publisher = pubsub_v1.PublisherClient()
        self.topic = self.publisher.topic_path(project, TOPIC)
        self.dead_letter_topic = self.publisher.topic_path(project, DEAD_LETTER_TOPIC)

    @classmethod
    def from_settings(cls, settings: Settings) -> PubSubEventBus:
        return cls(
            settings.pubsub_project,
            max_attempts=settings.delivery_max_attempts,
            min_backoff_s=settings.delivery_min_backoff_s,
            max_backoff_s=settings.delivery_max_backoff_s,
        )

    def publish(self, batch: EventBatch) -> str:
        data, attributes = batch.encode()
        return self._publish(self.topic, data, attributes)

    def _publish(self, topic: str, data: bytes, attributes: Mapping[str, str]) -> str:
        try:
            # Bounded retries: a future left retrying after we gave up would publish a second copy.
            retry = Retry(deadline=self.publish_timeout_s)
            future = self.publisher.publish(topic, data, retry=retry, **attributes)
            return str(future.result(timeout=self.publish_timeout_s + 1))
        except Exception as exc:  # timeouts, unavailable, a closed channel: the caller spools and retries
            raise BusUnavailable(f"Pub/Sub publish to {topic} failed: {exc!r}") from exc

    def dead_letter(self, subscription: str, data: bytes, attributes: Mapping[str, str], reason: str) -> None:
        extra = {"dead_letter_reason": reason[:1000], "dead_letter_subscription": subscription}
        self._publish(self.dead_letter_topic, data, {**attributes, **extra})

    def connect(self, handlers: Mapping[str, EventHandler], push_base_url: str | None = None) -> None:
        if push_base_url is None:
            raise ValueError("Pub/Sub delivers by push: give the base URL the event functions are served at")
        self.ensure_topics()
        subscriber = pubsub_v1.SubscriberClient()
        try:
            for name in handlers:
                self._ensure_push_subscription(subscriber, name, f"{push_base_url}/{name}/{self.topic}")
        finally:
            subscriber.close()

    def ensure_topics(self) -> None:
        for topic in (self.topic, self.dead_letter_topic):
            with contextlib.suppress(google_exceptions.AlreadyExists):
                self.publisher.create_topic(name=topic)

    def _ensure_push_subscription(self, subscriber: pubsub_v1.SubscriberClient, name: str, endpoint: str) -> None:
        path = subscriber.subscription_path(self.project, name)
        push = {"push_endpoint": endpoint}
        request = {
            "name": path,
            "topic": self.topic,
            "push_config": push,
            "ack_deadline_seconds": 60,
            "retry_policy": {
                "minimum_backoff": {"seconds": int(self.min_backoff_s)},
                "maximum_backoff": {"seconds": max(int(self.max_backoff_s), 1)},
            },
            # Pub/Sub accepts 5 to 100 delivery attempts before dead-lettering.
            "dead_letter_policy": {
                "dead_letter_topic": self.dead_letter_topic,
                "max_delivery_attempts": min(max(self.max_attempts, 5), 100),
            },
        }
        try:
            subscriber.create_subscription(request=request)
        except google_exceptions.AlreadyExists:  # e.g. the local server restarted on another port
            subscriber.modify_push_config(request={"subscription": path, "push_config": push})

    def close(self) -> None:
        self.publisher.stop()
