"""The broker's events as an AsyncAPI 3.0 document, generated from the catalog so the two cannot drift.

One channel per event type; its message's payload is a reference to the published JSON Schema of that type
(`events/schemas/`), its headers are the CloudEvents attributes the catalog's conventions fix. The document
describes what a subscriber of the `vid2mp3` Broker receives, so every operation is a `receive`. Two servers:
the Broker's HTTP ingress (where events are published and from where a Trigger delivers them, binary mode, with
`ce-` headers) and the RabbitMQ exchange behind it (the AMQP mapping eventing-rabbitmq uses: headers named by
bare attribute names, a `headers` exchange that a Trigger's filter matches on).

Served by the web function at `/asyncapi.json`; `python -m events.asyncapi` prints it.
"""

from __future__ import annotations

import inspect
import json
from typing import Any

from events.catalog import JOB_ID_PATTERN, PAYLOAD_MODELS, SOURCE_PREFIX, EventPayload

ASYNCAPI_VERSION = "3.0.0"
# The Broker of knative/100-broker.yaml (a test checks these against it). eventing-rabbitmq addresses a Broker as
# `http://<broker>-broker-ingress.<namespace>.svc.cluster.local/` and names its exchange
# `b.<namespace>.<broker>.<broker UID>`: the UID is known only once the cluster created the Broker.
BROKER_NAMESPACE = "vid2mp3"
BROKER_NAME = "vid2mp3"
INGRESS_HOST = f"{BROKER_NAME}-broker-ingress.{BROKER_NAMESPACE}.svc.cluster.local"
EXCHANGE_NAME = f"b.{BROKER_NAMESPACE}.{BROKER_NAME}.{{brokerUID}}"
# The JSON Schemas in events/schemas/ declare draft 2020-12 (pydantic's output), so the payloads say so.
PAYLOAD_SCHEMA_FORMAT = "application/schema+json;version=draft-2020-12"


def channel_key(model: type[EventPayload]) -> str:
    """`io.vid2mp3.audio.converted.v1` → `audioConvertedV1`: AsyncAPI keys must be identifiers."""
    words = model.event_type.removeprefix("io.vid2mp3.").replace(".", " ").split()
    return words[0] + "".join(word.capitalize() for word in words[1:])


def attribute_headers(model: type[EventPayload], prefix: str) -> dict[str, Any]:
    """The CloudEvents context attributes of this type's events, as a schema of message headers named
    `<prefix><attribute>`. Other headers (extensions such as `traceparent`, or the `knativeerror*` ones a
    dispatcher adds on the way to a dead-letter sink) may be present, so the schema stays open."""
    attributes: dict[str, Any] = {
        "specversion": {"const": "1.0"},
        "type": {"const": model.event_type},
        "source": {"type": "string", "pattern": f"^{SOURCE_PREFIX}[a-z]+$",
                   "description": "The function that emitted the event."},
        "id": {"type": "string", "pattern": f"^{JOB_ID_PATTERN[1:-1]}\\.{model.event_name}(\\.|$)",
               "description": "Deterministic: a re-emission carries the same id; deduplicate on source + id."},
        "subject": {"type": "string", "pattern": JOB_ID_PATTERN, "description": "The job id."},
        "time": {"type": "string", "format": "date-time"},
        "dataschema": {"const": model.schema_uri()},
    }
    return {
        "type": "object",
        "required": [prefix + name for name in ("specversion", "type", "source", "id", "subject")],
        "properties": {prefix + name: schema for name, schema in attributes.items()},
    }


def message(model: type[EventPayload]) -> dict[str, Any]:
    return {
        "name": model.__name__,
        "title": model.event_type,
        "summary": (inspect.getdoc(model) or "").split("\n\n")[0].replace("\n", " "),
        "contentType": "application/json",
        "headers": attribute_headers(model, prefix=""),
        "payload": {"schemaFormat": PAYLOAD_SCHEMA_FORMAT, "schema": {"$ref": model.schema_uri()}},
        "bindings": {
            # Delivered by a Trigger's dispatcher as a binary-mode CloudEvent: the attributes as `ce-` headers.
            "http": {"bindingVersion": "0.3.0", "headers": attribute_headers(model, prefix="ce-")},
            "amqp": {"bindingVersion": "0.3.0", "contentEncoding": "identity", "messageType": model.event_type},
        },
    }


def channel(model: type[EventPayload]) -> dict[str, Any]:
    key = channel_key(model)
    return {
        # On the Broker every type shares one ingress and one exchange; what tells them apart, and what a
        # Trigger's filter matches, is the `type` attribute.
        "address": model.event_type,
        "title": model.event_type,
        "messages": {key: {"$ref": f"#/components/messages/{key}"}},
        "bindings": {
            "amqp": {
                "bindingVersion": "0.3.0",
                "is": "routingKey",
                "exchange": {"name": EXCHANGE_NAME, "type": "headers", "durable": True, "autoDelete": False,
                             "vhost": "/"},
            },
        },
    }


def operation(model: type[EventPayload]) -> dict[str, Any]:
    key = channel_key(model)
    return {
        "action": "receive",
        "title": f"Receive {model.event_type}",
        "summary": f"A Trigger with `filter.attributes.type: {model.event_type}` delivers these events.",
        "channel": {"$ref": f"#/channels/{key}"},
        "messages": [{"$ref": f"#/channels/{key}/messages/{key}"}],
    }


def asyncapi_document() -> dict[str, Any]:
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "vid2mp3 events",
            "version": "1",
            "description": "The CloudEvents the vid2mp3 pipeline emits on its Knative Broker (RabbitMQ-backed). "
                           "Delivery is at least once; events carry ids, never addresses. "
                           "See events/README.md for the conventions and each event's meaning.",
            "license": {"name": "Apache-2.0"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "brokerIngress": {
                "host": INGRESS_HOST,
                "protocol": "http",
                "pathname": "/",
                "description": "The Broker's ingress inside the cluster: POST one CloudEvent (binary or structured "
                               "mode); 202 once RabbitMQ confirmed it. It authenticates no sender.",
            },
            "brokerExchange": {
                "host": f"{BROKER_NAME}-rabbitmq.{BROKER_NAMESPACE}.svc.cluster.local:5672",
                "protocol": "amqp",
                "protocolVersion": "0-9-1",
                "description": "The RabbitMQ cluster behind the Broker; each Trigger's queue is bound to the "
                               "Broker's headers exchange with its filter as the binding's arguments.",
            },
        },
        "channels": {channel_key(model): channel(model) for model in PAYLOAD_MODELS},
        "operations": {f"receive{channel_key(model)[0].upper()}{channel_key(model)[1:]}": operation(model)
                       for model in PAYLOAD_MODELS},
        "components": {"messages": {channel_key(model): message(model) for model in PAYLOAD_MODELS}},
    }


def main() -> None:
    print(json.dumps(asyncapi_document(), indent=2))


if __name__ == "__main__":
    main()
