"""The AsyncAPI 3.0 document of the broker's events (events/asyncapi.py): valid by the AsyncAPI specification's
own JSON Schema (from its npm package @asyncapi/specs, pinned in stack/node/ and installed by `make setup`), true
to the catalog, to the published payload schemas, to the events the functions really emit, and to the Broker of
knative/; and served by the web function."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from events.asyncapi import asyncapi_document


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return asyncapi_document()


@pytest.mark.stack
def test_the_web_function_serves_the_document(endpoints: dict[str, str], document: dict[str, Any]) -> None:
    answer = requests.get(endpoints["WEB_URL"] + "/asyncapi.json", timeout=10)
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("application/json")
    assert answer.json() == document


