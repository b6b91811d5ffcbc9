"""The OpenAPI 3.1 document: valid by the specification's rules (a planted fault refused), each path naming its
function and server, and the error bodies and job views the code builds matching its schemas."""

from __future__ import annotations

import copy
import uuid
import warnings
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema
import pytest
from openapi_spec_validator.validation.validators import OpenAPIV31SpecValidator

from api.openapi import PUBLIC_FUNCTIONS, openapi_document
from jobs.view import job_view
from runtime.answers import HttpError


def urls_of(endpoints: dict[str, str]) -> dict[str, str]:
    return {function: endpoints[f"{function.upper()}_URL"] for function in PUBLIC_FUNCTIONS}


@pytest.fixture(scope="module")
def document(endpoints: dict[str, str]) -> dict[str, Any]:
    return openapi_document(urls_of(endpoints))


def spec_errors(document: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
            for error in OpenAPIV31SpecValidator(document).iter_errors()]


def test_the_document_is_valid_openapi_3_1() -> None:
    document = openapi_document({function: f"https://{function}.example.com" for function in PUBLIC_FUNCTIONS})
    assert document["openapi"].startswith("3.1.")
    assert spec_errors(document) == []


@pytest.mark.parametrize("fault", ["response without description", "unknown operation field",
                                   "path parameter not declared", "server variable without default"])
def test_the_validator_rejects_a_planted_fault(fault: str) -> None:
    broken = openapi_document({function: f"https://{function}.example.com" for function in PUBLIC_FUNCTIONS})
    broken = copy.deepcopy(broken)
    if fault == "response without description":
        del broken["paths"]["/status/"]["get"]["responses"]["200"]["description"]
    elif fault == "unknown operation field":
        broken["paths"]["/status/"]["get"]["produces"] = ["application/json"]
    elif fault == "path parameter not declared":
        del broken["paths"]["/status/{job_id}"]["parameters"]
    else:
        del broken["paths"]["/status/"]["servers"][0]["variables"]["statusUrl"]["default"]
    assert spec_errors(broken) != []


def test_every_path_names_its_function_and_its_server() -> None:
    document = openapi_document({function: f"https://{function}.example.com" for function in PUBLIC_FUNCTIONS})
    for path, item in document["paths"].items():
        function = path.split("/")[1]
        assert function in PUBLIC_FUNCTIONS, path
        (server,) = item["servers"]
        assert server["variables"][f"{function}Url"]["default"] == f"https://{function}.example.com"
    every_link_target = {link["operationId"] for item in document["paths"].values() for operation in item.values()
                         if isinstance(operation, dict) for answer in operation.get("responses", {}).values()
                         for link in answer.get("links", {}).values()}
    operation_ids = {operation["operationId"] for item in document["paths"].values() for operation in item.values()
                     if isinstance(operation, dict) and "operationId" in operation}
    assert every_link_target <= operation_ids


@pytest.mark.parametrize("error", [HttpError(404, "not_found", "no such job"),
                                   HttpError(422, "invalid_options", "bad", extra={"fields": {"end": "too early"}})])
def test_error_bodies_match_the_documented_schema(error: HttpError) -> None:
    document = openapi_document({function: "https://x.example.com" for function in PUBLIC_FUNCTIONS})
    assert_matches(document, error.body(), {"$ref": "#/components/schemas/ErrorBody"})
    assert not schema_validator(document, {"$ref": "#/components/schemas/ErrorBody"}).is_valid({"error": "x"})


def job_records() -> list[dict[str, Any]]:
    """Job records in each state with each optional part, as the functions store them."""
    moment = datetime.now(UTC)
    base = {"_id": uuid.uuid4().hex, "owner_id": "1", "filename": "a.mp4", "size_bytes": 10, "bitrate_kbps": 192,
            "created_at": moment, "updated_at": moment, "history": [{"state": "uploaded", "at": moment}],
            "options": {"start_seconds": 1.5, "quality": "V2", "title": "x"}}
    encoding = {"mode": "segments", "reason": "long", "segments": [{"start": 0}, {"start": 150}],
                "encoded_after_seconds": [12.5, None]}
    audio = {"audio_id": "a1", "size_bytes": 5, "sha256": "f" * 64, "duration_seconds": 1.0, "stream_copied": False,
             "expires_at": moment + timedelta(hours=1)}
    return [
        {**base, "state": "importing", "progress": {"fetched_bytes": 250, "total_bytes": 1000}},
        {**base, "state": "importing", "progress": {"fetched_bytes": 250, "total_bytes": None}},
        {**base, "state": "uploaded"},
        {**base, "state": "converting", "progress": {"percent": 41.5, "eta_seconds": None}, "encoding": encoding,
         "audio_tracks": [{"index": 0, "codec": "aac", "channels": 2, "language": None, "title": None,
                           "default": True}]},
        {**base, "state": "done", "audio": audio, "encoding": encoding, "applied": {"loudness": {"lufs": -16.1}},
         "notification": {"state": "sent"}},
        {**base, "state": "done", "audio": {**audio, "expires_at": moment - timedelta(seconds=1)}},
        {**base, "state": "failed", "failure": {"code": "not_media", "reason": "no audio"}},
        {**base, "state": "cancelled"},
    ]


class Links:
    base_url = "https://download.example.com"

    def link(self, job_id: str, audio_id: str, expires_at: datetime, owner_id: str) -> str:
        return f"{self.base_url}/{job_id}?expires=1&key=k&signature=s"


@pytest.mark.parametrize("record", job_records(), ids=lambda record: record["state"])
def test_every_job_view_matches_the_documented_schema(record: dict[str, Any]) -> None:
    document = openapi_document({function: "https://x.example.com" for function in PUBLIC_FUNCTIONS})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pydantic warns when a value does not fit its field's type
        view = job_view(record, Links())
    assert_matches(document, view, {"$ref": "#/components/schemas/JobView"})


def schema_validator(document: dict[str, Any], schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    # The document itself is the root, so `#/components/schemas/...` resolves.
    return jsonschema.Draft202012Validator({**schema, "components": document["components"]},
                                           format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def assert_matches(document: dict[str, Any], body: Any, schema: dict[str, Any]) -> None:
    errors = [f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
              for error in schema_validator(document, schema).iter_errors(body)]
    assert errors == [], body


