"""Helpers for tests: a bounded poll, the running stack's endpoints, processes and MariaDB, generated media, users
of the running stack, a tap on the broker."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import queue
import secrets
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import jwt
import pika
import pymysql
import requests
from vid2mp3_client.api import Vid2mp3

from accounts.credentials import COLLECTION as CREDENTIALS
from events import VideoUploaded
from events.catalog import BitrateKbps
from jobs.records import Jobs
from runtime.clock import now
from storage.media import JobSources
from transcoding import extraction
from transcoding.media_formats import SNIFF_BYTES, sniff_container

TEST_PASSWORD = "correct horse battery"

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Polls `predicate` until it returns something truthy and returns that; after `timeout` seconds fails
    the test naming `what`. Exceptions from `predicate` propagate: a broken check is not a slow one."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def wait_until_listening(process: subprocess.Popen[bytes], port: int, what: str, timeout: float = 30) -> None:
    """Waits until `process` accepts connections on the loopback's `port`; fails naming `what` if it exits first or
    is not listening within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{what} did not start: {process.stderr}") from None
            time.sleep(0.1)


def download_link_keys() -> str:
    """A fresh key for signed download links, for functions a test builds in its own process."""
    return "test:" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def read_endpoints_file(path: os.PathLike[str] | str) -> dict[str, str]:
    """KEY=VALUE lines, as `python -m stack up` writes them."""
    with open(path) as lines:
        return dict(line.rstrip("\n").split("=", 1) for line in lines if "=" in line)


def processes_mentioning(text: str) -> list[int]:
    """Pids of the processes whose command line or environment contains `text` (say, a stack instance's state
    folder: supervisors and dispatchers carry it only in their environment)."""
    found = []
    for process in Path("/proc").glob("[0-9]*"):
        try:
            if any(text.encode() in (process / part).read_bytes() for part in ("cmdline", "environ")):
                found.append(int(process.name))
        except OSError:
            continue
    return found


def mysql_connect(url: str) -> pymysql.connections.Connection:
    """A pymysql connection from a `mysql://user:password@host:port/database` URL, as MYSQL_URL is written."""
    parts = urllib.parse.urlsplit(url)
    assert parts.scheme == "mysql", url
    return pymysql.connect(
        host=parts.hostname, port=parts.port or 3306, user=urllib.parse.unquote(parts.username or ""),
        password=urllib.parse.unquote(parts.password or ""), database=parts.path.lstrip("/") or None,
        connect_timeout=5,
    )


def make_clip(target: Path, seconds: float = 3, audio: str | None = "aac", video: bool = True,
              extra: tuple[str, ...] = ()) -> Path:
    """A small clip made with ffmpeg: a test picture (unless video=False) and a 440 Hz tone encoded with `audio`
    (None for no audio track). The container follows the file name's extension."""
    command = ["ffmpeg", "-v", "error", "-y"]
    if video:
        command += ["-f", "lavfi", "-i", f"testsrc2=size=160x120:rate=15:duration={seconds}"]
    if audio:
        command += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={seconds}"]
    if video:
        command += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    if audio:
        codec = {"aac": "aac", "mp3": "libmp3lame", "opus": "libopus"}[audio]
        command += ["-c:a", codec]
    command += [*extra, str(target)]
    subprocess.run(command, check=True)
    return target


TWO_TRACKS_METADATA = """;FFMETADATA1
title=Two tracks
artist=The Testers

[CHAPTER]
TIMEBASE=1/1000
START=0
END=1500
title=Opening

[CHAPTER]
TIMEBASE=1/1000
START=1500
END=3000
title=Closing
"""


def make_two_tracks(folder: Path, name: str = "two tracks.mkv") -> Path:
    """Matroska: H.264, AAC "eng" at 440 Hz and Opus "fra" at 880 Hz with titles, chapters, a title and an artist,
    and a JPEG attachment (a 200 x 200 picture, told apart from the 320 x 240 frames)."""
    (folder / "chapters.txt").write_text(TWO_TRACKS_METADATA)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=200x200", "-frames:v", "1",
                    str(folder / "cover.jpg")], check=True)
    target = folder / name
    subprocess.run([
        "ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=3",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=3",
        "-f", "lavfi", "-i", "sine=frequency=880:sample_rate=48000:duration=3", "-i", str(folder / "chapters.txt"),
        "-map", "0:v", "-map", "1:a", "-map", "2:a", "-map_metadata", "3", "-map_chapters", "3",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a:0", "aac", "-c:a:1", "libopus",
        "-metadata:s:a:0", "language=eng", "-metadata:s:a:0", "title=English",
        "-metadata:s:a:1", "language=fra", "-metadata:s:a:1", "title=Français",
        "-attach", str(folder / "cover.jpg"), "-metadata:s:t", "mimetype=image/jpeg",
        "-metadata:s:t", "filename=cover.jpg", str(target)], check=True)
    return target


def probe(path: Path) -> dict[str, Any]:
    result = subprocess.run(["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
                            capture_output=True, check=True)
    return dict(json.loads(result.stdout))


def audio_duration(path: Path) -> float:
    info = probe(path)
    audio = next(stream for stream in info["streams"] if stream["codec_type"] == "audio")
    return float(audio.get("duration") or info["format"]["duration"])


def trusted_in(database: Any, token: str) -> str:
    """`token`, its credential generation copied into `database` (a test's own, where the functions a test builds
    in-process read it; the stack's auth wrote it in the stack's database at login)."""
    claims = jwt.decode(token, options={"verify_signature": False})
    database[CREDENTIALS].update_one({"_id": claims["sub"]}, {"$set": {"generation": claims["gen"]}}, upsert=True)
    return token


def new_user(endpoints: dict[str, str]) -> tuple[Vid2mp3, str]:
    client = Vid2mp3(endpoints["AUTH_URL"], endpoints["UPLOAD_URL"], endpoints["STATUS_URL"],
                     endpoints["DOWNLOAD_URL"])
    email = f"user-{uuid.uuid4().hex[:12]}@test.vid2mp3.dev"
    client.sign_up_or_log_in(email, TEST_PASSWORD)
    return client, email


class Sink:
    """A local HTTP server standing in for the broker ingress (or a webhook receiver): answers each POST with the
    next scripted status (the last one repeats), after `delay` seconds, with `location` as its Location header."""

    def __init__(self, statuses: list[int], delay: float = 0, location: str | None = None, path: str = "/") -> None:
        self.statuses, self.delay, self.location = list(statuses), delay, location
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.arrived: list[float] = []  # time.monotonic() of each request, in order
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                sink.arrived.append(time.monotonic())
                sink.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                time.sleep(sink.delay)
                status = sink.statuses.pop(0) if len(sink.statuses) > 1 else sink.statuses[0]
                self.send_response(status)
                if sink.location:
                    self.send_header("Location", sink.location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{path}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def events(self) -> list[dict[str, Any]]:
        """The CloudEvents received so far (binary mode), as attributes + data."""
        return [{"attributes": {k[3:]: v for k, v in headers.items() if k.startswith("ce-")},
                 "data": json.loads(body) if body else None} for headers, body in self.requests]


class EventTap:
    """A private queue bound to the broker's exchange, as a Trigger's is: sees every event of the given types."""

    def __init__(self, amqp_url: str, exchange: str, types: list[str]) -> None:
        self.received: queue.Queue[dict[str, Any]] = queue.Queue()
        self._connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
        channel = self._connection.channel()
        self._queue = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
        for event_type in types:
            channel.queue_bind(self._queue, exchange, routing_key="",
                               arguments={"x-match": "all", "type": event_type})
        channel.basic_consume(self._queue, self._on_message, auto_ack=True)
        self._channel = channel
        self._thread = threading.Thread(target=self._consume, daemon=True)
        self._thread.start()

    def _on_message(self, channel: Any, method: Any, properties: pika.BasicProperties, body: bytes) -> None:
        headers = {key: (value.decode() if isinstance(value, bytes) else value)
                   for key, value in (properties.headers or {}).items()}
        self.received.put({"attributes": headers, "data": _json_or_bytes(body)})

    def _consume(self) -> None:
        try:
            self._channel.start_consuming()
        except Exception:  # noqa: S110 - the connection closes under us at teardown
            pass

    def events_for(self, job_id: str) -> list[dict[str, Any]]:
        """Everything received so far for the job (drains the internal queue into a per-tap list)."""
        if not hasattr(self, "_seen"):
            self._seen: list[dict[str, Any]] = []
        while True:
            try:
                self._seen.append(self.received.get_nowait())
            except queue.Empty:
                break
        return [event for event in self._seen if event["attributes"].get("subject") == job_id]

    def close(self) -> None:
        self._connection.add_callback_threadsafe(self._channel.stop_consuming)
        self._thread.join(timeout=5)
        try:
            self._connection.close()
        except Exception:  # noqa: S110
            pass


def _json_or_bytes(body: bytes) -> Any:
    """An event's data: JSON as parsed, anything else (a producer's plain message) as the bytes it is."""
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return body


@contextmanager
def event_tap(endpoints: dict[str, str], types: list[str]) -> Iterator[EventTap]:
    tap = EventTap(endpoints["AMQP_URL"], endpoints["BROKER_EXCHANGE"], types)
    try:
        yield tap
    finally:
        tap.close()


def stage_job(database: Any, source: Path, owner_id: str, bitrate_kbps: BitrateKbps, *,
              extract: bool = True) -> VideoUploaded:
    """What the upload function leaves behind, written straight to the store: the video's source and covers,
    extracted as the upload extracts them (transcoding/extraction.py), in GridFS, and a job waiting for conversion
    (its video-uploaded event is returned, not sent: the caller converts it). `extract=False` stores the file
    itself as the source: one the extraction would refuse, as a damaged source would reach convert."""
    jobs, job_id = Jobs(database), uuid.uuid4().hex
    with source.open("rb") as file:
        container = sniff_container(file.read(SNIFF_BYTES))
        file.seek(0)
        sha256 = hashlib.file_digest(file, "sha256").hexdigest()
    size = source.stat().st_size
    with tempfile.TemporaryDirectory() as folder:
        if extract:
            extracted = extraction.extract(source, Path(folder), max_streams=32, max_duration=3 * 3600)
            kept_file, source_format = extracted.source, extracted.source_format
            covers = {kind: (cover.path, cover.content_type) for kind, cover in extracted.covers.items()}
        else:
            kept_file, source_format, covers = source, "matroska", {}
        kept = JobSources(database).keep(job_id, owner_id, source=kept_file, source_format=source_format,
                                         name=kept_file.name, covers=covers, received_bytes=size,
                                         container=container or "")
    event = VideoUploaded(job_id=job_id, owner_id=owner_id, video_id=job_id, filename=source.name, size_bytes=size,
                          sha256=sha256, bitrate_kbps=bitrate_kbps, uploaded_at=now(), stored_bytes=kept.stored_bytes)
    jobs.create({"_id": job_id, "owner_id": owner_id, "video_id": job_id, "filename": source.name,
                 "size_bytes": size, "sha256": sha256, "bitrate_kbps": bitrate_kbps, "container": container,
                 "received_bytes": size, "stored_bytes": kept.stored_bytes, "source_format": source_format,
                 "covers": kept.covers}, event)
    return event


def tick_ping_source(function_url: str, ping_source: str) -> None:
    """What the PingSource `ping_source` (knative/) sends its function every minute, sent now."""
    answer = requests.post(function_url, timeout=60, json={}, headers={
        "ce-specversion": "1.0", "ce-type": "dev.knative.sources.ping", "ce-id": str(time.time_ns()),
        "ce-source": f"/apis/v1/namespaces/vid2mp3/pingsources/{ping_source}"})
    assert answer.status_code in (200, 204), answer.text
