"""Declares, in RabbitMQ, the broker topology the eventing-rabbitmq controller would declare for our manifests, and
derives each dispatcher's environment the way the controller derives its Deployment's.

Names, exchange type, queue type and arguments, binding arguments and the dead-letter policy follow
eventing-rabbitmq's `pkg/rabbitmqnaming`, `pkg/rabbit` and the Trigger/Broker reconcilers."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pika

from stack.manifests import DEFAULT_RETRY_WHEN_DELIVERY_HAS_NONE, Broker, Delivery, Routing, Trigger

KUBERNETES_NAME_MAX = 63
TRIGGER_BINDING_KEY = "x-knative-trigger"


def child_name(parent: str, suffix: str) -> str:
    """knative.dev/pkg kmeta.ChildName: parent+suffix, hashed to fit 63 characters when longer."""
    head = KUBERNETES_NAME_MAX - 32
    if len(parent) <= KUBERNETES_NAME_MAX - len(suffix):
        return parent + suffix
    if head - len(suffix) <= 0:
        digest = hashlib.md5((parent + suffix).encode(), usedforsecurity=False).hexdigest()
        name = parent[:head] + digest
        if (room := KUBERNETES_NAME_MAX - len(name)) > 0:
            name += suffix[:room]
        return re.sub(r"[^a-zA-Z0-9]+$", "", name)
    digest = hashlib.md5(parent.encode(), usedforsecurity=False).hexdigest()
    return parent[: head - len(suffix)] + digest + suffix


def go_duration(value: timedelta) -> str:
    """Go's time.Duration.String(), which the controller writes into BACKOFF_DELAY and TIMEOUT: 500ms, 30s, 3m0s."""
    microseconds = abs(value // timedelta(microseconds=1))
    sign = "-" if value < timedelta(0) else ""
    if microseconds == 0:
        return "0s"
    if microseconds < 1_000:
        return f"{sign}{microseconds}µs"
    if microseconds < 1_000_000:
        return f"{sign}{_decimal(microseconds, 1_000)}ms"
    hours, rest = divmod(microseconds, 3_600_000_000)
    minutes, rest = divmod(rest, 60_000_000)
    text = f"{_decimal(rest, 1_000_000)}s"
    if hours:
        text = f"{hours}h{minutes}m{text}"
    elif minutes:
        text = f"{minutes}m{text}"
    return sign + text


def _decimal(value: int, unit: int) -> str:
    """`value / unit` written as Go writes duration fields: no trailing zeros, no point when whole."""
    whole, fraction = divmod(value, unit)
    digits = str(fraction).rjust(len(str(unit)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}" if digits else str(whole)


class ObjectUids:
    """Stable stand-ins for the Kubernetes UIDs that resource names embed, kept across `make up` runs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._uids: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}

    def __call__(self, kind: str, name: str) -> str:
        key = f"{kind}/{name}"
        if key not in self._uids:
            self._uids[key] = str(uuid.uuid4())
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self._uids, indent=2))
        return self._uids[key]


@dataclass(frozen=True)
class DispatcherSpec:
    """One dispatcher process: which queue it drains, where it delivers, and its full environment."""

    name: str
    queue: str
    subscriber_service: str
    env: dict[str, str]


class Topology:
    def __init__(self, routing: Routing, uids: Callable[[str, str], str]) -> None:
        self.routing = routing
        self.broker: Broker = routing.broker
        self._uids = uids
        self.broker_uid = uids("Broker", self.broker.name)

    def _broker_base(self) -> str:
        return f"{self.broker.namespace}.{self.broker.name}"

    @property
    def exchange(self) -> str:
        return child_name(f"b.{self._broker_base()}.", self.broker_uid)

    @property
    def broker_dlx(self) -> str:
        return child_name(f"b.{self._broker_base()}.dlx.", self.broker_uid)

    @property
    def broker_dlq(self) -> str:
        return child_name(f"b.{self._broker_base()}.dlq.", self.broker_uid)

    def trigger_uid(self, trigger: Trigger) -> str:
        return self._uids("Trigger", trigger.name)

    def trigger_queue(self, trigger: Trigger) -> str:
        return f"{trigger.namespace}.{trigger.name}.{self.broker_uid}"

    def trigger_dlx(self, trigger: Trigger) -> str:
        return child_name(f"t.{trigger.namespace}.{trigger.name}.dlx.", self.trigger_uid(trigger))

    def trigger_dlq(self, trigger: Trigger) -> str:
        return child_name(f"t.{trigger.namespace}.{trigger.name}.dlq.", self.trigger_uid(trigger))

    def trigger_policy_name(self, trigger: Trigger) -> str:
        return child_name(f"t.{trigger.namespace}.{trigger.name}.", self.trigger_uid(trigger))

    def dead_letter_exchange(self, trigger: Trigger) -> str:
        """DLX_NAME as the controller sets it: the Trigger's own DLX when it has a dead-letter sink, the Broker's
        when the Trigger has no delivery spec at all, none otherwise (then failures are dropped)."""
        if trigger.delivery is not None:
            return self.trigger_dlx(trigger) if trigger.delivery.dead_letter_service else ""
        return self.broker_dlx if self.broker.delivery and self.broker.delivery.dead_letter_service else ""

    def binding_arguments(self, trigger: Trigger) -> dict[str, str]:
        return {**trigger.filter_attributes, TRIGGER_BINDING_KEY: trigger.name, "x-match": "all"}

    def queue_arguments(self) -> dict[str, str]:
        return {"x-queue-type": self.broker.queue_type}

    def declare(self, channel: pika.adapters.blocking_connection.BlockingChannel) -> None:
        declare_exchange(channel, self.exchange)
        if self.broker.delivery and self.broker.delivery.dead_letter_service:
            self._declare_dead_letter_pair(channel, self.broker_dlx, self.broker_dlq)
        for trigger in self.routing.triggers:
            self.declare_trigger(channel, trigger)

    def declare_trigger(self, channel: pika.adapters.blocking_connection.BlockingChannel, trigger: Trigger) -> None:
        queue = self.trigger_queue(trigger)
        channel.queue_declare(queue, durable=True, arguments=self.queue_arguments())
        channel.queue_bind(queue, self.exchange, routing_key="", arguments=self.binding_arguments(trigger))
        if trigger.delivery and trigger.delivery.dead_letter_service:
            self._declare_dead_letter_pair(channel, self.trigger_dlx(trigger), self.trigger_dlq(trigger))

    def _declare_dead_letter_pair(self, channel: pika.adapters.blocking_connection.BlockingChannel,
                                  exchange: str, queue: str) -> None:
        declare_exchange(channel, exchange)
        channel.queue_declare(queue, durable=True, arguments=self.queue_arguments())
        channel.queue_bind(queue, exchange, routing_key="", arguments={"x-match": "all"})

    def dead_letter_policies(self) -> list[tuple[str, str, str]]:
        """(policy name, queue pattern, DLX) of each Trigger queue with a DLX, as the controller's Policy objects."""
        policies = []
        for trigger in self.routing.triggers:
            if dlx := self.dead_letter_exchange(trigger):
                pattern = f"^{re.escape(self.trigger_queue(trigger))}$"
                policies.append((self.trigger_policy_name(trigger), pattern, dlx))
        return policies

    def dispatchers(self, rabbit_url: str, ingress_url: str,
                    service_url: Callable[[str], str]) -> list[DispatcherSpec]:
        specs = []
        for trigger in self.routing.triggers:
            specs += self.trigger_dispatchers(trigger, rabbit_url, ingress_url, service_url)
        if self.broker.delivery and self.broker.delivery.dead_letter_service:
            # The controller's Broker DLQ dispatcher takes the Broker's retry and backoff, but no timeout.
            delivery = {key: value for key, value in delivery_env(self.broker.delivery).items() if key != "TIMEOUT"}
            specs.append(DispatcherSpec(
                name=f"dlq-dispatcher-broker-{self.broker.name}",
                queue=self.broker_dlq,
                subscriber_service=self.broker.delivery.dead_letter_service,
                env={
                    **base_env(self.broker_dlq, rabbit_url, ingress_url,
                               service_url(self.broker.delivery.dead_letter_service), self.broker.namespace),
                    **delivery,
                    "PARALLELISM": "1",
                    "DLX": "true",
                },
            ))
        return specs

    def trigger_dispatchers(self, trigger: Trigger, rabbit_url: str, ingress_url: str,
                            service_url: Callable[[str], str]) -> list[DispatcherSpec]:
        """The Trigger's dispatcher, and the one draining its dead-letter queue when it has a dead-letter sink."""
        specs = [self._dispatcher(
            f"dispatcher-{trigger.name}", trigger, self.trigger_queue(trigger), trigger.subscriber_service,
            trigger.delivery or self.broker.delivery, rabbit_url, ingress_url, service_url,
            dead_letter_mode=False, dlx_name=self.dead_letter_exchange(trigger),
        )]
        if trigger.delivery and trigger.delivery.dead_letter_service:
            specs.append(self._dispatcher(
                f"dlq-dispatcher-{trigger.name}", trigger, self.trigger_dlq(trigger),
                trigger.delivery.dead_letter_service, trigger.delivery, rabbit_url, ingress_url, service_url,
                dead_letter_mode=True, dlx_name="",
            ))
        return specs

    def _dispatcher(self, name: str, trigger: Trigger, queue: str, service: str, delivery: Delivery | None,
                    rabbit_url: str, ingress_url: str, service_url: Callable[[str], str], *,
                    dead_letter_mode: bool, dlx_name: str) -> DispatcherSpec:
        env = base_env(queue, rabbit_url, ingress_url, service_url(service), trigger.namespace)
        env.update(delivery_env(delivery))
        env["PARALLELISM"] = trigger.parallelism or "1"
        if dead_letter_mode:
            env["DLX"] = "true"
        if dlx_name:
            env["DLX_NAME"] = dlx_name
        return DispatcherSpec(name=name, queue=queue, subscriber_service=service, env=env)


def declare_exchange(channel: pika.adapters.blocking_connection.BlockingChannel, name: str) -> None:
    channel.exchange_declare(name, exchange_type="headers", durable=True, auto_delete=False)


def base_env(queue: str, rabbit_url: str, ingress_url: str, subscriber_url: str, namespace: str) -> dict[str, str]:
    return {
        "QUEUE_NAME": queue,
        "RABBIT_URL": rabbit_url,
        "BROKER_INGRESS_URL": ingress_url,
        "SUBSCRIBER": subscriber_url,
        "NAMESPACE": namespace,
        "SYSTEM_NAMESPACE": namespace,
        "CONTAINER_NAME": "dispatcher",
        "POD_NAME": queue,
    }


def delivery_env(delivery: Delivery | None) -> dict[str, str]:
    """RETRY, BACKOFF_POLICY, BACKOFF_DELAY and TIMEOUT exactly as the controller writes them."""
    if delivery is None:
        return {}
    env = {"RETRY": str(delivery.retry if delivery.retry is not None else DEFAULT_RETRY_WHEN_DELIVERY_HAS_NONE)}
    if delivery.backoff_policy:
        env["BACKOFF_POLICY"] = delivery.backoff_policy
    if delivery.backoff_delay is not None:
        env["BACKOFF_DELAY"] = go_duration(delivery.backoff_delay)
    if delivery.timeout is not None:
        env["TIMEOUT"] = go_duration(delivery.timeout)
    return env
