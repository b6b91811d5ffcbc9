"""Where the local stack keeps its state, which ports it uses, and which URLs it serves."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCAL = Path(os.environ.get("VID2MP3_LOCAL_DIR", ROOT / ".local"))
# The built tools can live apart from the state, so a second stack instance can reuse the first one's binaries.
BIN = Path(os.environ.get("VID2MP3_BIN_DIR", LOCAL / "bin"))
LOGS = LOCAL / "logs"
RUN = LOCAL / "run"
DATA = LOCAL / "data"
ENDPOINTS_FILE = LOCAL / "endpoints.env"
KNATIVE_DIR = Path(os.environ.get("VID2MP3_KNATIVE_DIR", ROOT / "knative"))
SOURCE_DIR = Path(os.environ.get("VID2MP3_SOURCE_DIR", ROOT / "rabbitmq-source"))
ACCOUNTS_SCHEMA = ROOT / "accounts" / "schema.sql"

# glibc's allocator for the function processes, as functions/Dockerfile sets it for the cluster (a test keeps the
# two equal). A fixed mmap threshold returns every freed buffer over 256 KiB (media chunks, 4 MiB insert batches)
# to the system; by default glibc raises the threshold after the first such free and keeps the memory in the heap
# afterwards, and with 8 threads in up to 8 arenas. The upload worker's peak for a 1 GiB body after 20 uploads at
# once: 161 MiB default, 113 with 2 arenas, 77 with both (docs/PERFORMANCE.md).
ALLOCATOR_TUNING = {"MALLOC_ARENA_MAX": "2", "MALLOC_MMAP_THRESHOLD_": "262144"}

# The quotas of the local stack, raised above the defaults (runtime/settings.py) for what the suites do
# as one user or from one address: the fault suite uploads 20 videos at once as one user, every test signs users
# up from 127.0.0.1, `make load` uploads for minutes. tests/stack/test_quotas.py tests the limits themselves with
# functions started in-process at small limits.
LOCAL_STACK_QUOTAS = {
    "QUOTA_JOBS_IN_FLIGHT": "25",
    "QUOTA_UPLOADS_PER_HOUR": "2000",
    "QUOTA_MEDIA_BYTES": str(64 * 1024**3),
    "QUOTA_LIVE_STREAMS": "6",
    "SIGNUPS_PER_ADDRESS_PER_HOUR": "100000",
    # Every suite's failed logins come from 127.0.0.1 (tests/stack/test_login_throttling.py tests the limit).
    "LOGIN_MAX_FAILURES_PER_ADDRESS": "100000",
}

HOST = "127.0.0.1"
# One block of ports of our own, so the stack neither needs nor disturbs system-wide servers.
PORT_BASE = int(os.environ.get("VID2MP3_PORT_BASE", "18000"))
AMQP_PORT = PORT_BASE + 672
RABBITMQ_DIST_PORT = PORT_BASE + 673
MYSQL_PORT = PORT_BASE + 306
MONGO_PORT = PORT_BASE + 17
INGRESS_PORT = PORT_BASE + 80
SENDGRID_PORT = PORT_BASE + 25  # not started by `make up`; tests run their own stand-in here
# Jaeger (stack/telemetry.py): OTLP in (gRPC, HTTP), the query API and UI, and the metrics it passes on.
OTLP_GRPC_PORT = PORT_BASE + 317
OTLP_HTTP_PORT = PORT_BASE + 318
JAEGER_QUERY_GRPC_PORT = PORT_BASE + 685
JAEGER_QUERY_HTTP_PORT = PORT_BASE + 686
METRICS_PORT = PORT_BASE + 889

# Every function the stack runs, with its port; Trigger subscribers name these as Knative Services.
FUNCTION_PORTS = {
    "auth": PORT_BASE + 101,
    "upload": PORT_BASE + 102,
    "status": PORT_BASE + 103,
    "download": PORT_BASE + 104,
    "convert": PORT_BASE + 105,
    "notify": PORT_BASE + 106,
    "deadletter": PORT_BASE + 107,
    "reconcile": PORT_BASE + 108,
    "web": PORT_BASE + 109,
    "segment": PORT_BASE + 110,
    "webhooks": PORT_BASE + 111,
    "delivery": PORT_BASE + 112,
}
PUBLIC_FUNCTIONS = ("auth", "upload", "status", "download", "web", "webhooks")

RABBITMQ_NODE = f"vid2mp3-{PORT_BASE}@localhost"
MYSQL_DATABASE = "vid2mp3"
MYSQL_USER = "vid2mp3"
# Development-only credentials of a loopback server that `make up` creates; production takes them from secrets.
MYSQL_PASSWORD = os.environ.get("VID2MP3_MYSQL_PASSWORD", "vid2mp3-local")
# How often the local stand-in for the PingSource drives the reconcile step.
RECONCILE_INTERVAL_SECONDS = float(os.environ.get("VID2MP3_RECONCILE_INTERVAL", "60"))


@dataclass(frozen=True)
class ServerUrls:
    """The data stores the stack uses: the ones given by environment, else the ones it starts itself."""

    amqp: str
    mongo: str
    mysql: str

    @property
    def amqp_given(self) -> bool:
        return "VID2MP3_AMQP_URL" in os.environ

    @property
    def mongo_given(self) -> bool:
        return "VID2MP3_MONGO_URI" in os.environ

    @property
    def mysql_given(self) -> bool:
        return "VID2MP3_MYSQL_URL" in os.environ


def server_urls() -> ServerUrls:
    return ServerUrls(
        amqp=os.environ.get("VID2MP3_AMQP_URL", f"amqp://guest:guest@{HOST}:{AMQP_PORT}/%2F"),
        mongo=os.environ.get("VID2MP3_MONGO_URI", f"mongodb://{HOST}:{MONGO_PORT}/"),
        mysql=os.environ.get(
            "VID2MP3_MYSQL_URL", f"mysql://{MYSQL_USER}:{MYSQL_PASSWORD}@{HOST}:{MYSQL_PORT}/{MYSQL_DATABASE}"
        ),
    )


def function_url(name: str) -> str:
    return f"http://{HOST}:{FUNCTION_PORTS[name]}"


def ingress_url() -> str:
    return f"http://{HOST}:{INGRESS_PORT}/"
