"""The server every function runs in (runtime/server.py), started as the stack and the image start it, on a small
function of the test's own, through real sockets: slow headers and stalled bodies cut in time (408 where it can still
be sent) without holding the threads, bodies that end early never read as shorter bodies, and the server's own
refusals and a crash in the JSON error body."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.server import CheckedBody, GuardedSocket, IncompleteBody, ReadTimedOut, error_json
from tests.support import wait_until_listening

ROOT = Path(__file__).resolve().parents[3]
HEADERS_SECONDS = 1.0
BODY_IDLE_SECONDS = 1.0
FUNCTION = textwrap.dedent('''
    import functions_framework

    @functions_framework.http
    def echo(request):
        if request.path == "/crash":
            raise RuntimeError("a detail that stays in the logs")
        if request.path == "/pieces":  # as the upload reads: small reads until an empty one
            total = 0
            while piece := request.stream.read(7):
                total += len(piece)
            return {"bytes": total}
        return {"bytes": len(request.get_data())}
''')


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    source = tmp_path_factory.mktemp("function") / "main.py"
    source.write_text(FUNCTION)
    port = free_port()
    env = {**os.environ, "THREADS": "2", "REQUEST_HEADERS_TIMEOUT_SECONDS": str(HEADERS_SECONDS),
           "REQUEST_BODY_IDLE_TIMEOUT_SECONDS": str(BODY_IDLE_SECONDS), "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "runtime.server", f"--source={source}", "--target=echo",
                                "--host=127.0.0.1", f"--port={port}"], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until_listening(process, port, "the server")
        yield "127.0.0.1", port
    finally:
        process.terminate()
        process.wait(timeout=15)


def answer_of(connection: socket.socket, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """The whole answer, read until the server closes (or `timeout` passes): status, headers, body."""
    connection.settimeout(timeout)
    received = b""
    try:
        while chunk := connection.recv(65536):
            received += chunk
    except TimeoutError:
        pass
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def request(address: tuple[str, int], raw: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(address) as connection:
        connection.sendall(raw)
        return answer_of(connection)


def test_a_normal_request_is_served(server: tuple[str, int]) -> None:
    raw = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc"
    status, _, body = request(server, raw)
    assert status == 200 and json.loads(body) == {"bytes": 3}


@pytest.mark.parametrize(("raw", "status", "code"), [
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n", 431, "request_header_fields_too_large"),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400, "bad_request"),
    (b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
    (b"NOT A REQUEST LINE\r\n\r\n", 400, "bad_request"),
])
def test_the_servers_own_refusals_answer_the_json_error_body(server: tuple[str, int], raw: bytes, status: int,
                                                             code: str) -> None:
    answered, headers, body = request(server, raw)
    assert answered == status
    assert headers["content-type"] == "application/json" and headers["connection"] == "close"
    error = json.loads(body)
    assert set(error) == {"error", "message"} and error["error"] == code and error["message"]


def test_a_crash_answers_the_json_error_body_without_its_cause(server: tuple[str, int]) -> None:
    status, headers, body = request(server, b"GET /crash HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 500 and headers["content-type"] == "application/json"
    assert headers["x-google-status"] == "crash"
    assert json.loads(body)["error"] == "internal_error" and b"detail" not in body


def test_headers_sent_one_line_at_a_time_are_cut_with_408(server: tuple[str, int]) -> None:
    with socket.create_connection(server) as connection:
        started = time.monotonic()
        connection.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        for number in range(20):
            time.sleep(0.3)
            try:
                connection.sendall(f"X-Line-{number}: y\r\n".encode())
            except OSError:
                break
            connection.setblocking(False)
            try:
                if connection.recv(1, socket.MSG_PEEK):
                    break
            except BlockingIOError:
                pass
            finally:
                connection.setblocking(True)
        status, _, body = answer_of(connection)
        elapsed = time.monotonic() - started
    assert status == 408 and json.loads(body)["error"] == "request_timeout", body
    assert HEADERS_SECONDS <= elapsed < HEADERS_SECONDS + 1.5, elapsed


def test_a_body_that_stops_is_answered_408_and_frees_the_threads(server: tuple[str, int]) -> None:
    """Three stalled uploads at once on a server of two threads: each is cut after the idle time, and a request
    made meanwhile is answered once the first thread is free."""
    stalled = []
    for _ in range(3):
        connection = socket.create_connection(server)
        connection.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\n\r\n" + b"v" * 65536)
        stalled.append(connection)
    started = time.monotonic()
    status, _, body = request(server, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    served_after = time.monotonic() - started
    assert status == 200 and json.loads(body) == {"bytes": 0}
    for connection in stalled:
        with connection:
            status, headers, body = answer_of(connection)
            assert status == 408 and json.loads(body)["error"] == "request_timeout", body
            assert "application/json" in headers["content-type"] and headers["connection"] == "close"
    cut_after = time.monotonic() - started
    # The third stalled body waited for a thread, then had its own idle time.
    assert served_after < 3 * BODY_IDLE_SECONDS + 2 and cut_after < 3 * BODY_IDLE_SECONDS + 3, (served_after,
                                                                                                 cut_after)


def test_the_guarded_socket_times_headers_in_total_and_the_body_per_read() -> None:
    left, right = socket.socketpair()
    with left, right:
        guarded = GuardedSocket(left, headers_seconds=0.3, body_idle_seconds=0.2)
        guarded.expect_headers()
        right.sendall(b"a")
        assert guarded.recv(10) == b"a"
        time.sleep(0.35)
        with pytest.raises(ReadTimedOut, match="headers"):
            guarded.recv(10)
        guarded.expect_body()
        started = time.monotonic()
        with pytest.raises(ReadTimedOut, match="body"):
            guarded.recv(10)
        assert 0.15 < time.monotonic() - started < 1
        guarded.answered()
        with pytest.raises(TimeoutError):  # gunicorn's drain handles its own timeouts
            guarded.recv(10)


def test_error_bodies_name_a_code_for_every_status() -> None:
    assert json.loads(error_json(418, "short and stout")) == {"error": "http_418", "message": "short and stout"}


def sent_then_closed(address: tuple[str, int], raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """`raw`, then the client's side of the connection closed (it gave up), and the answer read."""
    with socket.create_connection(address) as connection:
        connection.sendall(raw)
        connection.shutdown(socket.SHUT_WR)
        return answer_of(connection)


@pytest.mark.parametrize("path", ["/", "/pieces"])
@pytest.mark.parametrize(("raw", "what"), [
    (b"Content-Length: 1000\r\n\r\n" + b"v" * 500, "half of its declared length"),
    (b"Content-Length: 1073741824\r\n\r\n" + b"v" * 65536, "64 KiB of a declared GiB"),
    (b"Content-Length: 10\r\n\r\n", "none of it"),
    (b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", "chunked, without its last chunk"),
    (b"Transfer-Encoding: chunked\r\n\r\n5\r\nhel", "chunked, inside a chunk"),
    (b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n", "chunked, without the end of its trailers"),
    (b"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXY3\r\n", "chunked, its framing broken"),
])
def test_a_body_that_ends_early_is_never_read_as_a_shorter_body(server: tuple[str, int], path: str, raw: bytes,
                                                                 what: str) -> None:
    status, headers, body = sent_then_closed(server, f"POST {path} HTTP/1.1\r\nHost: x\r\n".encode() + raw)
    assert status == 400, (what, status, body)
    assert headers["content-type"] == "application/json" and headers["connection"] == "close"
    assert json.loads(body)["error"] == "incomplete_body", (what, body)


@pytest.mark.parametrize("path", ["/", "/pieces"])
@pytest.mark.parametrize("raw", [
    b"Content-Length: 1000\r\n\r\n" + b"v" * 1000,
    b"Transfer-Encoding: chunked\r\n\r\n1f4\r\n" + b"v" * 500 + b"\r\n1f4\r\n" + b"v" * 500 + b"\r\n0\r\n\r\n",
])
def test_a_whole_body_then_a_close_is_read_whole(server: tuple[str, int], path: str, raw: bytes) -> None:
    status, _, body = sent_then_closed(server, f"POST {path} HTTP/1.1\r\nHost: x\r\n".encode() + raw)
    assert status == 200 and json.loads(body) == {"bytes": 1000}, body


class Arrived:
    """gunicorn's body reader after the client closed: the bytes that came, in reads, then empty reads."""

    def __init__(self, reads: list[bytes]) -> None:
        self.reads = list(reads)

    def read(self, size: int | None = None) -> bytes:
        if size is None or size < 0:
            whole, self.reads = b"".join(self.reads), []
            return whole
        return self.reads.pop(0) if self.reads else b""

    def readline(self, size: int | None = None) -> bytes:
        return self.read(1)


def test_a_checked_body_answers_what_came_then_refuses_the_early_end() -> None:
    body = CheckedBody(Arrived([b"abc", b"de"]), declared_bytes=10)
    assert (body.read(3), body.read(3)) == (b"abc", b"de")  # real bytes, answered
    with pytest.raises(IncompleteBody, match="after 5 of the 10 bytes"):
        body.read(3)
    with pytest.raises(IncompleteBody):
        CheckedBody(Arrived([b"abc"]), declared_bytes=10).read()  # all of it at once: short, at once
    with pytest.raises(IncompleteBody):
        b"".join(CheckedBody(Arrived([b"a\n", b"b"]), declared_bytes=10))
    whole = CheckedBody(Arrived([b"abc", b"de"]), declared_bytes=5)
    assert (whole.read(3), whole.read(3), whole.read(3)) == (b"abc", b"de", b"")
    assert CheckedBody(Arrived([b"abc"]), declared_bytes=None).read() == b"abc"  # no length: its reader decides
    assert CheckedBody(Arrived([]), declared_bytes=10).read(0) == b""
    assert IncompleteBody("x").code == 400
