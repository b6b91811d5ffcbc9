"""Every HTTP function's request handling (endpoints/http.py): rules, under its name too, HEAD with GET, its not-found
answer, 405 with `Allow` in order, job ids only, a silent store as 503, the token checked before routing, set-up
retried until done; and CORS: the page's preflight answered, another origin's refused, only the allowed origin named."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import flask
import pymongo.errors
import pymysql
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from accounts.tokens import Identity, TokenIssuer, TokenVerifier
from endpoints.http import HttpFunction, SetUpOnce, allow_cross_origin, check_scope, read_json
from runtime.answers import HttpError, json_response

JOB = "0123456789abcdef" * 2
NO_SUCH_THING = HttpError(404, "not_found", "no such thing")
EVERY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
PAGE_ORIGIN = "https://web.example.test"


def serve(function: HttpFunction) -> flask.testing.FlaskClient:
    """A Flask app that hands every request to `function`, as functions-framework does."""
    app = flask.Flask(__name__)

    def entry(path: str) -> Any:
        return function(flask.request)

    app.add_url_rule("/", "entry", entry, defaults={"path": ""}, methods=EVERY_METHOD)
    app.add_url_rule("/<path:path>", "entry", entry, methods=EVERY_METHOD)
    return app.test_client()


def jobs_function(**options: Any) -> HttpFunction:
    function = HttpFunction("jobs", not_found=NO_SUCH_THING, **options)

    @function.route("/", "GET")
    def listing(request: flask.Request) -> flask.Response:
        return json_response({"jobs": [], "method": request.method})

    @function.route("/<job:job_id>", "GET", "DELETE")
    def one(request: flask.Request, job_id: str) -> flask.Response:
        return json_response({"job": job_id, "method": request.method})

    @function.route("/<job:job_id>/cancel", "DELETE", "POST", "GET")
    def cancel(request: flask.Request, job_id: str) -> flask.Response:
        return json_response({"cancelled": job_id})

    @function.route("/down", "GET")
    def down(request: flask.Request) -> flask.Response:
        raise pymongo.errors.ServerSelectionTimeoutError("no primary")

    @function.route("/mysql-down", "GET")
    def mysql_down(request: flask.Request) -> flask.Response:
        raise pymysql.err.OperationalError(2003, "can't connect")

    @function.route("/refused", "GET")
    def refused(request: flask.Request) -> flask.Response:
        raise HttpError(409, "conflict", "not now", {"Retry-After": "1"})

    @function.route("/anything")
    def anything(request: flask.Request) -> flask.Response:
        return json_response({"method": request.method})

    return function


@pytest.fixture
def client() -> flask.testing.FlaskClient:
    return serve(jobs_function())


def test_a_rule_answers_with_its_arguments(client: flask.testing.FlaskClient) -> None:
    assert client.get("/").json == {"jobs": [], "method": "GET"}
    assert client.get(f"/{JOB}").json == {"job": JOB, "method": "GET"}
    assert client.delete(f"/{JOB}").json == {"job": JOB, "method": "DELETE"}
    assert client.post(f"/{JOB}/cancel").json == {"cancelled": JOB}
    assert client.get(f"/{JOB}/").json == {"job": JOB, "method": "GET"}  # a trailing slash is the same path


def test_a_get_rule_answers_head(client: flask.testing.FlaskClient) -> None:
    answer = client.head(f"/{JOB}")
    assert answer.status_code == 200 and answer.data == b""


def test_a_rule_without_methods_takes_every_method(client: flask.testing.FlaskClient) -> None:
    for method in ("GET", "PUT", "PATCH", "OPTIONS"):
        assert client.open("/anything", method=method).json == {"method": method}


def test_the_paths_answer_under_the_functions_name_too(client: flask.testing.FlaskClient) -> None:
    assert client.get("/jobs").json == {"jobs": [], "method": "GET"}
    assert client.get("/jobs/").json == {"jobs": [], "method": "GET"}
    assert client.get(f"/jobs/{JOB}").json == {"job": JOB, "method": "GET"}
    assert client.get("/jobsx").status_code == 404  # a name that only starts like it is another path


@pytest.mark.parametrize("path", ["/nowhere", f"/{JOB}/nowhere", f"/{JOB.upper()}", f"/{JOB[:-1]}", f"/{JOB}0",
                                  f"/{JOB[:-1]}g", "/jobs/jobs", f"/jobs/jobs/{JOB}"])
def test_an_unknown_path_or_a_non_job_id_answers_the_functions_not_found(client: flask.testing.FlaskClient,
                                                                         path: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 404
    assert answer.json == {"error": "not_found", "message": "no such thing"}


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("POST", "/", "GET, HEAD"),
    ("PUT", f"/{JOB}", "GET, HEAD, DELETE"),
    ("POST", f"/{JOB}", "GET, HEAD, DELETE"),
    ("PATCH", f"/jobs/{JOB}/cancel", "GET, HEAD, POST, DELETE"),  # declared DELETE, POST, GET
    ("OPTIONS", "/", "GET, HEAD"),
])
def test_a_method_the_rule_does_not_take_answers_405_with_allow_in_order(client: flask.testing.FlaskClient,
                                                                         method: str, path: str, allow: str) -> None:
    answer = client.open(path, method=method)
    assert answer.status_code == 405
    assert answer.headers["Allow"] == allow
    assert answer.json is not None and answer.json["error"] == "method_not_allowed"


@pytest.mark.parametrize("path", ["/down", "/mysql-down"])
def test_a_data_store_that_does_not_answer_is_503_with_retry_after(client: flask.testing.FlaskClient,
                                                                    path: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "5"
    assert answer.json is not None and answer.json["error"] == "unavailable"


def test_a_handlers_refusal_is_its_json_answer(client: flask.testing.FlaskClient) -> None:
    answer = client.get("/refused")
    assert (answer.status_code, answer.headers["Retry-After"]) == (409, "1")
    assert answer.json == {"error": "conflict", "message": "not now"}


def test_a_bug_is_not_passed_off_as_a_refusal() -> None:
    function = HttpFunction(None)

    @function.route("/", "GET")
    def broken(request: flask.Request) -> flask.Response:
        raise KeyError("job")

    with flask.Flask(__name__).test_request_context("/"), pytest.raises(KeyError):
        function(flask.request)


def test_refusals_go_through_the_functions_own_answer() -> None:
    function = jobs_function(answer_error=lambda request, error: error.response_leaving_body_unread())
    for path in ("/nowhere", "/down", "/refused"):
        answer = serve(function).get(path)
        assert answer.headers["Connection"] == "close", path


# --- The token first --------------------------------------------------------------------------------------

@pytest.fixture
def unreachable_jwks() -> Iterator[str]:
    """A JWKS URL on a port of this test's that takes no connection."""
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{bound.getsockname()[1]}/jwks.json"


@pytest.fixture
def a_token() -> str:
    pem = Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()).decode()
    return TokenIssuer(pem, issuer="vid2mp3-auth", audience="vid2mp3", ttl_seconds=60).issue("user-1", "a@b.test", 1)


def verifier_at(url: str) -> TokenVerifier:
    return TokenVerifier(url, issuer="vid2mp3-auth", audience="vid2mp3")


@pytest.mark.parametrize("path", ["/", "/nowhere", f"/{JOB}", "/down"])
def test_authenticate_first_answers_401_before_routing(unreachable_jwks: str, a_token: str, path: str) -> None:
    client = serve(jobs_function(verifier=verifier_at(unreachable_jwks), authenticate_first=True))
    for headers in ({}, {"Authorization": f"Bearer {a_token}"}, {"Authorization": "Bearer not-a-token"}):
        answer = client.put(path, headers=headers)
        assert answer.status_code == 401, headers
        # RFC 6750 §3.1: no error code without a token; `invalid_token` for one that is not valid.
        challenge = 'Bearer realm="vid2mp3"' + ("" if not headers else ', error="invalid_token", error_description='
                                                "\"the token is malformed, expired or not ours\"")
        assert answer.headers["WWW-Authenticate"] == challenge
        assert answer.json is not None and answer.json["error"] == "unauthorized"
        assert a_token not in answer.get_data(as_text=True)


def test_authenticate_first_for_some_requests_only(unreachable_jwks: str) -> None:
    client = serve(jobs_function(verifier=verifier_at(unreachable_jwks),
                                 authenticate_first=lambda request: request.method != "GET"))
    assert client.get("/").status_code == 200
    assert client.get("/nowhere").status_code == 404
    assert client.delete("/nowhere").status_code == 401


def test_without_authenticate_first_an_unknown_path_is_404(unreachable_jwks: str) -> None:
    client = serve(jobs_function(verifier=verifier_at(unreachable_jwks)))
    assert client.get("/nowhere").status_code == 404


# --- Set-up and the framework's own refusals --------------------------------------------------------------

def test_set_up_runs_before_each_request_until_it_has_succeeded_once() -> None:
    runs: list[int] = []

    def create_indexes() -> None:
        runs.append(1)
        if len(runs) == 1:
            raise pymongo.errors.AutoReconnect("restarting")

    set_up = SetUpOnce("indexes", create_indexes).at_start()  # fails at start: logged, not raised
    client = serve(jobs_function(before=set_up))
    assert client.get("/").status_code == 200
    assert client.get("/nowhere").status_code == 404
    assert len(runs) == 2


def test_set_up_that_keeps_failing_answers_503_on_every_path() -> None:
    def create_indexes() -> None:
        raise pymongo.errors.ServerSelectionTimeoutError("no primary")

    client = serve(jobs_function(before=SetUpOnce("indexes", create_indexes).at_start()))
    for path in ("/", "/nowhere"):
        assert client.get(path).status_code == 503


def test_set_up_at_start_lets_a_bug_through() -> None:
    def broken() -> None:
        raise TypeError("not a store error")

    with pytest.raises(TypeError):
        SetUpOnce("indexes", broken).at_start()


def test_the_frameworks_own_refusals_answer_json_on_the_app_that_made_the_function() -> None:
    app = flask.Flask(__name__)
    app.add_url_rule("/", "entry", lambda: "", methods=["GET"])
    plain = flask.Flask(__name__)
    plain.add_url_rule("/", "entry", lambda: "", methods=["GET"])
    with app.app_context():
        HttpFunction("jobs")
    answer = app.test_client().get("/a/b")
    assert answer.status_code == 404
    assert answer.json is not None and answer.json["error"] == "not_found"
    assert plain.test_client().get("/a/b").mimetype == "text/html"


# --- CORS ---------------------------------------------------------------------------------------------------


@pytest.fixture
def cors_app() -> flask.Flask:
    app = flask.Flask(__name__)

    @allow_cross_origin({PAGE_ORIGIN})
    def handler(request: flask.Request) -> flask.Response:
        return json_response({"ok": True})

    app.add_url_rule("/", "handler", lambda: handler(flask.request), methods=["GET", "POST", "OPTIONS"])
    return app


def test_preflight_from_the_page_is_answered(cors_app: flask.Flask) -> None:
    answer = cors_app.test_client().options("/", headers={
        "Origin": PAGE_ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert answer.status_code == 204
    assert answer.headers["Access-Control-Allow-Origin"] == PAGE_ORIGIN
    assert {"Authorization", "Content-Type"} <= {name.strip() for name in
                                                answer.headers["Access-Control-Allow-Headers"].split(",")}
    assert "POST" in answer.headers["Access-Control-Allow-Methods"]
    assert "Access-Control-Allow-Credentials" not in answer.headers
    assert "Origin" in answer.headers["Vary"]


@pytest.mark.parametrize("origin", ["https://evil.example.test", "null", PAGE_ORIGIN + ".evil.test"])
def test_preflight_from_another_origin_is_refused(cors_app: flask.Flask, origin: str) -> None:
    answer = cors_app.test_client().options("/", headers={"Origin": origin, "Access-Control-Request-Method": "POST"})
    assert answer.status_code == 403
    assert "Access-Control-Allow-Origin" not in answer.headers


@pytest.mark.parametrize(("origin", "allowed"), [(PAGE_ORIGIN, True), ("https://evil.example.test", False),
                                                 (None, False)])
def test_answers_name_only_the_allowed_origin(cors_app: flask.Flask, origin: str | None, allowed: bool) -> None:
    answer = cors_app.test_client().get("/", headers={"Origin": origin} if origin else {})
    assert answer.status_code == 200 and answer.json == {"ok": True}
    assert answer.headers.get("Access-Control-Allow-Origin") == (PAGE_ORIGIN if allowed else None)
    if allowed:
        assert "Content-Disposition" in answer.headers["Access-Control-Expose-Headers"]




# --- JSON bodies and bodiless answers ---------------------------------------------------------------------------

def body_function(allowed_origins: set[str] | None = None) -> HttpFunction:
    function = HttpFunction("bodies", allowed_origins=allowed_origins)

    @function.route("/", "POST")
    def echo(request: flask.Request) -> flask.Response:
        return json_response({"body": read_json(request, max_bytes=1000, max_depth=4)})

    @function.route("/gone", "DELETE")
    def gone(request: flask.Request) -> flask.Response:
        return flask.Response(status=204)

    return function


@pytest.mark.parametrize(("data", "status", "code"), [
    (b'{"a": [1, {"b": "[[[[[[[["}]}', 200, None),  # brackets in strings do not count
    (b"[" * 5 + b"]" * 5, 400, "malformed_json"),
    (b"[" * 900, 400, "malformed_json"),
    (b'{"a": 1', 400, "malformed_json"),
    (b'{"a": "' + b"x" * 1000 + b'"}', 413, "body_too_large"),
])
def test_a_json_body_is_limited_before_it_is_parsed(data: bytes, status: int, code: str | None) -> None:
    answer = serve(body_function()).post("/", data=data, content_type="application/json")
    assert answer.status_code == status and answer.is_json
    if code:
        assert answer.json["error"] == code and set(answer.json) == {"error", "message"}


def test_a_json_body_over_its_declared_length_is_refused_unread() -> None:
    client = serve(body_function())
    read: list[int] = []

    class Endless:
        def read(self, size: int = -1) -> bytes:
            read.append(size)
            return b" " * max(size, 0)

    answer = client.post("/", environ_overrides={"wsgi.input": Endless(), "CONTENT_LENGTH": str(50 * 1024 * 1024),
                                                 "CONTENT_TYPE": "application/json"})
    assert answer.status_code == 413 and answer.json["error"] == "body_too_large"
    assert answer.headers["Connection"] == "close" and sum(read) == 0


def test_a_json_body_arriving_in_small_pieces_is_read_whole() -> None:
    pieces = [b'{"a": ', b'"' + b"x" * 500, b'"}']

    class Trickle:
        def read(self, size: int = -1) -> bytes:
            return pieces.pop(0) if pieces else b""

    body = b"".join(pieces)
    answer = serve(body_function()).post("/", environ_overrides={
        "wsgi.input": Trickle(), "CONTENT_LENGTH": str(len(body)), "CONTENT_TYPE": "application/json"})
    assert answer.status_code == 200 and answer.json == {"body": {"a": "x" * 500}}


def test_a_body_that_is_not_json_reads_as_none() -> None:
    assert serve(body_function()).post("/", data=b"[1]", content_type="text/plain").json == {"body": None}


@pytest.mark.parametrize("origins", [None, {PAGE_ORIGIN}])
def test_a_204_has_no_content_type(origins: set[str] | None) -> None:
    answer = serve(body_function(origins)).delete("/gone")
    assert answer.status_code == 204 and "Content-Type" not in answer.headers


# --- Scopes -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("scopes", "scope", "refused"), [
    (None, "convert", False), (None, None, False),  # a login's token may do everything
    (frozenset({"read"}), "read", False), (frozenset({"read"}), "convert", True),
    (frozenset({"convert", "read", "delete", "webhooks"}), None, True),  # the account: never a key
])
def test_a_key_acts_only_in_its_scopes(scopes: frozenset[str] | None, scope: str | None, refused: bool) -> None:
    identity = Identity(subject="1", email="", generation=1, scopes=scopes, key_id="k" if scopes else "")
    if not refused:
        check_scope(identity, scope)
        return
    with pytest.raises(HttpError) as error:
        check_scope(identity, scope)
    assert (error.value.status, error.value.code) == (403, "insufficient_scope")
    assert (f"`{scope}`" in error.value.message) if scope else "log in" in error.value.message
