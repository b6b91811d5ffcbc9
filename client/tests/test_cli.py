"""What `vid2mp3 convert` sends, seen by a stand-in deployment of the test's own (one local HTTP server answering as
the auth, upload, status and download functions, and recording every request): the extract and its cover frame as a
multipart form, the whole file when asked or where no extract can be made, a large extract by tus; the local user's
token kept between runs and renewed once when refused, its saved credentials refused by a stack whose account has
another password said as such; and no temporary file left behind."""

from __future__ import annotations

import json
import stat
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from made_media import ffmpeg, tone
from vid2mp3_client import cli

TOKEN_SECONDS = 3600


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def parts(self) -> dict[str, EmailMessage]:
        """The multipart form's parts by field name, as the standard library's MIME parser reads them."""
        message = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {self.headers['content-type']}\r\n\r\n".encode() + self.body)
        parts: dict[str, EmailMessage] = {}
        for part in message.iter_parts():
            assert isinstance(part, EmailMessage)
            parts[str(part.get_param("name", header="content-disposition"))] = part
        return parts


@dataclass
class Deployment:
    """Answers as vid2mp3's functions do, for what the command asks; `tokens` are the ones it accepts."""

    requests: list[Received] = field(default_factory=list)
    tokens: set[str] = field(default_factory=set)
    logins: int = 0
    tus_uploads: dict[str, bytearray] = field(default_factory=dict)
    url: str = ""
    # When given, the accounts (address: password) that log in, as the auth function checks them, sign-ups answering
    # 201 whether or not the address has one; when None, every login is taken.
    accounts: dict[str, str] | None = None

    def endpoints(self, folder: Path) -> Path:
        path = folder / "endpoints.env"
        path.write_text("".join(f"{name}_URL={self.url}/{name.lower()}\n"
                                for name in ("AUTH", "UPLOAD", "STATUS", "DOWNLOAD")))
        return path

    def uploads(self) -> list[Received]:
        return [request for request in self.requests if request.path.startswith("/upload")]

    def answer(self, request: Received) -> tuple[int, dict[str, str], bytes]:
        path = request.path
        if self.accounts is not None and path in ("/auth/login", "/auth/signup"):
            credentials = json.loads(request.body)
            if path == "/auth/signup":
                self.accounts.setdefault(credentials["email"], credentials["password"])
                return 201, {"Location": "account"}, b'{"message": "signed up"}'
            if self.accounts.get(credentials["email"]) != credentials["password"]:
                return 401, {}, b'{"error": "invalid_credentials", "message": "wrong email or password"}'
        if path == "/auth/login":
            self.logins += 1
            token = uuid.uuid4().hex
            self.tokens.add(token)
            return 200, {}, json.dumps({"access_token": token, "expires_in": TOKEN_SECONDS}).encode()
        if path == "/auth/signup":
            return 409, {}, b'{"error": "account_exists"}'
        if request.headers.get("authorization", "").removeprefix("Bearer ") not in self.tokens:
            return 401, {}, b'{"error": "unauthorized", "message": "the token is expired or unknown"}'
        if path == "/upload":
            return 202, {}, json.dumps({"job_id": "job1", "status_url": f"{self.url}/status/job1"}).encode()
        if path.startswith("/upload/files"):
            return self.tus(request)
        if path == "/status/job1/events":
            view = {"job_id": "job1", "state": "done", "audio": {"size_bytes": 4, "duration_seconds": 3.0,
                                                                  "stream_copied": True}}
            return 200, {"Content-Type": "text/event-stream"}, f"event: job\ndata: {json.dumps(view)}\n\n".encode()
        if path == "/download/job1":
            return 200, {"Content-Type": "audio/mpeg"}, b"MP3!"
        return 404, {}, b'{"error": "not_found"}'

    def tus(self, request: Received) -> tuple[int, dict[str, str], bytes]:
        tus = {"Tus-Resumable": "1.0.0"}
        if request.method == "POST":
            self.tus_uploads["job1"] = bytearray()
            return 201, {**tus, "Location": f"{self.url}/upload/files/job1"}, b""
        data = self.tus_uploads[request.path.rsplit("/", 1)[1]]
        if request.method == "PATCH":
            data += request.body
        return 204, {**tus, "Upload-Offset": str(len(data))}, b""


@pytest.fixture
def deployment() -> Iterator[Deployment]:
    stand_in = Deployment()

    class Handler(BaseHTTPRequestHandler):
        def do(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            address = urlsplit(self.path)
            received = Received(self.command, address.path.rstrip("/"), parse_qs(address.query),
                                {key.lower(): value for key, value in self.headers.items()}, body)
            stand_in.requests.append(received)
            status, headers, answer = stand_in.answer(received)
            self.send_response(status)
            for key, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(answer)

        do_GET = do_POST = do_PATCH = do_HEAD = do_DELETE = do

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    stand_in.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield stand_in
    server.shutdown()
    server.server_close()


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Where the command's temporary files go (and must be gone from once it ends): it made its extract there."""
    folder = tmp_path / "scratch"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr("tempfile.tempdir", None)  # read TMPDIR again
    used: list[Path] = []
    what_to_send = cli.what_to_send

    def recorded(video: Path, place: Path, whole: bool) -> cli.Sending:
        used.append(place)
        return what_to_send(video, place, whole)

    monkeypatch.setattr(cli, "what_to_send", recorded)
    yield folder
    assert all(place.parent == folder for place in used) and used


@pytest.fixture
def local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A checkout's .local/ with no login kept in the user's config: the command signs in the local user."""
    folder = tmp_path / "local"
    folder.mkdir()
    monkeypatch.setattr(cli, "LOCAL", folder)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return folder


def convert(deployment: Deployment, local: Path, *arguments: str) -> int:
    try:
        cli.main(["convert", *arguments, "--endpoints", str(deployment.endpoints(local))])
    except SystemExit as done:
        return int(done.code or 0)
    return 0


def streams(path: Path) -> list[tuple[str, str]]:
    probed = json.loads(subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(path)],
                                       capture_output=True, check=True).stdout)
    return [(stream["codec_type"], stream["codec_name"]) for stream in probed["streams"]]


def test_convert_sends_the_audio_tracks_and_the_cover_frame(deployment: Deployment, local: Path, scratch: Path,
                                                            two_tracks: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert convert(deployment, local, str(two_tracks), "--track", "1", "-o", str(tmp_path / "out.mp3")) == 0
    (upload,) = deployment.uploads()
    assert upload.query == {"track": ["1"]}
    assert int(upload.headers["content-length"]) == len(upload.body)
    parts = upload.parts()
    assert list(parts) == ["file", "cover"]
    assert (parts["file"].get_filename(), parts["file"].get_content_type()) == ("two tracks.mkv", "audio/x-matroska")
    extract = tmp_path / "sent.mka"
    extract.write_bytes(parts["file"].get_payload(decode=True))  # type: ignore[arg-type]
    assert streams(extract) == [("audio", "aac"), ("audio", "opus"), ("video", "mjpeg")]  # the picture, attached
    assert len(extract.read_bytes()) < two_tracks.stat().st_size
    cover = tmp_path / "sent.jpg"
    cover.write_bytes(parts["cover"].get_payload(decode=True))  # type: ignore[arg-type]
    assert (parts["cover"].get_filename(), parts["cover"].get_content_type()) == ("frame.jpg", "image/jpeg")
    assert cover.read_bytes()[:2] == b"\xff\xd8" and streams(cover) == [("video", "mjpeg")]
    assert (tmp_path / "out.mp3").read_bytes() == b"MP3!"
    said = capsys.readouterr()
    assert "upload: extracted the audio: " in said.out and "extracted the audio: " in said.err  # the progress line
    assert list(scratch.iterdir()) == []


def test_whole_sends_the_video_itself(deployment: Deployment, local: Path, scratch: Path, two_tracks: Path,
                                      tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert convert(deployment, local, str(two_tracks), "--whole", "-o", str(tmp_path / "out.mp3")) == 0
    (upload,) = deployment.uploads()
    assert upload.headers["content-type"] == "application/octet-stream"
    assert upload.query == {"filename": ["two tracks.mkv"]} and upload.body == two_tracks.read_bytes()
    assert "upload: the whole file: " in capsys.readouterr().out
    assert list(scratch.iterdir()) == []


def test_where_no_extract_can_be_made_the_whole_file_goes_and_the_command_says_why(
        deployment: Deployment, local: Path, scratch: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    song = tmp_path / "song.m4a"
    ffmpeg(*tone(440), "-c:a", "aac", str(song))
    assert convert(deployment, local, str(song), "-o", str(tmp_path / "out.mp3")) == 0
    (upload,) = deployment.uploads()
    assert upload.headers["content-type"] == "application/octet-stream" and upload.body == song.read_bytes()
    assert "upload: the whole file: " in (said := capsys.readouterr().out) and "it holds only audio already" in said
    assert list(scratch.iterdir()) == []


def test_a_large_extract_goes_by_tus_without_the_cover(deployment: Deployment, local: Path, scratch: Path,
                                                       two_tracks: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli, "RESUMABLE_FROM_BYTES", 1000)
    assert convert(deployment, local, str(two_tracks), "-o", str(tmp_path / "out.mp3")) == 0
    (creation,) = [request for request in deployment.uploads() if request.method == "POST"]
    metadata = dict(item.split(" ") for item in creation.headers["upload-metadata"].split(","))
    assert metadata == {"filename": "dHdvIHRyYWNrcy5ta3Y="}  # base64 of the video's name
    (sent,) = deployment.tus_uploads.values()
    extract = tmp_path / "sent.mka"
    extract.write_bytes(sent)
    assert streams(extract) == [("audio", "aac"), ("audio", "opus"), ("video", "mjpeg")]
    assert "without the cover frame" in capsys.readouterr().out
    assert list(scratch.iterdir()) == []


def test_a_refusal_says_what_was_sent_and_leaves_no_temporary_file(deployment: Deployment, local: Path,
                                                                   scratch: Path, two_tracks: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    answer = Deployment.answer
    monkeypatch.setattr(Deployment, "answer", lambda self, request: (
        (400, {}, b'{"message": "refused"}') if request.path == "/upload" else answer(self, request)))
    assert convert(deployment, local, str(two_tracks), "-o", str(tmp_path / "out.mp3")) == 1
    assert "HTTP 400: refused; upload: extracted the audio: " in capsys.readouterr().out
    assert list(scratch.iterdir()) == []


def test_the_local_users_token_is_kept_while_it_lasts_and_renewed_once_when_refused(
        deployment: Deployment, local: Path, scratch: Path, two_tracks: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "out.mp3")
    assert convert(deployment, local, str(two_tracks), "--whole", "-o", out) == 0
    assert deployment.logins == 1
    kept = local / "client-token.json"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert stat.S_IMODE((local / "client-credentials").stat().st_mode) == 0o600
    assert json.loads(kept.read_text())["token"] in deployment.tokens

    # The next run sends the kept token: no login, no sign-up, the upload is its first request.
    before = len(deployment.requests)
    assert convert(deployment, local, str(two_tracks), "--whole", "-o", out) == 0
    assert deployment.logins == 1 and deployment.requests[before].path == "/upload"

    # The deployment forgets it (a restarted stack, a new signing key): the upload is refused, the user logs in
    # once, and the upload is sent again.
    deployment.tokens.clear()
    before = len(deployment.requests)
    assert convert(deployment, local, str(two_tracks), "--whole", "-o", out) == 0
    assert [request.path for request in deployment.requests[before:]][:3] == ["/upload", "/auth/login", "/upload"]
    assert deployment.logins == 2 and json.loads(kept.read_text())["token"] in deployment.tokens

    # A kept token near its end is not sent: the run logs in first.
    kept.write_text(json.dumps({**json.loads(kept.read_text()), "expires_at": time.time() + 30}))
    before = len(deployment.requests)
    assert convert(deployment, local, str(two_tracks), "--whole", "-o", out) == 0
    assert deployment.requests[before].path == "/auth/login" and deployment.logins == 3


def test_a_token_refused_twice_asks_to_log_in_again(deployment: Deployment, local: Path, scratch: Path,
                                                    two_tracks: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(Deployment, "answer", lambda self, request: (
        (200, {}, b'{"access_token": "t", "expires_in": 3600}') if request.path == "/auth/login"
        else (401, {}, b'{"message": "no"}')))
    assert convert(deployment, local, str(two_tracks), "--whole", "-o", str(tmp_path / "out.mp3")) == 1
    assert [request.path for request in deployment.requests] == ["/auth/login", "/upload", "/auth/login", "/upload"]
    assert "log in again" in capsys.readouterr().err


def test_saved_local_credentials_the_stack_refuses_are_said_to_be_refused_with_the_way_out(
        deployment: Deployment, local: Path, scratch: Path, two_tracks: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The local user's address has an account on this stack made with another password (the stack's data older
    than the checkout's credentials file, or shared with another checkout): not "your login has expired"."""
    (local / "client-credentials").write_text("you@vid2mp3.local\nthe-checkouts-password\n")
    deployment.accounts = {"you@vid2mp3.local": "another-checkouts-password"}
    out = str(tmp_path / "out.mp3")
    assert convert(deployment, local, str(two_tracks), "--whole", "-o", out) == 1
    said = capsys.readouterr().err
    assert "refused the local user's saved credentials" in said and "another password" in said, said
    assert str(local / "client-credentials") in said and "expired" not in said
    assert deployment.uploads() == []

    # The way out it gives: without the saved files, the next run makes a local user of its own and converts.
    (local / "client-credentials").unlink()
    (local / "client-token.json").unlink(missing_ok=True)
    assert convert(deployment, local, str(two_tracks), "--whole", "-o", out) == 0
    email = (local / "client-credentials").read_text().split()[0]
    assert email != "you@vid2mp3.local" and email.endswith("@vid2mp3.local") and email in deployment.accounts
