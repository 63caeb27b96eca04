"""Pub/Sub-triggered: load event batches into the warehouse, archive them, feed graph memory.

Eventarc delivers each message of the user-events topic as a CloudEvent. A raise means "retry"
(only for transient trouble: a backend down); poison messages are dead-lettered and acknowledged.
"""

from __future__ import annotations

from collections.abc import Callable

import functions_framework
from cloudevents.http import CloudEvent

from shared.bootstrap import Container, container
from shared.domain.pipeline import EventBatch
from shared.services.pipeline import receive
from shared.telemetry import record_lag


def unless_erased(services: Container, handle: Callable[[EventBatch], object]) -> Callable[[EventBatch], object]:
    """`handle` for what is left of a batch once late events of deleted shoppers are dropped."""

    def handle_kept(batch: EventBatch) -> object:
        kept = services.privacy.without_erased(batch)
        return None if kept is None else handle(kept)

    return handle_kept


@functions_framework.cloud_event
def load_events_bigquery(cloud_event: CloudEvent) -> None:
    services = container()

    def load(batch: EventBatch) -> int:
        loaded = services.loader.load(batch)
        record_lag(services.telemetry, batch.events, "warehouse")
        return loaded

    receive("load_events_bigquery", cloud_event.get_data(), services.bus, unless_erased(services, load))


@functions_framework.cloud_event
def archive_events(cloud_event: CloudEvent) -> None:
    services = container()
    receive(
        "archive_events", cloud_event.get_data(), services.bus, unless_erased(services, services.archiver.archive_batch)
    )


@functions_framework.cloud_event
def ingest_graph_memory(cloud_event: CloudEvent) -> None:
    services = container()
    receive(
        "ingest_graph_memory", cloud_event.get_data(), services.bus, unless_erased(services, services.memory.ingest)
    )
