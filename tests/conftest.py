"""Shared pytest set-up: an isolated environment per test, the `--run-slow` switch, the running local stack's
endpoints, and a bounded poll for whatever a test waits on."""

from __future__ import annotations

import os
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pymysql
import pytest
import requests

from stack.config import ENDPOINTS_FILE

T = TypeVar("T")

STACK_NOT_RUNNING = "local stack not running: run `make up`"


# --- Options and markers -----------------------------------------------------------------------------------

def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", default=False,
                     help="also run the tests marked `slow` (fault injection; `make test-faults`)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip_slow = pytest.mark.skip(reason="slow: runs only with --run-slow (`make test-faults`)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


# --- Every test --------------------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Each test starts from, and leaves behind, the environment the session started with, however it changed
    os.environ (through monkeypatch, or directly as code under test may)."""
    snapshot = dict(os.environ)
    yield monkeypatch
    os.environ.clear()
    os.environ.update(snapshot)


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Polls `predicate` until it returns something truthy and returns that; after `timeout` seconds fails
    the test naming `what`. Exceptions from `predicate` propagate: a broken check is not a slow one."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


# --- The local stack ---------------------------------------------------------------------------------------

def read_endpoints_file(path: os.PathLike[str] | str) -> dict[str, str]:
    """KEY=VALUE lines, as `python -m stack up` writes them."""
    with open(path) as lines:
        return dict(line.rstrip("\n").split("=", 1) for line in lines if "=" in line)


@pytest.fixture(scope="session")
def endpoints() -> dict[str, str]:
    """The running stack's endpoints (.local/endpoints.env). Fails rather than skips when the stack is down:
    `make test` always starts it first, so a missing stack is breakage to see, not a test to leave out."""
    if not ENDPOINTS_FILE.exists():
        pytest.fail(f"{STACK_NOT_RUNNING} ({ENDPOINTS_FILE} is missing)", pytrace=False)
    points = read_endpoints_file(ENDPOINTS_FILE)
    ingress = points.get("BROKER_INGRESS_URL", "")
    try:
        # The ingress answers only POST /; any HTTP answer at all shows it is up.
        requests.get(ingress, timeout=3)
    except requests.RequestException as error:
        pytest.fail(f"{STACK_NOT_RUNNING} (the broker ingress {ingress!r} does not answer: {error})",
                    pytrace=False)
    return points


def processes_mentioning(text: str) -> list[int]:
    """Pids of the processes whose command line or environment contains `text` (say, a stack instance's state
    folder: supervisors and dispatchers carry it only in their environment)."""
    found = []
    for process in Path("/proc").glob("[0-9]*"):
        try:
            if any(text.encode() in (process / part).read_bytes() for part in ("cmdline", "environ")):
                found.append(int(process.name))
        except OSError:
            continue
    return found


def mysql_connect(url: str) -> pymysql.connections.Connection:
    """A pymysql connection from a `mysql://user:password@host:port/database` URL, as MYSQL_URL is written."""
    parts = urllib.parse.urlsplit(url)
    assert parts.scheme == "mysql", url
    return pymysql.connect(
        host=parts.hostname, port=parts.port or 3306, user=urllib.parse.unquote(parts.username or ""),
        password=urllib.parse.unquote(parts.password or ""), database=parts.path.lstrip("/") or None,
        connect_timeout=5,
    )
