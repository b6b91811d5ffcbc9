"""The answers HTTP functions give: JSON bodies, one error shape (`{"error": code, "message": words}`), and the
bearer-token check every owner-only endpoint starts with."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import flask

from functions.shared.tokens import Identity, InvalidToken, TokenVerifier, bearer_token


class HttpError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}

    def response(self) -> flask.Response:
        return json_response({"error": self.code, "message": self.message}, self.status, self.headers)

    def response_leaving_body_unread(self) -> flask.Response:
        """The answer to a request whose body we stop reading (too large, not media): a streamed response, so
        functions-framework does not read the rest of the body into memory first, and the connection closes."""
        body = json.dumps({"error": self.code, "message": self.message}).encode()
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


def authenticate(request: flask.Request, verifier: TokenVerifier) -> Identity:
    try:
        return verifier.verify(bearer_token(request.headers.get("Authorization")))
    except InvalidToken as error:
        raise HttpError(401, "unauthorized", f"a valid bearer token is required ({error})",
                        {"WWW-Authenticate": 'Bearer realm="vid2mp3"'}) from None


def answer_errors(handler: Callable[[flask.Request], Any]) -> Callable[[flask.Request], Any]:
    """Decorator: turns HttpError raised by an HTTP handler into its JSON answer."""

    @functools.wraps(handler)
    def wrapper(request: flask.Request) -> Any:
        try:
            return handler(request)
        except HttpError as error:
            return error.response()

    return wrapper
