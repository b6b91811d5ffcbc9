"""The AsyncAPI 3.0 document of the broker's events: valid by the specification's own schema (which refuses a planted
fault), every event with its channel, message and operation, references resolving to the published schemas."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from events.asyncapi import BROKER_NAME, BROKER_NAMESPACE, INGRESS_HOST, asyncapi_document, channel_key
from events.catalog import PAYLOAD_MODELS, SCHEMA_BASE_URI, AudioConverted, VideoUploaded
from events.publish_schemas import SCHEMA_DIR
from events.transport import to_cloud_event
from stack.config import ROOT as REPO

SPEC_SCHEMA = REPO / ".local/node/node_modules/@asyncapi/specs/schemas/3.0.0-without-$id.json"


@pytest.fixture(scope="module")
def spec_validator() -> jsonschema.Draft7Validator:
    if not SPEC_SCHEMA.exists():
        pytest.fail(f"{SPEC_SCHEMA} is missing: `make setup` installs it (stack/node/package.json)", pytrace=False)
    schema = json.loads(SPEC_SCHEMA.read_text())
    return jsonschema.Draft7Validator(schema)


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return asyncapi_document()


def test_the_document_is_valid_asyncapi_3(spec_validator: jsonschema.Draft7Validator,
                                          document: dict[str, Any]) -> None:
    errors = [f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
              for error in spec_validator.iter_errors(document)]
    assert errors == []


@pytest.mark.parametrize("fault", ["asyncapi 2 verb", "channel without messages map", "server without protocol",
                                   "unknown top-level field"])
def test_the_specification_schema_rejects_a_planted_fault(spec_validator: jsonschema.Draft7Validator,
                                                          document: dict[str, Any], fault: str) -> None:
    broken = copy.deepcopy(document)
    first_operation = next(iter(broken["operations"].values()))
    first_channel = next(iter(broken["channels"].values()))
    if fault == "asyncapi 2 verb":
        first_operation["action"] = "subscribe"
    elif fault == "channel without messages map":
        first_channel["messages"] = [first_channel["messages"]]
    elif fault == "server without protocol":
        del broken["servers"]["brokerIngress"]["protocol"]
    else:
        broken["publish"] = {}
    assert not spec_validator.is_valid(broken)


def resolve(document: dict[str, Any], reference: str) -> Any:
    """The node a local reference points at, following references to references."""
    assert reference.startswith("#/"), reference
    node: Any = document
    for part in reference[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return resolve(document, node["$ref"]) if isinstance(node, dict) and "$ref" in node else node


def references(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in references(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in references(value)]
    return []


def test_every_catalogued_event_has_a_channel_a_message_and_a_receive_operation(document: dict[str, Any]) -> None:
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert addresses == {model.event_type for model in PAYLOAD_MODELS}
    for operation in document["operations"].values():
        assert operation["action"] == "receive"
        channel = resolve(document, operation["channel"]["$ref"])
        (message,) = [resolve(document, ref["$ref"]) for ref in operation["messages"]]
        assert message["title"] == channel["address"]


def test_every_reference_resolves_and_payloads_point_at_the_published_schemas(document: dict[str, Any]) -> None:
    external = []
    for reference in references(document):
        if reference.startswith("#/"):
            resolve(document, reference)
        else:
            external.append(reference)
    assert len(external) == len(PAYLOAD_MODELS)
    for model in PAYLOAD_MODELS:
        message = document["components"]["messages"][channel_key(model)]
        uri = message["payload"]["schema"]["$ref"]
        assert uri.startswith(SCHEMA_BASE_URI)
        published = json.loads((SCHEMA_DIR / uri.removeprefix(SCHEMA_BASE_URI)).read_text())
        assert published["$id"] == uri and published["x-cloudevents-type"] == model.event_type


def sample_events() -> list[Any]:
    owner, job = "42", "0" * 31 + "1"
    return [
        to_cloud_event(VideoUploaded(job_id=job, owner_id=owner, video_id="v1", filename="a.mp4", size_bytes=10,
                                     sha256="a" * 64, uploaded_at="2026-12-01T00:00:00Z"), source_function="upload"),
        to_cloud_event(AudioConverted(job_id=job, owner_id=owner, audio_id="a1", size_bytes=10, sha256="b" * 64,
                                      duration_seconds=1.5, bitrate_kbps=192, stream_copied=False,
                                      converted_at="2026-12-01T00:00:00Z"), source_function="convert"),
    ]


@pytest.mark.parametrize("event", sample_events(), ids=lambda event: event["type"])
def test_the_headers_describe_the_events_the_functions_emit(document: dict[str, Any], event: Any) -> None:
    channel = next(channel for channel in document["channels"].values() if channel["address"] == event["type"])
    message = resolve(document, next(iter(channel["messages"].values()))["$ref"])
    attributes = {name: str(value) for name, value in event.get_attributes().items()}
    jsonschema.validate(attributes, message["headers"])
    http_headers = {f"ce-{name}": value for name, value in attributes.items()}
    jsonschema.validate(http_headers, message["bindings"]["http"]["headers"])
    # ... and the schema is not so loose that an event of another type passes as this one.
    wrong = {**attributes, "type": "io.vid2mp3.something.else.v1"}
    assert not jsonschema.Draft202012Validator(message["headers"]).is_valid(wrong)


def test_the_servers_are_the_broker_of_the_manifests(document: dict[str, Any]) -> None:
    manifests = list(yaml.safe_load_all((REPO / "knative/100-broker.yaml").read_text()))
    (broker,) = [doc for doc in manifests if doc["kind"] == "Broker"]
    assert (broker["metadata"]["namespace"], broker["metadata"]["name"]) == (BROKER_NAMESPACE, BROKER_NAME)
    assert document["servers"]["brokerIngress"]["host"] == INGRESS_HOST
    (config,) = [doc for doc in manifests if doc["kind"] == "RabbitmqBrokerConfig"]
    cluster = config["spec"]["rabbitmqClusterReference"]["name"]
    assert document["servers"]["brokerExchange"]["host"].startswith(f"{cluster}.{BROKER_NAMESPACE}.svc.")


def test_the_schema_file_is_the_pinned_package() -> None:
    lock = json.loads(Path(REPO / "stack/node/package-lock.json").read_text())
    pinned = lock["packages"]["node_modules/@asyncapi/specs"]["version"]
    installed = json.loads((SPEC_SCHEMA.parents[1] / "package.json").read_text())["version"]
    assert installed == pinned


