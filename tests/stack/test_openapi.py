"""The OpenAPI 3.1 document of the public HTTP functions (api/openapi.py): valid by the specification
(openapi-spec-validator), served by the web function, true to what the functions answer (a direct check of real
answers against its schemas), and fuzzed by schemathesis on the running stack: authenticated, positive and negative
examples and its stateful phase along the document's links. Its figures go to .local/figures/openapi.json
(docs/RELIABILITY.md records them)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests

from api.openapi import PUBLIC_FUNCTIONS, openapi_document
from stack.config import ROOT
from tests.support import TEST_PASSWORD, make_clip, wait_for

FIGURES_SUITE = "openapi"
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


# Bounds on the run in `make test` (about a minute and a half here); `make fuzz` runs longer (FUZZ_EXAMPLES).
MAX_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "6"))


MAX_STATEFUL_STEPS = int(os.environ.get("FUZZ_STATEFUL_STEPS", "12"))


# A fixed seed in `make test`, so a failure there repeats; `make fuzz` draws one (printed in the figures).
SEED = int(os.environ.get("FUZZ_SEED", "1"))


RUN_SECONDS_LIMIT = 600


def urls_of(endpoints: dict[str, str]) -> dict[str, str]:
    return {function: endpoints[f"{function.upper()}_URL"] for function in PUBLIC_FUNCTIONS}


@pytest.fixture(scope="module")
def document(endpoints: dict[str, str]) -> dict[str, Any]:
    return openapi_document(urls_of(endpoints))


def schema_validator(document: dict[str, Any], schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    # The document itself is the root, so `#/components/schemas/...` resolves.
    return jsonschema.Draft202012Validator({**schema, "components": document["components"]},
                                           format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def assert_matches(document: dict[str, Any], body: Any, schema: dict[str, Any]) -> None:
    errors = [f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
              for error in schema_validator(document, schema).iter_errors(body)]
    assert errors == [], body


def answer_schema(document: dict[str, Any], path: str, method: str, status: int) -> dict[str, Any]:
    answer = document["paths"][path][method]["responses"][str(status)]
    return dict(answer["content"]["application/json"]["schema"])


def check(document: dict[str, Any], answer: requests.Response, path: str, method: str) -> requests.Response:
    """Fails unless the answer's status is documented for the operation and its JSON body matches."""
    responses = document["paths"][path][method]["responses"]
    assert str(answer.status_code) in responses, (path, method, answer.status_code, answer.text)
    if answer.content:
        assert_matches(document, answer.json(), answer_schema(document, path, method, answer.status_code))
    return answer


@pytest.mark.stack
def test_the_web_function_serves_the_document(endpoints: dict[str, str], document: dict[str, Any]) -> None:
    answer = requests.get(endpoints["WEB_URL"] + "/openapi.json", timeout=10)
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("application/json")
    assert answer.json() == document


@pytest.mark.stack
def test_the_functions_answers_match_the_document(endpoints: dict[str, str], document: dict[str, Any],
                                                  tmp_path: Path) -> None:
    """One real request per answer shape, each checked against the schema the document gives it."""
    urls = urls_of(endpoints)
    credentials = {"email": f"openapi-{uuid.uuid4().hex[:10]}@test.vid2mp3.dev", "password": TEST_PASSWORD}
    check(document, requests.post(urls["auth"] + "/auth/signup", json=credentials, timeout=30), "/auth/signup", "post")
    check(document, requests.post(urls["auth"] + "/auth/signup", json={"email": 1}, timeout=30), "/auth/signup",
          "post")
    token = check(document, requests.post(urls["auth"] + "/auth/login", json=credentials, timeout=30),
                  "/auth/login", "post").json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    check(document, requests.get(urls["auth"] + "/auth/.well-known/jwks.json", timeout=10),
          "/auth/.well-known/jwks.json", "get")

    clip = make_clip(tmp_path / "clip.mp4", seconds=1)
    upload = check(document, requests.post(urls["upload"] + "/upload/", params={"filename": "clip.mp4",
                                                                                "quality": "V2"},
                                           data=clip.read_bytes(), headers=headers, timeout=60), "/upload/", "post")
    assert upload.status_code == 202
    job_id = upload.json()["job_id"]
    check(document, requests.post(urls["upload"] + "/upload/", params={"start": "9", "end": "3"},
                                  data=clip.read_bytes(), headers=headers, timeout=60), "/upload/", "post")
    check(document, requests.get(urls["status"] + f"/status/{job_id}", headers=headers, timeout=10),
          "/status/{job_id}", "get")

    def done() -> bool:
        answer = requests.get(urls["status"] + f"/status/{job_id}", headers=headers, timeout=10)
        return answer.json()["state"] == "done"

    wait_for(done, timeout=120, what="the clip's conversion", interval=0.5)
    check(document, requests.get(urls["status"] + f"/status/{job_id}", headers=headers, timeout=10),
          "/status/{job_id}", "get")
    check(document, requests.get(urls["status"] + "/status/", headers=headers, timeout=10), "/status/", "get")
    check(document, requests.post(urls["status"] + f"/status/{job_id}/cancel", headers=headers, timeout=10),
          "/status/{job_id}/cancel", "post")
    mp3 = requests.get(urls["download"] + f"/download/{job_id}", headers={**headers, "Range": "bytes=0-99"},
                       timeout=30)
    assert mp3.status_code == 206 and "206" in document["paths"]["/download/{job_id}"]["get"]["responses"]
    # Found by schemathesis: werkzeug answered an unsatisfiable range with an HTML page.
    mp3_url = urls["download"] + f"/download/{job_id}"
    refused = check(document, requests.get(mp3_url, timeout=30, headers={**headers, "Range": "bytes=99999999-"}),
                    "/download/{job_id}", "get")
    assert refused.status_code == 416 and refused.headers["Content-Range"].startswith("bytes */")
    # Several ranges, or a specification that is not valid: ignored (RFC 9110 §14.2), the whole MP3.
    for ignored in ("bytes=0-5,10-20", "bytes=x", "items=0-1"):
        whole = requests.get(mp3_url, timeout=30, headers={**headers, "Range": ignored})
        assert whole.status_code == 200 and "Content-Range" not in whole.headers
    check(document, requests.get(urls["download"] + f"/download/{job_id}", timeout=30,
                                 headers={**headers, "If-Match": '"not-it"'}), "/download/{job_id}", "get")
    # A browser opening a changed signed link, to the MP3 or to its chapters: the documented 303 to the page.
    link = requests.get(urls["status"] + f"/status/{job_id}", headers=headers, timeout=10).json()["audio"][
        "download_link"]
    changed = link.replace("signature=", "signature=x")
    for url, path in ((changed, "/download/{job_id}"),
                      (changed.replace("?", "/chapters.json?"), "/download/{job_id}/chapters.json")):
        to_the_page = check(document, requests.get(url, headers={"Accept": "text/html"}, allow_redirects=False,
                                                   timeout=30), path, "get")
        assert to_the_page.status_code == 303 and to_the_page.headers["Location"].endswith("/#link=invalid")
    check(document, requests.get(urls["auth"] + "/auth/account", headers=headers, timeout=10), "/auth/account", "get")
    check(document, requests.get(urls["status"] + f"/status/{uuid.uuid4().hex}", headers=headers, timeout=10),
          "/status/{job_id}", "get")
    check(document, requests.get(urls["status"] + "/status/", timeout=10), "/status/", "get")

    endpoint = check(document, requests.post(urls["webhooks"] + "/webhooks/", headers=headers, timeout=30, json={
        "url": "http://127.0.0.1:9/hook", "events": ["io.vid2mp3.audio.converted.v1"]}), "/webhooks/", "post")
    assert endpoint.status_code == 201
    endpoint_id = endpoint.json()["id"]
    check(document, requests.get(urls["webhooks"] + "/webhooks/", headers=headers, timeout=10), "/webhooks/", "get")
    check(document, requests.get(urls["webhooks"] + f"/webhooks/{endpoint_id}", headers=headers, timeout=10),
          "/webhooks/{endpoint_id}", "get")
    check(document, requests.post(urls["webhooks"] + f"/webhooks/{endpoint_id}/rotate-secret", headers=headers,
                                  timeout=10), "/webhooks/{endpoint_id}/rotate-secret", "post")
    check(document, requests.post(urls["webhooks"] + "/webhooks/", headers=headers, json={"url": "ftp://x"},
                                  timeout=10), "/webhooks/", "post")
    refused_import = check(document, requests.post(urls["upload"] + "/upload/", headers=headers, timeout=30,
                                                   json={"url": "http://10.0.0.1/video.mp4"}), "/upload/", "post")
    assert (refused_import.status_code, refused_import.json()["error"]) == (422, "url_refused")
    made = check(document, requests.post(urls["auth"] + "/auth/keys", headers=headers, timeout=30,
                                         json={"name": "reader", "scopes": ["read"]}), "/auth/keys", "post")
    assert made.status_code == 201
    reader = {"Authorization": f"Bearer {made.json()['key']}"}
    # The key's scope as the document names it: what it may call answers, the rest 403 (documented).
    for operation_id, method, path, url in (
            ("listJobs", "get", "/status/", urls["status"] + "/status/"),
            ("uploadVideo", "post", "/upload/", urls["upload"] + "/upload/"),
            ("listWebhookEndpoints", "get", "/webhooks/", urls["webhooks"] + "/webhooks/"),
            ("listKeys", "get", "/auth/keys", urls["auth"] + "/auth/keys")):
        operation = document["paths"][path][method]
        assert operation["operationId"] == operation_id
        allowed = {"apiKey": ["read"]} in operation["security"]
        answer = check(document, requests.request(method, url, headers=reader, timeout=30), path, method)
        assert (answer.status_code == 403) != allowed, (operation_id, answer.status_code)
    check(document, requests.get(urls["auth"] + "/auth/keys", headers=headers, timeout=30), "/auth/keys", "get")
    check(document, requests.delete(urls["auth"] + f"/auth/keys/{made.json()['id']}", headers=headers, timeout=30),
          "/auth/keys/{key_id}", "delete")
    changed = check(document, requests.post(urls["auth"] + "/auth/account/password", headers=headers, timeout=30,
                                            json={"password": TEST_PASSWORD, "new_password": TEST_PASSWORD + "2"}),
                    "/auth/account/password", "post")
    headers = {"Authorization": f"Bearer {changed.json()['access_token']}"}
    check(document, requests.delete(urls["auth"] + "/auth/account", headers=headers,
                                    json={"password": TEST_PASSWORD + "2"}, timeout=60), "/auth/account", "delete")


@pytest.mark.stack
def test_each_function_answers_under_its_name_and_as_before(endpoints: dict[str, str]) -> None:
    """The document's prefixed paths and the functions' own paths (which the web page and the CLI use) are the
    same resources."""
    for function, path in (("status", "/"), ("webhooks", "/"), ("download", f"/{uuid.uuid4().hex}")):
        bare = requests.get(endpoints[f"{function.upper()}_URL"] + path, timeout=10)
        prefixed = requests.get(endpoints[f"{function.upper()}_URL"] + f"/{function}{path}", timeout=10)
        assert bare.status_code == prefixed.status_code == 401
    # A different function's name is no prefix here: status reads `webhooks` as a (malformed) job id.
    assert requests.get(endpoints["STATUS_URL"] + "/webhooks/", timeout=10).status_code == 401


@pytest.mark.stack
@pytest.mark.parametrize(("function", "path", "method", "allowed"), [
    ("auth", "/login", "GET", "POST"), ("status", "/", "PUT", "GET, HEAD"), ("download", "/x", "POST", "GET, HEAD"),
    ("webhooks", "/", "PATCH", "GET, HEAD, POST"), ("webhooks", "/ep_0/rotate-secret", "GET", "POST"),
    ("upload", "/", "GET", "POST"), ("web", "/", "POST", "GET, HEAD"),
])
def test_a_method_not_allowed_says_which_are(endpoints: dict[str, str], token: str, function: str, path: str,
                                            method: str, allowed: str) -> None:
    """Found by schemathesis: 405 without `Allow` (RFC 9110 requires it)."""
    answer = requests.request(method, endpoints[f"{function.upper()}_URL"] + path, timeout=10,
                              headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 405 and answer.headers["Allow"] == allowed
    assert answer.json()["error"] == "method_not_allowed"


@pytest.fixture(scope="module")
def token(endpoints: dict[str, str]) -> str:
    return signed_up_user(endpoints)


@pytest.mark.stack
def test_a_form_of_too_many_parts_is_refused_in_json(endpoints: dict[str, str], token: str) -> None:
    """Found by schemathesis: werkzeug refused it with an HTML page (413) instead of the JSON error body."""
    fields = {f"field{number}": "x" for number in range(20)}
    answer = requests.post(endpoints["UPLOAD_URL"], data=fields, files={"file": ("a.mp4", b"\x00" * 64)},
                           headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert answer.status_code == 400 and answer.headers["Content-Type"] == "application/json"
    assert answer.json()["error"] == "bad_upload" and "parts" in answer.json()["message"]


@pytest.mark.stack
@pytest.mark.parametrize("function", ["auth", "upload", "status", "download", "webhooks", "web"])
def test_a_path_the_framework_refuses_answers_json(endpoints: dict[str, str], function: str) -> None:
    """Found by schemathesis: a path holding a newline is refused by the framework's routing, with an HTML page."""
    answer = requests.delete(endpoints[f"{function.upper()}_URL"] + "/a%0Ab", timeout=10)
    assert answer.status_code == 404 and answer.headers["Content-Type"] == "application/json"
    assert answer.json()["error"] == "not_found"


@pytest.mark.stack
def test_a_malformed_webhook_url_is_refused_not_a_crash(endpoints: dict[str, str], token: str) -> None:
    """Found by schemathesis: an unbalanced `[` in the URL's host was a 500."""
    answer = requests.post(endpoints["WEBHOOKS_URL"], json={"url": "https://[8g&M/", "events": [
        "io.vid2mp3.audio.converted.v1"]}, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert answer.status_code == 422 and "malformed" in answer.json()["message"]


def signed_up_user(endpoints: dict[str, str]) -> str:
    """A new user's bearer token."""
    credentials = {"email": f"openapi-{uuid.uuid4().hex[:10]}@test.vid2mp3.dev", "password": TEST_PASSWORD}
    requests.post(endpoints["AUTH_URL"] + "/signup", json=credentials, timeout=30).raise_for_status()
    answer = requests.post(endpoints["AUTH_URL"] + "/login", json=credentials, timeout=30)
    answer.raise_for_status()
    return str(answer.json()["access_token"])


# Statuses a schema-valid request may still get, and why (everything else needs a 2xx, 401, 404, 409 or 429).
ALSO_ACCEPTABLE = {
    # The email address is checked once trimmed and lower-cased, which a pattern cannot say.
    "signUp": [422], "logIn": [422],
    # Options that each fit their schema may conflict (end before start, loudness without normalize); bytes that
    # fit "binary" are seldom a video.
    "uploadVideo": [415, 422],
    # The URL's host must resolve to an address the SSRF guard allows, which no schema can say.
    "registerWebhookEndpoint": [422],
    # A range of the right form may still lie past the MP3's end.
    "downloadMp3": [416],
    # Job ids of the right form may name no finished job of the caller's: the ZIP is all or nothing, each named in a
    # 422.
    "downloadMp3sZip": [422],
    # tus: a body longer than `Upload-Length` says (413), bytes that are not media (415), a body whose sha1 is not
    # the checksum's (460), options that conflict (422), a creation's body smaller than a PATCH's least that does
    # not bring the whole upload (400 `patch_too_small`) — each a relation between parts no schema can state.
    # schemathesis's coverage phase (4.32.5) also sends a header outside its `pattern` as a valid case
    # (`Upload-Checksum: 0`; schemathesis#4592 is the same for `format`), which tus must answer 400.
    "tusCreate": [400, 413, 415, 422], "tusAppend": [400, 413, 415, 460],
}


TUS_REFUSALS = [400, 401, 403, 404, 405, 406, 409, 412, 413, 415, 422, 428, 429, 460]


def schemathesis_config(path: Path) -> Path:
    lines = [
        "max-stream-events = 2",
        "request-timeout = 30",
        "[phases.stateful]",
        f"max-steps = {MAX_STATEFUL_STEPS}",
    ]
    # tus 1.0.0 answers a request without its `Tus-Resumable: 1.0.0` 412 Precondition Failed (with `Tus-Version`),
    # as the protocol demands, where a generic API would answer 400.
    lines += ["[[operations]]", 'include-tag = "tus"',
              f"checks.negative_data_rejection.expected-statuses = {json.dumps(TUS_REFUSALS)}",
              f"checks.missing_required_header.expected-statuses = {json.dumps(TUS_REFUSALS)}"]
    for operation_id, statuses in ALSO_ACCEPTABLE.items():
        expected = ["2xx", "3xx", 401, 403, 404, 409, 429, *statuses]
        lines += ["[[operations]]", f'include-operation-id = "{operation_id}"',
                  f"checks.positive_data_acceptance.expected-statuses = {json.dumps(expected)}"]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def fuzz_run(endpoints: dict[str, str]) -> dict[str, Any]:
    """One schemathesis run on the running stack (every phase, every check), authenticated as a new user."""
    # Kept after the run (git-ignored): the report and the output with each failure's `curl` reproduction.
    work = ROOT / ".local" / "schemathesis"
    work.mkdir(parents=True, exist_ok=True)
    clip = make_clip(work / "clip.mp4", seconds=1)
    report = work / "report.json"
    command = [str(SCHEMATHESIS), "--config-file", str(schemathesis_config(work / "schemathesis.toml")), "run",
               endpoints["WEB_URL"] + "/openapi.json",
               "--header", f"Authorization: Bearer {signed_up_user(endpoints)}",
               "--checks", "all", "--mode", "all", "--phases", "examples,coverage,fuzzing,stateful",
               # One worker: with two, hypothesis's lambda description once raised an AST recursion error in
               # schemathesis's own thread (an error of the tool's, not an answer of ours).
               "--max-examples", str(MAX_EXAMPLES), "--workers", "1", "--no-shrink", "--seed", str(SEED),
               "--generation-database", "none", "--report", "json", "--report-json-path", str(report)]
    environment = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.openapi_fuzz_hooks", "VID2MP3_FUZZ_CLIP": str(clip),
                   "PYTHONPATH": str(ROOT)}
    report.unlink(missing_ok=True)
    with (work / "output.txt").open("w") as output:
        subprocess.run(command, stdout=output, stderr=subprocess.STDOUT, timeout=RUN_SECONDS_LIMIT, env=environment,
                       cwd=work)
    if not report.exists():
        pytest.fail(f"schemathesis wrote no report: see {work / 'output.txt'}")
    return {"report": json.loads(report.read_text()), "output": work / "output.txt"}


def stateful_reach(output: str) -> dict[str, str]:
    scenarios = re.search(r"Scenarios:\s+(\d+)", output)
    links = re.search(r"API Links:\s+(\d+) covered / (\d+) selected", output)
    return {"stateful_scenarios": scenarios.group(1) if scenarios else "?",
            "links_covered": f"{links.group(1)} of {links.group(2)}" if links else "?"}


@pytest.mark.stack
def test_schemathesis_finds_nothing(fuzz_run: dict[str, Any], figures: dict[str, Any]) -> None:
    report = fuzz_run["report"]
    figures["schemathesis"] = {
        "operations_tested": report["operations"]["tested"],
        "operations_in_document": report["operations"]["total"],
        "test_cases": report["test_cases"]["generated"],
        "failures": sum(failure["count"] for failure in report["failures"]),
        "errors": len(report["errors"]),
        "phases": {name: phase["status"] for name, phase in report["phases"].items()},
        "seconds": round(report["running_time"], 1),
        "max_examples": MAX_EXAMPLES, "stateful_max_steps": MAX_STATEFUL_STEPS, "seed": SEED,
        # The JSON report leaves the stateful phase's reach out; its text summary says it.
        **stateful_reach(fuzz_run["output"].read_text(errors="replace")),
    }
    found = json.dumps(report["failures"] + report["errors"], indent=1)
    assert report["failures"] == [] and report["errors"] == [], f"{found}\n(reproductions: {fuzz_run['output']})"
    # Every operation of the document, tus's included.
    assert report["operations"]["tested"] == report["operations"]["selected"] == report["operations"]["total"] > 0
    # The stateful phase ran along the links (sign-up → log in, upload → status → download, cancel, delete).
    assert report["phases"]["stateful"]["status"] == "success", report["phases"]


