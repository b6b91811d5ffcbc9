"""The answers HTTP functions give: JSON bodies, one error shape (`{"error": code, "message": words}`), the
bearer-token check every owner-only endpoint starts with, and CORS for the web page that calls the public functions
from its own origin."""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections.abc import Callable, Collection
from typing import Any

import flask
import pymongo.errors
import pymysql
from pydantic import BaseModel, Field
from werkzeug.exceptions import HTTPException

from functions.shared.tokens import Identity, InvalidToken, TokenVerifier, bearer_token

log = logging.getLogger(__name__)


class ErrorBody(BaseModel):
    """Every error answer's JSON body (the OpenAPI document's `Error` schema)."""

    error: str = Field(description="A stable, machine-readable code (`not_found`, `over_quota`, ...).")
    message: str = Field(description="What went wrong, in words, for a person.")
    fields: dict[str, str] | None = Field(default=None, description="With a 422 of bad options: each bad field "
                                                                    "and what is wrong with it.")


class HttpError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}
        # More of the answer for the client's own use (the 422 of bad options maps each field to its problem).
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        return ErrorBody(error=self.code, message=self.message, **self.extra).model_dump(exclude_unset=True)

    def response(self) -> flask.Response:
        return json_response(self.body(), self.status, self.headers)

    def response_leaving_body_unread(self) -> flask.Response:
        """The answer to a request whose body we stop reading (too large, not media): a streamed response, so
        functions-framework does not read the rest of the body into memory first, and the connection closes."""
        body = json.dumps(self.body()).encode()
        response = flask.Response(iter([body]), status=self.status, mimetype="application/json",
                                  headers={**self.headers, "Connection": "close", "Cache-Control": "no-store"})
        return response


def framework_errors_in_json() -> None:
    """Called at a function's import: the framework's own refusals (a path its routing does not take, such as one
    holding a newline) answer with the JSON error body too, not werkzeug's HTML page (found by schemathesis)."""

    def as_json(error: HTTPException) -> flask.Response:
        code = (error.name or "error").lower().replace(" ", "_")
        return HttpError(error.code or 500, code, error.description or error.name).response()

    # On the app whose context runs main.py (functions-framework's `errorhandler` names the app created last in the
    # process, another one when a process makes several: the tests do).
    if flask.has_app_context():
        flask.current_app.register_error_handler(HTTPException, as_json)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> flask.Response:
    response = flask.jsonify(body)
    response.status_code = status
    response.headers.update(headers or {})
    response.headers.setdefault("Cache-Control", "no-store")
    return response


NOT_FOUND = HttpError(404, "not_found", "no such job")


def method_not_allowed(allowed: str, message: str) -> HttpError:
    """405, with the `Allow` header RFC 9110 requires on it (the methods the path answers)."""
    return HttpError(405, "method_not_allowed", message, {"Allow": allowed})


def authenticate(request: flask.Request, verifier: TokenVerifier) -> Identity:
    try:
        return verifier.verify(bearer_token(request.headers.get("Authorization")))
    except InvalidToken as error:
        raise HttpError(401, "unauthorized", f"a valid bearer token is required ({error})",
                        {"WWW-Authenticate": 'Bearer realm="vid2mp3"'}) from None


# What a data store that is down, restarting or unreachable raises.
STORE_ERRORS = (pymongo.errors.PyMongoError, pymysql.err.OperationalError, pymysql.err.InterfaceError)
STORE_UNAVAILABLE = HttpError(503, "unavailable", "a data store is not answering; try again shortly",
                              {"Retry-After": "5"})


def answer_errors(handler: Callable[[flask.Request], Any]) -> Callable[[flask.Request], Any]:
    """Decorator: turns HttpError raised by an HTTP handler into its JSON answer, and a data store that does not
    answer into 503 (retry later) rather than a crash's 500."""

    @functools.wraps(handler)
    def wrapper(request: flask.Request) -> Any:
        try:
            return handler(request)
        except HttpError as error:
            return error.response()
        except STORE_ERRORS:
            return STORE_UNAVAILABLE.response()

    return wrapper


class SetUpOnce:
    """Set-up a function needs from a data store (a schema, indexes). A scale-to-zero function may start while its
    store is restarting: it starts anyway, and the set-up runs again before each request until it has succeeded
    once (until then requests answer 503 through `answer_errors`)."""

    def __init__(self, what: str, action: Callable[[], None]) -> None:
        self.what = what
        self._action = action
        self._done = False
        self._lock = threading.Lock()

    def __call__(self) -> None:
        if self._done:
            return
        with self._lock:
            if not self._done:
                self._action()
                self._done = True

    def at_start(self) -> SetUpOnce:
        try:
            self()
        except STORE_ERRORS as error:
            log.warning("%s: not set up at start (%s); trying again at the next request", self.what,
                        type(error).__name__)
        return self


# What the web page sends (a bearer token, JSON or a raw video, byte ranges, tus resumable uploads) and what it
# must be able to read.
CORS_ALLOWED_METHODS = "GET, HEAD, POST, PATCH, DELETE, OPTIONS"
CORS_ALLOWED_HEADERS = ("Authorization, Content-Type, Range, If-None-Match, Tus-Resumable, Upload-Length, "
                        "Upload-Offset, Upload-Metadata, Upload-Checksum, Upload-Defer-Length, Upload-Concat, "
                        "X-HTTP-Method-Override")
CORS_EXPOSED_HEADERS = ("Content-Disposition, Content-Length, Content-Range, ETag, Retry-After, Location, "
                        "Upload-Offset, Upload-Length, Upload-Expires, Upload-Metadata, Tus-Resumable, Tus-Version, "
                        "Tus-Extension, Tus-Max-Size, Tus-Checksum-Algorithm")
CORS_PREFLIGHT_MAX_AGE_SECONDS = 600


def allow_cross_origin(allowed_origins: Collection[str]) -> Callable[[Callable[[flask.Request], Any]],
                                                                     Callable[[flask.Request], Any]]:
    """Decorator, outermost on a public HTTP function: answers CORS preflights itself and lets the listed origins
    read every answer, errors included. No cookies are involved (tokens travel in `Authorization`), so credentials
    are never allowed; other origins get no CORS headers and the browser keeps the answer from them."""

    def decorate(handler: Callable[[flask.Request], Any]) -> Callable[[flask.Request], Any]:
        @functools.wraps(handler)
        def wrapper(request: flask.Request) -> Any:
            origin = request.headers.get("Origin")
            allowed = origin is not None and origin in allowed_origins
            if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
                if not allowed:
                    response = HttpError(403, "origin_not_allowed", "this origin may not call vid2mp3").response()
                else:
                    response = flask.Response(status=204, headers={
                        "Access-Control-Allow-Methods": CORS_ALLOWED_METHODS,
                        "Access-Control-Allow-Headers": CORS_ALLOWED_HEADERS,
                        "Access-Control-Max-Age": str(CORS_PREFLIGHT_MAX_AGE_SECONDS),
                    })
            else:
                response = flask.make_response(handler(request))
            if allowed:
                response.headers["Access-Control-Allow-Origin"] = str(origin)
                response.headers["Access-Control-Expose-Headers"] = CORS_EXPOSED_HEADERS
            response.vary.add("Origin")
            return response

        return wrapper

    return decorate


def also_under(name: str) -> Callable[[Callable[[flask.Request], Any]], Callable[[flask.Request], Any]]:
    """Decorator: the function answers each of its paths under `/<name>` too (`/status/<job id>` as `/<job id>`).
    Every function has a URL of its own, so their paths overlap (`GET /` lists jobs on status and endpoints on
    webhooks); the OpenAPI document (functions/web/openapi.py) names each path with its function's prefix, which
    keeps one document's paths apart, and lets a single gateway route by prefix."""
    prefix = f"/{name}"

    def decorate(handler: Callable[[flask.Request], Any]) -> Callable[[flask.Request], Any]:
        @functools.wraps(handler)
        def wrapper(request: flask.Request) -> Any:
            if request.path == prefix or request.path.startswith(prefix + "/"):
                request.path = request.path[len(prefix):] or "/"
            return handler(request)

        return wrapper

    return decorate
