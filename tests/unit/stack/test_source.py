"""The RabbitmqSource on the local stack: the adapter's environment and the producers' topology as the controller and
the topology operator would make them, and a source the stack cannot run as a cluster would, named."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from stack.config import KNATIVE_DIR, SOURCE_DIR
from stack.manifests import ManifestError, load_routing
from stack.source import ProducerSide, load_producer_side


@pytest.fixture(scope="module")
def producers() -> ProducerSide:
    return load_producer_side(SOURCE_DIR, load_routing(KNATIVE_DIR).broker.name)


def test_the_adapter_gets_the_environment_the_controller_writes(producers: ProducerSide) -> None:
    assert producers.adapter_env("amqp://rabbit/", "http://ingress/") == {
        "RABBIT_URL": "amqp://rabbit/",
        "RABBITMQ_CHANNEL_PARALLELISM": "1",
        "RABBITMQ_EXCHANGE_NAME": "vid2mp3-producers",
        "RABBITMQ_QUEUE_NAME": "vid2mp3-producers",
        "RABBITMQ_PREDECLARED": "true",
        "K_SINK": "http://ingress/",
        "NAME": "vid2mp3-producers",
        "NAMESPACE": "vid2mp3",
        "RABBITMQ_VHOST": "",
        "HTTP_SENDER_RETRY": "6",
        "HTTP_SENDER_BACKOFF_POLICY": "exponential",
        # ISO-8601 as written: the adapter parses it itself (the dispatchers get Go durations instead).
        "HTTP_SENDER_BACKOFF_DELAY": "PT0.5S",
    }
    assert producers.adapter_process == "source-adapter-vid2mp3-producers"


def test_the_producer_topology_is_declared_as_the_topology_operator_would(producers: ProducerSide) -> None:
    assert [(e.name, e.type, e.durable, e.auto_delete) for e in producers.exchanges] == [
        ("vid2mp3-producers", "fanout", True, False), ("vid2mp3-producers-rejected", "fanout", True, False)]
    assert [(q.name, q.durable, q.arguments) for q in producers.queues] == [
        ("vid2mp3-producers", True,
         {"x-dead-letter-exchange": "vid2mp3-producers-rejected", "x-queue-type": "quorum"}),
        ("vid2mp3-producers-rejected", True, {"x-queue-type": "quorum"})]
    assert [(b.source, b.destination, b.routing_key) for b in producers.bindings] == [
        ("vid2mp3-producers", "vid2mp3-producers", ""),
        ("vid2mp3-producers-rejected", "vid2mp3-producers-rejected", "")]
    assert producers.rejected_queues() == ["vid2mp3-producers-rejected"]


def source_manifests(tmp_path: Path, change: Callable[[dict[str, Any]], Any]) -> Path:
    """rabbitmq-source/ with the RabbitmqSource changed by `change` (which may return a list of documents)."""
    folder = tmp_path / "rabbitmq-source"
    folder.mkdir()
    for path in SOURCE_DIR.glob("*.yaml"):
        documents = [document for document in yaml.safe_load_all(path.read_text()) if document]
        if path.name == "300-rabbitmq-source.yaml":
            changed = change(documents[0])
            documents = changed if isinstance(changed, list) else documents
        (folder / path.name).write_text(yaml.safe_dump_all(documents))
    return folder


MALFORMED_SOURCES = [
    pytest.param(lambda doc: doc["spec"]["rabbitmqResourcesConfig"].update(predeclared=False),
                 "runs a predeclared source only", id="not-predeclared"),
    pytest.param(lambda doc: doc["spec"]["rabbitmqResourcesConfig"].update(queueName="elsewhere"),
                 "consumes queue 'elsewhere', which no Queue here declares", id="queue-not-declared"),
    pytest.param(lambda doc: doc["spec"]["sink"]["ref"].update(name="other"),
                 "spec.sink must be `ref: {kind: Broker, name: vid2mp3}`", id="other-broker"),
    pytest.param(lambda doc: doc["spec"]["delivery"].update(backoffDelay="0.5s"),
                 "'0.5s' is not an ISO-8601 duration", id="go-style-delay"),
    pytest.param(lambda doc: doc["spec"]["delivery"].update(backoffPolicy="fibonacci"),
                 "backoffPolicy must be exponential or linear", id="bad-policy"),
    pytest.param(lambda doc: doc["spec"]["rabbitmqResourcesConfig"].update(parallelism=0),
                 "parallelism must be an integer from 1 to 1000, got 0", id="no-parallelism"),
    pytest.param(lambda doc: [doc, doc], "expected exactly one RabbitmqSource, found 2", id="two-sources"),
]


@pytest.mark.parametrize(("change", "fragment"), MALFORMED_SOURCES)
def test_a_source_the_stack_cannot_run_as_a_cluster_would_is_named(
        tmp_path: Path, change: Callable[[dict[str, Any]], Any], fragment: str) -> None:
    with pytest.raises(ManifestError) as raised:
        load_producer_side(source_manifests(tmp_path, change), "vid2mp3")
    assert fragment in str(raised.value)


