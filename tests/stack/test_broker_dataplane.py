"""Drives the real eventing-rabbitmq data plane of the running stack: CloudEvents POSTed to the real ingress,
routed by the real RabbitMQ broker exchange, delivered by real dispatchers (started here for a test-only
Trigger declared exactly as the stack declares the manifest Triggers) to local HTTP endpoints."""

from __future__ import annotations

import contextlib
import functools
import http.server
import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pika
import pytest
import requests
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent, from_http

from stack import processes
from stack.config import BIN, KNATIVE_DIR, LOCAL
from stack.manifests import Delivery, Routing, Trigger, load_routing
from stack.topology import DispatcherSpec, ObjectUids, Topology
from tests.support import wait_for

pytestmark = pytest.mark.stack

RETRY = 2
BACKOFF_DELAY = timedelta(milliseconds=100)
SUBSCRIBER_SERVICE = "test-subscriber"
DEAD_LETTER_SERVICE = "test-dead-letters"
# An extension attribute: lowercase letters and digits only, or the dispatcher cannot parse the event.
EXTENSION = "vid2mp3run"
DELIVERY_TIMEOUT_SECONDS = 15


# --- Local HTTP endpoints standing in for a subscriber and a dead-letter sink ------------------------------

@dataclass(frozen=True)
class Request:
    headers: dict[str, str]  # names in lowercase
    body: bytes
    at: float  # time.monotonic() on arrival

    @property
    def event(self) -> CloudEvent:
        return from_http(self.headers, self.body)

    @property
    def binary_mode(self) -> bool:
        return "ce-id" in self.headers and not self.headers.get("content-type", "").startswith(
            "application/cloudevents")


class RecordingEndpoint:
    """An HTTP server on a free local port that keeps every request and answers each with the status chosen
    for its CloudEvent id (200 unless told otherwise)."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.status_by_event_id: dict[str, int] = {}
        self._lock = threading.Lock()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def received(self, event_id: str) -> list[Request]:
        with self._lock:
            return [request for request in self.requests if request.headers.get("ce-id") == event_id]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _record(self, request: Request) -> int:
        with self._lock:
            self.requests.append(request)
            return self.status_by_event_id.get(request.headers.get("ce-id", ""), 200)

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                request = Request({name.lower(): value for name, value in self.headers.items()},
                                  read_body(self), time.monotonic())
                self.send_response(endpoint._record(request))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def read_body(handler: http.server.BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() != "chunked":
        return handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
    body = b""
    while size := int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16):
        body += handler.rfile.read(size)
        handler.rfile.readline()
    handler.rfile.readline()
    return body


@pytest.fixture(scope="module")
def subscriber() -> Iterator[RecordingEndpoint]:
    endpoint = RecordingEndpoint()
    yield endpoint
    endpoint.close()


@pytest.fixture(scope="module")
def dead_letters() -> Iterator[RecordingEndpoint]:
    endpoint = RecordingEndpoint()
    yield endpoint
    endpoint.close()


# --- A test-only Trigger on the running Broker, with its real dispatchers ----------------------------------

@contextlib.contextmanager
def amqp_channel(url: str) -> Iterator[Any]:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        yield connection.channel()
    finally:
        connection.close()


def consumers(amqp_url: str, queue: str) -> int:
    with amqp_channel(amqp_url) as channel:
        return int(channel.queue_declare(queue, passive=True).method.consumer_count)


@dataclass(frozen=True)
class ProbeTrigger:
    trigger: Trigger
    topology: Topology
    dispatchers: list[DispatcherSpec]

    @property
    def event_type(self) -> str:
        return self.trigger.filter_attributes["type"]


@pytest.fixture(scope="module")
def probe_trigger(endpoints: dict[str, str], subscriber: RecordingEndpoint,
                  dead_letters: RecordingEndpoint) -> Iterator[ProbeTrigger]:
    """A Trigger of this module only (unique name and event type) on the running Broker, declared as the stack
    declares the manifest Triggers, with its real dispatcher and dead-letter dispatcher."""
    run = uuid.uuid4().hex[:12]
    broker = load_routing(KNATIVE_DIR).broker
    trigger = Trigger(
        name=f"test-dataplane-{run}", namespace=broker.namespace, broker=broker.name,
        filter_attributes={"type": f"io.vid2mp3.test.{run}.v1"}, subscriber_service=SUBSCRIBER_SERVICE,
        delivery=Delivery(retry=RETRY, backoff_policy="linear", backoff_delay=BACKOFF_DELAY,
                          timeout=timedelta(seconds=5), dead_letter_service=DEAD_LETTER_SERVICE),
        parallelism=None,
    )
    # The Broker's UID comes from the running stack's record, so the exchange is the one its ingress publishes
    # to; the test Trigger's UID is made up here and not recorded there.
    stack_uids, trigger_uid = ObjectUids(LOCAL / "state" / "uids.json"), str(uuid.uuid4())
    topology = Topology(Routing(broker=broker, triggers=[trigger]),
                        lambda kind, name: trigger_uid if kind == "Trigger" else stack_uids(kind, name))
    assert topology.exchange == endpoints["BROKER_EXCHANGE"]
    service_urls = {SUBSCRIBER_SERVICE: subscriber.url, DEAD_LETTER_SERVICE: dead_letters.url}
    specs = topology.trigger_dispatchers(trigger, endpoints["AMQP_URL"], endpoints["BROKER_INGRESS_URL"],
                                         service_urls.__getitem__)
    with amqp_channel(endpoints["AMQP_URL"]) as channel:
        topology.declare_trigger(channel, trigger)
    try:
        for spec in specs:
            processes.start(spec.name, [str(BIN / "dispatcher")], env=spec.env)
        for spec in specs:
            wait_for(functools.partial(consumers, endpoints["AMQP_URL"], spec.queue), 30,
                     f"dispatcher {spec.name} consuming {spec.queue} (log: {processes.log_file(spec.name)})")
        yield ProbeTrigger(trigger, topology, specs)
    finally:
        for spec in specs:
            processes.stop(spec.name)
            processes.log_file(spec.name).unlink(missing_ok=True)
        with amqp_channel(endpoints["AMQP_URL"]) as channel:
            channel.queue_delete(topology.trigger_queue(trigger))
            channel.queue_delete(topology.trigger_dlq(trigger))
            channel.exchange_delete(topology.trigger_dlx(trigger))


# --- Events ------------------------------------------------------------------------------------------------

def new_event(event_type: str) -> CloudEvent:
    event_id = str(uuid.uuid4())
    return CloudEvent({
        "type": event_type,
        "source": "/tests/broker-dataplane",
        "id": event_id,
        "subject": f"jobs/{event_id}",
        "dataschema": "https://vid2mp3.example/schemas/test.v1.json",
        "datacontenttype": "application/json",
        EXTENSION: uuid.uuid4().hex,
    }, {"job": event_id, "sizes": [1, 22, 333], "title": "Ça va — 変換"})


def post(endpoints: dict[str, str], event: CloudEvent,
         encode: Callable[[CloudEvent], tuple[dict[str, str], bytes]] = to_binary) -> requests.Response:
    headers, body = encode(event)
    return requests.post(endpoints["BROKER_INGRESS_URL"], headers=headers, data=body, timeout=10)


def assert_same_event(received: CloudEvent, sent: CloudEvent) -> None:
    for attribute in ("specversion", "type", "source", "id", "subject", "dataschema", EXTENSION):
        assert received[attribute] == sent[attribute], attribute
    assert received.data == sent.data


# --- Delivery ----------------------------------------------------------------------------------------------

def test_dispatcher_env_carries_the_test_triggers_delivery(probe_trigger: ProbeTrigger) -> None:
    dispatcher, dead_letter_dispatcher = probe_trigger.dispatchers
    assert {key: dispatcher.env.get(key) for key in ("RETRY", "BACKOFF_POLICY", "BACKOFF_DELAY", "TIMEOUT",
                                                     "DLX_NAME")} == {
        "RETRY": str(RETRY), "BACKOFF_POLICY": "linear", "BACKOFF_DELAY": "100ms", "TIMEOUT": "5s",
        "DLX_NAME": probe_trigger.topology.trigger_dlx(probe_trigger.trigger),
    }
    assert dead_letter_dispatcher.env["DLX"] == "true"


@pytest.mark.parametrize("encode", [to_binary, to_structured], ids=["binary", "structured"])
def test_event_reaches_the_subscriber_intact(endpoints: dict[str, str], probe_trigger: ProbeTrigger,
                                             subscriber: RecordingEndpoint,
                                             encode: Callable[[CloudEvent], tuple[dict[str, str], bytes]]) -> None:
    event = new_event(probe_trigger.event_type)
    sent = time.monotonic()
    response = post(endpoints, event, encode)
    assert response.status_code == 202, response.text
    [delivery] = wait_for(lambda: subscriber.received(event["id"]), DELIVERY_TIMEOUT_SECONDS,
                          f"event {event['id']} at the subscriber")
    assert delivery.binary_mode, delivery.headers  # the dispatcher always delivers in binary mode
    assert delivery.headers["content-type"].startswith("application/json")
    assert json.loads(delivery.body) == event.data
    assert_same_event(delivery.event, event)
    print(f"\n{encode.__name__}: ingress 202 -> subscriber in {delivery.at - sent:.3f} s")


def test_failing_subscriber_is_retried_then_dead_lettered(endpoints: dict[str, str], probe_trigger: ProbeTrigger,
                                                          subscriber: RecordingEndpoint,
                                                          dead_letters: RecordingEndpoint) -> None:
    event = new_event(probe_trigger.event_type)
    subscriber.status_by_event_id[event["id"]] = 500
    sent = time.monotonic()
    assert post(endpoints, event).status_code == 202
    [dead_letter] = wait_for(lambda: dead_letters.received(event["id"]), DELIVERY_TIMEOUT_SECONDS,
                             f"event {event['id']} at the dead-letter sink")
    # Dead-lettering comes after the last try: the count is final now.
    tries = subscriber.received(event["id"])
    assert len(tries) == RETRY + 1
    # Linear backoff: delay x n before the n-th retry.
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(tries)]
    for n, gap in enumerate(gaps, start=1):
        assert gap >= 0.9 * n * BACKOFF_DELAY.total_seconds(), gaps
    assert dead_letter.binary_mode
    dead_event = dead_letter.event
    assert_same_event(dead_event, event)
    assert str(dead_event["knativeerrorcode"]) == "500"
    assert dead_event["knativeerrordest"] == subscriber.url
    print(f"\n500: {len(tries)} deliveries (retry={RETRY}), gaps {', '.join(f'{gap:.3f}' for gap in gaps)} s, "
          f"dead-lettered {dead_letter.at - sent:.3f} s after the POST")


def test_client_error_is_not_retried_nor_dead_lettered(endpoints: dict[str, str], probe_trigger: ProbeTrigger,
                                                       subscriber: RecordingEndpoint,
                                                       dead_letters: RecordingEndpoint) -> None:
    """The dispatcher counts 400 as delivered: acked, no retry, no dead letter. To show nothing follows
    without sleeping, a failing marker is sent after it: one worker drains the Trigger's queue in order and
    another the dead-letter queue, so once the marker is dead-lettered the 400 event's fate is settled."""
    rejected = new_event(probe_trigger.event_type)
    subscriber.status_by_event_id[rejected["id"]] = 400
    marker = new_event(probe_trigger.event_type)
    subscriber.status_by_event_id[marker["id"]] = 500
    assert post(endpoints, rejected).status_code == 202
    assert post(endpoints, marker).status_code == 202
    wait_for(lambda: dead_letters.received(marker["id"]), DELIVERY_TIMEOUT_SECONDS,
             f"marker {marker['id']} at the dead-letter sink")
    assert len(subscriber.received(rejected["id"])) == 1
    assert dead_letters.received(rejected["id"]) == []
    print(f"\n400: {len(subscriber.received(rejected['id']))} delivery, 0 dead letters")


def test_event_no_trigger_matches_is_accepted_and_dropped(endpoints: dict[str, str], probe_trigger: ProbeTrigger,
                                                          subscriber: RecordingEndpoint) -> None:
    """The ingress answers 202 once RabbitMQ has confirmed the publish, and publishes without `mandatory`: an
    event whose type no Trigger's binding matches is accepted and then silently dropped by the exchange. A
    routed marker sent after it shows it did not reach the Trigger whose type differs only in a suffix."""
    stray = new_event(probe_trigger.event_type.removesuffix(".v1") + ".unrouted.v1")
    marker = new_event(probe_trigger.event_type)
    assert post(endpoints, stray).status_code == 202
    assert post(endpoints, marker).status_code == 202
    wait_for(lambda: subscriber.received(marker["id"]), DELIVERY_TIMEOUT_SECONDS,
             f"marker {marker['id']} at the subscriber")
    assert subscriber.received(stray["id"]) == []
