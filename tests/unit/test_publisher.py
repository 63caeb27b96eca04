"""The publisher batches off the request path and loses nothing while the bus is down."""

from __future__ import annotations

import time
from collections.abc import Mapping

from shared.adapters.event_spool.sqlite import SqliteEventSpool
from shared.domain.events import Interaction
from shared.domain.pipeline import EventBatch
from shared.ports.event_bus import BusUnavailable, EventBus, EventHandler
from shared.services.publisher import EventPublisher


class FakeBus(EventBus):
    """Records published batches; `down` makes it refuse them."""

    def __init__(self) -> None:
        self.batches: list[EventBatch] = []
        self.down = False

    @classmethod
    def from_settings(cls, settings) -> FakeBus:
        return cls()

    def publish(self, batch: EventBatch) -> str:
        if self.down:
            raise BusUnavailable("down")
        self.batches.append(batch)
        return str(len(self.batches))

    def dead_letter(self, subscription: str, data: bytes, attributes: Mapping[str, str], reason: str) -> None:
        raise AssertionError("not used")

    def connect(self, handlers: Mapping[str, EventHandler], push_base_url: str | None = None) -> None:
        raise AssertionError("not used")

    def close(self) -> None:
        pass

    def published_ids(self) -> list[str]:
        return [e.event_id for b in self.batches for e in b.events]


def clicks(n: int, start: int = 0) -> list[Interaction]:
    return [
        Interaction(event_id=f"e{i:05d}", event_type="click_product", user_id=f"u{i % 3}", product_id="p")
        for i in range(start, start + n)
    ]


def publisher(tmp_path, bus, **kw) -> EventPublisher:
    return EventPublisher(bus, SqliteEventSpool(tmp_path / "spool.sqlite3"), **kw)


def test_batches_by_count_in_order(tmp_path):
    bus = FakeBus()
    pub = publisher(tmp_path, bus, batch_events=100, max_latency_s=60)
    events = clicks(250)
    pub.publish(events)
    pub.flush()
    assert [len(b.events) for b in bus.batches] == [100, 100, 50]
    assert bus.published_ids() == [e.event_id for e in events]
    assert pub.pending() == 0


def test_a_partial_batch_goes_out_after_the_latency_without_a_flush(tmp_path):
    bus = FakeBus()
    pub = publisher(tmp_path, bus, batch_events=100, max_latency_s=0.05)
    pub.publish(clicks(3))
    deadline = time.monotonic() + 10
    while not bus.batches and time.monotonic() < deadline:
        time.sleep(0.01)
    assert bus.published_ids() == ["e00000", "e00001", "e00002"]
    pub.close()


def test_an_outage_spools_and_the_spool_goes_out_first_in_order(tmp_path):
    bus = FakeBus()
    pub = publisher(tmp_path, bus, batch_events=10, max_latency_s=60, retry_interval_s=60)
    pub.publish(clicks(10))
    pub.flush()
    bus.down = True
    pub.publish(clicks(25, start=10))
    pub.flush()
    assert bus.published_ids() == [f"e{i:05d}" for i in range(10)]
    assert pub.pending() == 25 and pub.health()["status"] == "degraded"
    bus.down = False
    pub.publish(clicks(5, start=35))  # newer events wait behind the spool
    pub.flush()
    assert bus.published_ids() == [f"e{i:05d}" for i in range(40)]
    assert pub.pending() == 0 and pub.health()["status"] == "healthy"


def test_a_republished_batch_keeps_its_id(tmp_path):
    bus = FakeBus()
    pub = publisher(tmp_path, bus, batch_events=10, max_latency_s=60)
    bus.down = True
    pub.publish(clicks(10))
    pub.flush()
    bus.down = False
    pub.flush()
    assert bus.batches[0].batch_id == EventBatch(tuple(clicks(10))).batch_id


def test_a_new_instance_publishes_what_a_dead_one_spooled(tmp_path):
    bus = FakeBus()
    bus.down = True
    dead = EventPublisher(bus, SqliteEventSpool(tmp_path / "spool.sqlite3", owner=2**22 + 12345), batch_events=5)
    dead.publish(clicks(12))
    dead.flush()
    assert bus.batches == []
    bus.down = False
    heir = publisher(tmp_path, bus, batch_events=5)
    heir.flush()
    assert bus.published_ids() == [f"e{i:05d}" for i in range(12)]


def test_close_publishes_what_is_queued(tmp_path):
    bus = FakeBus()
    pub = publisher(tmp_path, bus, batch_events=100, max_latency_s=60)
    pub.publish(clicks(7))
    pub.close()
    assert len(bus.published_ids()) == 7
