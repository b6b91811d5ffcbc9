"""AMQP producers' messages through the local stack's RabbitmqSource adapter into the Broker: CloudEvents in both modes
convert real jobs, other messages are wrapped or dead-lettered, and a kill -9 of the adapter loses none."""

from __future__ import annotations

import os
import signal
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pymongo
import pytest
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent

from events import VIDEO_UPLOADED, to_cloud_event
from jobs.records import FINAL_STATES, Jobs, JobState
from stack.config import KNATIVE_DIR, SOURCE_DIR
from stack.manifests import load_routing
from stack.source import ProducerSide, load_producer_side
from tests.reliability_support import function_pid
from tests.support import event_tap, make_clip, stage_job, wait_for

# What eventing-rabbitmq's adapter makes of a message that is not a CloudEvent.
WRAPPED_TYPE = "dev.knative.rabbitmq.event"


PRODUCER = "/producers/test-camera-sync"


BROKER_ARRIVAL_SECONDS = 30


@pytest.fixture(scope="module")
def producers() -> ProducerSide:
    return load_producer_side(SOURCE_DIR, load_routing(KNATIVE_DIR).broker.name)


@pytest.fixture
def channel(endpoints: dict[str, str]) -> Iterator[pika.adapters.blocking_connection.BlockingChannel]:
    connection = pika.BlockingConnection(pika.URLParameters(endpoints["AMQP_URL"]))
    opened = connection.channel()
    opened.confirm_delivery()  # a publish returns once RabbitMQ holds the message
    yield opened
    connection.close()


@pytest.fixture(scope="module")
def database(endpoints: dict[str, str]) -> Any:
    return pymongo.MongoClient(endpoints["MONGO_URI"], tz_aware=True)["vid2mp3"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("source") / "clip.mp4", seconds=2)


def publish_binary(channel: Any, exchange: str, event: CloudEvent, **extra_headers: str) -> None:
    """Attributes as AMQP headers named by the bare attribute name, the data as the body (README's binary mode)."""
    http_headers, body = to_binary(event)
    headers = {name.lower().removeprefix("ce-"): value for name, value in http_headers.items()}
    channel.basic_publish(exchange, "", body, pika.BasicProperties(
        delivery_mode=pika.DeliveryMode.Persistent, headers={**headers, **extra_headers}))


def publish_structured(channel: Any, exchange: str, event: CloudEvent) -> None:
    _, body = to_structured(event)
    channel.basic_publish(exchange, "", body, pika.BasicProperties(
        delivery_mode=pika.DeliveryMode.Persistent, content_type="application/cloudevents+json"))


def probe_event(event_type: str, event_id: str) -> CloudEvent:
    return CloudEvent({"type": event_type, "source": PRODUCER, "id": event_id,
                       "datacontenttype": "application/json"}, {"probe": event_id})


def take_rejected(channel: Any, queue: str, wanted: Any) -> list[tuple[pika.BasicProperties, bytes]]:
    """The messages of `queue` for which `wanted(properties, body)` holds, taken off it; the others stay."""
    found, others = [], []
    while True:
        method, properties, body = channel.basic_get(queue)
        if method is None:
            break
        if wanted(properties, body):
            found.append((properties, body))
            channel.basic_ack(method.delivery_tag)
        else:
            others.append(method.delivery_tag)
    for tag in others:
        channel.basic_nack(tag, requeue=True)
    return found


def queue_depth(channel: Any, queue: str) -> int:
    return int(channel.queue_declare(queue, passive=True).method.message_count)


def test_the_source_consumes_the_producers_queue_and_dead_letters_to_the_rejected_one(
        producers: ProducerSide, channel: Any) -> None:
    assert producers.rejected_queues() == ["vid2mp3-producers-rejected"]
    consumers = channel.queue_declare(producers.source.queue, passive=True).method.consumer_count
    assert consumers == 1, "one source adapter consumes the producers' queue"


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_a_video_uploaded_event_published_over_amqp_converts_its_job(
        mode: str, producers: ProducerSide, channel: Any, database: Any, endpoints: dict[str, str],
        clip: Path) -> None:
    uploaded = stage_job(database, clip, f"amqp-producer-{uuid.uuid4().hex[:8]}", 192)
    event = to_cloud_event(uploaded, source_function="test-camera-sync")
    with event_tap(endpoints, [VIDEO_UPLOADED]) as tap:
        if mode == "binary":
            publish_binary(channel, producers.source.exchange, event)
        else:
            publish_structured(channel, producers.source.exchange, event)
        arrived = wait_for(lambda: tap.events_for(uploaded.job_id), BROKER_ARRIVAL_SECONDS,
                           f"the {mode} event in the Broker")
    assert [arrival["attributes"]["id"] for arrival in arrived] == [event["id"]]
    assert arrived[0]["attributes"]["source"] == event["source"]
    jobs = Jobs(database)
    job = wait_for(lambda: (found := jobs.get(uploaded.job_id) or {}).get("state") in FINAL_STATES and found,
                   120, f"job {uploaded.job_id} to end", interval=0.2)
    assert job["state"] == JobState.DONE, job.get("failure")


def test_a_message_that_is_not_a_cloudevent_reaches_the_broker_wrapped(
        producers: ProducerSide, channel: Any, endpoints: dict[str, str]) -> None:
    """Not dead-lettered: the adapter wraps any message without CloudEvents markings, and the Broker takes it
    (no Trigger filters on its type, so nothing more happens to it)."""
    message_id, body = f"plain-{uuid.uuid4().hex}", f"plain text {uuid.uuid4().hex}".encode()
    rejected_before = queue_depth(channel, producers.rejected_queues()[0])
    with event_tap(endpoints, [WRAPPED_TYPE]) as tap:
        channel.basic_publish(producers.source.exchange, "", body, pika.BasicProperties(
            delivery_mode=pika.DeliveryMode.Persistent, content_type="text/plain", message_id=message_id))
        wrapped = wait_for(lambda: tap.events_for(message_id), BROKER_ARRIVAL_SECONDS, "the wrapped message")
    source = producers.source
    assert len(wrapped) == 1
    assert wrapped[0]["data"] == body
    assert wrapped[0]["attributes"]["id"] == message_id
    assert wrapped[0]["attributes"]["source"] == (
        f"/apis/v1/namespaces/{source.namespace}/rabbitmqsources/{source.name}#{source.queue}")
    assert queue_depth(channel, source.queue) == 0
    assert queue_depth(channel, producers.rejected_queues()[0]) == rejected_before


@pytest.mark.parametrize("unreadable", ["extension name with an underscore", "structured body not JSON"])
def test_a_message_marked_as_a_cloudevent_but_unreadable_is_dead_lettered_whole(
        unreadable: str, producers: ProducerSide, channel: Any, endpoints: dict[str, str]) -> None:
    event_type, marker = f"io.vid2mp3.test.unreadable{uuid.uuid4().hex[:8]}.v1", uuid.uuid4().hex
    with event_tap(endpoints, [event_type]) as tap:
        if unreadable == "structured body not JSON":
            body = f"not json {marker}".encode()
            channel.basic_publish(producers.source.exchange, "", body, pika.BasicProperties(
                delivery_mode=pika.DeliveryMode.Persistent, content_type="application/cloudevents+json"))
        else:
            event = probe_event(event_type, marker)
            publish_binary(channel, producers.source.exchange, event, retry_count="1")
            body = to_binary(event)[1]
        rejected = wait_for(lambda: take_rejected(channel, producers.rejected_queues()[0],
                                                  lambda properties, taken: marker.encode() in taken),
                            BROKER_ARRIVAL_SECONDS, "the message in the rejected queue")
        assert tap.received.empty(), "nothing of it reached the Broker"
    assert len(rejected) == 1
    properties, taken = rejected[0]
    assert taken == body
    assert properties.headers["x-first-death-reason"] == "rejected"
    assert properties.headers["x-first-death-queue"] == producers.source.queue
    assert queue_depth(channel, producers.source.queue) == 0


@pytest.mark.slow
def test_the_adapter_killed_mid_stream_loses_no_message(
        producers: ProducerSide, channel: Any, endpoints: dict[str, str]) -> None:
    count, event_type = 3000, f"io.vid2mp3.test.killed{uuid.uuid4().hex[:8]}.v1"
    expected = [f"kill-{number}" for number in range(count)]
    adapter = producers.adapter_process

    def produce() -> None:  # a connection of its own: pika's are not shared between threads
        connection = pika.BlockingConnection(pika.URLParameters(endpoints["AMQP_URL"]))
        producing = connection.channel()
        producing.confirm_delivery()
        for event_id in expected:
            publish_binary(producing, producers.source.exchange, probe_event(event_type, event_id))
        connection.close()

    with event_tap(endpoints, [event_type]) as tap:
        arrived: list[str] = []

        def arrivals() -> int:
            while not tap.received.empty():
                arrived.append(tap.received.get()["attributes"]["id"])
            return len(set(arrived))

        producer = threading.Thread(target=produce)
        producer.start()
        try:
            wait_for(lambda: arrivals() >= count // 10, BROKER_ARRIVAL_SECONDS, "the first tenth in the Broker",
                     interval=0.01)
            killed = function_pid(adapter)
            os.kill(killed, signal.SIGKILL)
            at_kill = arrivals()
        finally:
            producer.join()
        assert at_kill < count, "the adapter was killed while messages still flowed"
        wait_for(lambda: function_pid(adapter) != killed, 30, "the supervisor to restart the adapter")
        wait_for(lambda: arrivals() >= count, 120, f"all {count} messages in the Broker", interval=0.2)
    assert set(arrived) == set(expected)
    assert queue_depth(channel, producers.source.queue) == 0
    # At least once: what it had posted but not yet acked when it died comes again.
    print(f"adapter killed after {at_kill} of {count} messages; {len(arrived) - count} arrived twice")


