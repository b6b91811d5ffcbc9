"""bench/shaping_proxy.py: the token bucket on a fake clock, the URL rewriting, the heads; then the proxy itself on
the loopback in front of a small HTTP server of the test's own (no stack): URLs handed out point at the proxy, a tus
upload's PATCH comes through it, bodies arrive whole, the uplink is held to its rate, and every byte is counted."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from bench.shaping_proxy import (
    Head,
    Rewriter,
    ShapingProxy,
    TokenBucket,
    answer_head_for_client,
    forward_target,
    origin_of,
    request_head_for_upstream,
    rewritable,
)

# --- the token bucket ---------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_bucket_lets_its_burst_through_then_holds_senders_to_its_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1000.0, burst_bytes=500, clock=clock)

    assert bucket.delay_for(500) == 0.0  # the burst
    assert bucket.delay_for(250) == pytest.approx(0.25)  # in debt: 250 bytes at 1000 B/s
    assert bucket.delay_for(250) == pytest.approx(0.5)  # a second sender waits off the first one's debt too
    clock.now += 0.5
    assert bucket.delay_for(0) == 0.0  # paid off
    clock.now += 60
    assert bucket.delay_for(600) == pytest.approx(0.1)  # idle time builds up no more than the burst


def test_a_bucket_without_a_rate_never_delays() -> None:
    bucket = TokenBucket(None)
    assert bucket.delay_for(10**12) == 0.0


def test_a_rate_is_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        TokenBucket(0.0)


# --- rewriting ----------------------------------------------------------------------------------------------

def test_origins_are_written_out_with_their_port() -> None:
    assert origin_of("http://127.0.0.1:22102/files/x?y=1") == "http://127.0.0.1:22102"
    assert origin_of("http://localhost") == "http://localhost:80"
    with pytest.raises(ValueError, match="not an http URL"):
        origin_of("ftp://127.0.0.1/")


def test_the_rewriter_maps_each_origin_and_leaves_other_ports_alone() -> None:
    rewriter = Rewriter({"http://127.0.0.1:2210": "http://127.0.0.1:40000",
                         "http://127.0.0.1:22102": "http://127.0.0.1:40001"})
    text = ('{"status_url": "http://127.0.0.1:22102/files/ab", "other": "http://127.0.0.1:22103/x", '
            '"short": "http://127.0.0.1:2210/y"}')

    assert json.loads(rewriter.text(text)) == {"status_url": "http://127.0.0.1:40001/files/ab",
                                               "other": "http://127.0.0.1:22103/x",
                                               "short": "http://127.0.0.1:40000/y"}
    assert rewriter.reversed().text("http://127.0.0.1:40001/files/ab") == "http://127.0.0.1:22102/files/ab"
    assert rewriter.body(b"\xff\xfe not text http://127.0.0.1:22102") == b"\xff\xfe not text http://127.0.0.1:22102"


def test_a_request_goes_on_as_the_function_expects_it() -> None:
    head = Head.parse(b"PATCH /files/ab HTTP/1.1\r\nHost: 127.0.0.1:40001\r\nConnection: keep-alive\r\n"
                      b"Origin: http://127.0.0.1:40001\r\nUpload-Offset: 0\r\nContent-Length: 3\r\n\r\n")
    to_upstream = Rewriter({"http://127.0.0.1:40001": "http://127.0.0.1:22102"})

    sent = request_head_for_upstream(head, "127.0.0.1:22102", to_upstream)

    assert sent.first_line == "PATCH /files/ab HTTP/1.1"
    assert sent.get("Host") == "127.0.0.1:22102" and sent.get("Origin") == "http://127.0.0.1:22102"
    assert sent.get("Connection") == "close" and sent.get("Upload-Offset") == "0"
    assert sent.encode().endswith(b"\r\n\r\n")


def test_an_answer_comes_back_with_the_proxys_urls_and_says_it_closes() -> None:
    head = Head.parse(b"HTTP/1.1 201 Created\r\nLocation: http://127.0.0.1:22102/files/ab\r\n"
                      b"Connection: keep-alive\r\nContent-Length: 0\r\n\r\n")

    answer = answer_head_for_client(head, Rewriter({"http://127.0.0.1:22102": "http://127.0.0.1:40001"}))

    assert answer.get("Location") == "http://127.0.0.1:40001/files/ab"
    assert answer.get("Connection") == "close"


@pytest.mark.parametrize(("headers", "method", "expected"), [
    (b"Content-Type: application/json\r\nContent-Length: 20", "POST", True),
    (b"Content-Type: text/html; charset=utf-8\r\nContent-Length: 20", "GET", True),
    (b"Content-Type: application/json\r\nContent-Length: 20", "HEAD", False),
    (b"Content-Type: application/json\r\nTransfer-Encoding: chunked", "GET", False),
    (b"Content-Type: text/event-stream\r\nContent-Length: 20", "GET", False),
    (b"Content-Type: audio/mpeg\r\nContent-Length: 20", "GET", False),
    (b"Content-Type: application/json\r\nContent-Length: 99999999", "GET", False),
    (b"Content-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: 20", "GET", False),
])
def test_only_small_text_answers_are_rewritten_whole(headers: bytes, method: str, expected: bool) -> None:
    assert rewritable(Head.parse(b"HTTP/1.1 200 OK\r\n" + headers + b"\r\n\r\n"), method) is expected


def test_a_forward_proxy_serves_loopback_hosts_only() -> None:
    assert forward_target("http://127.0.0.1:22102/files/?a=1") == ("127.0.0.1", 22102, "/files/?a=1")
    assert forward_target("http://localhost:8080") == ("localhost", 8080, "/")
    for target in ("http://example.com/", "http://10.0.0.1/", "https://127.0.0.1/", "/relative"):
        with pytest.raises(ValueError, match="only"):
            forward_target(target)


# --- the proxy on the loopback --------------------------------------------------------------------------------

class Function(BaseHTTPRequestHandler):
    """Stands in for the upload function: a tus creation answers an absolute Location, a PATCH takes a body,
    GET /job answers JSON naming this server's URL, GET /big a large body."""

    protocol_version = "HTTP/1.1"
    received: dict[str, int] = {}  # noqa: RUF012 (the test server's record)
    url = ""  # its own URL, set by the fixture

    def origin(self) -> str:
        return self.url

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"] or 0)
        self.received["POST"] = len(self.rfile.read(length))
        self.send_response(201)
        self.send_header("Location", f"{self.origin()}/files/ab")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_PATCH(self) -> None:
        length = int(self.headers["Content-Length"])
        self.received["PATCH"] = len(self.rfile.read(length))
        self.received["host"] = int(self.headers["Host"].rsplit(":", 1)[1])
        self.send_response(204)
        self.send_header("Upload-Offset", str(length))
        self.end_headers()

    def do_GET(self) -> None:
        if self.path == "/events":  # a stream of events that goes on (the status function's)
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            with contextlib.suppress(OSError):
                for _ in range(100):
                    self.wfile.write(b"6\r\n: tick\r\n")
                    self.wfile.flush()
                    time.sleep(0.05)
            return
        if self.path == "/big":
            body = b"x" * (3 * 1024 * 1024 + 7)
            kind = "application/octet-stream"
        else:
            body = json.dumps({"status_url": f"{self.origin()}/job/ab", "elsewhere": "http://127.0.0.1:1/x"}).encode()
            kind = "application/json"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def function() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Function)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Function.url = f"http://127.0.0.1:{server.server_port}"
    yield Function.url
    server.shutdown()
    server.server_close()


def test_urls_handed_out_lead_back_through_the_proxy_and_every_byte_is_counted(function: str) -> None:
    with ShapingProxy([function], forward=True) as proxy:
        front = proxy.url_for(function)
        assert front != function

        created = requests.post(f"{front}/files/", data=b"a" * 1000, timeout=10)
        patched = requests.patch(created.headers["Location"], data=b"b" * 200_000, timeout=10,
                                 headers={"Upload-Offset": "0"})
        job = requests.get(f"{front}/job", timeout=10).json()
        big = requests.get(f"{front}/big", timeout=10)
        counts = proxy.reset_counts()
        through_forward = requests.get(f"{function}/job", timeout=10, proxies={"http": proxy.forward_url}).json()

    assert created.status_code == 201 and created.headers["Location"] == f"{front}/files/ab"
    assert patched.status_code == 204 and Function.received["PATCH"] == 200_000
    assert Function.received["host"] == int(function.rsplit(":", 1)[1])  # the function saw its own Host
    assert job == {"status_url": f"{front}/job/ab", "elsewhere": "http://127.0.0.1:1/x"}
    assert len(big.content) == 3 * 1024 * 1024 + 7
    assert counts.requests == 4 and set(counts.sent) == {function}
    # Sent: the two bodies and four request heads of a few hundred bytes each.
    assert 201_200 < counts.sent_bytes < 201_200 + 4 * 400
    assert 3 * 1024 * 1024 < counts.received_bytes < 3 * 1024 * 1024 + 2000
    # A browser's requests through the forward proxy keep their URLs: nothing to rewrite.
    assert through_forward["status_url"] == f"{function}/job/ab"


def test_the_uplink_is_held_to_its_rate_and_the_downlink_is_not(function: str) -> None:
    with ShapingProxy([function], uplink_mbit=8.0) as proxy:  # 1 MB/s
        front = proxy.url_for(function)
        started = time.monotonic()
        requests.post(f"{front}/files/", data=b"a" * 500_000, timeout=30)
        sent_in = time.monotonic() - started
        started = time.monotonic()
        requests.get(f"{front}/big", timeout=30)
        received_in = time.monotonic() - started

    assert 0.42 < sent_in < 1.5, sent_in  # 500 kB at 1 MB/s, less the first burst
    assert received_in < 0.5, received_in


def test_the_proxy_stops_with_a_stream_still_open_and_nothing_left_running(
        function: str, caplog: pytest.LogCaptureFixture) -> None:
    proxy = ShapingProxy([function])
    proxy.start()
    stream = requests.get(f"{proxy.url_for(function)}/events", stream=True, timeout=10)
    assert next(stream.iter_content(chunk_size=None)).startswith(b": tick")

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        started = time.monotonic()
        proxy.stop()

    assert time.monotonic() - started < 5
    assert not [record for record in caplog.records if record.name == "asyncio"], caplog.text
    assert not any(thread.name == "shaping-proxy" for thread in threading.enumerate())
    stream.close()
