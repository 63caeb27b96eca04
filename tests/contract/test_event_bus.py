"""One suite for every EventBus adapter; Pub/Sub runs on Google's emulator, pushing to a local server."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import defaultdict

import flask
import pytest
from cloudevents.http import CloudEvent, from_http
from functions_framework import event_conversion
from werkzeug.serving import make_server

from shared.adapters.event_bus.sqlite import SqliteEventBus
from shared.domain.events import Interaction
from shared.domain.pipeline import EventBatch, decode_pubsub_envelope
from shared.ports.event_bus import BusUnavailable, EventBus

SUBSCRIPTIONS = ("load_events_bigquery", "archive_events")


def batch(n: int, start: int = 0) -> EventBatch:
    return EventBatch(
        tuple(
            Interaction(event_id=f"e{i:05d}", event_type="click_product", user_id="u", product_id="p")
            for i in range(start, start + n)
        )
    )


class Recorder:
    """Event functions that record what they get; `failures[name]` makes the next calls raise."""

    def __init__(self) -> None:
        self.received: dict[str, list[CloudEvent]] = defaultdict(list)
        self.failures: dict[str, int] = defaultdict(int)
        self.calls: dict[str, int] = defaultdict(int)
        self.lock = threading.Lock()

    def handler(self, name: str):
        def handle(event: CloudEvent) -> None:
            with self.lock:
                self.calls[name] += 1
                if self.failures[name] > 0:
                    self.failures[name] -= 1
                    raise RuntimeError("backend down")
                self.received[name].append(event)

        return handle

    def batches(self, name: str) -> list[EventBatch]:
        return [decode_pubsub_envelope(e.get_data())[1] for e in self.received[name]]


def wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture()
def push_server():
    """A local HTTP server that turns Pub/Sub pushes into CloudEvents, as functions-framework does."""
    app = flask.Flask("push")
    handlers: dict = {}

    @app.post("/<name>/<path:rest>")
    def push(name: str, rest: str):
        try:
            event = from_http(flask.request.headers, flask.request.get_data())
        except Exception:
            event = event_conversion.background_event_to_cloud_event(flask.request)
        try:
            handlers[name](event)
        except Exception:
            return "retry", 500
        return "OK", 200

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", handlers
    server.shutdown()


@pytest.fixture(params=["sqlite", "pubsub"])
def bus_and_recorder(request, tmp_path):
    recorder = Recorder()
    handlers = {name: recorder.handler(name) for name in SUBSCRIPTIONS}
    if request.param == "sqlite":
        bus: EventBus = SqliteEventBus(tmp_path / "bus.sqlite3", min_backoff_s=0.05, max_backoff_s=0.2)
        bus.connect(handlers)
    else:
        request.getfixturevalue("pubsub_emulator")
        from shared.adapters.event_bus.pubsub import PubSubEventBus

        url, routes = request.getfixturevalue("push_server")
        routes.update(handlers)
        project = f"p{time.monotonic_ns()}"  # a fresh project: no subscriptions of other tests
        bus = PubSubEventBus(project, min_backoff_s=0, max_backoff_s=1)
        bus.connect(handlers, push_base_url=url)
    yield bus, recorder
    bus.close()


def test_every_subscription_gets_each_batch_as_a_pubsub_cloud_event(bus_and_recorder):
    bus, recorder = bus_and_recorder
    sent = [batch(3), batch(2, start=3)]
    ids = [bus.publish(b) for b in sent]
    wait_for(lambda: all(len(recorder.received[s]) == 2 for s in SUBSCRIPTIONS))
    for name in SUBSCRIPTIONS:
        assert sorted(b.batch_id for b in recorder.batches(name)) == sorted(b.batch_id for b in sent)
        event = recorder.received[name][0]
        assert event["type"] == "google.cloud.pubsub.topic.v1.messagePublished"
        assert event["source"].endswith("/topics/user-events")
        assert event["id"] in ids
        assert event.get_data()["message"]["messageId"] == event["id"]
        assert event.get_data()["message"]["attributes"]["schema"] == "leafloaf.events.v1"


def test_a_failing_function_gets_the_message_again(bus_and_recorder):
    bus, recorder = bus_and_recorder
    recorder.failures["load_events_bigquery"] = 2
    bus.publish(batch(1))
    wait_for(lambda: len(recorder.received["load_events_bigquery"]) == 1)
    assert recorder.calls["load_events_bigquery"] == 3
    wait_for(lambda: len(recorder.received["archive_events"]) == 1)


def test_sqlite_dead_letters_after_max_attempts_and_keeps_the_message(tmp_path, caplog):
    bus = SqliteEventBus(tmp_path / "bus.sqlite3", max_attempts=3, min_backoff_s=0)
    recorder = Recorder()
    recorder.failures["archive_events"] = 10
    sent = batch(1)
    data, _ = sent.encode()
    bus.publish(sent)
    for _ in range(5):
        bus.deliver("archive_events", recorder.handler("archive_events"))
    assert recorder.calls["archive_events"] == 3
    [dead] = bus.dead_letters()
    assert dead["subscription"] == "archive_events" and dead["data"] == data and dead["attempts"] == 3
    assert "backend down" in dead["reason"] and "dead-lettered" in caplog.text
    assert bus.backlog() == {"load_events_bigquery": 1, "archive_events": 0, "ingest_graph_memory": 1}


def test_sqlite_messages_survive_a_restart_and_seek_redelivers(tmp_path):
    path = tmp_path / "bus.sqlite3"
    sent = batch(2)
    SqliteEventBus(path).publish(sent)  # nobody delivered: the process "stopped"
    bus = SqliteEventBus(path)
    recorder = Recorder()
    handle = recorder.handler("archive_events")
    assert bus.deliver("archive_events", handle) == 1
    assert bus.deliver("archive_events", handle) == 0  # acknowledged
    assert bus.seek(0) == 3  # every subscription's delivery
    assert bus.deliver("archive_events", handle) == 1
    assert [b.batch_id for b in recorder.batches("archive_events")] == [sent.batch_id] * 2


def test_sqlite_stopping_mid_delivery_hands_the_rest_back_at_once(tmp_path):
    path = tmp_path / "bus.sqlite3"
    bus = SqliteEventBus(path)
    for i in range(3):
        bus.publish(batch(1, start=i))
    handled = []

    def stop_after_the_first(event: CloudEvent) -> None:
        handled.append(event)
        bus._stopped.set()  # what close() does while this delivery runs

    assert bus.deliver("archive_events", stop_after_the_first) == 1
    restarted, recorder = SqliteEventBus(path), Recorder()
    # Not leased until the 60 s ack deadline: the next instance delivers the other two now.
    assert restarted.deliver("archive_events", recorder.handler("archive_events")) == 2
    assert restarted.backlog()["archive_events"] == 0


def test_sqlite_publishing_to_a_bus_file_another_process_holds_fails_fast(tmp_path):
    path = tmp_path / "bus.sqlite3"
    bus = SqliteEventBus(path, publish_timeout_s=0.2)
    holder = sqlite3.connect(path, isolation_level=None)  # another process's writer
    holder.execute("BEGIN IMMEDIATE")
    started = time.monotonic()
    with pytest.raises(BusUnavailable):  # the publisher spools the batch
        bus.publish(batch(1))
    assert time.monotonic() - started < 5  # not the deliveries' 10 s busy timeout
    holder.rollback()
    bus.publish(batch(1))
    assert bus.backlog()["archive_events"] == 1


def test_sqlite_dead_letter_records_poison(tmp_path):
    bus = SqliteEventBus(tmp_path / "bus.sqlite3")
    bus.dead_letter("archive_events", b"junk", {"k": "v"}, "not our format")
    assert bus.dead_letters() == [
        {
            "subscription": "archive_events",
            "message_id": None,
            "data": b"junk",
            "attributes": '{"k": "v"}',
            "reason": "not our format",
            "attempts": 0,
        }
    ]
