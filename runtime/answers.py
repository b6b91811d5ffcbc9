"""The one shape every HTTP answer of vid2mp3 takes: JSON bodies, and errors as `{"error": code, "message": words}`
with a fitting status. Below the domain packages, which raise `HttpError` where a refusal is theirs to word."""

from __future__ import annotations

import json
from typing import Any

import flask
from pydantic import BaseModel, Field
from werkzeug.exceptions import HTTPException


class ErrorBody(BaseModel):
    """Every error answer's JSON body (the OpenAPI document's `Error` schema)."""

    error: str = Field(description="A stable, machine-readable code (`not_found`, `over_quota`, ...).")
    message: str = Field(description="What went wrong, in words, for a person.")
    fields: dict[str, str] | None = Field(default=None, description="With a 422 of bad options: each bad field "
                                                                    "and what is wrong with it.")
    jobs: dict[str, str] | None = Field(default=None, description="With a 422 of a ZIP of many: each job named that "
                                                                  "has no MP3 to give, and why.")


class HttpError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None,
                 extra: dict[str, Any] | None = None, *, leaves_body_unread: bool = False) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}
        # Refused while the request's body is still coming: answered without reading the rest.
        self.leaves_body_unread = leaves_body_unread
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
        # Its length given, so that it is not sent chunked for being an iterator.
        response = flask.Response(iter([body]), status=self.status, mimetype="application/json",
                                  headers={**self.headers, "Connection": "close", "Cache-Control": "no-store",
                                           "Content-Length": str(len(body))})
        return response


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


def refusal_response(error: HTTPException) -> flask.Response:
    """One of werkzeug's refusals (raised by the framework's routing, by werkzeug reading a request, or by the server's
    read timeouts) as the JSON error body."""
    # A refusal of our own may name its code (runtime/server.py's IncompleteBody); werkzeug's are named by status.
    code = getattr(error, "error_code", None) or (error.name or "error").lower().replace(" ", "_")
    # A refusal may come while the body is being read (a timeout, a body over a limit): whatever is left of it
    # stays unread, and functions-framework does not read it into memory after the answer.
    return HttpError(error.code or 500, code, error.description or error.name).response_leaving_body_unread()


def crash_response(error: Exception) -> flask.Response:
    """A crash: the JSON error body, saying nothing of its cause, with functions-framework's status header (its
    logs count crashes by it)."""
    return HttpError(500, "internal_error", "the function failed; try again later",
                     {"X-Google-Status": "crash"}).response()


def errors_in_json(app: flask.Flask) -> None:
    """Every answer `app` makes itself, refusals and crashes alike, in the JSON error body, not werkzeug's HTML page."""
    app.register_error_handler(HTTPException, refusal_response)
    app.register_error_handler(500, crash_response)
