"""`python -m stack`: `make logs` shows a JSON line readably, `make up` refuses a malformed manifest before it
starts anything, and runs without Jaeger (which `make run` does not build) until it is built."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import stack.__main__ as stack_main
from stack.__main__ import readable
from stack.config import FUNCTION_PORTS, PORT_BASE, ROOT
from stack.processes import port_open
from tests.support import processes_mentioning


def test_make_logs_shows_a_json_line_readably_and_other_lines_as_they_are() -> None:
    line = json.dumps({"time": "2026-12-01T17:06:24.632+00:00", "level": "info", "function": "convert",
                       "message": "emitted io.vid2mp3.audio.converted.v1", "job_id": "a" * 32, "trace_id": "b" * 32})
    assert readable(line) == (f"17:06:24.632 INFO    emitted io.vid2mp3.audio.converted.v1  [job_id={'a' * 32} "
                              f"trace_id={'b' * 32}]")
    for other in ("--- 2026-12-01 17:06:06 starting functions-framework", "[2026-12-01 17:06:07] [INFO] Booting",
                  "[1, 2]"):
        assert readable(other) == other


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


SEPARATE_PORT_BASE = 23000


def stack_command(command: str, local: Path, knative: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VID2MP3_LOCAL_DIR": str(local), "VID2MP3_KNATIVE_DIR": str(knative),
           "VID2MP3_PORT_BASE": str(SEPARATE_PORT_BASE)}
    return subprocess.run([sys.executable, "-m", "stack", command], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("files", "fragment"), [
    pytest.param(yaml_files(VALID_BROKER, trigger_document("t1", delivery={"retry": -1})),
                 "300-triggers.yaml: Trigger t1: delivery.retry must be a non-negative integer",
                 id="bad-retry"),
    pytest.param({**yaml_files(VALID_BROKER, VALID_TRIGGER), "300-triggers.yaml": "kind: [Trigger\n"},
                 "not valid YAML", id="invalid-yaml"),
])
def test_stack_up_refuses_a_malformed_manifest_and_starts_nothing(
        tmp_path: Path, files: dict[str, str], fragment: str) -> None:
    local = tmp_path / "local"
    knative = write_files(tmp_path / "knative", files)
    result = stack_command("up", local, knative)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.startswith("error: "), result.stderr
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr
    # Nothing started: no state written, no port of that stack's block answering, no process pointing at it.
    assert not local.exists() or not any(local.iterdir())
    functions = [port - PORT_BASE for port in FUNCTION_PORTS.values()]
    ports = [SEPARATE_PORT_BASE + offset for offset in (672, 673, 306, 17, 80, 25, *functions, 317, 318, 685, 686, 889)]
    assert [port for port in ports if port_open(port)] == []
    assert processes_mentioning(str(tmp_path)) == []




def test_without_jaeger_built_no_telemetry_is_sent_and_once_it_is_the_senders_start_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stack_main, "BIN", tmp_path / "bin")
    monkeypatch.setattr(stack_main, "LOCAL", tmp_path / "local")
    monkeypatch.setattr(stack_main, "SECRETS", tmp_path / "local" / "secrets")
    monkeypatch.setattr(stack_main, "TELEMETRY_STATE", tmp_path / "local" / "state" / "telemetry")
    points = {name: "http://127.0.0.1:1" for name in (
        "MONGO_URI", "MYSQL_URL", "BROKER_INGRESS_URL", "JWKS_URL", "AUTH_URL", "UPLOAD_URL", "STATUS_URL",
        "DOWNLOAD_URL", "WEB_URL", "WEBHOOKS_URL", "SENDGRID_API_HOST")}
    assert not stack_main.telemetry_built()
    assert not any(name.startswith("OTEL_") for name in stack_main.function_env(points))

    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "jaeger").touch()
    assert stack_main.telemetry_built()
    env = stack_main.function_env({**points, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:2"})
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:2"

    running = ["convert", "dispatcher-convert", "ferretdb", "ingress", "sendgrid-standin"]
    monkeypatch.setattr(stack_main.processes, "managed_names", lambda: running)
    monkeypatch.setattr(stack_main.processes, "running_pid", lambda name: 1)
    senders = {"convert", "upload", "dispatcher-convert", "ingress"}
    assert stack_main.started_without_telemetry(senders) == []  # no stack started before: nothing to redo
    stack_main.TELEMETRY_STATE.parent.mkdir(parents=True)
    stack_main.TELEMETRY_STATE.write_text("on\n")
    assert stack_main.started_without_telemetry(senders) == []
    stack_main.TELEMETRY_STATE.write_text("off\n")
    assert stack_main.started_without_telemetry(senders) == ["convert", "dispatcher-convert", "ingress"]
