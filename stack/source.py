"""Reads `rabbitmq-source/` (the RabbitmqSource, the producers' exchanges, queues and bindings): declares those in
RabbitMQ and derives the source adapter's environment as the eventing-rabbitmq controller writes its Deployment's."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pika

from stack.manifests import Delivery, ManifestError, load_documents, parse_delivery

ADAPTER_PROGRAM = "source-adapter"
# The RabbitmqSource CRD's default for rabbitmqResourcesConfig.parallelism.
DEFAULT_PARALLELISM = 1


@dataclass(frozen=True)
class Exchange:
    name: str
    type: str
    durable: bool
    auto_delete: bool
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Queue:
    name: str
    durable: bool
    auto_delete: bool
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Binding:
    source: str
    destination: str
    routing_key: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class RabbitmqSource:
    name: str
    namespace: str
    queue: str
    exchange: str
    parallelism: int
    vhost: str
    sink_broker: str
    # The delivery spec as written: the adapter parses ISO-8601 itself, so the delay goes through untranslated.
    retry: int | None
    backoff_policy: str | None
    backoff_delay: str | None


@dataclass(frozen=True)
class ProducerSide:
    """What `make up` runs for rabbitmq-source/: the source and the topology it consumes from."""

    source: RabbitmqSource
    exchanges: list[Exchange] = field(default_factory=list)
    queues: list[Queue] = field(default_factory=list)
    bindings: list[Binding] = field(default_factory=list)

    @property
    def adapter_process(self) -> str:
        """The local process standing for the controller's receive-adapter Deployment of this source."""
        return f"{ADAPTER_PROGRAM}-{self.source.name}"

    def rejected_queues(self) -> list[str]:
        """The queues that the source queue's dead-letter exchange feeds: where the messages it rejects end up."""
        queue = next(queue for queue in self.queues if queue.name == self.source.queue)
        exchange = queue.arguments.get("x-dead-letter-exchange")
        return [binding.destination for binding in self.bindings if exchange and binding.source == exchange]

    def declare(self, channel: pika.adapters.blocking_connection.BlockingChannel) -> None:
        """What the messaging topology operator declares for the Exchange, Queue and Binding objects."""
        for exchange in self.exchanges:
            channel.exchange_declare(exchange.name, exchange_type=exchange.type, durable=exchange.durable,
                                     auto_delete=exchange.auto_delete, arguments=exchange.arguments or None)
        for queue in self.queues:
            channel.queue_declare(queue.name, durable=queue.durable, auto_delete=queue.auto_delete,
                                  arguments=queue.arguments or None)
        for binding in self.bindings:
            channel.queue_bind(binding.destination, binding.source, routing_key=binding.routing_key,
                               arguments=binding.arguments or None)

    def adapter_env(self, rabbit_url: str, sink_url: str) -> dict[str, str]:
        """The receive adapter's environment, variable for variable as the controller sets it."""
        source = self.source
        env = {
            "RABBIT_URL": rabbit_url,
            "RABBITMQ_CHANNEL_PARALLELISM": str(source.parallelism),
            "RABBITMQ_EXCHANGE_NAME": source.exchange,
            "RABBITMQ_QUEUE_NAME": source.queue,
            "RABBITMQ_PREDECLARED": "true",
            "K_SINK": sink_url,
            "NAME": source.name,
            "NAMESPACE": source.namespace,
            "RABBITMQ_VHOST": source.vhost,
        }
        if source.retry is not None:
            env["HTTP_SENDER_RETRY"] = str(source.retry)
        if source.retry is not None or source.backoff_policy or source.backoff_delay:
            # The controller writes a policy whenever there is a delivery spec: exponential unless one is given.
            env["HTTP_SENDER_BACKOFF_POLICY"] = source.backoff_policy or "exponential"
        if source.backoff_delay:
            env["HTTP_SENDER_BACKOFF_DELAY"] = source.backoff_delay
        return env


def load_producer_side(directory: Path, broker_name: str) -> ProducerSide:
    """The RabbitmqSource and the producers' topology in `directory`; ManifestError if the local stack could not run
    them as a cluster would (a sink other than `broker_name`, a queue nothing declares)."""
    documents = load_documents(directory)
    sources = [(path, doc) for path, doc in documents if doc.get("kind") == "RabbitmqSource"]
    if len(sources) != 1:
        raise ManifestError(f"{directory}: expected exactly one RabbitmqSource, found {len(sources)}")
    source = parse_source(*sources[0], broker_name)
    side = ProducerSide(
        source=source,
        exchanges=[parse_exchange(path, doc) for path, doc in documents if doc.get("kind") == "Exchange"],
        queues=[parse_queue(path, doc) for path, doc in documents if doc.get("kind") == "Queue"],
        bindings=[parse_binding(path, doc) for path, doc in documents if doc.get("kind") == "Binding"],
    )
    # predeclared: the source only consumes, so the queue must come from this folder for a local producer to reach it.
    if source.queue not in {queue.name for queue in side.queues}:
        raise ManifestError(f"{directory}: RabbitmqSource {source.name} consumes queue {source.queue!r}, "
                            "which no Queue here declares")
    return side


def _spec(path: Path, doc: dict[str, Any]) -> tuple[dict[str, Any], str]:
    metadata = doc.get("metadata") or {}
    return doc.get("spec") or {}, f"{path.name}: {doc.get('kind')} {metadata.get('name')}"


def _arguments(spec: dict[str, Any], where: str) -> dict[str, Any]:
    arguments = spec.get("arguments") or {}
    if not isinstance(arguments, dict):
        raise ManifestError(f"{where}: arguments must be a mapping")
    return dict(arguments)


def _name(spec: dict[str, Any], key: str, where: str) -> str:
    value = spec.get(key)
    if not isinstance(value, str) or not value:
        raise ManifestError(f"{where}: spec.{key} must name a RabbitMQ object")
    return value


def parse_exchange(path: Path, doc: dict[str, Any]) -> Exchange:
    spec, where = _spec(path, doc)
    # The topology operator's defaults: a durable direct exchange.
    return Exchange(name=_name(spec, "name", where), type=str(spec.get("type", "direct")),
                    durable=bool(spec.get("durable", True)), auto_delete=bool(spec.get("autoDelete", False)),
                    arguments=_arguments(spec, where))


def parse_queue(path: Path, doc: dict[str, Any]) -> Queue:
    spec, where = _spec(path, doc)
    arguments = _arguments(spec, where)
    if spec.get("type"):  # the operator sends the queue type as this argument
        arguments["x-queue-type"] = spec["type"]
    return Queue(name=_name(spec, "name", where), durable=bool(spec.get("durable", False)),
                 auto_delete=bool(spec.get("autoDelete", False)), arguments=arguments)


def parse_binding(path: Path, doc: dict[str, Any]) -> Binding:
    spec, where = _spec(path, doc)
    if spec.get("destinationType", "queue") != "queue":
        raise ManifestError(f"{where}: the local stack binds queues only, not {spec.get('destinationType')!r}")
    return Binding(source=_name(spec, "source", where), destination=_name(spec, "destination", where),
                   routing_key=str(spec.get("routingKey", "")), arguments=_arguments(spec, where))


def parse_source(path: Path, doc: dict[str, Any], broker_name: str) -> RabbitmqSource:
    spec, where = _spec(path, doc)
    metadata = doc.get("metadata") or {}
    resources = spec.get("rabbitmqResourcesConfig") or {}
    if not resources.get("predeclared"):
        # Without it the controller declares an exchange and queue of its own naming; locally nothing would.
        raise ManifestError(f"{where}: the local stack runs a predeclared source only (rabbitmqResourcesConfig."
                            "predeclared: true, with the queue declared beside it)")
    parallelism = resources.get("parallelism", DEFAULT_PARALLELISM)
    if not isinstance(parallelism, int) or not 1 <= parallelism <= 1000:
        raise ManifestError(f"{where}: parallelism must be an integer from 1 to 1000, got {parallelism!r}")
    ref = (spec.get("sink") or {}).get("ref") or {}
    if ref.get("kind") != "Broker" or ref.get("name") != broker_name:
        raise ManifestError(f"{where}: spec.sink must be `ref: {{kind: Broker, name: {broker_name}}}`, the Broker "
                            "the local stack runs")
    # Checked as a Trigger's delivery spec is; the delay goes to the adapter as written (it parses ISO-8601 itself).
    delivery = parse_delivery(spec.get("delivery") or {}, where) or Delivery()
    delay = (spec.get("delivery") or {}).get("backoffDelay")
    return RabbitmqSource(
        name=str(metadata.get("name")),
        namespace=str(metadata.get("namespace", "default")),
        queue=_name(resources, "queueName", f"{where}: rabbitmqResourcesConfig"),
        exchange=str(resources.get("exchangeName", "")),
        parallelism=parallelism,
        vhost=str(resources.get("vhost", "")),
        sink_broker=broker_name,
        retry=delivery.retry,
        backoff_policy=delivery.backoff_policy,
        backoff_delay=delay,
    )
