"""`python -m stack up|down|status|logs`: the local stack behind `make up`, `make down`, `make status`, `make logs`."""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from stack import processes, servers, telemetry
from stack.config import (
    ALLOCATOR_TUNING,
    BIN,
    ENDPOINTS_FILE,
    FUNCTION_PORTS,
    HOST,
    INGRESS_PORT,
    KNATIVE_DIR,
    LOCAL,
    LOCAL_STACK_QUOTAS,
    LOGS,
    OTLP_HTTP_PORT,
    PUBLIC_FUNCTIONS,
    RABBITMQ_NODE,
    RECONCILE_INTERVAL_SECONDS,
    ROOT,
    SENDGRID_PORT,
    SOURCE_DIR,
    function_url,
    ingress_url,
    server_urls,
)
from stack.manifests import ManifestError, load_documents, load_routing
from stack.processes import StackError
from stack.source import ADAPTER_PROGRAM, ProducerSide, load_producer_side
from stack.topology import DispatcherSpec, ObjectUids, Topology

FUNCTION_READY_TIMEOUT_SECONDS = 60
SECRETS = LOCAL / "secrets"
# Whether the running stack's functions and broker data plane were started sending telemetry ("on", "off"): a stack
# started before Jaeger was built (`make run` builds none) has its processes started again with it once it is.
TELEMETRY_STATE = LOCAL / "state" / "telemetry"


def telemetry_built() -> bool:
    """Jaeger is built by `make setup` (all of it), not by `make run`'s set-up: converting a video needs no traces."""
    return (BIN / "jaeger").exists()


def topology() -> Topology:
    return Topology(load_routing(KNATIVE_DIR), ObjectUids(LOCAL / "state" / "uids.json"))


def producer_side() -> ProducerSide:
    return load_producer_side(SOURCE_DIR, load_routing(KNATIVE_DIR).broker.name)


def jwt_private_key_pem() -> str:
    """The local stack's token signing key, made once; a cluster takes its key from a Secret instead."""
    path = SECRETS / "jwt-ed25519.pem"
    if not path.exists():
        SECRETS.mkdir(parents=True, exist_ok=True, mode=0o700)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        path.write_bytes(pem)
        path.chmod(0o600)
    return path.read_text()


def download_link_keys() -> str:
    """The local stack's key for signed download links, made once; a cluster takes its keys from a Secret."""
    path = SECRETS / "download-link-keys"
    if not path.exists():
        SECRETS.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.write_text("local:" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("="))
        path.chmod(0o600)
    return path.read_text().strip()


def endpoints() -> dict[str, str]:
    urls = server_urls()
    return {
        "AUTH_URL": function_url("auth"),
        "JWKS_URL": function_url("auth") + "/.well-known/jwks.json",
        "UPLOAD_URL": function_url("upload"),
        "STATUS_URL": function_url("status"),
        "DOWNLOAD_URL": function_url("download"),
        "WEB_URL": function_url("web"),
        "WEBHOOKS_URL": function_url("webhooks"),
        **{f"{name.upper()}_FUNCTION_URL": function_url(name) for name in FUNCTION_PORTS},
        "BROKER_INGRESS_URL": ingress_url(),
        "BROKER_EXCHANGE": topology().exchange,
        "PRODUCER_EXCHANGE": producer_side().source.exchange,
        "AMQP_URL": urls.amqp,
        "MONGO_URI": urls.mongo,
        "MYSQL_URL": urls.mysql,
        "SENDGRID_API_HOST": os.environ.get("VID2MP3_SENDGRID_API_HOST", f"http://{HOST}:{SENDGRID_PORT}"),
        **({"JAEGER_URL": telemetry.jaeger_url(), "METRICS_URL": telemetry.metrics_url(),
            "OTEL_EXPORTER_OTLP_ENDPOINT": telemetry.otlp_endpoint()} if telemetry_built() else {}),
    }


def function_env(points: dict[str, str]) -> dict[str, str]:
    """Every setting any function reads; each function takes what its settings class declares."""
    (LOCAL / "work").mkdir(parents=True, exist_ok=True)
    return {
        "MONGO_URI": points["MONGO_URI"],
        "MYSQL_URL": points["MYSQL_URL"],
        "K_SINK": points["BROKER_INGRESS_URL"],
        "JWKS_URL": points["JWKS_URL"],
        "JWT_PRIVATE_KEY": jwt_private_key_pem(),
        "PUBLIC_AUTH_URL": points["AUTH_URL"],
        "PUBLIC_UPLOAD_URL": points["UPLOAD_URL"],
        "PUBLIC_STATUS_URL": points["STATUS_URL"],
        "PUBLIC_DOWNLOAD_URL": points["DOWNLOAD_URL"],
        "PUBLIC_WEB_URL": points["WEB_URL"],
        "PUBLIC_WEBHOOKS_URL": points["WEBHOOKS_URL"],
        "DOWNLOAD_LINK_KEYS": download_link_keys(),
        # The web page calls auth, upload, status and download from its own origin.
        "CORS_ALLOWED_ORIGINS": points["WEB_URL"],
        "SENDGRID_API_HOST": points["SENDGRID_API_HOST"],
        # The stand-in checks that a key is sent, not which; a real key comes from the environment.
        "SENDGRID_API_KEY": os.environ.get("VID2MP3_SENDGRID_API_KEY", "local-standin-key"),
        "WORK_DIR": str(LOCAL / "work"),
        # Webhook receivers of a local stack (tests, a developer's) listen on 127.0.0.1 over http.
        "WEBHOOK_ALLOW_LOOPBACK": "true",
        # Videos imported by URL from a local test server on 127.0.0.1 (tests/stack/test_url_import.py).
        "URL_IMPORT_ALLOW_LOOPBACK": "true",
        # Traces and metrics to the stack's Jaeger when it is built (runtime/telemetry.py; unset: none are made).
        # Metrics every 5 s and spans every 0.5 s (the SDK's defaults: 60 s, 5 s), so a test, `curl $METRICS_URL`
        # or the query API sees them soon.
        **({"OTEL_EXPORTER_OTLP_ENDPOINT": points["OTEL_EXPORTER_OTLP_ENDPOINT"],
            "OTEL_METRIC_EXPORT_INTERVAL": "5000", "OTEL_BSP_SCHEDULE_DELAY": "500"}
           if "OTEL_EXPORTER_OTLP_ENDPOINT" in points else {}),
        "PYTHONUNBUFFERED": "1",
        # Conversions in parallel up to the cores, as Knative scales convert pods out.
        "THREADS": "8",
        **ALLOCATOR_TUNING,
        **LOCAL_STACK_QUOTAS,
    }


class Startup:
    """Remembers what ran before this `up`, so a failure part-way stops what it started and nothing else."""

    def __init__(self) -> None:
        self.running_before = {name for name in processes.managed_names() if processes.running_pid(name)}
        self.rabbitmq_before = servers.RABBITMQ_PID.exists()

    @staticmethod
    def note(name: str, outcome: str) -> None:
        print(f"  {name:<40} {outcome}")

    def undo(self) -> None:
        for name in reversed(processes.managed_names()):
            if name not in self.running_before:
                processes.stop(name)
        if not self.rabbitmq_before:
            servers.stop_rabbitmq()


def start_process(startup: Startup, name: str, argv: list[str], env: dict[str, str] | None = None,
                  port: int | None = None) -> None:
    if processes.running_pid(name):
        startup.note(name, "running")
        return
    if port is not None:
        servers.refuse_foreign_port(port, name)
    processes.start(name, argv, env=env, cwd=ROOT)
    startup.note(name, "started")
    if port is not None:
        processes.wait_until(lambda: processes.port_open(port), name, FUNCTION_READY_TIMEOUT_SECONDS, name=name)


def supervised(name: str, command: list[str]) -> list[str]:
    """Restarted whenever it dies, as Kubernetes restarts a pod's container (the dispatcher, for one, exits when
    it loses RabbitMQ for good)."""
    return [processes.python(), "-m", "stack.supervise", name, "--", *command]


def available_functions() -> list[str]:
    return [name for name in FUNCTION_PORTS if (ROOT / "functions" / name / "main.py").exists()]


def started_without_telemetry(senders: set[str]) -> list[str]:
    """The running processes of `senders` (those that send telemetry when it is on), when the stack was started
    without it."""
    if not TELEMETRY_STATE.exists() or TELEMETRY_STATE.read_text().strip() != "off":
        return []
    return [name for name in processes.managed_names() if name in senders and processes.running_pid(name)]


def up() -> None:
    urls = server_urls()
    routing_topology = topology()  # a malformed manifest stops us before anything starts
    producers = producer_side()
    for program in ("ingress", "dispatcher", "ferretdb", ADAPTER_PROGRAM):
        if not (BIN / program).exists():
            raise StackError(f"{BIN / program} is missing: run `make setup` first")
    tracing = telemetry_built()
    senders = {*available_functions(), "ingress", producers.adapter_process,
               *(spec.name for spec in routing_topology.dispatchers(urls.amqp, ingress_url(), function_url))}
    if tracing and (restart := started_without_telemetry(senders)):
        print("Jaeger is built now: starting the functions and the broker data plane again with telemetry")
        for name in restart:
            processes.stop(name)
    startup = Startup()
    try:
        print("Data stores:")
        startup.note("rabbitmq", servers.start_rabbitmq(urls.amqp, urls.amqp_given))
        startup.note("mariadb", servers.start_mariadb(urls.mysql, urls.mysql_given))
        startup.note("ferretdb", servers.start_ferretdb(urls.mongo, urls.mongo_given))
        servers.migrate_accounts(urls.mysql)
        declare_topology(routing_topology, urls.amqp, own_node=not urls.amqp_given)
        declare_producer_topology(producers, urls.amqp)
        points = endpoints()
        env = function_env(points)
        print("Telemetry:")
        broker_tracing: dict[str, str] = {}
        if tracing:
            # Before everything that sends it spans and metrics.
            start_process(startup, "jaeger", telemetry.jaeger_argv(str(BIN / "jaeger")), env=telemetry.jaeger_env(),
                          port=OTLP_HTTP_PORT)
            processes.wait_until(telemetry.ready, "jaeger", FUNCTION_READY_TIMEOUT_SECONDS, name="jaeger")
            broker_tracing = {"K_OBSERVABILITY_CONFIG": telemetry.broker_observability_config()}
        else:
            startup.note("jaeger", "not built (`make setup` builds it): no traces or metrics")
        print("Functions:")
        start_process(startup, "sendgrid-standin",
                      [processes.python(), "-m", "stack.sendgrid_standin", str(SENDGRID_PORT)], port=SENDGRID_PORT)
        for name in available_functions():
            start_process(startup, name, supervised(name, [
                processes.python(), "-m", "runtime.server",
                f"--source=functions/{name}/main.py", f"--target={name}", f"--host={HOST}",
                f"--port={FUNCTION_PORTS[name]}",
            ]), env=env, port=FUNCTION_PORTS[name])
        print("Broker data plane:")
        start_process(startup, "ingress", supervised("ingress", [str(BIN / "ingress")]), env={
            "BROKER_URL": urls.amqp, "EXCHANGE_NAME": routing_topology.exchange, "PORT": str(INGRESS_PORT),
            **broker_tracing,
        }, port=INGRESS_PORT)
        one_request_per_pod = services_taking_one_request_per_pod(load_documents(KNATIVE_DIR))
        for spec in routing_topology.dispatchers(urls.amqp, ingress_url(), function_url):
            if spec.subscriber_service in one_request_per_pod:
                cap_parallelism_at_cores(spec)
            start_process(startup, spec.name, supervised(spec.name, [str(BIN / "dispatcher")]),
                          env={**spec.env, **broker_tracing})
        for ping_source, service in ping_sinks(load_documents(KNATIVE_DIR)):
            if service in available_functions():
                start_process(startup, f"{service}-ticker", [
                    processes.python(), "-m", "stack.ticker", ping_source, function_url(service),
                    str(RECONCILE_INTERVAL_SECONDS),
                ])
        print("RabbitMQ source:")
        # After the ingress: the adapter posts every message it takes to it.
        start_process(startup, producers.adapter_process, supervised(producers.adapter_process, [
            str(BIN / ADAPTER_PROGRAM)]), env={**producers.adapter_env(urls.amqp, ingress_url()), **broker_tracing})
    except BaseException:
        print("Start-up failed: stopping what this run started.", file=sys.stderr)
        startup.undo()
        raise
    TELEMETRY_STATE.parent.mkdir(parents=True, exist_ok=True)
    TELEMETRY_STATE.write_text("on\n" if tracing else "off\n")
    write_endpoints(points)


def ping_sinks(documents: list[tuple[Path, dict[str, Any]]]) -> list[tuple[str, str]]:
    """Each PingSource of knative/ with the Service it drives (once a minute there; here every
    VID2MP3_RECONCILE_INTERVAL seconds, 60 unless a test asks for faster)."""
    return [(str(doc["metadata"]["name"]), str(doc["spec"]["sink"]["ref"]["name"]))
            for _, doc in documents if doc.get("kind") == "PingSource"]


def services_taking_one_request_per_pod(documents: list[tuple[Path, dict[str, Any]]]) -> set[str]:
    return {str(doc["metadata"]["name"]) for _, doc in documents if doc.get("kind") == "Service"
            and ((doc.get("spec") or {}).get("template") or {}).get("spec", {}).get("containerConcurrency") == 1}


def cap_parallelism_at_cores(spec: DispatcherSpec) -> None:
    """On a cluster a Trigger's parallelism is how many pods of a one-request-per-pod Service work at once; here
    one process stands for all of them on one machine, so at most one request per core (convert's 2 and the
    segment Trigger's 16 alike)."""
    spec.env["PARALLELISM"] = str(min(int(spec.env["PARALLELISM"]), os.cpu_count() or 1))


def declare_topology(routing_topology: Topology, amqp_url: str, own_node: bool) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        routing_topology.declare(connection.channel())
    finally:
        connection.close()
    if own_node:  # policies need rabbitmqctl, which only reaches a node of our own
        for name, pattern, dlx in routing_topology.dead_letter_policies():
            result = servers.rabbitmqctl("set_policy", name, pattern, f'{{"dead-letter-exchange": "{dlx}"}}',
                                         "--apply-to", "queues", "--priority", "1")
            if result.returncode != 0:
                raise StackError(f"could not set dead-letter policy {name}: {result.stderr}")


def declare_producer_topology(producers: ProducerSide, amqp_url: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        producers.declare(connection.channel())
    finally:
        connection.close()


def write_endpoints(points: dict[str, str]) -> None:
    ENDPOINTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    ENDPOINTS_FILE.write_text("".join(f"{key}={value}\n" for key, value in points.items()))
    print(f"\nEndpoints (also in {ENDPOINTS_FILE}):")
    for key in ("AUTH_URL", "UPLOAD_URL", "STATUS_URL", "DOWNLOAD_URL", "WEB_URL", "JWKS_URL",
                "BROKER_INGRESS_URL", "PRODUCER_EXCHANGE", "AMQP_URL", "MONGO_URI", "MYSQL_URL", "SENDGRID_API_HOST",
                "JAEGER_URL", "METRICS_URL"):
        if key in points:
            print(f"  {key:<20} {servers.redact(points[key])}")


def down() -> None:
    stopped = [name for name in processes.managed_names()
               if name not in ("mariadb", "ferretdb") and processes.stop(name)]
    # Data stores last, so nothing is cut off mid-write.
    stopped += [name for name in ("ferretdb", "mariadb") if processes.stop(name, timeout=30)]
    if servers.stop_rabbitmq():
        stopped.append("rabbitmq")
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


def status() -> int:
    urls = server_urls()
    checks = {
        "rabbitmq": servers.amqp_answers(urls.amqp),
        "mariadb": servers.mysql_answers(urls.mysql),
        "ferretdb": servers.mongo_answers(urls.mongo),
        "ingress": processes.port_open(INGRESS_PORT),
        **({"jaeger": telemetry.ready()} if telemetry_built() else {}),
        **{name: processes.port_open(FUNCTION_PORTS[name]) for name in available_functions()},
    }
    producers = producer_side()
    if processes.running_pid(producers.adapter_process):
        # Its process may run while it cannot reach RabbitMQ (it retries every second): up means it consumes.
        checks[producers.adapter_process] = servers.queue_has_consumer(urls.amqp, producers.source.queue)
    for name in processes.managed_names():
        checks.setdefault(name, processes.running_pid(name) is not None)
    width = max(map(len, checks))
    for name, ok in checks.items():
        print(f"  {name:<{width}}  {'up' if ok else 'DOWN'}")
    print(f"RabbitMQ node {RABBITMQ_NODE}; public functions: {', '.join(PUBLIC_FUNCTIONS)}")
    return 0 if all(checks.values()) else 1


def readable(line: str) -> str:
    """A function's JSON log line (runtime/structured_logs.py) as one line for people; others as they are."""
    try:
        record = json.loads(line)
    except ValueError:
        return line
    if not isinstance(record, dict) or "message" not in record:
        return line
    context = " ".join(f"{key}={record[key]}" for key in ("job_id", "trace_id") if record.get(key))
    text = f"{record.get('time', '')[11:23]} {record.get('level', '').upper():<7} {record['message']}"
    text += f"  [{context}]" if context else ""
    return text + ("\n" + record["exception"] if record.get("exception") else "")


@contextlib.contextmanager
def explained_errors() -> Iterator[None]:
    try:
        yield
    except (StackError, ManifestError) as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m stack", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status", "logs", "endpoints"])
    arguments = parser.parse_args()
    with explained_errors():
        if arguments.command == "up":
            up()
        elif arguments.command == "down":
            down()
        elif arguments.command == "status":
            raise SystemExit(status())
        elif arguments.command == "endpoints":
            write_endpoints(endpoints())
        else:
            for log in sorted(LOGS.glob("*.log")):
                print(f"==> {log.relative_to(ROOT) if log.is_relative_to(ROOT) else log} <==")
                print("\n".join(map(readable, processes.tail(log, 20).splitlines())))


if __name__ == "__main__":
    main()
