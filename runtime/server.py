"""The HTTP server every function runs in: functions-framework's app on functions-framework's gunicorn server, with a
worker that times out slow requests and answers the server's own refusals with the JSON error body.

`python -m runtime.server` takes functions-framework's options and variables (`--target`/`FUNCTION_TARGET`,
`--source`/`FUNCTION_SOURCE`, `--signature-type`, `--host`/`HOST`, `--port`/`PORT`; `THREADS`, `WORKERS`) and runs the
same server as the `functions-framework` command, with these changes, the same in the image (functions/Dockerfile)
and in the local stack (stack/__main__.py):

- Read timeouts (`ServerSettings`). gunicorn's threaded worker waits for a request's first bytes without holding a
  thread, but then reads the request line and headers, and the application reads the body, on one of the worker's
  few threads with no time limit: a client sending one header line every few seconds, or a body that stops, held a
  thread for ever. Here the request line and headers must arrive within `REQUEST_HEADERS_TIMEOUT_SECONDS` of the
  thread taking the connection (else 408 and the connection is closed), and a body may pause at most
  `REQUEST_BODY_IDLE_TIMEOUT_SECONDS` between two reads (the application's read raises werkzeug's 408, which the
  function answers; the connection is closed after it). The same idle limit bounds each write of the answer, so a
  client that stops reading frees its thread too.
- The server's own refusals (a malformed request line or header, `Content-Length: abc`, a request line or header
  field over gunicorn's limits: 400, 414, 431, 501) and a crash answer the JSON error body, not gunicorn's HTML page.
- The request line is limited to gunicorn's default 8190 bytes (functions-framework lifts the limit entirely).
- An answer with `Connection: close` closes the connection (gunicorn drops the header and would keep it alive).
- A body the function did not read is left to gunicorn to discard (bounded), not read into memory after the answer
  as functions-framework does (`leave_unread_bodies_to_the_server`).
- A body that ends before its `Content-Length`, or a chunked body that ends without its last chunk (the client gave
  up or lost its connection), raises `IncompleteBody` to the function reading it, a 400, instead of reading as a
  shorter body (gunicorn's reader answers the bytes that came, then nothing, as at a body's end): RFC 9112 §6.3,
  an incomplete message is never acted on (`CheckedBody`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import functions_framework
import gunicorn.util
from functions_framework import create_app
from functions_framework._http import create_server
from gunicorn.http.errors import NoMoreData, ParseException
from gunicorn.workers.gthread import ThreadWorker
from werkzeug.exceptions import ClientDisconnected, RequestTimeout

from runtime.answers import ErrorBody, errors_in_json
from runtime.settings import ServerSettings

log = logging.getLogger(__name__)

# gunicorn's default; a signed download link or a tus URL is a few hundred bytes.
REQUEST_LINE_LIMIT_BYTES = 8190
# What the JSON body of each of gunicorn's refusals is called (its reason phrases, lower-cased, otherwise).
ERROR_CODES = {400: "bad_request", 403: "forbidden", 408: "request_timeout", 414: "uri_too_long",
               417: "expectation_failed", 431: "request_header_fields_too_large", 500: "internal_error",
               501: "not_implemented"}


class ReadTimedOut(RequestTimeout):
    """A request's headers or body did not arrive in time. werkzeug's 408, so that an application reading the body
    answers it like any other refusal; not an OSError, so that werkzeug's input stream does not take it for a
    client that went away (a 400)."""

    def __init__(self, what: str, seconds: float) -> None:
        super().__init__(f"the request's {what} did not arrive within {seconds:g} s")


class IncompleteBody(ClientDisconnected):
    """The request's body ended before its end: short of its `Content-Length`, or a chunked body without its last
    chunk (or with broken chunk framing, after which where it ends is unknown). werkzeug's `ClientDisconnected`, a
    400, which readers that keep what came (tus) already take for a client that went away."""

    # The JSON error body's `error` (runtime/answers.py: refusal_response).
    error_code = "incomplete_body"


class CheckedBody:
    """A request's body (gunicorn's `wsgi.input`) that raises `IncompleteBody` where it ends early. gunicorn's reader
    of a body with a `Content-Length` answers what arrived, then empty reads, when the client closes before sending
    it all: to an application that reads until an empty read, a shorter body. Here the empty read, or a read of
    everything that comes up short, raises instead; a read that comes up short is answered (its bytes are real) and
    the next one raises. gunicorn's reader of a chunked body raises on an early end already; its errors are turned
    into `IncompleteBody` too, so that every function sees one exception for a body it must not act on."""

    def __init__(self, body: Any, declared_bytes: int | None) -> None:
        self._body = body
        self.declared_bytes = declared_bytes
        self.received_bytes = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._body, name)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")

    def read(self, size: int | None = None) -> bytes:
        return self._checked(lambda: self._body.read(size), whole=size is None or size < 0, size=size)

    def readline(self, size: int | None = None) -> bytes:
        return self._checked(lambda: self._body.readline(size), whole=False, size=size)

    def readlines(self, hint: int | None = None) -> list[bytes]:
        return list(iter(self.readline, b""))

    def _checked(self, reading: Callable[[], bytes], *, whole: bool, size: int | None) -> bytes:
        try:
            data = reading()
        except NoMoreData:
            raise IncompleteBody("the chunked body ended before its last chunk") from None
        except ParseException as error:
            raise IncompleteBody(f"the chunked body is malformed ({type(error).__name__})") from None
        self.received_bytes += len(data)
        if self.declared_bytes is not None and self.received_bytes < self.declared_bytes \
                and (whole or (not data and size != 0)):
            raise IncompleteBody(f"the body ended after {self.received_bytes} of the {self.declared_bytes} bytes "
                                 "its Content-Length declares")
        return data


def declared_length(environ: dict[str, Any]) -> int | None:
    """The body's `Content-Length` (gunicorn refused the request already when it is not a number), or None."""
    value = environ.get("CONTENT_LENGTH")
    return int(value) if value and value.isdigit() else None


def error_json(status: int, message: str) -> bytes:
    code = ERROR_CODES.get(status, f"http_{status}")
    return json.dumps(ErrorBody(error=code, message=message).model_dump(exclude_unset=True)).encode()


def write_json_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's `util.write_error`, answering the JSON error body (it writes an HTML page)."""
    body = error_json(status_int, mesg or reason)
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Cache-Control: no-store\r\nContent-Length: {len(body)}\r\n\r\n")
    gunicorn.util.write_nonblock(sock, head.encode("latin-1") + body)


class GuardedSocket:
    """A connection's socket whose reads keep to the request's deadlines: the headers' (a total for the request line
    and every header), then the body's (the longest pause between two reads, which also bounds each write). Anything
    else is the socket's own."""

    def __init__(self, sock: socket.socket, headers_seconds: float, body_idle_seconds: float) -> None:
        self._sock = sock
        self.headers_seconds, self.body_idle_seconds = headers_seconds, body_idle_seconds
        self.phase = "headers"
        self.deadline = 0.0
        self.timed_out = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def expect_headers(self) -> None:
        self.phase, self.deadline, self.timed_out = "headers", time.monotonic() + self.headers_seconds, False

    def expect_body(self) -> None:
        self.phase = "body"
        self._sock.settimeout(self.body_idle_seconds)

    def answered(self) -> None:
        """The answer is out: what reads follow (gunicorn draining an unread body, or lingering while it closes)
        set their own timeouts."""
        self.phase = "drain"

    def recv(self, size: int, *flags: int) -> bytes:
        if self.phase == "headers":
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                self.timed_out = True
                raise ReadTimedOut("headers", self.headers_seconds)
            self._sock.settimeout(remaining)
        elif self.phase == "body":
            self._sock.settimeout(self.body_idle_seconds)
        elif self.timed_out:
            # Closing a connection that timed out: gunicorn lingers (in its main loop, which accepts connections)
            # for the client to close first; a client that stalled will not, so there is nothing to wait for.
            raise TimeoutError("the request timed out")
        try:
            return self._sock.recv(size, *flags)
        except TimeoutError:
            if self.phase == "drain":
                raise
            self.timed_out = True
            if self.phase == "headers":
                raise ReadTimedOut("headers", self.headers_seconds) from None
            raise ReadTimedOut("body", self.body_idle_seconds) from None


class TimedThreadWorker(ThreadWorker):
    """gunicorn's threaded worker (what functions-framework runs), with each connection's reads on a deadline."""

    # Set by main() before gunicorn forks its workers.
    settings = ServerSettings()

    @classmethod
    def setup(cls) -> None:
        """Called by gunicorn before the worker starts: its own refusals (written through `util.write_error`,
        from `Worker.handle_error`) answer the JSON error body."""
        gunicorn.util.write_error = write_json_error

    def load_wsgi(self) -> None:
        """The application, made to close its connection when an answer says `Connection: close` (a refusal that
        left the body unread, a body that timed out): gunicorn drops the header and would announce keep-alive. Its
        body is read through `CheckedBody`."""
        super().load_wsgi()
        application: Any = self.wsgi  # type: ignore[has-type]

        def closing_when_asked(environ: dict[str, Any], start_response: Any) -> Any:
            environ["wsgi.input"] = CheckedBody(environ["wsgi.input"], declared_length(environ))

            def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
                if any(name.lower() == "connection" and value.lower() == "close" for name, value in headers):
                    answer = getattr(start_response, "__self__", None)  # gunicorn's Response
                    if answer is not None:
                        answer.force_close()
                return start_response(status, headers, exc_info)

            return application(environ, start)

        self.wsgi = closing_when_asked

    def enqueue_req(self, conn: Any) -> None:
        if not isinstance(conn.sock, GuardedSocket):
            conn.sock = GuardedSocket(conn.sock, self.settings.request_headers_timeout_seconds,
                                      self.settings.request_body_idle_timeout_seconds)
        super().enqueue_req(conn)

    def handle(self, conn: Any) -> Any:
        conn.sock.expect_headers()
        return super().handle(conn)

    def handle_request(self, req: Any, conn: Any) -> bool:
        conn.sock.expect_body()
        keep_alive = bool(super().handle_request(req, conn))
        conn.sock.answered()
        # After a body that timed out, where the next request would start is unknown: close.
        return keep_alive and not conn.sock.timed_out

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        if isinstance(exc, ReadTimedOut):
            self.log.warning("Request from %s timed out: %s", (addr or ("",))[0], exc.description)
            try:
                write_json_error(client, 408, "Request Timeout", str(exc.description))
            except OSError:
                self.log.debug("Failed to send the 408.")
            if isinstance(client, GuardedSocket):
                client.answered()
            return
        super().handle_error(req, client, addr, exc)


def leave_unread_bodies_to_the_server(app: Any) -> None:
    """functions-framework reads every request's whole body after a (non-streamed) answer, into memory, so that a
    function returning early does not break the connection: a 1 GiB body sent to a function that never reads it
    (or to a JSON endpoint that refused it for its declared length) was read in full. gunicorn already discards an
    unread body after the answer, bounded (at most 64 KiB within 5 s; past that the connection is closed), so that
    hook is taken out here."""
    hooks = app.after_request_funcs.get(None, [])
    hooks[:] = [hook for hook in hooks if hook is not functions_framework.read_request]


def server_options(settings: ServerSettings) -> dict[str, Any]:
    return {"worker_class": TimedThreadWorker, "limit_request_line": REQUEST_LINE_LIMIT_BYTES}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m runtime.server", description=__doc__.splitlines()[0])
    parser.add_argument("--target", default=os.environ.get("FUNCTION_TARGET"))
    parser.add_argument("--source", default=os.environ.get("FUNCTION_SOURCE"))
    parser.add_argument("--signature-type", default=os.environ.get("FUNCTION_SIGNATURE_TYPE", "http"),
                        choices=["http", "event", "cloudevent", "typed"])
    parser.add_argument("--host", default=os.environ.get("HOST", "0.0.0.0"))  # noqa: S104 - a container's server
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    arguments = parser.parse_args(argv)
    if not arguments.target:
        parser.error("--target (or FUNCTION_TARGET) is required")
    settings = ServerSettings()
    TimedThreadWorker.settings = settings
    app = create_app(arguments.target, arguments.source, arguments.signature_type)
    errors_in_json(app)
    leave_unread_bodies_to_the_server(app)
    create_server(app, False, **server_options(settings)).run(arguments.host, arguments.port)


if __name__ == "__main__":
    main()
