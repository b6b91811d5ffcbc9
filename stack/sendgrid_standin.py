"""A local stand-in for the SendGrid v3 mail API host: validates each `POST /v3/mail/send` the way the real API
does (auth, JSON shape, required fields), answers as it answers (202 + X-Message-Id, or 400/401 with `errors`), and
keeps what it accepted so tests and `make run` can read the mail.

Control endpoints (not part of SendGrid): `GET /_standin/messages`, `DELETE /_standin/messages`, and
`POST /_standin/fail` with `{"status": 503, "count": N}` to make the next N sends fail.

Usage: python -m stack.sendgrid_standin PORT
"""

from __future__ import annotations

import json
import re
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


def validate_mail_send(body: Any) -> list[dict[str, str]]:
    """The errors SendGrid's v3 `mail/send` would report for this JSON body (empty when it would accept it)."""
    errors: list[dict[str, str]] = []

    def error(field: str, message: str) -> None:
        errors.append({"field": field, "message": message})

    if not isinstance(body, dict):
        return [{"field": "", "message": "Bad Request: body must be a JSON object"}]
    personalizations = body.get("personalizations")
    if not isinstance(personalizations, list) or not 1 <= len(personalizations) <= 1000:
        error("personalizations", "The personalizations field is required and must have at least one personalization.")
        personalizations = []
    for index, personalization in enumerate(personalizations):
        recipients = personalization.get("to") if isinstance(personalization, dict) else None
        if not isinstance(recipients, list) or not recipients:
            error(f"personalizations.{index}.to", "The to array is required for all personalization objects.")
            continue
        for recipient in recipients:
            if not isinstance(recipient, dict) or not EMAIL.match(str(recipient.get("email", ""))):
                error(f"personalizations.{index}.to", "Does not contain a valid address.")
    sender = body.get("from")
    if not isinstance(sender, dict) or not EMAIL.match(str(sender.get("email", ""))):
        error("from.email", "The from object must be provided for every email send. It is an object that requires "
                            "the email parameter, but may also contain a name parameter.")
    has_subject = bool(body.get("subject")) or all(
        isinstance(p, dict) and p.get("subject") for p in personalizations
    )
    if not has_subject and not body.get("template_id"):
        error("subject", "The subject is required. You can get around this requirement if you use a template "
                         "with a subject defined or if every personalization has a subject defined.")
    content = body.get("content")
    if not body.get("template_id"):
        if not isinstance(content, list) or not content:
            error("content", "Unless a valid template_id is provided, the content parameter is required.")
        else:
            for index, part in enumerate(content):
                if not isinstance(part, dict) or not part.get("type") or not part.get("value"):
                    error(f"content.{index}", "The content value must be a string at least one character in length.")
    return errors


class StandIn:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: list[dict[str, Any]] = []
        self.failures_left = 0
        self.failure_status = 503


def make_handler(state: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            sys.stderr.write("sendgrid-standin: " + format % args + "\n")

        def _answer(self, status: int, payload: Any = None, headers: dict[str, str] | None = None) -> None:
            body = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            if body:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def do_GET(self) -> None:
            if self.path == "/_standin/messages":
                with state.lock:
                    self._answer(200, state.messages)
            else:
                self._answer(404, {"errors": [{"message": "not found"}]})

        def do_DELETE(self) -> None:
            if self.path == "/_standin/messages":
                with state.lock:
                    state.messages.clear()
                self._answer(204)
            else:
                self._answer(404, {"errors": [{"message": "not found"}]})

        def do_POST(self) -> None:
            raw = self._body()
            if self.path == "/_standin/fail":
                order = json.loads(raw or b"{}")
                with state.lock:
                    state.failures_left = int(order.get("count", 1))
                    state.failure_status = int(order.get("status", 503))
                self._answer(204)
                return
            if self.path != "/v3/mail/send":
                self._answer(404, {"errors": [{"message": "not found"}]})
                return
            with state.lock:
                if state.failures_left > 0:
                    state.failures_left -= 1
                    self._answer(state.failure_status, {"errors": [{"message": "injected failure"}]})
                    return
            authorization = self.headers.get("Authorization", "")
            if not authorization.startswith("Bearer ") or len(authorization) <= len("Bearer "):
                self._answer(401, {"errors": [{"field": None, "message": "authorization required"}]})
                return
            if not (self.headers.get("Content-Type") or "").startswith("application/json"):
                self._answer(400, {"errors": [{"field": None, "message": "Content-Type must be application/json"}]})
                return
            try:
                body = json.loads(raw)
            except ValueError:
                self._answer(400, {"errors": [{"field": None, "message": "Bad Request: invalid JSON"}]})
                return
            if errors := validate_mail_send(body):
                self._answer(400, {"errors": errors})
                return
            message_id = uuid.uuid4().hex
            with state.lock:
                state.messages.append({"message_id": message_id, "body": body,
                                       "user_agent": self.headers.get("User-Agent", "")})
            self._answer(202, None, {"X-Message-Id": message_id})

    return Handler


def serve(port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    return ThreadingHTTPServer((host, port), make_handler(StandIn()))


if __name__ == "__main__":
    serve(int(sys.argv[1])).serve_forever()
