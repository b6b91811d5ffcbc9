"""Import from a URL, on the real local stack: a video served by a test server on the loopback (which the stack lets
through, URL_IMPORT_ALLOW_LOOPBACK, as it does webhook receivers) is fetched, redirects followed, and converted with
its options, only its audio kept; an upload function built in-process with the setting off refuses every loopback
form (127.0.0.1, [::1], 0x7f000001, a name /etc/hosts resolves to loopback) with a 422 before fetching anything, and
either way a redirect to an internal address is refused, as are too many redirects."""

from __future__ import annotations

import http.server
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient
from functions_framework import create_app

from stack.config import LOCAL_STACK_QUOTAS, ROOT
from tests.reliability_support import Stack, User, clip
from tests.support import probe, trusted_in

pytestmark = pytest.mark.stack


class VideoServer:
    """Serves one video at /video.mp4 on 127.0.0.1, redirects at /to?location=..., and counts each path asked."""

    def __init__(self, video: Path) -> None:
        self.requests: list[str] = []
        body, served = video.read_bytes(), self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                served.requests.append(self.path)
                path, _, query = self.path.partition("?")
                if path == "/to":
                    self.send_response(302)
                    self.send_header("Location", urllib.parse.parse_qs(query)["location"][0])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif path == "/video.mp4":
                    self.send_response(200)
                    self.send_header("Content-Type", "video/mp4")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                else:
                    self.send_error(404)

            def log_message(self, *arguments: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def redirect(self, location: str, times: int = 1) -> str:
        for _ in range(times):
            location = f"{self.url}/to?" + urllib.parse.urlencode({"location": location})
        return location

    def videos_served(self) -> int:
        return self.requests.count("/video.mp4")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def video_server() -> Iterator[VideoServer]:
    server = VideoServer(clip(3))
    yield server
    server.close()


def imported(stack: Stack, user: User, body: dict[str, Any]) -> requests.Response:
    return stack.session.post(stack.points["UPLOAD_URL"], json=body, headers=user.headers, timeout=120)


def test_a_video_at_a_url_is_fetched_and_converted_keeping_only_its_audio(stack: Stack, video_server: VideoServer,
                                                                          tmp_path: Path) -> None:
    user = stack.new_user("importer")
    answer = imported(stack, user, {"url": video_server.redirect(f"{video_server.url}/video.mp4", times=2),
                                    "channels": 1, "quality": "128"})
    assert answer.status_code == 202, answer.text
    accepted = answer.json()
    assert accepted["filename"] == "video.mp4" and str(accepted["options"]["channels"]) == "1"
    assert accepted["size_bytes"] == clip(3).stat().st_size and accepted["stored_bytes"] < accepted["size_bytes"]
    job = stack.wait_final(user, [accepted["job_id"]], timeout=120)[accepted["job_id"]]
    assert job["state"] == "done", job
    mp3 = tmp_path / "imported.mp3"
    mp3.write_bytes(stack.session.get(f"{stack.points['DOWNLOAD_URL']}/{accepted['job_id']}", headers=user.headers,
                                      timeout=60).content)
    [audio] = [stream for stream in probe(mp3)["streams"] if stream["codec_type"] == "audio"]
    assert (audio["codec_name"], audio["channels"]) == ("mp3", 1)
    assert video_server.videos_served() == 1


@pytest.mark.parametrize(("target", "code"), [
    ("http://10.0.0.1/video.mp4", "url_refused"),
    ("http://169.254.169.254/latest/meta-data/", "url_refused"),
    ("http://[::ffff:192.168.1.1]/video.mp4", "url_refused"),
    ("http://0.0.0.0/video.mp4", "url_refused"),
    ("file:///etc/passwd", "url_refused"),
])
def test_a_redirect_to_an_internal_address_is_refused(stack: Stack, video_server: VideoServer, target: str,
                                                      code: str) -> None:
    user = stack.new_user("redirected")
    answer = imported(stack, user, {"url": video_server.redirect(target)})
    assert (answer.status_code, answer.json()["error"]) == (422, code), answer.text
    assert "the redirect to" in answer.json()["message"]


def test_too_many_redirects_a_missing_video_and_bad_bodies_are_refused(stack: Stack,
                                                                       video_server: VideoServer) -> None:
    user = stack.new_user("refused")
    too_many = imported(stack, user, {"url": video_server.redirect(f"{video_server.url}/video.mp4", times=6)})
    assert (too_many.status_code, too_many.json()["error"]) == (422, "too_many_redirects")
    missing = imported(stack, user, {"url": f"{video_server.url}/nothing.mp4"})
    assert (missing.status_code, missing.json()["error"]) == (422, "url_not_fetched")
    assert "404" in missing.json()["message"]
    for body, code in (({}, "url_required"), ({"url": 5}, "url_required"),
                       ({"url": f"{video_server.url}/video.mp4", "quality": "999"}, "invalid_options"),
                       ({"url": f"{video_server.url}/video.mp4", "title": ["x"]}, "invalid_options")):
        answer = imported(stack, user, body)
        assert (answer.status_code, answer.json()["error"]) == (422, code), body
    assert video_server.videos_served() == 0
    assert stack.db["jobs"].count_documents({"owner_id": user.account_id}) == 0


@pytest.fixture
def strict_upload(endpoints: dict[str, str], database_name: str, tmp_path: Path,
                  monkeypatch: pytest.MonkeyPatch) -> FlaskClient:
    """The upload function built in-process as a deployment runs it: URL_IMPORT_ALLOW_LOOPBACK left off."""
    env = {"MONGO_URI": endpoints["MONGO_URI"], "MONGO_DATABASE": database_name,
           "K_SINK": endpoints["BROKER_INGRESS_URL"], "JWKS_URL": endpoints["JWKS_URL"],
           "PUBLIC_STATUS_URL": endpoints["STATUS_URL"], "WORK_DIR": str(tmp_path), **LOCAL_STACK_QUOTAS}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("URL_IMPORT_ALLOW_LOOPBACK", raising=False)
    return create_app(target="upload", source=str(ROOT / "functions" / "upload" / "main.py")).test_client()


def test_with_the_setting_off_every_loopback_form_is_refused_before_anything_is_fetched(
        stack: Stack, strict_upload: FlaskClient, video_server: VideoServer, database: Any) -> None:
    user = stack.new_user("strict")
    headers = {"Authorization": f"Bearer {trusted_in(database, user.token)}"}
    port = video_server.port
    for url in (f"http://127.0.0.1:{port}/video.mp4", f"http://[::1]:{port}/video.mp4",
                f"http://0x7f000001:{port}/video.mp4", f"http://localhost:{port}/video.mp4",
                f"http://runsc:{port}/video.mp4", f"http://[::ffff:127.0.0.1]:{port}/video.mp4",
                video_server.redirect(f"http://127.0.0.1:{port}/video.mp4")):
        answer = strict_upload.post("/", json={"url": url}, headers=headers)
        assert answer.status_code == 422 and answer.json is not None, (url, answer.status_code)
        assert answer.json["error"] == "url_refused" and "may not call" in answer.json["message"], answer.json
    assert video_server.requests == []
    assert database["jobs"].count_documents({}) == 0
