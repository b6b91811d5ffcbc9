"""HTTP to the letter on the running stack, through real sockets: httplint on every public endpoint's answers (no BAD,
only the WARNs justified below), conditional and range requests on the MP3, HEAD wherever GET works, RFC 6750's
challenges, bodiless 204s, JSON bodies limited before parsing, the server's own refusals in JSON, and slow requests
cut in time without holding the functions' threads (runtime/server.py)."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from httplint import HttpRequestLinter, HttpResponseLinter

from runtime.settings import ServerSettings
from tests.reliability_support import Figures, Stack, User, clip
from tests.support import Sink

pytestmark = pytest.mark.stack
FIGURES_SUITE = "http"
SERVER = ServerSettings()

# WARNs httplint may give, and why each is right here. Anything else (and any BAD) fails the test.
JUSTIFIED_WARNINGS = {
    # The web page's Content-Security-Policy names the origins of the functions it calls, which on the local stack
    # are http://127.0.0.1:<port>; a deployment's are its PUBLIC_*_URL (https behind a real ingress).
    "Loading from insecure HTTP sources is allowed.": "the local stack serves plain http",
    # httplint sniffs content with sniffpy, which answers `undefined/undefined` for an MP3 that opens with its ID3v2
    # tag (`ID3`, as every MP3 vid2mp3 makes does: title, cover): the body is an MP3 (mutagen reads it in the suites).
    "The content doesn't match the declared Content-Type.": "sniffpy does not recognise ID3-tagged MP3s",
}


def lint(method: str, url: str, headers: dict[str, str] | None = None, data: bytes | None = None) \
        -> tuple[requests.Response, bytes, list[tuple[str, str]]]:
    """One exchange over a socket of its own; httplint's notes on it (level, summary) at every level."""
    session = requests.Session()
    prepared = requests.Request(method, url, headers=headers or {}, data=data).prepare()
    started = time.time()
    answer = session.send(prepared, stream=True, allow_redirects=False, timeout=60)
    body = answer.raw.read(decode_content=False)
    request_linter = HttpRequestLinter()
    request_linter.process_request_topline(method.encode(), str(prepared.url).encode(), b"1.1")
    request_linter.process_headers([(name.encode(), value.encode()) for name, value in prepared.headers.items()])
    request_linter.finish_content(True)
    response_linter = HttpResponseLinter(start_time=started, no_content=method == "HEAD")
    response_linter.request = request_linter
    response_linter.process_response_topline(b"1.1", str(answer.status_code).encode(), answer.reason.encode())
    response_linter.process_headers([(name.encode("latin-1"), value.encode("latin-1"))
                                     for name, value in answer.raw.headers.items()])
    response_linter.feed_content(body)
    response_linter.finish_content(True)
    notes = [(note.level.name, str(note.summary)) for note in response_linter.notes]
    notes += [(sub.level.name, str(sub.summary)) for note in response_linter.notes for sub in note.subnotes]
    return answer, body, notes


def unjustified(notes: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(level, summary) for level, summary in notes if level == "BAD" or (
        level == "WARN" and not any(known in summary for known in JUSTIFIED_WARNINGS))]


@pytest.fixture(scope="module")
def user(stack: Stack) -> User:
    return stack.new_user("http")


@pytest.fixture(scope="module")
def done(stack: Stack, user: User) -> str:
    job_id = stack.accepted_upload(user, clip(2))
    assert stack.wait_final(user, [job_id], timeout=120)[job_id]["state"] == "done"
    return job_id


@pytest.fixture(scope="module")
def receiver() -> Iterator[Sink]:
    sink = Sink([204])
    yield sink
    sink.close()


@pytest.fixture(scope="module")
def webhook(stack: Stack, user: User, receiver: Sink) -> str:
    answer = stack.session.post(stack.points["WEBHOOKS_URL"], headers=user.headers, timeout=30, json={
        "url": receiver.url, "events": ["io.vid2mp3.audio.converted.v1"]})
    assert answer.status_code == 201 and answer.headers["Location"] == answer.json()["id"], answer.text
    return str(answer.json()["id"])


def exchanges(stack: Stack, user: User, done: str, webhook: str) -> list[tuple[str, str, str, dict[str, str]]]:
    """(what, method, url, headers) of every public endpoint's answers worth linting."""
    points, auth = stack.points, user.headers
    mp3 = f"{points['DOWNLOAD_URL']}/{done}"
    etag = stack.session.head(mp3, headers=auth, timeout=30).headers["ETag"]
    cases: list[tuple[str, str, str, dict[str, str]]] = []
    for method in ("GET", "HEAD"):
        cases += [
            ("JWKS", method, points["JWKS_URL"], {}),
            ("status list", method, f"{points['STATUS_URL']}/", auth),
            ("status job", method, f"{points['STATUS_URL']}/{done}", auth),
            ("status events", method, f"{points['STATUS_URL']}/{done}/events", auth),
            ("download", method, mp3, auth),
            ("download range", method, mp3, {**auth, "Range": "bytes=0-99"}),
            ("download 304", method, mp3, {**auth, "If-None-Match": etag}),
            ("download 412", method, mp3, {**auth, "If-Match": '"not-it"'}),
            ("webhooks list", method, f"{points['WEBHOOKS_URL']}/", auth),
            ("webhook", method, f"{points['WEBHOOKS_URL']}/{webhook}", auth),
            ("account", method, f"{points['AUTH_URL']}/account", auth),
            ("status without a token", method, f"{points['STATUS_URL']}/", {}),
            ("status with a bad token", method, f"{points['STATUS_URL']}/", {"Authorization": "Bearer x.y.z"}),
        ]
        for path in ("/", "/app.js", "/style.css", "/tus.min.js", "/config.json", "/openapi.json", "/asyncapi.json"):
            cases.append((f"web {path}", method, f"{points['WEB_URL']}{path}", {"Accept-Encoding": "gzip"}))
            cases.append((f"web {path} plain", method, f"{points['WEB_URL']}{path}", {}))
    return cases


def test_httplint_finds_nothing_bad_on_any_public_endpoint(stack: Stack, user: User, done: str, webhook: str,
                                                           figures: Figures) -> None:
    problems: dict[str, list[tuple[str, str]]] = {}
    warnings_seen: set[str] = set()
    cases = exchanges(stack, user, done, webhook)
    for what, method, url, headers in cases:
        answer, _, notes = lint(method, url, headers)
        assert answer.status_code < 500, (what, method, answer.status_code)
        warnings_seen |= {summary for level, summary in notes if level == "WARN"}
        if bad := unjustified(notes):
            problems[f"{method} {what} ({answer.status_code})"] = bad
    # The login refusal and a web asset's 304, which need a body or a validator first.
    refusal, _, notes = lint("POST", f"{stack.points['AUTH_URL']}/login", {"Content-Type": "application/json"},
                             json.dumps({"email": user.email, "password": "not the password"}).encode())
    assert refusal.status_code == 401
    if bad := unjustified(notes):
        problems["POST login refusal"] = bad
    first = requests.get(f"{stack.points['WEB_URL']}/app.js", headers={"Accept-Encoding": "gzip"}, timeout=30)
    again, body, notes = lint("GET", f"{stack.points['WEB_URL']}/app.js",
                              {"Accept-Encoding": "gzip", "If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and body == b""
    if bad := unjustified(notes):
        problems["GET web /app.js 304"] = bad
    figures["httplint"] = {"exchanges": len(cases) + 2, "unjustified": len(problems),
                           "warnings_seen": sorted(warnings_seen)}
    assert not problems, json.dumps(problems, indent=1)


# --- The MP3: conditional and range requests (RFC 9110 §13, §14) ------------------------------------------------

def test_the_mp3_answers_preconditions_and_ranges_by_rfc_9110(stack: Stack, user: User, done: str) -> None:
    url = f"{stack.points['DOWNLOAD_URL']}/{done}"

    def get(**headers: str) -> requests.Response:
        return stack.session.get(url, headers={**user.headers, **{k.replace("_", "-"): v for k, v in headers.items()}},
                                 timeout=30)

    whole = get()
    etag, length = whole.headers["ETag"], len(whole.content)
    assert whole.status_code == 200 and whole.headers["Accept-Ranges"] == "bytes" and "Last-Modified" in whole.headers
    failed = get(If_Match='"not-it"')
    assert failed.status_code == 412 and failed.headers["Content-Type"] == "application/json"
    assert failed.json()["error"] == "precondition_failed" and len(failed.content) < 1000
    assert get(If_Match=etag).status_code == 200
    assert get(If_Unmodified_Since="Sat, 01 Jan 2000 00:00:00 GMT").status_code == 412
    unknown_unit = get(Range="items=0-1")
    assert unknown_unit.status_code == 200 and unknown_unit.content == whole.content
    long_suffix = get(Range="bytes=-999999999")
    assert long_suffix.status_code == 206 and long_suffix.content == whole.content
    assert long_suffix.headers["Content-Range"] == f"bytes 0-{length - 1}/{length}"
    part = get(Range="bytes=10-19")
    assert part.status_code == 206 and part.content == whole.content[10:20]
    assert part.headers["Content-Range"] == f"bytes 10-19/{length}" and part.headers["Content-Length"] == "10"
    current = get(If_None_Match=etag, Range="bytes=0-9")
    assert current.status_code == 304 and current.content == b"" and "Content-Type" not in current.headers
    assert get(If_Range="W/" + etag, Range="bytes=0-9").status_code == 200  # a weak tag never matches
    assert get(If_Range=etag, Range="bytes=0-9").status_code == 206
    assert get(Range="bytes=0-1,5-9").status_code == 200  # several ranges: the whole
    beyond = get(Range=f"bytes={length}-")
    assert beyond.status_code == 416 and beyond.headers["Content-Range"] == f"bytes */{length}"
    assert beyond.json()["error"] == "range_not_satisfiable"
    head = stack.session.head(url, headers=user.headers, timeout=30)
    assert head.status_code == 200 and head.content == b"" and head.headers["Content-Length"] == str(length)


# --- HEAD wherever GET works; bodiless answers; challenges ---------------------------------------------------------

def test_head_answers_wherever_get_does_and_opens_no_stream(stack: Stack, user: User, done: str,
                                                          webhook: str) -> None:
    points = stack.points
    for url, headers in ((f"{points['STATUS_URL']}/", user.headers), (f"{points['STATUS_URL']}/{done}", user.headers),
                         (f"{points['STATUS_URL']}/{done}/events", user.headers),
                         (f"{points['WEBHOOKS_URL']}/", user.headers),
                         (f"{points['WEBHOOKS_URL']}/{webhook}", user.headers), (points["JWKS_URL"], {})):
        got = stack.session.get(url, headers=headers, timeout=30)
        head = stack.session.head(url, headers=headers, timeout=30)
        assert (head.status_code, head.headers["Content-Type"]) == (got.status_code, got.headers["Content-Type"]), url
        assert head.content == b""
    # HEAD of a running job's stream neither waits for it nor takes a live-stream slot.
    running = stack.accepted_upload(user, clip(600))
    try:
        started = time.monotonic()
        head = stack.session.head(f"{points['STATUS_URL']}/{running}/events", headers=user.headers, timeout=30)
        assert head.status_code == 200 and time.monotonic() - started < 5
        usage = stack.session.get(f"{points['STATUS_URL']}/", headers=user.headers, timeout=30).json()["usage"]
        assert usage["live_streams"]["used"] == 0
    finally:
        stack.session.delete(f"{points['STATUS_URL']}/{running}", headers=user.headers, timeout=60)


def test_204s_carry_no_content_type_and_201s_a_location(stack: Stack, user: User, receiver: Sink) -> None:
    points = stack.points
    job_id = stack.accepted_upload(user, clip(2))
    deleted = stack.session.delete(f"{points['STATUS_URL']}/{job_id}", headers=user.headers, timeout=60)
    assert deleted.status_code == 204 and "Content-Type" not in deleted.headers
    registered = stack.session.post(points["WEBHOOKS_URL"], headers=user.headers, timeout=30, json={
        "url": receiver.url, "events": ["io.vid2mp3.job.cancelled.v1"]})
    location = urllib.parse.urljoin(points["WEBHOOKS_URL"] + "/", registered.headers["Location"])
    assert stack.session.get(location, headers=user.headers, timeout=30).json()["id"] == registered.json()["id"]
    removed = stack.session.delete(location, headers=user.headers, timeout=30)
    assert removed.status_code == 204 and "Content-Type" not in removed.headers
    signed_up = stack.session.post(f"{points['AUTH_URL']}/signup", timeout=30, json={
        "email": user.email, "password": "someone else's password"})
    assert signed_up.status_code == 201
    account = urllib.parse.urljoin(f"{points['AUTH_URL']}/signup", signed_up.headers["Location"])
    assert stack.session.get(account, headers=user.headers, timeout=30).json()["email"] == user.email


def test_401s_carry_their_challenges(stack: Stack, user: User) -> None:
    status = f"{stack.points['STATUS_URL']}/"
    bare = stack.session.get(status, timeout=30)
    assert bare.status_code == 401 and bare.headers["WWW-Authenticate"] == 'Bearer realm="vid2mp3"'
    forged = stack.session.get(status, headers={"Authorization": "Bearer x.y.z"}, timeout=30)
    assert forged.status_code == 401 and 'error="invalid_token"' in forged.headers["WWW-Authenticate"]
    refused = stack.session.post(f"{stack.points['AUTH_URL']}/login", timeout=30,
                                 json={"email": user.email, "password": "not the password"})
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Password realm=")


# --- JSON bodies and the server's own refusals -----------------------------------------------------------------

def raw_exchange(url: str, raw: bytes, timeout: float = 60) -> tuple[int, dict[str, str], bytes, float]:
    """`raw` sent as is on a socket of its own; the answer read until the server closes, and how long it took."""
    parts = urllib.parse.urlsplit(url)
    started = time.monotonic()
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80)) as connection:
        connection.sendall(raw)
        connection.settimeout(timeout)
        received = b""
        try:
            while chunk := connection.recv(65536):
                received += chunk
                if b"\r\n\r\n" in received and _complete(received):
                    break
        except (TimeoutError, ConnectionResetError):
            pass
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body, time.monotonic() - started


def _complete(received: bytes) -> bool:
    head, _, body = received.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


PUBLIC = ("AUTH_URL", "UPLOAD_URL", "STATUS_URL", "DOWNLOAD_URL", "WEB_URL", "WEBHOOKS_URL")


@pytest.mark.parametrize("function", PUBLIC)
def test_the_servers_own_refusals_answer_json(stack: Stack, function: str) -> None:
    url = stack.points[function]
    for raw, expected in ((b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n", 431),
                          (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400)):
        status, headers, body, _ = raw_exchange(url, raw)
        assert status == expected and headers["content-type"] == "application/json", (function, status, body)
        assert set(json.loads(body)) == {"error", "message"}


def test_json_bodies_are_limited_before_they_are_parsed(stack: Stack, user: User, figures: Figures) -> None:
    points = stack.points
    deep = b"[" * 5000
    targets = (("POST", f"{points['AUTH_URL']}/login", {}), ("POST", f"{points['AUTH_URL']}/signup", {}),
               ("DELETE", f"{points['AUTH_URL']}/account", user.headers),
               ("POST", f"{points['WEBHOOKS_URL']}/", user.headers))
    declared_answers = []
    for method, url, headers in targets:
        answer = stack.session.request(method, url, data=deep, timeout=30,
                                       headers={**headers, "Content-Type": "application/json"})
        assert answer.status_code == 400 and answer.json()["error"] == "malformed_json", (url, answer.text)
        # 50 MB declared, none of it sent: refused on the length alone.
        path = urllib.parse.urlsplit(url).path
        authorization = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        status, _, body, seconds = raw_exchange(url, (
            f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{authorization}"
            f"Content-Length: {50 * 1024 * 1024}\r\n\r\n").encode(), timeout=15)
        assert status == 413 and json.loads(body)["error"] == "body_too_large", (url, body)
        declared_answers.append(round(seconds, 3))
    figures["json_body_limits"] = {"deep_5000_answers": 400, "declared_50_MB_answered_in_seconds": declared_answers}


# --- Slow requests are cut in time (runtime/server.py) ---------------------------------------------------------

def trickle_headers(url: str, every_seconds: float) -> tuple[int, bytes, float]:
    """A request whose header lines come one every `every_seconds`, until the server answers or closes."""
    parts = urllib.parse.urlsplit(url)
    started = time.monotonic()
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80)) as connection:
        connection.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        connection.settimeout(every_seconds)
        received = b""
        for line in range(100):
            try:
                received += connection.recv(65536)
                break
            except TimeoutError:
                try:
                    connection.sendall(f"X-Line-{line}: y\r\n".encode())
                except OSError:
                    break
        connection.settimeout(5)
        received += read_until_closed(connection)
    return *status_and_body(received), time.monotonic() - started


def read_until_closed(connection: socket.socket) -> bytes:
    """What the server sends until it closes the connection (or goes quiet past the socket's timeout)."""
    received = b""
    try:
        while chunk := connection.recv(65536):
            received += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return received


def status_and_body(received: bytes) -> tuple[int, bytes]:
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split()[1]) if head else 0, body


def stalled_body(url: str, headers: str) -> tuple[int, bytes, float]:
    """A body declared 1 GiB of which 64 KiB are sent; then nothing."""
    parts = urllib.parse.urlsplit(url)
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80)) as connection:
        connection.sendall((f"POST {parts.path or '/'}?filename=big.mp4 HTTP/1.1\r\nHost: x\r\n{headers}"
                            f"Content-Type: application/octet-stream\r\nContent-Length: {1 << 30}\r\n\r\n").encode()
                           + bytes(range(256)) * 256)
        started = time.monotonic()
        connection.settimeout(SERVER.request_body_idle_timeout_seconds + 30)
        received = read_until_closed(connection)
    return *status_and_body(received), time.monotonic() - started


def test_slow_headers_and_stalled_bodies_are_cut_in_time_without_holding_the_threads(
        stack: Stack, user: User, figures: Figures) -> None:
    points = stack.points
    headers_limit, body_limit = SERVER.request_headers_timeout_seconds, SERVER.request_body_idle_timeout_seconds
    authorization = f"Authorization: Bearer {user.token}\r\n"
    # Ten trickling connections at once on status, whose server has 8 threads; a plain request meanwhile.
    with ThreadPoolExecutor(max_workers=12) as pool:
        trickling = [pool.submit(trickle_headers, points["STATUS_URL"], 5) for _ in range(10)]
        stalled = pool.submit(stalled_body, points["UPLOAD_URL"], authorization)
        time.sleep(1)
        asked = time.monotonic()
        plain = stack.session.get(f"{points['STATUS_URL']}/", headers=user.headers, timeout=60)
        plain_seconds = time.monotonic() - asked
        cut = [future.result() for future in trickling]
        body_status, body, body_seconds = stalled.result()
    figures["read_timeouts"] = {
        "headers_limit_seconds": headers_limit, "body_idle_limit_seconds": body_limit,
        "trickled_headers_cut_after_seconds": sorted(round(seconds, 1) for _, _, seconds in cut),
        "plain_request_meanwhile_seconds": round(plain_seconds, 2),
        "stalled_1_GiB_body_cut_after_seconds": round(body_seconds, 1), "stalled_body_status": body_status}
    assert plain.status_code == 200
    # Eight trickles take the threads and are cut at the limit; the plain request and the last two follow.
    assert plain_seconds < headers_limit + 5, plain_seconds
    for status, answer, seconds in cut:
        assert status == 408 and json.loads(answer)["error"] == "request_timeout", answer
        assert headers_limit - 1 <= seconds <= 2 * headers_limit + 6, seconds
    assert body_status == 408 and json.loads(body)["error"] == "request_timeout", body
    assert body_limit - 1 <= body_seconds <= body_limit + 5, body_seconds


def test_a_trickling_client_is_cut_while_others_are_served(stack: Stack) -> None:
    """One connection at one header line every 5 s (the issue's case) on auth: 408 at the limit."""
    done = threading.Event()
    result: dict[str, Any] = {}

    def trickle() -> None:
        result["status"], result["body"], result["seconds"] = trickle_headers(stack.points["AUTH_URL"], 5)
        done.set()

    threading.Thread(target=trickle, daemon=True).start()
    assert requests.get(stack.points["JWKS_URL"], timeout=10).status_code == 200
    assert done.wait(SERVER.request_headers_timeout_seconds + 15)
    assert result["status"] == 408
    assert SERVER.request_headers_timeout_seconds - 1 <= result["seconds"] <= SERVER.request_headers_timeout_seconds + 6
