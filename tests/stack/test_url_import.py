"""Import from a URL, on the real local stack: a video served by a test server on the loopback (which the stack lets
through, URL_IMPORT_ALLOW_LOOPBACK, as it does webhook receivers) is fetched, redirects followed, and converted with
its options, only its audio kept; an upload function built in-process with the setting off refuses every loopback
form (127.0.0.1, [::1], 0x7f000001, a name /etc/hosts resolves to loopback) with a 422 before fetching anything, and
either way a redirect to an internal address is refused, as are too many redirects. The fetch runs after the 202:
a video trickled slowly shows its bytes rising in the job view and a cancel closes the connection with nothing
kept; a body cut short or not media fails the job with why; an import whose process died is failed by reconcile."""

from __future__ import annotations

import http.server
import subprocess
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient
from functions_framework import create_app

from events import EventEmitter
from functions.reconcile.sweeps import Reconciler
from jobs.records import Jobs
from stack.config import LOCAL_STACK_QUOTAS, ROOT
from tests.reliability_support import Stack, User, clip
from tests.support import probe, trusted_in

pytestmark = pytest.mark.stack


# The trickled video takes this long to send in full: much longer than a test waits for it.
TRICKLE_SECONDS = 60
TRICKLE_STEPS = 300


class VideoServer:
    """Serves one video at /video.mp4 on 127.0.0.1 or another address of this host (and slowly at /slow.mp4,
    noting when the client closes the connection; cut off half way at /cut.mp4), text at /notes.txt, redirects at
    /to?location=..., and counts each path asked."""

    def __init__(self, video: Path, host: str = "127.0.0.1") -> None:
        self.requests: list[str] = []
        self.slow_closed = threading.Event()
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
                elif path == "/slow.mp4":
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    step = len(body) // TRICKLE_STEPS + 1
                    try:
                        for start in range(0, len(body), step):
                            self.wfile.write(body[start:start + step])
                            self.wfile.flush()
                            time.sleep(TRICKLE_SECONDS / TRICKLE_STEPS)
                    except OSError:  # the client closed the connection
                        served.slow_closed.set()
                elif path == "/cut.mp4":
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[:len(body) // 2])
                    self.close_connection = True
                elif path == "/notes.txt":
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(b"not a video at all\n" * (len(body) // 19))
                else:
                    self.send_error(404)

            def log_message(self, *arguments: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://{host}:{self.port}"
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
    assert (accepted["state"], accepted["filename"], str(accepted["options"]["channels"])) == \
        ("importing", "video.mp4", "1")
    assert answer.headers["Location"] == accepted["status_url"]
    assert accepted["total_bytes"] == clip(3).stat().st_size
    job = stack.wait_final(user, [accepted["job_id"]], timeout=120)[accepted["job_id"]]
    assert job["state"] == "done", job
    assert [step["state"] for step in job["history"]][:2] == ["importing", "uploaded"]
    assert job["received_bytes"] == clip(3).stat().st_size and job["stored_bytes"] < job["received_bytes"]
    assert "import_progress" not in job
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


def host_address() -> str:
    """An IPv4 address of this host other than loopback (its first global one), or a skip where it has none."""
    listed = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True,
                            check=False).stdout.split()
    if "inet" not in listed:
        pytest.skip("this host has no IPv4 address but loopback to serve a redirect from")
    return listed[listed.index("inet") + 1].split("/")[0]


def upload_built_in_process(monkeypatch: pytest.MonkeyPatch, settings: dict[str, str]) -> FlaskClient:
    """The upload function built in-process as a deployment runs it: URL_IMPORT_ALLOW_LOOPBACK left off."""
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("URL_IMPORT_ALLOW_LOOPBACK", raising=False)
    return create_app(target="upload", source=str(ROOT / "functions" / "upload" / "main.py")).test_client()


@pytest.fixture
def deployment_settings(endpoints: dict[str, str], database_name: str, tmp_path: Path) -> dict[str, str]:
    return {"MONGO_URI": endpoints["MONGO_URI"], "MONGO_DATABASE": database_name,
            "K_SINK": endpoints["BROKER_INGRESS_URL"], "JWKS_URL": endpoints["JWKS_URL"],
            "PUBLIC_STATUS_URL": endpoints["STATUS_URL"], "WORK_DIR": str(tmp_path), **LOCAL_STACK_QUOTAS}


@pytest.fixture
def strict_upload(deployment_settings: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> FlaskClient:
    return upload_built_in_process(monkeypatch, deployment_settings)


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


def test_with_the_setting_off_a_redirect_to_any_loopback_form_is_refused_and_nothing_fetched(
        stack: Stack, deployment_settings: dict[str, str], monkeypatch: pytest.MonkeyPatch,
        video_server: VideoServer, database: Any) -> None:
    """The first hop is a server on this host's own address, which URL_IMPORT_ALLOW_NETWORKS lets through (as an
    operator would an internal object store); each redirect from it to the loopback is refused all the same."""
    gateway = VideoServer(clip(3), host=host_address())
    try:
        upload = upload_built_in_process(monkeypatch, {**deployment_settings,
                                                       "URL_IMPORT_ALLOW_NETWORKS": f"{host_address()}/32"})
        user = stack.new_user("redirected-home")
        headers = {"Authorization": f"Bearer {trusted_in(database, user.token)}"}
        reached = upload.post("/", json={"url": f"{gateway.url}/nothing.mp4"}, headers=headers)
        assert reached.json is not None and (reached.status_code, reached.json["error"]) == (422, "url_not_fetched")
        port = video_server.port
        for target in (f"http://127.0.0.1:{port}/video.mp4", f"http://[::1]:{port}/video.mp4",
                       f"http://0x7f000001:{port}/video.mp4", f"http://localhost:{port}/video.mp4",
                       f"http://[::ffff:127.0.0.1]:{port}/video.mp4"):
            answer = upload.post("/", json={"url": gateway.redirect(target)}, headers=headers)
            assert answer.status_code == 422 and answer.json is not None, (target, answer.status_code)
            assert answer.json["error"] == "url_refused", answer.json
            assert "the redirect to" in answer.json["message"] and "may not call" in answer.json["message"]
        assert gateway.requests.count("/nothing.mp4") == 1 and len(gateway.requests) == 6
    finally:
        gateway.close()
    assert video_server.requests == []
    assert database["jobs"].count_documents({}) == 0


def gridfs_files_of(database: Any, job_id: str) -> dict[str, int]:
    """The files stored for the job in every bucket an upload or a conversion writes (none: all zeros)."""
    return {bucket: database[f"{bucket}.files"].count_documents({"$or": [{"_id": job_id},
                                                                          {"metadata.job_id": job_id}]})
            for bucket in ("sources", "covers", "videos", "audio")}


def test_an_import_shows_its_progress_and_a_cancel_closes_its_connection_keeping_nothing(
        stack: Stack, video_server: VideoServer) -> None:
    user = stack.new_user("cancelled-import")
    started = time.monotonic()
    answer = imported(stack, user, {"url": f"{video_server.url}/slow.mp4"})
    # At once: the job exists while the video is still on its way (a minute of it).
    assert answer.status_code == 202 and time.monotonic() - started < TRICKLE_SECONDS / 3, answer.text
    job_id, size = answer.json()["job_id"], clip(3).stat().st_size
    seen: list[int] = []
    deadline = time.monotonic() + 30
    while len(set(seen)) < 3:
        assert time.monotonic() < deadline, f"the bytes fetched did not rise: {seen}"
        view = stack.job(user, job_id)
        assert view["state"] == "importing", view
        if "import_progress" in view:
            assert view["import_progress"]["total_bytes"] == size
            seen.append(view["import_progress"]["fetched_bytes"])
            assert view["progress"]["percent"] == pytest.approx(100 * seen[-1] / size)
        time.sleep(0.5)
    assert seen == sorted(seen) and 0 < seen[-1] < size

    cancel_sent = time.monotonic()
    cancelled = stack.session.post(f"{stack.points['STATUS_URL']}/{job_id}/cancel", headers=user.headers, timeout=90)
    assert (cancelled.status_code, cancelled.json()["state"]) == (200, "cancelled"), cancelled.text
    # The server sees its connection closed within seconds (generous: the machine is shared).
    assert video_server.slow_closed.wait(timeout=10), "the fetch went on after the cancel"
    assert time.monotonic() - cancel_sent < 10
    time.sleep(3)  # whatever the fetch would still do, it has done by now
    assert stack.job(user, job_id)["state"] == "cancelled"
    assert gridfs_files_of(stack.db, job_id) == {"sources": 0, "covers": 0, "videos": 0, "audio": 0}
    assert video_server.requests.count("/slow.mp4") == 1


@pytest.mark.parametrize(("path", "reason", "error"), [
    ("/cut.mp4", "import_failed", "url_unreachable"),
    ("/notes.txt", "not_media", "not_media"),
])
def test_an_import_that_goes_wrong_after_the_202_fails_its_job_with_why(
        stack: Stack, video_server: VideoServer, path: str, reason: str, error: str) -> None:
    user = stack.new_user("failed-import")
    answer = imported(stack, user, {"url": f"{video_server.url}{path}"})
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["job_id"]
    job = stack.wait_final(user, [job_id], timeout=120)[job_id]
    assert job["state"] == "failed", job
    assert (job["failure"]["reason"], job["failure"]["error"]) == (reason, error), job
    assert job["failure"]["message"]
    assert gridfs_files_of(stack.db, job_id) == {"sources": 0, "covers": 0, "videos": 0, "audio": 0}
    # The refusal costs no upload of the hour, as a refused upload does not.
    listed = stack.session.get(stack.points["STATUS_URL"], headers=user.headers, timeout=30).json()
    assert listed["usage"]["uploads_per_hour"]["used"] == 0, listed["usage"]


def test_an_import_whose_process_died_is_failed_by_reconcile(stack: Stack) -> None:
    user = stack.new_user("interrupted-import")
    jobs = Jobs(stack.db)
    job_id = uuid.uuid4().hex
    # As a fetch leaves its job when its process ends: `importing`, its lease lapsed long ago.
    jobs.create_importing({"_id": job_id, "owner_id": user.account_id, "video_id": job_id, "filename": "gone.mp4",
                           "progress": {"fetched_bytes": 1000, "total_bytes": 5000}},
                          uuid.uuid4().hex, lease=timedelta(hours=-1))
    live = uuid.uuid4().hex
    jobs.create_importing({"_id": live, "owner_id": user.account_id, "video_id": live, "filename": "live.mp4"},
                          uuid.uuid4().hex, lease=timedelta(seconds=30))
    sweep = Reconciler(database=stack.db, jobs=jobs,
                       emitter=EventEmitter(stack.points["BROKER_INGRESS_URL"], "test"),
                       stuck_after=timedelta(minutes=30), max_redrives=3)
    assert sweep.fail_interrupted_imports() >= 1
    failed = stack.job(user, job_id)
    assert (failed["state"], failed["failure"]["error"]) == ("failed", "import_interrupted"), failed
    assert "import it again" in failed["failure"]["message"]
    assert stack.job(user, live)["state"] == "importing"
    jobs.delete(live)
