"""The local stack's telemetry receiver: Jaeger v2 (`make setup` builds it from stack/jaeger), taking OTLP traces
into memory for its query API and UI, and OTLP metrics onto a Prometheus exposition page; and the settings that
point the functions and the broker data plane at it."""

from __future__ import annotations

import json
import urllib.request

from stack import processes
from stack.config import (
    HOST,
    JAEGER_QUERY_GRPC_PORT,
    JAEGER_QUERY_HTTP_PORT,
    METRICS_PORT,
    OTLP_GRPC_PORT,
    OTLP_HTTP_PORT,
    ROOT,
)

CONFIG = ROOT / "stack" / "jaeger" / "config.yaml"
READY_TIMEOUT_SECONDS = 60


def jaeger_url() -> str:
    """The UI, and the query API under /api (e.g. /api/traces/<trace id>)."""
    return f"http://{HOST}:{JAEGER_QUERY_HTTP_PORT}"


def otlp_endpoint() -> str:
    """OTLP over HTTP: the SDKs append /v1/traces and /v1/metrics."""
    return f"http://{HOST}:{OTLP_HTTP_PORT}"


def metrics_url() -> str:
    return f"http://{HOST}:{METRICS_PORT}/metrics"


def jaeger_argv(program: str) -> list[str]:
    return [program, "--config", f"file:{CONFIG}"]


def jaeger_env() -> dict[str, str]:
    return {
        "JAEGER_HOST": HOST,
        "OTLP_GRPC_PORT": str(OTLP_GRPC_PORT),
        "OTLP_HTTP_PORT": str(OTLP_HTTP_PORT),
        "JAEGER_QUERY_GRPC_PORT": str(JAEGER_QUERY_GRPC_PORT),
        "JAEGER_QUERY_HTTP_PORT": str(JAEGER_QUERY_HTTP_PORT),
        "METRICS_PORT": str(METRICS_PORT),
    }


def jaeger_answers() -> bool:
    try:
        with urllib.request.urlopen(f"{jaeger_url()}/api/services", timeout=2) as response:  # noqa: S310 - ours
            return bool(response.status == 200)
    except OSError:
        return False


def ready() -> bool:
    return jaeger_answers() and processes.port_open(OTLP_HTTP_PORT) and processes.port_open(METRICS_PORT)


def broker_observability_config() -> str:
    """K_OBSERVABILITY_CONFIG for the eventing-rabbitmq ingress and dispatchers (knative.dev/pkg's observability
    config as JSON; on a cluster the same keys come from the config-observability ConfigMap): every span they make
    goes to the same receiver, so their hops appear in each job's trace."""
    return json.dumps({"tracing": {"protocol": "http/protobuf", "endpoint": f"{otlp_endpoint()}/v1/traces",
                                   "samplingRate": 1}})
