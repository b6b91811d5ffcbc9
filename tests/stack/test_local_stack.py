"""Checks, without any server, how the local stack reads knative/ and what it derives from it: the Broker
and Triggers, the RabbitMQ names (kmeta.ChildName), each dispatcher's environment as the eventing-rabbitmq
controller's MakeDispatcherDeployment writes it, and the errors a malformed manifest gives, in load_routing
and in `python -m stack up`.

Expected names and durations below were computed with the Go code itself (knative.dev/pkg/kmeta.ChildName,
and rickb777/date period.Parse(...).DurationApprox().String() as the controller calls it) from the module
cache of stack/broker: these tests compare with the controller, not with a re-reading of our own code."""

from __future__ import annotations

import os
from pathlib import Path

from stack.__main__ import services_taking_one_request_per_pod
from stack.config import BIN, ROOT
from stack.manifests import load_documents, load_routing
from tests.support import processes_mentioning

KNATIVE = ROOT / "knative"


def test_the_running_dispatchers_deliver_at_most_one_request_per_core_to_one_request_per_pod_services(
        endpoints: dict[str, str]) -> None:
    """A Trigger's parallelism is how many pods of convert or segment work at once on a cluster; the local stack's
    one process per function gets at most one request per core, whatever the manifest says (16 for segment)."""
    assert {"convert", "segment"} <= services_taking_one_request_per_pod(load_documents(KNATIVE))
    parallelism = {environment["QUEUE_NAME"]: environment["PARALLELISM"]
                   for environment in map(environment_of, processes_mentioning(str(BIN / "dispatcher")))
                   if "QUEUE_NAME" in environment and environment.get("DLX") != "true"}
    for trigger in load_routing(KNATIVE).triggers:
        if trigger.subscriber_service in ("convert", "segment"):
            [running] = [value for queue, value in parallelism.items() if f".{trigger.name}." in queue]
            assert running == str(min(int(trigger.parallelism or "1"), os.cpu_count() or 1)), trigger.name


def environment_of(pid: int) -> dict[str, str]:
    try:
        entries = Path(f"/proc/{pid}/environ").read_text(errors="replace").split("\0")
    except OSError:
        return {}
    return dict(entry.split("=", 1) for entry in entries if "=" in entry)


