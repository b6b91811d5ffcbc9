"""Reading the Knative manifests: the Broker and every Trigger as the stack reads them, and a malformed manifest named
with what is wrong."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from stack.config import ROOT
from stack.manifests import Broker, Delivery, ManifestError, Trigger, load_routing

KNATIVE = ROOT / "knative"


# The webhook delivery Triggers: one per job event, all alike, no dead-letter sink (knative/300-triggers.yaml).
DELIVERY_EVENTS = {"video-uploaded": "io.vid2mp3.video.uploaded.v1", "audio-converted": "io.vid2mp3.audio.converted.v1",
                   "conversion-failed": "io.vid2mp3.conversion.failed.v1",
                   "notification-sent": "io.vid2mp3.notification.sent.v1",
                   "job-cancelled": "io.vid2mp3.job.cancelled.v1"}


@pytest.fixture(scope="module")
def routing() -> Any:
    return load_routing(KNATIVE)


def test_broker_is_read_from_knative(routing: Any) -> None:
    assert routing.broker == Broker(
        name="vid2mp3", namespace="vid2mp3", queue_type="quorum",
        delivery=Delivery(retry=5, backoff_policy="exponential", backoff_delay=timedelta(milliseconds=500),
                          timeout=None, dead_letter_service="deadletter"),
    )


def test_every_trigger_is_read_from_knative(routing: Any) -> None:
    assert {trigger.name: trigger for trigger in routing.triggers} == {
        "convert-on-video-uploaded": Trigger(
            name="convert-on-video-uploaded", namespace="vid2mp3", broker="vid2mp3",
            filter_attributes={"type": "io.vid2mp3.video.uploaded.v1"}, subscriber_service="convert",
            delivery=Delivery(retry=6, backoff_policy="exponential",
                              backoff_delay=timedelta(milliseconds=500), timeout=timedelta(minutes=3),
                              dead_letter_service="deadletter"),
            parallelism="2",
        ),
        "notify-on-audio-converted": Trigger(
            name="notify-on-audio-converted", namespace="vid2mp3", broker="vid2mp3",
            filter_attributes={"type": "io.vid2mp3.audio.converted.v1"}, subscriber_service="notify",
            delivery=Delivery(retry=8, backoff_policy="exponential", backoff_delay=timedelta(seconds=1),
                              timeout=timedelta(seconds=30), dead_letter_service="deadletter"),
            parallelism="1",
        ),
        "segment-on-segment-requested": Trigger(
            name="segment-on-segment-requested", namespace="vid2mp3", broker="vid2mp3",
            filter_attributes={"type": "io.vid2mp3.segment.requested.v1"}, subscriber_service="segment",
            delivery=Delivery(retry=6, backoff_policy="exponential", backoff_delay=timedelta(milliseconds=500),
                              timeout=timedelta(minutes=3), dead_letter_service="deadletter"),
            parallelism="16",
        ),
        **{f"delivery-on-{event}": Trigger(
            name=f"delivery-on-{event}", namespace="vid2mp3", broker="vid2mp3",
            filter_attributes={"type": event_type}, subscriber_service="delivery",
            delivery=Delivery(retry=8, backoff_policy="exponential", backoff_delay=timedelta(seconds=1),
                              timeout=timedelta(seconds=30), dead_letter_service=None),
            parallelism="10",
        ) for event, event_type in DELIVERY_EVENTS.items()},
    }


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


def yaml_files(*documents: dict[str, Any]) -> dict[str, str]:
    return {"100-broker.yaml": yaml.safe_dump_all([doc for doc in documents if doc["kind"] == "Broker"]),
            "300-triggers.yaml": yaml.safe_dump_all([doc for doc in documents if doc["kind"] != "Broker"])}


def write_files(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


VALID_BROKER = broker_document()


VALID_TRIGGER = trigger_document("ok")


MALFORMED = [
    pytest.param(yaml_files(VALID_TRIGGER), ["expected exactly one Broker, found 0"], id="no-broker"),
    pytest.param(yaml_files(VALID_BROKER, broker_document(name="second"), VALID_TRIGGER),
                 ["expected exactly one Broker, found 2"], id="two-brokers"),
    pytest.param(yaml_files(VALID_BROKER, trigger_document("t1", delivery={"retry": -1})),
                 ["300-triggers.yaml", "Trigger t1", "delivery.retry must be a non-negative integer, got -1"],
                 id="negative-retry"),
    pytest.param(yaml_files(VALID_BROKER, trigger_document("t1", delivery={"retry": "three"})),
                 ["Trigger t1", "delivery.retry must be a non-negative integer, got 'three'"],
                 id="text-retry"),
    pytest.param(yaml_files(VALID_BROKER, trigger_document("t1", delivery={"backoffDelay": "0.5s"})),
                 ["Trigger t1", "'0.5s' is not an ISO-8601 duration"], id="go-style-duration"),
    pytest.param(yaml_files(VALID_BROKER, trigger_document("t1", delivery={"timeout": "00:03:00"})),
                 ["Trigger t1", "'00:03:00' is not an ISO-8601 duration"], id="clock-duration"),
    pytest.param(yaml_files(VALID_BROKER, trigger_document("t1", delivery={"timeout": 180})),
                 ["Trigger t1", "180 is not an ISO-8601 duration"], id="number-duration"),
    pytest.param(yaml_files(VALID_BROKER, trigger_document("t1", delivery={"backoffDelay": "PT3X"})),
                 ["Trigger t1", "'PT3X' is not an ISO-8601 duration"], id="bad-iso-unit"),
    pytest.param(yaml_files(VALID_BROKER, trigger_document("t1", delivery={"backoffPolicy": "fibonacci"})),
                 ["Trigger t1", "backoffPolicy must be exponential or linear, got 'fibonacci'"],
                 id="bad-policy"),
    pytest.param(yaml_files(VALID_BROKER, trigger_document("t1", subscriber={"uri": "http://example.com/"})),
                 ["Trigger t1: spec.subscriber: must name a Knative Service"], id="subscriber-uri"),
    pytest.param(yaml_files(VALID_BROKER, trigger_document(
        "t1", subscriber={"ref": {"apiVersion": "v1", "kind": "ConfigMap", "name": "x"}})),
                 ["Trigger t1: spec.subscriber: must name a Knative Service"], id="subscriber-not-a-service"),
    pytest.param(yaml_files(VALID_BROKER, trigger_document(
        "t1", delivery={"deadLetterSink": {"uri": "http://example.com/"}})),
                 ["Trigger t1: delivery.deadLetterSink: must name a Knative Service"], id="sink-uri"),
    pytest.param(yaml_files(broker_document(broker_class="MTChannelBasedBroker"), VALID_TRIGGER),
                 ["100-broker.yaml", "Broker default",
                  "needs annotation eventing.knative.dev/broker.class: RabbitMQBroker"],
                 id="wrong-broker-class"),
    pytest.param(yaml_files(VALID_BROKER, trigger_document("twice"), trigger_document("twice")),
                 ["Trigger names repeat", "twice"], id="duplicate-trigger-names"),
    pytest.param(yaml_files(VALID_BROKER, trigger_document("elsewhere", broker="other")),
                 ["Trigger elsewhere", "spec.broker 'other' is not Broker 'default'"], id="other-broker"),
    pytest.param({**yaml_files(VALID_BROKER, VALID_TRIGGER), "200-services.yaml": "kind: Svc\n  spec: [\n"},
                 ["200-services.yaml", "not valid YAML"], id="invalid-yaml"),
]


def test_the_templates_of_the_malformed_cases_are_valid(tmp_path: Path) -> None:
    """So that each case below fails for its own reason only."""
    routing = load_routing(write_files(tmp_path, yaml_files(VALID_BROKER, VALID_TRIGGER)))
    assert [trigger.name for trigger in routing.triggers] == ["ok"]


@pytest.mark.parametrize(("files", "fragments"), MALFORMED)
def test_malformed_manifest_is_named(tmp_path: Path, files: dict[str, str], fragments: list[str]) -> None:
    with pytest.raises(ManifestError) as raised:
        load_routing(write_files(tmp_path / "knative", files))
    for fragment in fragments:
        assert fragment in str(raised.value)


