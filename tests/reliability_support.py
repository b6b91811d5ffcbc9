"""What the reliability and security suites (test_hostile_media, test_security, test_faults) share: users and jobs
on the running stack, its mail stand-in and databases, crafted media, a connection counter, and the figures each
suite prints and writes to .local/figures/<suite>.json."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymongo
import pytest
import requests
from cloudevents.conversion import to_binary
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from events import EventPayload, to_cloud_event
from stack.config import LOCAL, LOGS, RUN
from tests.support import wait_for

FIGURES_DIR = LOCAL / "figures"
MEDIA_DIR = LOCAL / "samples" / "reliability"
FINAL_STATES = ("done", "failed", "cancelled")
HTTP_TIMEOUT = 30

# Every password a suite uses: the log check looks for each of them.
PASSWORDS_USED: set[str] = set()


# --- Figures -----------------------------------------------------------------------------------------------

class Figures(dict[str, Any]):
    """One suite's figures: filled by its tests, printed and written to .local/figures/<suite>.json at the end."""

    def __init__(self, suite: str) -> None:
        super().__init__()
        self.suite = suite

    def publish(self, config: pytest.Config) -> None:
        FIGURES_DIR.mkdir(parents=True, exist_ok=True)
        path = FIGURES_DIR / f"{self.suite}.json"
        # A run of some of the suite's tests (-k) updates their figures and keeps the others' last ones.
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError):
            document = {}
        moment = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        document = {"suite": self.suite, "figures": {**document.get("figures", {}), **self},
                    "measured_at": {**document.get("measured_at", {}), **dict.fromkeys(self, moment)}
                    if isinstance(document.get("measured_at"), dict) else dict.fromkeys(self, moment)}
        path.write_text(json.dumps(document, indent=2, sort_keys=True, default=str) + "\n")
        lines = [f"figures of {self.suite} (also in {path.relative_to(LOCAL.parent)}):"]
        lines += [f"  {key}: {json.dumps(value, sort_keys=True, default=str)}" for key, value in sorted(self.items())]
        # Shown even without `-s`: the figures are the point of the suite.
        capture = config.pluginmanager.get_plugin("capturemanager")
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            print("\n" + "\n".join(lines), flush=True)


# --- Users and jobs on the running stack -------------------------------------------------------------------

@dataclass
class User:
    email: str
    password: str
    account_id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Stack:
    points: dict[str, str]
    session: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self) -> None:
        # Reads are retried on a connection the server closed meanwhile (a function restarted under the test, an
        # idle keep-alive timed out); never on an answer (a 503 with Retry-After included), and uploads and other
        # writes never are: a test counts each answer.
        retries = Retry(total=3, connect=3, read=3, status=0, backoff_factor=0.3, allowed_methods={"GET", "HEAD"},
                        respect_retry_after_header=False)
        self.session.mount("http://", HTTPAdapter(max_retries=retries))

    @property
    def db(self) -> Any:
        return _mongo(self.points["MONGO_URI"])["vid2mp3"]

    # Accounts

    def new_user(self, label: str) -> User:
        email = f"{label}-{uuid.uuid4().hex[:12]}@example.com"
        password = "pw-" + secrets.token_urlsafe(18)
        PASSWORDS_USED.add(password)
        credentials = {"email": email, "password": password}
        signed_up = self.session.post(f"{self.points['AUTH_URL']}/signup", json=credentials, timeout=HTTP_TIMEOUT)
        assert signed_up.status_code == 201, signed_up.text
        logged_in = self.session.post(f"{self.points['AUTH_URL']}/login", json=credentials, timeout=HTTP_TIMEOUT)
        assert logged_in.status_code == 200, logged_in.text
        token = logged_in.json()["access_token"]
        account = self.session.get(f"{self.points['AUTH_URL']}/account", headers={"Authorization": f"Bearer {token}"},
                                   timeout=HTTP_TIMEOUT)
        assert account.status_code == 200, account.text
        return User(email=email, password=password, account_id=account.json()["account_id"], token=token)

    # Uploads and jobs

    def upload(self, user: User, content: bytes | Path, filename: str = "clip.mp4",
               timeout: float = 120, **params: str) -> requests.Response:
        body = content.read_bytes() if isinstance(content, Path) else content
        return self.session.post(self.points["UPLOAD_URL"], params={"filename": filename, **params}, data=body,
                                 headers={**user.headers, "Content-Type": "application/octet-stream"},
                                 timeout=timeout)

    def accepted_upload(self, user: User, content: bytes | Path, filename: str = "clip.mp4") -> str:
        response = self.upload(user, content, filename)
        assert response.status_code == 202, response.text
        return str(response.json()["job_id"])

    def job(self, user: User, job_id: str) -> dict[str, Any]:
        response = self.session.get(f"{self.points['STATUS_URL']}/{job_id}", headers=user.headers,
                                    timeout=HTTP_TIMEOUT)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def wait_final(self, user: User, job_ids: Iterable[str], timeout: float) -> dict[str, dict[str, Any]]:
        """The job records once every job is done, failed or cancelled (fails the test naming those that are not)."""
        waiting = set(job_ids)
        final: dict[str, dict[str, Any]] = {}
        started = time.monotonic()
        while waiting:
            for job_id in sorted(waiting):
                job = self.job(user, job_id)
                if job["state"] in FINAL_STATES:
                    final[job_id] = job
                    waiting.discard(job_id)
            if waiting and time.monotonic() - started > timeout:
                raise AssertionError(f"not final after {timeout:g} s: {sorted(waiting)}")
            if waiting:
                time.sleep(0.3)
        return final

    def wait_notified(self, job_id: str, timeout: float) -> dict[str, Any]:
        def notification() -> dict[str, Any] | None:
            job = self.db.jobs.find_one({"_id": job_id}, {"notification": 1})
            state = ((job or {}).get("notification") or {}).get("state")
            return job["notification"] if state in ("sent", "failed") else None
        return wait_for(notification, timeout, f"the notification of job {job_id}", interval=0.3)

    def wait_mailed(self, job_id: str, timeout: float) -> list[dict[str, Any]]:
        """The mails about a job once there is one (the owner's inbox, whatever the job record says)."""
        return wait_for(lambda: self.mails_about(job_id), timeout, f"the email about job {job_id}", interval=0.5)

    def download(self, user: User, job_id: str) -> requests.Response:
        return self.session.get(f"{self.points['DOWNLOAD_URL']}/{job_id}", headers=user.headers,
                                timeout=HTTP_TIMEOUT)

    # Mail (the SendGrid stand-in)

    def mails(self) -> list[dict[str, Any]]:
        response = self.session.get(f"{self.points['SENDGRID_API_HOST']}/_standin/messages", timeout=HTTP_TIMEOUT)
        response.raise_for_status()
        return list(response.json())

    def mails_about(self, job_id: str) -> list[dict[str, Any]]:
        return [mail for mail in self.mails()
                if any(job_id in str(part.get("value", "")) for part in mail["body"].get("content", []))]

    def mails_to(self, email: str) -> list[dict[str, Any]]:
        return [mail for mail in self.mails()
                if any(recipient.get("email") == email for personalization in mail["body"]["personalizations"]
                       for recipient in personalization.get("to", []))]

    def fail_next_mails(self, count: int, status: int = 503) -> None:
        response = self.session.post(f"{self.points['SENDGRID_API_HOST']}/_standin/fail",
                                     json={"status": status, "count": count}, timeout=HTTP_TIMEOUT)
        response.raise_for_status()

    # Events straight to the broker ingress

    def post_event(self, payload: EventPayload, source_function: str = "attacker") -> int:
        headers, body = to_binary(to_cloud_event(payload, source_function=source_function))
        response = self.session.post(self.points["BROKER_INGRESS_URL"], headers=headers, data=body,
                                     timeout=HTTP_TIMEOUT)
        return response.status_code

    # Media in GridFS

    def audio_files(self, job_id: str) -> int:
        return int(self.db["audio.files"].count_documents({"$or": [{"_id": job_id}, {"metadata.job_id": job_id}]}))

    def orphan_chunks(self, bucket: str, file_ids: Iterable[str]) -> int:
        """Chunks of these files that no files document owns."""
        ids = list(file_ids)
        owned = set(self.db[f"{bucket}.files"].distinct("_id", {"_id": {"$in": ids}}))
        return int(self.db[f"{bucket}.chunks"].count_documents({"files_id": {"$in": [i for i in ids
                                                                                        if i not in owned]}}))

    def transitions(self, job_id: str) -> list[str]:
        job = self.db.jobs.find_one({"_id": job_id}, {"history": 1}) or {}
        return [step["state"] for step in job.get("history", [])]


_MONGO_CLIENTS: dict[str, Any] = {}


def _mongo(uri: str) -> Any:
    if uri not in _MONGO_CLIENTS:
        _MONGO_CLIENTS[uri] = pymongo.MongoClient(uri, serverSelectionTimeoutMS=10000, tz_aware=True)
    return _MONGO_CLIENTS[uri]


# --- Function processes ------------------------------------------------------------------------------------

def function_pid(name: str) -> int:
    """The pid of the function process (functions-framework) its supervisor runs now."""
    return int((RUN / f"{name}.child.pid").read_text().strip())


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_function(name: str) -> list[int]:
    """kill -9 of a function, as when its container crashes: the functions-framework process and its gunicorn
    worker. Whatever they started (ffmpeg) is left to die with them; the supervisor, like the kubelet, starts the
    function again."""
    pid = function_pid(name)
    victims = [pid] + [child for child in descendants(pid) if is_function_process(child)]
    for victim in victims:
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return victims


def is_function_process(pid: int) -> bool:
    try:
        return b"runtime.server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def processes_with(*needles: str) -> list[int]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if all(needle.encode() in text for needle in needles):
            found.append(int(cmdline.parent.name))
    return found


def log_lines(name: str) -> int:
    try:
        return len((LOGS / f"{name}.log").read_text(errors="replace").splitlines())
    except OSError:
        return 0


def log_text(name: str) -> str:
    try:
        return (LOGS / f"{name}.log").read_text(errors="replace")
    except OSError:
        return ""


# --- A listener that counts who connects -------------------------------------------------------------------

class ConnectionCounter:
    """A TCP port on 127.0.0.1 that counts connections (answers each with an empty HTTP 200)."""

    def __init__(self) -> None:
        self.connections = 0
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(16)
        self.port = self._socket.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            self.connections += 1
            try:
                connection.settimeout(1)
                connection.recv(4096)
                connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            except OSError:
                pass
            finally:
                connection.close()

    def close(self) -> None:
        self._socket.close()


# --- Media made with ffmpeg (cached under .local/samples/reliability) --------------------------------------

def ffmpeg(*arguments: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *arguments], check=True, capture_output=True, timeout=300)


def made(name: str, *arguments: str) -> Path:
    """`ffmpeg <arguments> <target>` once; the file is kept for later runs."""
    target = MEDIA_DIR / name
    if not target.exists():
        MEDIA_DIR.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{uuid.uuid4().hex}.{name}")
        ffmpeg(*arguments, str(partial))
        partial.replace(target)
    return target


def clip(seconds: int, *, faststart: bool = True, video: bool = True, audio: bool = True,
         frequency: int = 440) -> Path:
    """An MP4 with a tiny picture and a tone (either may be left out)."""
    name = f"clip-{seconds}s{'-v' if video else ''}{'-a' if audio else ''}{'-fs' if faststart else ''}-{frequency}.mp4"
    inputs: list[str] = []
    if video:
        inputs += ["-f", "lavfi", "-i", f"color=c=blue:size=64x64:rate=5:duration={seconds}"]
    if audio:
        inputs += ["-f", "lavfi", "-i", f"sine=frequency={frequency}:sample_rate=44100:duration={seconds}"]
    codecs = (["-c:v", "libx264", "-preset", "ultrafast"] if video else []) + \
             (["-c:a", "aac", "-b:a", "64k"] if audio else [])
    return made(name, *inputs, *codecs, *(["-movflags", "+faststart"] if faststart else []), "-f", "mp4")


def tone_mp3(seconds: int, frequency: int = 440) -> Path:
    return made(f"tone-{seconds}s-{frequency}.mp3", "-f", "lavfi", "-i",
                f"sine=frequency={frequency}:sample_rate=44100:duration={seconds}", "-c:a", "libmp3lame",
                "-b:a", "64k")


def duration_of(data: bytes | Path) -> float:
    """The duration ffprobe reads from a file (or from bytes)."""
    if isinstance(data, bytes):
        with tempfile.NamedTemporaryFile(suffix=".mp3") as file:
            file.write(data)
            file.flush()
            return duration_of(Path(file.name))
    result = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
                             str(data)], capture_output=True, text=True, timeout=60, check=True)
    return float(result.stdout.strip())


@dataclass
class Timer:
    started: float = field(default_factory=time.monotonic)

    @property
    def seconds(self) -> float:
        return round(time.monotonic() - self.started, 2)


def median(values: Iterable[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def chunks_of(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]
