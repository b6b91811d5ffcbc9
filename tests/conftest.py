"""Shared pytest set-up: an isolated environment per test, the `--run-slow` switch, the running local stack's
endpoints, and the fixtures of the reliability and security suites (helpers live in support modules)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pymongo
import pytest
import requests

from stack.config import ENDPOINTS_FILE
from tests.reliability_support import Figures, Stack
from tests.support import read_endpoints_file

STACK_NOT_RUNNING = "local stack not running: run `make up`"


# --- Options and markers -----------------------------------------------------------------------------------

def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", default=False,
                     help="also run the tests marked `slow`: fault injection, stack life cycle (`make test` does)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        # Last: they kill and restart the stack's servers and functions, which no other test should run beside.
        items.sort(key=lambda item: "slow" in item.keywords)
        return
    skip_slow = pytest.mark.skip(reason="slow: runs only with --run-slow (`make test`, `make test-faults`)")
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


# --- The local stack ---------------------------------------------------------------------------------------

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


@pytest.fixture
def database_name(endpoints: dict[str, str]) -> Iterator[str]:
    """A MongoDB database of the test's own on the stack's server (for functions started in-process), dropped after."""
    name = f"vid2mp3_test_{uuid.uuid4().hex[:10]}"
    yield name
    pymongo.MongoClient(endpoints["MONGO_URI"]).drop_database(name)


@pytest.fixture
def database(endpoints: dict[str, str], database_name: str) -> Any:
    return pymongo.MongoClient(endpoints["MONGO_URI"], tz_aware=True)[database_name]


@pytest.fixture(scope="module")
def stack_database(endpoints: dict[str, str]) -> Iterator[Any]:
    """The running stack's own database, to look at what the functions stored."""
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(endpoints["MONGO_URI"], tz_aware=True)
    yield client["vid2mp3"]
    client.close()


# --- The reliability and security suites ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def stack(endpoints: dict[str, str]) -> Stack:
    return Stack(endpoints)


@pytest.fixture(scope="module")
def figures(request: pytest.FixtureRequest) -> Iterator[Figures]:
    """The figures of the suite (its module's FIGURES_SUITE), printed and written once its tests have run."""
    collected = Figures(request.module.FIGURES_SUITE)
    yield collected
    collected.publish(request.config)
