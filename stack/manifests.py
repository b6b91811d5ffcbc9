"""Reads the Broker, its RabbitmqBrokerConfig and the Triggers from `knative/`: the routing the cluster and the local
stack share. Everything the eventing-rabbitmq controller would derive from them is derived here the same way."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

PARALLELISM_ANNOTATION = "rabbitmq.eventing.knative.dev/parallelism"
BROKER_CLASS_ANNOTATION = "eventing.knative.dev/broker.class"
RABBITMQ_BROKER_CLASS = "RabbitMQBroker"
DEFAULT_RETRY_WHEN_DELIVERY_HAS_NONE = 5  # the controller's default for a delivery spec without `retry`

_ISO_DURATION = TypeAdapter(timedelta)


class ManifestError(ValueError):
    """A manifest in knative/ cannot drive the broker: says which file, which object and what is wrong."""


@dataclass(frozen=True)
class Delivery:
    retry: int | None = None
    backoff_policy: str | None = None
    backoff_delay: timedelta | None = None
    timeout: timedelta | None = None
    dead_letter_service: str | None = None


@dataclass(frozen=True)
class Trigger:
    name: str
    namespace: str
    broker: str
    filter_attributes: dict[str, str]
    subscriber_service: str
    delivery: Delivery | None
    parallelism: str | None


@dataclass(frozen=True)
class Broker:
    name: str
    namespace: str
    queue_type: str
    delivery: Delivery | None


@dataclass(frozen=True)
class Routing:
    broker: Broker
    triggers: list[Trigger] = field(default_factory=list)


def load_documents(directory: Path) -> list[tuple[Path, dict[str, Any]]]:
    documents = []
    for path in sorted(directory.glob("*.yaml")):
        try:
            loaded = list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError as error:
            raise ManifestError(f"{path}: not valid YAML: {error}") from None
        documents += [(path, document) for document in loaded if isinstance(document, dict)]
    return documents


def iso_duration(value: Any, where: str) -> timedelta:
    # Knative accepts only ISO-8601 (`P...`); pydantic alone would also take 180 or "00:03:00".
    problem = ManifestError(f"{where}: {value!r} is not an ISO-8601 duration such as PT0.5S")
    if not isinstance(value, str) or not value.lstrip("+-").startswith("P"):
        raise problem
    try:
        return _ISO_DURATION.validate_python(value)
    except ValidationError:
        raise problem from None


def service_ref(destination: Any, where: str) -> str:
    ref = destination.get("ref") if isinstance(destination, dict) else None
    if not isinstance(ref, dict) or ref.get("kind") != "Service" or not ref.get("name"):
        raise ManifestError(f"{where}: must name a Knative Service as `ref: {{kind: Service, name: ...}}`")
    return str(ref["name"])


def parse_delivery(spec: Any, where: str) -> Delivery | None:
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise ManifestError(f"{where}: delivery must be a mapping")
    retry = spec.get("retry")
    if retry is not None and (not isinstance(retry, int) or retry < 0):
        raise ManifestError(f"{where}: delivery.retry must be a non-negative integer, got {retry!r}")
    policy = spec.get("backoffPolicy")
    if policy not in (None, "exponential", "linear"):
        raise ManifestError(f"{where}: delivery.backoffPolicy must be exponential or linear, got {policy!r}")
    sink = spec.get("deadLetterSink")
    return Delivery(
        retry=retry,
        backoff_policy=policy,
        backoff_delay=iso_duration(spec["backoffDelay"], where) if "backoffDelay" in spec else None,
        timeout=iso_duration(spec["timeout"], where) if "timeout" in spec else None,
        dead_letter_service=service_ref(sink, f"{where}: delivery.deadLetterSink") if sink else None,
    )


def load_routing(directory: Path) -> Routing:
    documents = load_documents(directory)
    brokers = [(path, doc) for path, doc in documents if doc.get("kind") == "Broker"]
    if len(brokers) != 1:
        raise ManifestError(f"{directory}: expected exactly one Broker, found {len(brokers)}")
    broker_path, broker_doc = brokers[0]
    broker = parse_broker(broker_path, broker_doc, documents)
    triggers = [parse_trigger(path, doc) for path, doc in documents if doc.get("kind") == "Trigger"]
    names = [trigger.name for trigger in triggers]
    if len(set(names)) != len(names):
        raise ManifestError(f"{directory}: Trigger names repeat: {sorted(names)}")
    for trigger in triggers:
        if trigger.broker != broker.name:
            raise ManifestError(f"Trigger {trigger.name}: spec.broker {trigger.broker!r} is not Broker {broker.name!r}")
    return Routing(broker=broker, triggers=triggers)


def parse_broker(path: Path, doc: dict[str, Any], documents: list[tuple[Path, dict[str, Any]]]) -> Broker:
    metadata = doc.get("metadata") or {}
    where = f"{path.name}: Broker {metadata.get('name')}"
    if (metadata.get("annotations") or {}).get(BROKER_CLASS_ANNOTATION) != RABBITMQ_BROKER_CLASS:
        raise ManifestError(f"{where}: needs annotation {BROKER_CLASS_ANNOTATION}: {RABBITMQ_BROKER_CLASS}")
    spec = doc.get("spec") or {}
    config_name = (spec.get("config") or {}).get("name")
    configs = [d for _, d in documents if d.get("kind") == "RabbitmqBrokerConfig"
               and (d.get("metadata") or {}).get("name") == config_name]
    # Queue type defaults to quorum, as the controller's does.
    queue_type = ((configs[0].get("spec") or {}).get("queueType") if configs else None) or "quorum"
    return Broker(
        name=str(metadata.get("name")),
        namespace=str(metadata.get("namespace", "default")),
        queue_type=queue_type,
        delivery=parse_delivery(spec.get("delivery"), where),
    )


def parse_trigger(path: Path, doc: dict[str, Any]) -> Trigger:
    metadata = doc.get("metadata") or {}
    name = metadata.get("name")
    where = f"{path.name}: Trigger {name}"
    if not name:
        raise ManifestError(f"{path.name}: a Trigger has no metadata.name")
    spec = doc.get("spec") or {}
    attributes = (spec.get("filter") or {}).get("attributes") or {}
    if not all(isinstance(value, str) for value in attributes.values()):
        raise ManifestError(f"{where}: filter attributes must be strings")
    annotations = metadata.get("annotations") or {}
    return Trigger(
        name=str(name),
        namespace=str(metadata.get("namespace", "default")),
        broker=str(spec.get("broker", "default")),
        filter_attributes=dict(attributes),
        subscriber_service=service_ref(spec.get("subscriber"), f"{where}: spec.subscriber"),
        delivery=parse_delivery(spec.get("delivery"), where),
        parallelism=annotations.get(PARALLELISM_ANNOTATION),
    )
