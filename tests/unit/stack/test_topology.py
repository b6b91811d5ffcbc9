"""The broker's topology and dispatchers, derived from the Knative manifests as the eventing-rabbitmq controller
derives them: names, arguments, environments, dead-letter exchanges, Go durations and kmeta child names."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from stack.config import ROOT
from stack.manifests import load_routing
from stack.topology import Topology, child_name, go_duration

KNATIVE = ROOT / "knative"


BROKER_UID = "0b4f2c1e-6a3d-4e59-9c1a-7d2e8f0a1b3c"


CONVERT_UID = "5f0e9d8c-7b6a-4c3d-8e2f-1a0b9c8d7e6f"


NOTIFY_UID = "9a8b7c6d-5e4f-4a3b-9c2d-1e0f2a3b4c5d"


SEGMENT_UID = "3c2b1a09-8f7e-4d6c-9b5a-4f3e2d1c0b9a"


FIXED_UIDS = {
    "Broker/vid2mp3": BROKER_UID,
    "Trigger/convert-on-video-uploaded": CONVERT_UID,
    "Trigger/notify-on-audio-converted": NOTIFY_UID,
    "Trigger/segment-on-segment-requested": SEGMENT_UID,
}


# The webhook delivery Triggers: one per job event, all alike, no dead-letter sink (knative/300-triggers.yaml).
DELIVERY_EVENTS = {"video-uploaded": "io.vid2mp3.video.uploaded.v1", "audio-converted": "io.vid2mp3.audio.converted.v1",
                   "conversion-failed": "io.vid2mp3.conversion.failed.v1",
                   "notification-sent": "io.vid2mp3.notification.sent.v1",
                   "job-cancelled": "io.vid2mp3.job.cancelled.v1"}


RABBIT_URL = "amqp://guest:guest@rabbitmq:5672/%2F"


INGRESS_URL = "http://broker-ingress.vid2mp3.svc.cluster.local/"


def fixed_uids(kind: str, name: str) -> str:
    return FIXED_UIDS[f"{kind}/{name}"]


def service_url(name: str) -> str:
    return f"http://{name}.vid2mp3.svc.cluster.local"


@pytest.fixture(scope="module")
def routing() -> Any:
    return load_routing(KNATIVE)


def test_topology_names_and_arguments_match_the_controller(routing: Any) -> None:
    topology = Topology(routing, fixed_uids)
    by_name = {trigger.name: trigger for trigger in routing.triggers}
    convert, notify, segment = (by_name[name] for name in (
        "convert-on-video-uploaded", "notify-on-audio-converted", "segment-on-segment-requested"))
    assert topology.exchange == f"b.vid2mp3.vid2mp3.{BROKER_UID}"
    assert topology.broker_dlx == f"b.vid2mp3.vid2mp3.dlx.{BROKER_UID}"
    assert topology.broker_dlq == f"b.vid2mp3.vid2mp3.dlq.{BROKER_UID}"
    assert topology.trigger_queue(convert) == f"vid2mp3.convert-on-video-uploaded.{BROKER_UID}"
    assert topology.trigger_dlx(convert) == "t.vid2mp3.convert-on-video-uplo8dec1eaed0c0af16f84d419e1ce7d495"
    assert topology.trigger_dlq(convert) == "t.vid2mp3.convert-on-video-uplo3dbb5157bffbd4ebcb2cb384e0f4f781"
    assert (topology.trigger_policy_name(convert)
            == "t.vid2mp3.convert-on-video-uploe2b26a533741e2c168d0faa3c9b35838")
    assert topology.trigger_dlx(notify) == "t.vid2mp3.notify-on-audio-convedd5b655617b46322632a7c2d6a374326"
    assert topology.binding_arguments(convert) == {
        "type": "io.vid2mp3.video.uploaded.v1",
        "x-knative-trigger": "convert-on-video-uploaded",
        "x-match": "all",
    }
    assert topology.queue_arguments() == {"x-queue-type": "quorum"}
    policies = topology.dead_letter_policies()
    assert [(name, dlx) for name, _, dlx in policies] == [
        ("t.vid2mp3.convert-on-video-uploe2b26a533741e2c168d0faa3c9b35838",
         "t.vid2mp3.convert-on-video-uplo8dec1eaed0c0af16f84d419e1ce7d495"),
        (child_name("t.vid2mp3.notify-on-audio-converted.", NOTIFY_UID),
         "t.vid2mp3.notify-on-audio-convedd5b655617b46322632a7c2d6a374326"),
        (child_name("t.vid2mp3.segment-on-segment-requested.", SEGMENT_UID),
         "t.vid2mp3.segment-on-segment-red8f634550d701a767ac924b51c5b1052"),
    ]
    for (_, pattern, _), trigger in zip(policies, (convert, notify, segment), strict=True):
        queue = topology.trigger_queue(trigger)
        assert re.search(pattern, queue)
        assert not re.search(pattern, queue + "-other") and not re.search(pattern, "x" + queue)


# What MakeDispatcherDeployment (Trigger and Broker reconcilers, eventing-rabbitmq v0.48) derives from the
# manifests; the rest of a dispatcher's environment is plumbing (the pod's surroundings, logging names).
CONTROLLER_KEYS = ("QUEUE_NAME", "SUBSCRIBER", "RETRY", "BACKOFF_POLICY", "BACKOFF_DELAY", "TIMEOUT",
                   "PARALLELISM", "DLX", "DLX_NAME")


EXPECTED_DISPATCHERS = {
    "dispatcher-convert-on-video-uploaded": {
        "QUEUE_NAME": f"vid2mp3.convert-on-video-uploaded.{BROKER_UID}", "SUBSCRIBER": service_url("convert"),
        "RETRY": "6", "BACKOFF_POLICY": "exponential", "BACKOFF_DELAY": "500ms", "TIMEOUT": "3m0s",
        "PARALLELISM": "2", "DLX_NAME": "t.vid2mp3.convert-on-video-uplo8dec1eaed0c0af16f84d419e1ce7d495",
    },
    "dlq-dispatcher-convert-on-video-uploaded": {
        "QUEUE_NAME": "t.vid2mp3.convert-on-video-uplo3dbb5157bffbd4ebcb2cb384e0f4f781",
        "SUBSCRIBER": service_url("deadletter"),
        "RETRY": "6", "BACKOFF_POLICY": "exponential", "BACKOFF_DELAY": "500ms", "TIMEOUT": "3m0s",
        "PARALLELISM": "2", "DLX": "true",
    },
    "dispatcher-notify-on-audio-converted": {
        "QUEUE_NAME": f"vid2mp3.notify-on-audio-converted.{BROKER_UID}", "SUBSCRIBER": service_url("notify"),
        "RETRY": "8", "BACKOFF_POLICY": "exponential", "BACKOFF_DELAY": "1s", "TIMEOUT": "30s",
        "PARALLELISM": "1", "DLX_NAME": "t.vid2mp3.notify-on-audio-convedd5b655617b46322632a7c2d6a374326",
    },
    "dlq-dispatcher-notify-on-audio-converted": {
        "QUEUE_NAME": "t.vid2mp3.notify-on-audio-conve8122eac58e985b5884d40f55650ee9b9",
        "SUBSCRIBER": service_url("deadletter"),
        "RETRY": "8", "BACKOFF_POLICY": "exponential", "BACKOFF_DELAY": "1s", "TIMEOUT": "30s",
        "PARALLELISM": "1", "DLX": "true",
    },
    "dispatcher-segment-on-segment-requested": {
        "QUEUE_NAME": f"vid2mp3.segment-on-segment-requested.{BROKER_UID}", "SUBSCRIBER": service_url("segment"),
        "RETRY": "6", "BACKOFF_POLICY": "exponential", "BACKOFF_DELAY": "500ms", "TIMEOUT": "3m0s",
        "PARALLELISM": "16", "DLX_NAME": "t.vid2mp3.segment-on-segment-red8f634550d701a767ac924b51c5b1052",
    },
    "dlq-dispatcher-segment-on-segment-requested": {
        "QUEUE_NAME": "t.vid2mp3.segment-on-segment-ref06bc71e2f1859c5260f3a9972c269bb",
        "SUBSCRIBER": service_url("deadletter"),
        "RETRY": "6", "BACKOFF_POLICY": "exponential", "BACKOFF_DELAY": "500ms", "TIMEOUT": "3m0s",
        "PARALLELISM": "16", "DLX": "true",
    },
    **{f"dispatcher-delivery-on-{event}": {
        # A delivery spec without a dead-letter sink: no DLX_NAME, failures after the last try are dropped.
        "QUEUE_NAME": f"vid2mp3.delivery-on-{event}.{BROKER_UID}", "SUBSCRIBER": service_url("delivery"),
        "RETRY": "8", "BACKOFF_POLICY": "exponential", "BACKOFF_DELAY": "1s", "TIMEOUT": "30s",
        "PARALLELISM": "10",
    } for event in DELIVERY_EVENTS},
    "dlq-dispatcher-broker-vid2mp3": {
        "QUEUE_NAME": f"b.vid2mp3.vid2mp3.dlq.{BROKER_UID}", "SUBSCRIBER": service_url("deadletter"),
        "RETRY": "5", "BACKOFF_POLICY": "exponential", "BACKOFF_DELAY": "500ms",
        "PARALLELISM": "1", "DLX": "true",
    },
}


def controller_env(routing: Any) -> dict[str, dict[str, str]]:
    specs = Topology(routing, fixed_uids).dispatchers(RABBIT_URL, INGRESS_URL, service_url)
    return {spec.name: {key: spec.env[key] for key in CONTROLLER_KEYS if key in spec.env} for spec in specs}


def test_one_dispatcher_per_trigger_and_dead_letter_queue(routing: Any) -> None:
    assert sorted(controller_env(routing)) == sorted(EXPECTED_DISPATCHERS)


@pytest.mark.parametrize("name", sorted(EXPECTED_DISPATCHERS))
def test_dispatcher_env_is_the_controllers(routing: Any, name: str) -> None:
    assert controller_env(routing)[name] == EXPECTED_DISPATCHERS[name]


def test_every_dispatcher_gets_the_urls_it_needs(routing: Any) -> None:
    for spec in Topology(routing, fixed_uids).dispatchers(RABBIT_URL, INGRESS_URL, service_url):
        assert spec.env["RABBIT_URL"] == RABBIT_URL
        assert spec.env["BROKER_INGRESS_URL"] == INGRESS_URL
        assert spec.env["NAMESPACE"] == "vid2mp3"


def test_trigger_dispatchers_cover_one_trigger(routing: Any) -> None:
    topology = Topology(routing, fixed_uids)
    convert = next(trigger for trigger in routing.triggers if trigger.name == "convert-on-video-uploaded")
    specs = topology.trigger_dispatchers(convert, RABBIT_URL, INGRESS_URL, service_url)
    assert [spec.name for spec in specs] == [
        "dispatcher-convert-on-video-uploaded", "dlq-dispatcher-convert-on-video-uploaded"]


def broker_document(delivery: dict[str, Any] | None = None, broker_class: str = "RabbitMQBroker",
                    name: str = "default") -> dict[str, Any]:
    spec: dict[str, Any] = {"config": {"kind": "RabbitmqBrokerConfig", "name": "config"}}
    if delivery is not None:
        spec["delivery"] = delivery
    return {
        "apiVersion": "eventing.knative.dev/v1", "kind": "Broker",
        "metadata": {"name": name, "namespace": "ns",
                     "annotations": {"eventing.knative.dev/broker.class": broker_class}},
        "spec": spec,
    }


def trigger_document(name: str, delivery: dict[str, Any] | None = None,
                     subscriber: dict[str, Any] | None = None, broker: str = "default") -> dict[str, Any]:
    spec: dict[str, Any] = {
        "broker": broker,
        "filter": {"attributes": {"type": f"io.example.{name}.v1"}},
        "subscriber": subscriber or {"ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service",
                                             "name": f"{name}-service"}},
    }
    if delivery is not None:
        spec["delivery"] = delivery
    return {"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger",
            "metadata": {"name": name, "namespace": "ns"}, "spec": spec}


def sink(service: str) -> dict[str, Any]:
    return {"ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": service}}


def yaml_files(*documents: dict[str, Any]) -> dict[str, str]:
    return {"100-broker.yaml": yaml.safe_dump_all([doc for doc in documents if doc["kind"] == "Broker"]),
            "300-triggers.yaml": yaml.safe_dump_all([doc for doc in documents if doc["kind"] != "Broker"])}


def write_files(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def test_dead_letter_exchange_follows_the_controllers_rules(tmp_path: Path) -> None:
    """A Trigger's own sink wins; no delivery at all falls back to the Broker's; a delivery without a sink
    means failures are dropped (no DLX_NAME), even though the Broker has a sink."""
    broker_delivery = {"retry": 3, "backoffPolicy": "linear", "backoffDelay": "PT0.2S", "timeout": "PT10S",
                       "deadLetterSink": sink("broker-sink")}
    routing = load_routing(write_files(tmp_path, yaml_files(
        broker_document(delivery=broker_delivery),
        trigger_document("own-sink", delivery={"retry": 1, "deadLetterSink": sink("trigger-sink")}),
        trigger_document("no-delivery"),
        trigger_document("no-sink", delivery={"backoffDelay": "PT1M30S"}),
    )))
    uids = {"Broker/default": "b-uid", "Trigger/own-sink": "own-uid", "Trigger/no-delivery": "nd-uid",
            "Trigger/no-sink": "ns-uid"}
    specs = Topology(routing, lambda kind, name: uids[f"{kind}/{name}"]).dispatchers(
        RABBIT_URL, INGRESS_URL, service_url)
    env = {spec.name: {key: spec.env[key] for key in CONTROLLER_KEYS if key in spec.env} for spec in specs}
    assert env == {
        "dispatcher-own-sink": {
            # No policy or delay in the spec: none in the env, so the dispatcher's defaults apply.
            "QUEUE_NAME": "ns.own-sink.b-uid", "SUBSCRIBER": service_url("own-sink-service"),
            "RETRY": "1", "PARALLELISM": "1", "DLX_NAME": "t.ns.own-sink.dlx.own-uid",
        },
        "dlq-dispatcher-own-sink": {
            "QUEUE_NAME": "t.ns.own-sink.dlq.own-uid", "SUBSCRIBER": service_url("trigger-sink"),
            "RETRY": "1", "PARALLELISM": "1", "DLX": "true",
        },
        "dispatcher-no-delivery": {
            "QUEUE_NAME": "ns.no-delivery.b-uid", "SUBSCRIBER": service_url("no-delivery-service"),
            "RETRY": "3", "BACKOFF_POLICY": "linear", "BACKOFF_DELAY": "200ms", "TIMEOUT": "10s",
            "PARALLELISM": "1", "DLX_NAME": "b.ns.default.dlx.b-uid",
        },
        # A delivery spec without retry gets the controller's 5.
        "dispatcher-no-sink": {
            "QUEUE_NAME": "ns.no-sink.b-uid", "SUBSCRIBER": service_url("no-sink-service"),
            "RETRY": "5", "BACKOFF_DELAY": "1m30s", "PARALLELISM": "1",
        },
        # The Broker's DLQ dispatcher: the Broker's retry and backoff, but the controller gives it no TIMEOUT.
        "dlq-dispatcher-broker-default": {
            "QUEUE_NAME": "b.ns.default.dlq.b-uid", "SUBSCRIBER": service_url("broker-sink"),
            "RETRY": "3", "BACKOFF_POLICY": "linear", "BACKOFF_DELAY": "200ms",
            "PARALLELISM": "1", "DLX": "true",
        },
    }


@pytest.mark.parametrize(("value", "go"), [
    # period.Parse(ISO).DurationApprox().String(), run in Go
    (timedelta(milliseconds=500), "500ms"),
    (timedelta(milliseconds=100), "100ms"),
    (timedelta(seconds=1), "1s"),
    (timedelta(seconds=1.5), "1.5s"),
    (timedelta(seconds=30), "30s"),
    (timedelta(minutes=3), "3m0s"),
    (timedelta(hours=1, minutes=30), "1h30m0s"),
    # time.Duration.String() for values period's one-decimal precision would not carry
    (timedelta(microseconds=1500), "1.5ms"),
    (timedelta(microseconds=7), "7µs"),
    (timedelta(0), "0s"),
])
def test_go_duration_writes_what_go_writes(value: timedelta, go: str) -> None:
    assert go_duration(value) == go


@pytest.mark.parametrize(("parent", "suffix", "expected"), [
    # knative.dev/pkg kmeta/names_test.go
    ("asdf", "-deployment", "asdf-deployment"),
    ("f" * 63, "-deployment", "ffffffffffffffffffff105d7597f637e83cc711605ac3ea4957-deployment"),
    ("f" * 63, "-deploy", "ffffffffffffffffffffffff105d7597f637e83cc711605ac3ea4957-deploy"),
    ("f" * 63, "f" * 63, "fffffffffffffffffffffffffffffff0502661254f13c89973cb3a83e0cbec0"),
    ("a", "f" * 63, "ab5cfd486935decbc0d305799f4ce4414ffffffffffffffffffffffffffffff"),
    ("b" * 32, "f" * 32, "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb329c7c81b9ab3ba71aa139066aa5625d"),
    ("aaaa", "b---a" * 20, "aaaa7a3f7966594e3f0849720eced8212c18b---ab---ab---ab---ab---ab"),
    ("a" * 17, "a.-.-.-.-.-.-.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
     "aaaaaaaaaaaaaaaaaa1eb10dc911444f8434af83b7225442da"),
    # Our own names: short enough to stay as they are, and a Trigger DLX that must be hashed
    ("b.vid2mp3.vid2mp3.", BROKER_UID, f"b.vid2mp3.vid2mp3.{BROKER_UID}"),
    ("t.vid2mp3.convert-on-video-uploaded.dlx.", CONVERT_UID,
     "t.vid2mp3.convert-on-video-uplo8dec1eaed0c0af16f84d419e1ce7d495"),
    ("t.vid2mp3.a-trigger-name-long-enough-to-need-hashing-on-its-own.", "-dlq",
     "t.vid2mp3.a-trigger-name-loc391f27ab1857fb1dab6292a058e3956-dlq"),
])
def test_child_name_matches_kmeta(parent: str, suffix: str, expected: str) -> None:
    assert child_name(parent, suffix) == expected
    assert len(child_name(parent, suffix)) <= 63


def test_child_name_by_hand() -> None:
    """kmeta.ChildName worked through: a suffix of 31+ characters (a UID has 36) hashes parent+suffix and
    keeps the parent's first 31; a short suffix is kept, after the parent's first 31-len(suffix) and the
    parent's md5."""
    parent, uid = "t.vid2mp3.convert-on-video-uploaded.dlx.", CONVERT_UID
    digest = hashlib.md5((parent + uid).encode(), usedforsecurity=False).hexdigest()
    assert digest == "8dec1eaed0c0af16f84d419e1ce7d495"
    assert child_name(parent, uid) == parent[:31] + digest

    parent = "t.vid2mp3.a-trigger-name-long-enough-to-need-hashing-on-its-own."
    digest = hashlib.md5(parent.encode(), usedforsecurity=False).hexdigest()
    assert digest == "c391f27ab1857fb1dab6292a058e3956"
    assert child_name(parent, "-dlq") == parent[: 31 - 4] + digest + "-dlq"


