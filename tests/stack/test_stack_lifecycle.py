"""`python -m stack up` / `down` / `up` on a separate stack instance (its own port block and state folder, the
real binaries): `down` leaves no process of it behind, and `up` again finds the data the first run wrote."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymongo
import pytest

from stack.config import BIN, ROOT
from stack.processes import port_open
from tests.support import mysql_connect, processes_mentioning, read_endpoints_file, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.stack, pytest.mark.timeout(900)]

PORT_BASE = 24000
# Every port the instance may open: AMQP, Erlang distribution, MariaDB, FerretDB, ingress, mail stand-in,
# and the functions.
PORTS = [PORT_BASE + offset for offset in (672, 673, 306, 17, 80, 25, *range(101, 110), 317, 318, 685, 686, 889)]
STACK_COMMAND_TIMEOUT_SECONDS = 300


@dataclass(frozen=True)
class StackInstance:
    local: Path

    @property
    def env(self) -> dict[str, str]:
        # Drop any URL that would point this instance at another one's servers.
        inherited = {key: value for key, value in os.environ.items()
                     if key not in ("VID2MP3_AMQP_URL", "VID2MP3_MONGO_URI", "VID2MP3_MYSQL_URL")}
        return {**inherited, "VID2MP3_PORT_BASE": str(PORT_BASE), "VID2MP3_LOCAL_DIR": str(self.local),
                "VID2MP3_BIN_DIR": str(BIN)}

    def run(self, command: str) -> tuple[subprocess.CompletedProcess[str], float]:
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "stack", command], cwd=ROOT, env=self.env,
                                capture_output=True, text=True, timeout=STACK_COMMAND_TIMEOUT_SECONDS)
        assert result.returncode == 0, f"stack {command} failed:\n{result.stdout}\n{result.stderr}"
        return result, time.monotonic() - started

    def endpoints(self) -> dict[str, str]:
        return read_endpoints_file(self.local / "endpoints.env")

    def leftovers(self) -> dict[str, list[object]]:
        """Whatever of this instance still runs: pid files, open ports, processes that name its folder."""
        return {
            "pid files": sorted(path.name for path in (self.local / "run").glob("*.pid")),
            "open ports": [port for port in PORTS if port_open(port)],
            "processes": processes_mentioning(str(self.local)),
        }


NOTHING_LEFT: dict[str, list[object]] = {"pid files": [], "open ports": [], "processes": []}


@pytest.fixture
def instance() -> Iterator[StackInstance]:
    # Not pytest's tmp_path: its folders are private to root, and RabbitMQ runs as the rabbitmq user.
    local = Path(tempfile.mkdtemp(prefix="vid2mp3-lifecycle-"))
    local.chmod(0o755)
    stack = StackInstance(local)
    assert [port for port in PORTS if port_open(port)] == [], f"ports of the {PORT_BASE} block are in use"
    try:
        yield stack
    finally:
        # Whatever happened above, this instance must not outlive the test: `down`, then its own processes.
        subprocess.run([sys.executable, "-m", "stack", "down"], cwd=ROOT, env=stack.env, capture_output=True,
                       timeout=STACK_COMMAND_TIMEOUT_SECONDS)
        for pid in processes_mentioning(str(local)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(local, ignore_errors=True)


def mongo_client(endpoints: dict[str, str]) -> pymongo.MongoClient[dict[str, Any]]:
    return pymongo.MongoClient(endpoints["MONGO_URI"], serverSelectionTimeoutMS=5000)


def write_marks(endpoints: dict[str, str], mark: str) -> None:
    with mysql_connect(endpoints["MYSQL_URL"]) as connection, connection.cursor() as cursor:
        cursor.execute("INSERT INTO accounts (email, password_hash) VALUES (%s, %s)",
                       (f"{mark}@lifecycle.test", "not-a-real-hash"))
        connection.commit()
    with mongo_client(endpoints) as client:
        client["lifecycle"]["marks"].insert_one({"_id": mark})


def read_marks(endpoints: dict[str, str], mark: str) -> tuple[int, int]:
    """(accounts rows, documents) carrying `mark`."""
    with mysql_connect(endpoints["MYSQL_URL"]) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM accounts WHERE email = %s", (f"{mark}@lifecycle.test",))
        row = cursor.fetchone()
    assert row is not None
    with mongo_client(endpoints) as client:
        documents = client["lifecycle"]["marks"].count_documents({"_id": mark})
    return int(row[0]), documents


def assert_started_data_stores(stdout: str) -> None:
    lines = [line.split() for line in stdout.splitlines()]
    for server in ("rabbitmq", "mariadb", "ferretdb"):
        assert [server, "started"] in lines, stdout


def test_down_leaves_nothing_and_up_again_keeps_the_data(instance: StackInstance) -> None:
    first_up, first_up_seconds = instance.run("up")
    assert_started_data_stores(first_up.stdout)
    # The leftover check sees this instance while it runs, so "nothing left" below is no empty claim.
    running = instance.leftovers()
    assert all(running.values()), running
    endpoints = instance.endpoints()
    assert endpoints["AMQP_URL"].endswith(f":{PORT_BASE + 672}/%2F")
    assert f":{PORT_BASE + 306}/" in endpoints["MYSQL_URL"]
    assert endpoints["MONGO_URI"] == f"mongodb://127.0.0.1:{PORT_BASE + 17}/"
    mark = uuid.uuid4().hex
    write_marks(endpoints, mark)
    assert read_marks(endpoints, mark) == (1, 1)

    _, first_down_seconds = instance.run("down")
    wait_for(lambda: instance.leftovers() == NOTHING_LEFT, 30,
             f"nothing of the stack in {instance.local} left running (now {instance.leftovers()})")

    second_up, second_up_seconds = instance.run("up")
    # The data stores were started again, not found running, and kept what the first run wrote.
    assert_started_data_stores(second_up.stdout)
    assert read_marks(instance.endpoints(), mark) == (1, 1)

    _, second_down_seconds = instance.run("down")
    wait_for(lambda: instance.leftovers() == NOTHING_LEFT, 30,
             f"nothing of the stack in {instance.local} left running (now {instance.leftovers()})")
    print(f"\nstack at port base {PORT_BASE}: up {first_up_seconds:.1f} s, down {first_down_seconds:.1f} s, "
          f"up again {second_up_seconds:.1f} s, down {second_down_seconds:.1f} s; MariaDB row and FerretDB "
          f"document kept")
