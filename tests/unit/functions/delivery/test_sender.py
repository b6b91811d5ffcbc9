"""A signed webhook POST: headers a Standard Webhooks receiver accepts for the exact body only, a signature per secret;
sent to the checked address with the URL's host, no redirect followed, bounded in time (a loopback receiver)."""

from __future__ import annotations

import base64
import http.server
import ipaddress
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from functions.delivery.sender import USER_AGENT, host_header, post, signed_headers
from runtime.addresses import Target

BODY = '{"type":"io.vid2mp3.audio.converted.v1","timestamp":"2026-05-01T12:00:00Z","data":{"job_id":"j"}}'


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def test_a_receiver_accepts_the_body_as_signed() -> None:
    secret = new_secret()
    headers = signed_headers("job.audio-converted", BODY, [secret], datetime.now(UTC))
    assert Webhook(secret).verify(BODY, headers) == {"type": "io.vid2mp3.audio.converted.v1",
                                                     "timestamp": "2026-05-01T12:00:00Z", "data": {"job_id": "j"}}
    assert headers["webhook-id"] == "job.audio-converted"
    assert headers["Content-Type"] == "application/json" and headers["User-Agent"] == USER_AGENT


@pytest.mark.parametrize("changed", [BODY.replace('"j"', '"k"'), BODY + " ", BODY.replace(":", ": ")])
def test_a_receiver_refuses_a_changed_body(changed: str) -> None:
    secret = new_secret()
    headers = signed_headers("job.audio-converted", BODY, [secret], datetime.now(UTC))
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(changed, headers)


def test_a_receiver_refuses_another_id_another_secret_and_an_old_timestamp() -> None:
    secret = new_secret()
    moment = datetime.now(UTC)
    headers = signed_headers("job.audio-converted", BODY, [secret], moment)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, {**headers, "webhook-id": "job.conversion-failed"})
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, headers)
    stale = signed_headers("job.audio-converted", BODY, [secret], moment - timedelta(hours=1))
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, stale)


def test_after_a_rotation_each_secret_verifies_on_its_own() -> None:
    new, old = new_secret(), new_secret()
    moment = datetime.now(UTC)
    headers = signed_headers("job.audio-converted", BODY, [new, old], moment)
    signatures = headers["webhook-signature"].split(" ")
    assert len(signatures) == 2 and all(signature.startswith("v1,") for signature in signatures)
    Webhook(new).verify(BODY, headers)
    Webhook(old).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, headers)


def test_the_timestamp_is_the_moments_in_whole_seconds() -> None:
    moment = datetime(2026, 5, 1, 12, 0, 0, 999999, tzinfo=UTC)
    assert signed_headers("m", BODY, [new_secret()], moment)["webhook-timestamp"] == str(int(moment.timestamp()))


def target(scheme: str, host: str, port: int, address: str = "127.0.0.1", path: str = "/") -> Target:
    return Target(url=f"{scheme}://{host}:{port}{path}", scheme=scheme, host=host, port=port,
                  address=ipaddress.ip_address(address), path=path)


@pytest.mark.parametrize(("scheme", "port", "header"), [
    ("https", 443, "hooks.example.test"), ("https", 8443, "hooks.example.test:8443"),
    ("http", 80, "hooks.example.test"), ("http", 443, "hooks.example.test:443"),
])
def test_the_host_header_names_the_urls_host_and_a_port_other_than_the_schemes(scheme: str, port: int,
                                                                                header: str) -> None:
    assert host_header(target(scheme, "hooks.example.test", port)) == header


# --- The POST, to a receiver of the test's own ----------------------------------------------------------------

@dataclass
class Receiver:
    port: int
    requests: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Callable[..., Receiver]]:
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(status: int = 204, delay: float = 0, answer: bytes = b"", headers: dict[str, str] | None = None) \
            -> Receiver:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                seen.requests.append({"path": self.path, "headers": dict(self.headers), "body": body.decode()})
                time.sleep(delay)
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *arguments: Any) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        servers.append(server)
        seen = Receiver(server.server_address[1])
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return seen

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_the_post_goes_to_the_checked_address_presenting_the_urls_host(receiver: Callable[..., Receiver]) -> None:
    seen = receiver(status=204)
    secret = new_secret()
    headers = signed_headers("job.audio-converted", BODY, [secret], datetime.now(UTC))
    attempt = post(target("http", "receiver.example.test", seen.port, path="/hook?x=1"), headers, BODY, 5)
    assert (attempt.status, attempt.succeeded, attempt.error) == (204, True, None)
    [request] = seen.requests
    assert request["path"] == "/hook?x=1" and request["body"] == BODY
    assert request["headers"]["Host"] == f"receiver.example.test:{seen.port}"
    Webhook(secret).verify(request["body"], request["headers"])


def test_a_redirect_is_not_followed(receiver: Callable[..., Receiver]) -> None:
    elsewhere = receiver(status=200)
    seen = receiver(status=307, headers={"Location": f"http://127.0.0.1:{elsewhere.port}/"})
    attempt = post(target("http", "127.0.0.1", seen.port), {}, BODY, 5)
    assert (attempt.status, attempt.succeeded) == (307, False)
    assert len(seen.requests) == 1 and elsewhere.requests == []


def test_an_error_status_and_a_long_answer_are_a_failed_attempt(receiver: Callable[..., Receiver]) -> None:
    seen = receiver(status=500, answer=b"x" * (1024 * 1024))
    attempt = post(target("http", "127.0.0.1", seen.port), {}, BODY, 5)
    assert (attempt.status, attempt.succeeded) == (500, False)


def test_a_receiver_that_does_not_answer_in_time_is_a_failed_attempt(receiver: Callable[..., Receiver]) -> None:
    seen = receiver(delay=2)
    started = time.monotonic()
    attempt = post(target("http", "127.0.0.1", seen.port), {}, BODY, 0.3)
    assert time.monotonic() - started < 1.5
    assert attempt.status is None and attempt.error is not None and "no answer" in attempt.error
    assert not attempt.succeeded


def test_no_receiver_at_all_is_a_failed_attempt() -> None:
    with socket.socket() as bound:  # a port of the test's that takes no connection
        bound.bind(("127.0.0.1", 0))
        attempt = post(target("http", "127.0.0.1", bound.getsockname()[1]), {}, BODY, 2)
    assert attempt.status is None and attempt.error is not None and "no answer" in attempt.error
