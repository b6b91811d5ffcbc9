"""The one shape every HTTP answer of vid2mp3 takes: JSON bodies, and errors as `{"error": code, "message": words}`
with a fitting status. Below the domain packages, which raise `HttpError` where a refusal is theirs to word."""

from __future__ import annotations

import json
from typing import Any

import flask
from pydantic import BaseModel, Field


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
