"""Pub/Sub-triggered: load event batches into the warehouse, archive them, feed graph memory.

Eventarc delivers each message of the user-events topic as a CloudEvent. A raise means "retry"
(only for transient trouble: a backend down); poison messages are dead-lettered and acknowledged.
Each service drops late events of deleted shoppers itself (bootstrap gives it the privacy screen),
so a redelivery undoes no erasure.
"""

from __future__ import annotations

import functions_framework
from cloudevents.http import CloudEvent

from shared.bootstrap import container
from shared.domain.pipeline import EventBatch
from shared.services.pipeline import receive
from shared.telemetry import record_lag


@functions_framework.cloud_event
def load_events_bigquery(cloud_event: CloudEvent) -> None:
    services = container()

    def load(batch: EventBatch) -> int:
        loaded = services.loader.load(batch)
        record_lag(services.telemetry, batch.events, "warehouse")
        return loaded

    receive("load_events_bigquery", cloud_event.get_data(), services.bus, load)


@functions_framework.cloud_event
def archive_events(cloud_event: CloudEvent) -> None:
    services = container()
    receive("archive_events", cloud_event.get_data(), services.bus, services.archiver.archive_batch)


@functions_framework.cloud_event
def ingest_graph_memory(cloud_event: CloudEvent) -> None:
    services = container()
    receive("ingest_graph_memory", cloud_event.get_data(), services.bus, services.memory.ingest)
