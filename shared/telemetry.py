"""Metrics with OpenTelemetry: exported to Cloud Monitoring (LEAFLOAF_METRICS_EXPORT=gcp, as
workload.googleapis.com/leafloaf.*), and always readable locally as JSON (GET /metrics on the local
server) with percentiles estimated from the histograms' buckets.

What is measured, and where:
- leafloaf.request.duration (ms; function, status): every HTTP function (functions/http.py);
- leafloaf.search.requests (personalized, reason): search answers; the hit rate is personalized/all;
- leafloaf.signal.lag (s; stage profile|warehouse): event time to applied to the profile, and to
  loaded into the warehouse;
- leafloaf.events (outcome published|spooled|failed): the publisher's counters;
- leafloaf.profile_cache.lookups (result hit|miss), .profiles, .bytes_per_profile: the instance cache.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    HistogramDataPoint,
    InMemoryMetricReader,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View

from shared.domain.events import Interaction

LATENCY_BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 350, 500, 1000, 2000, 5000, 10000)
LAG_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600)
Counters = Callable[[], dict[str, int]]  # attribute value -> running total


class Telemetry:
    def __init__(self, export: str = "none", export_interval_s: float = 60.0) -> None:
        self.local = InMemoryMetricReader()
        readers: list[MetricReader] = [self.local]
        if export == "gcp":  # imported only when chosen (Cloud Monitoring's client is heavy)
            from opentelemetry.exporter.cloud_monitoring import CloudMonitoringMetricsExporter

            exporter = CloudMonitoringMetricsExporter(add_unique_identifier=True)  # one series per instance
            readers.append(PeriodicExportingMetricReader(exporter, export_interval_millis=export_interval_s * 1000))
        elif export != "none":
            raise ValueError(f"unknown metrics export {export!r}: choose none or gcp")
        views = [
            View(instrument_name="leafloaf.request.duration",
                 aggregation=ExplicitBucketHistogramAggregation(LATENCY_BUCKETS_MS)),
            View(instrument_name="leafloaf.signal.lag", aggregation=ExplicitBucketHistogramAggregation(LAG_BUCKETS_S)),
        ]  # fmt: skip
        self.provider = MeterProvider(metric_readers=readers, views=views)
        self.meter = self.provider.get_meter("leafloaf")
        self.request_duration = self.meter.create_histogram("leafloaf.request.duration", unit="ms")
        self.search_requests = self.meter.create_counter("leafloaf.search.requests")
        self.signal_lag = self.meter.create_histogram("leafloaf.signal.lag", unit="s")

    def observe_counters(self, name: str, attribute: str, read: Counters) -> None:
        """A monotonic counter per attribute value, read from `read` when metrics are collected."""

        def observe(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(total, {attribute: key}) for key, total in read().items()]

        self.meter.create_observable_counter(name, callbacks=[observe])

    def observe_gauge(self, name: str, read: Callable[[], float]) -> None:
        self.meter.create_observable_gauge(name, callbacks=[lambda options: [Observation(read())]])

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """Every metric's points as JSON; histograms with count, mean and estimated p50/p95/p99."""
        data = self.local.get_metrics_data()
        out: dict[str, list[dict[str, Any]]] = {}
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    out[metric.name] = [_point(p) for p in metric.data.data_points]
        return out

    def shutdown(self) -> None:
        self.provider.shutdown()


def record_lag(telemetry: Telemetry, events: Iterable[Interaction], stage: str) -> None:
    """How long after it happened each event reached `stage` (profile, warehouse)."""
    now = time.time()
    for event in events:
        telemetry.signal_lag.record(max(0.0, now - event.epoch_seconds), {"stage": stage})


def _point(point: Any) -> dict[str, Any]:
    attributes = dict(point.attributes or {})
    if not isinstance(point, HistogramDataPoint):
        return {"attributes": attributes, "value": point.value}
    mean = point.sum / point.count if point.count else None
    quantiles = {f"p{q}": quantile(point, q / 100) for q in (50, 95, 99)}
    return {"attributes": attributes, "count": point.count, "mean": mean, "max": point.max} | quantiles


def quantile(point: HistogramDataPoint, q: float) -> float | None:
    """The q-quantile, interpolated linearly inside its bucket (the last bucket is capped at max)."""
    if not point.count:
        return None
    rank = q * point.count
    seen = 0
    bounds = [point.min, *point.explicit_bounds, point.max]
    for i, count in enumerate(point.bucket_counts):
        if count and seen + count >= rank:
            low, high = max(bounds[i], point.min), min(bounds[i + 1], point.max)
            return low + (high - low) * (rank - seen) / count
        seen += count
    return point.max
