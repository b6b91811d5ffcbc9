"""A small client of vid2mp3's public function URLs: auth, upload (one request, or resumable with tus in
resumable.py), status (with its live event stream and cancel), download."""

from __future__ import annotations

import codecs
import json
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import requests

FINAL_STATES = ("done", "failed", "cancelled")
READ_BYTES = 1024 * 1024


class ClientError(Exception):
    """A request vid2mp3 refused; the message is its answer."""


class Unauthorized(ClientError):
    """401: the token is missing, expired or revoked."""


def read_endpoints(path: Path) -> dict[str, str]:
    if not path.exists():
        raise ClientError(f"{path} does not exist: start the local stack with `make up`")
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def answer(response: requests.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        body = {"message": response.text[:200]}
    if response.status_code == 401:
        raise Unauthorized(f"HTTP 401: {body.get('message') or body.get('error') or body}")
    if response.status_code == 422 and isinstance(body.get("fields"), dict):
        # Conversion options, named as the command's flags (`--quality`, `--trim-silence`) are: each bad one and
        # what is wrong.
        raise ClientError("invalid options: " + "; ".join(f"--{name.replace('_', '-')}: {problem}"
                                                          for name, problem in body["fields"].items()))
    if response.status_code == 422 and isinstance(body.get("jobs"), dict):
        # A ZIP's jobs that have no MP3 to give: each, and why.
        raise ClientError(f"{body.get('message')}: " + "; ".join(f"{job_id}: {problem}"
                                                                 for job_id, problem in body["jobs"].items()))
    if response.status_code >= 400:
        raise ClientError(f"HTTP {response.status_code}: {body.get('message') or body.get('error') or body}")
    return body


class StreamUnavailable(Exception):
    """The event stream was refused or broke: poll instead."""


def server_sent_events(chunks: Iterator[bytes]) -> Iterator[tuple[str, str]]:
    """(event name, data) for each event of a text/event-stream body; comments (keep-alives) are skipped."""
    decoder, buffer = codecs.getincrementaldecoder("utf-8")(), ""
    for chunk in chunks:
        buffer += decoder.decode(chunk).replace("\r\n", "\n").replace("\r", "\n")
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            name, data = "message", []
            for line in block.split("\n"):
                field, _, value = line.partition(":")
                if field == "event":
                    name = value.removeprefix(" ")
                elif field == "data":
                    data.append(value.removeprefix(" "))
            if data:
                yield name, "\n".join(data)


def until(deadline: float | None, chunks: Iterator[bytes]) -> Iterator[bytes]:
    for chunk in chunks:
        yield chunk
        if deadline is not None and time.monotonic() > deadline:
            return


class ProgressReader:
    """Wraps a file so that each read reports how many bytes went out (for an upload progress bar); its length
    lets requests send a Content-Length, so the server can refuse an oversized upload before it is sent. Closes the
    file as a context manager."""

    def __init__(self, file: BinaryIO, size: int, on_read: Callable[[int], object]) -> None:
        self.file, self.size, self.on_read = file, size, on_read

    def __len__(self) -> int:
        return self.size

    def __enter__(self) -> ProgressReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.file.close()

    def read(self, size: int = READ_BYTES) -> bytes:
        chunk = self.file.read(size)
        self.on_read(len(chunk))
        return chunk


@dataclass(frozen=True)
class FilePart:
    """A file of a multipart/form-data upload: the form field it fills, the name it is sent under, its type."""

    field: str
    path: Path
    filename: str
    content_type: str


def disposition_value(text: str) -> str:
    """A name inside the quotes of a Content-Disposition, as browsers send it (HTML's form encoding)."""
    return text.replace("\r", "%0D").replace("\n", "%0A").replace('"', "%22")


class MultipartBody:
    """A multipart/form-data body of files, read from disk as it is sent (an extract can be large; nothing is held
    in memory beyond one read). Its length is known before it goes, so requests sends a Content-Length and the server
    can refuse an oversized upload before it arrives; each read reports its bytes (a progress bar)."""

    def __init__(self, parts: list[FilePart], on_read: Callable[[int], object], boundary: str) -> None:
        self.boundary = boundary
        self.on_read = on_read
        self.pieces: list[bytes | Path] = []
        for part in parts:
            self.pieces += [(f'--{self.boundary}\r\nContent-Disposition: form-data; name="{part.field}"; '
                             f'filename="{disposition_value(part.filename)}"\r\n'
                             f"Content-Type: {part.content_type}\r\n\r\n").encode(), part.path, b"\r\n"]
        self.pieces.append(f"--{self.boundary}--\r\n".encode())
        self.size = sum(len(piece) if isinstance(piece, bytes) else piece.stat().st_size for piece in self.pieces)
        self.files = ExitStack()
        self.reading: BinaryIO | None = None

    def __len__(self) -> int:
        return self.size

    def __enter__(self) -> MultipartBody:
        return self

    def __exit__(self, *_: object) -> None:
        self.files.close()

    def read(self, size: int = READ_BYTES) -> bytes:
        while self.pieces or self.reading is not None:
            if self.reading is not None:
                chunk = self.reading.read(size)
                if chunk:
                    self.on_read(len(chunk))
                    return chunk
                self.reading = None
                continue
            piece = self.pieces.pop(0)
            if isinstance(piece, Path):
                self.reading = self.files.enter_context(piece.open("rb"))
                continue
            self.on_read(len(piece))
            return piece
        return b""


@dataclass
class Vid2mp3:
    auth_url: str
    upload_url: str
    status_url: str
    download_url: str
    token: str = ""
    timeout: float = 30
    # When the token was given, the seconds it lasts (the login's expires_in), so a kept token is not sent expired.
    token_expires_at: float | None = None
    # How to get a new token when one is refused (401): the local stack's own user logs in again. A saved login
    # cannot (no password is kept): its 401 asks the user to log in.
    renew_token: Callable[[Vid2mp3], str] | None = None

    def __post_init__(self) -> None:
        self.session = requests.Session()

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def renew(self) -> bool:
        """Takes a new token if the client can; answers whether it did."""
        if self.renew_token is None:
            return False
        self.token = self.renew_token(self)
        return True

    def _send(self, method: str, url: str, *, body: Callable[[], Any] | None = None,
              headers: dict[str, str] | None = None, **arguments: Any) -> requests.Response:
        """One request with the token, sent once more with a new one if it is refused and the client can renew it.
        `body` makes the request's body (a context manager that closes its files), afresh for each sending."""
        for last in (False, True):
            with ExitStack() as stack:
                data = stack.enter_context(body()) if body is not None else None
                response = self.session.request(method, url, data=data, headers={**self._headers(), **(headers or {})},
                                                **arguments)
            if response.status_code != 401 or last or self.renew_token is None:
                return response
            response.close()
            self.renew()
        raise AssertionError("unreachable")

    def sign_up(self, email: str, password: str) -> None:
        answer(self.session.post(f"{self.auth_url}/signup", json={"email": email, "password": password},
                                 timeout=self.timeout))

    def log_in(self, email: str, password: str) -> None:
        given = answer(self.session.post(f"{self.auth_url}/login", json={"email": email, "password": password},
                                         timeout=self.timeout))
        self.token = given["access_token"]
        self.token_expires_at = time.time() + given["expires_in"] if given.get("expires_in") else None

    def sign_up_or_log_in(self, email: str, password: str) -> None:
        response = self.session.post(f"{self.auth_url}/signup", json={"email": email, "password": password},
                                     timeout=self.timeout)
        if response.status_code not in (201, 409):
            answer(response)
        self.log_in(email, password)

    def log_in_or_sign_up(self, email: str, password: str) -> None:
        """One request when the account exists (the usual case); signs up first when it does not."""
        try:
            self.log_in(email, password)
        except Unauthorized:
            self.sign_up_or_log_in(email, password)

    def upload(self, video: Path, bitrate_kbps: int | None = None,
               on_bytes: Callable[[int], object] = lambda _: None,
               options: dict[str, str] | None = None) -> dict[str, Any]:
        """Uploads `video` as the request's body; `options`: conversion options as the upload function's fields
        (events/options.py)."""
        params: dict[str, str] = {"filename": video.name, **(options or {})}
        if bitrate_kbps:
            params["bitrate"] = str(bitrate_kbps)

        def body() -> ProgressReader:
            return ProgressReader(video.open("rb"), video.stat().st_size, on_bytes)

        return dict(answer(self._send("POST", self.upload_url, params=params, body=body,
                                      headers={"Content-Type": "application/octet-stream"},
                                      timeout=(self.timeout, 600))))

    def import_url(self, url: str, options: dict[str, str] | None = None) -> dict[str, Any]:
        """Has the server fetch the video at `url` and take it as an upload; answers as an upload does (202)."""
        return dict(answer(self._send("POST", self.upload_url, json={"url": url, **(options or {})},
                                      timeout=(self.timeout, 900))))

    def upload_form(self, parts: list[FilePart], on_bytes: Callable[[int], object] = lambda _: None,
                    options: dict[str, str] | None = None) -> dict[str, Any]:
        """Uploads files as a multipart form (the `file`, and the `cover` frame beside an extract); the options go as
        query parameters, as with upload()."""
        boundary = secrets.token_hex(16)
        return dict(answer(self._send("POST", self.upload_url, params=options or {},
                                      body=lambda: MultipartBody(parts, on_bytes, boundary),
                                      headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
                                      timeout=(self.timeout, 600))))

    def upload_resumable(self, video: Path, resume_store: Path, on_bytes: Callable[[int], object] = lambda _: None,
                         options: dict[str, str] | None = None, *, filename: str | None = None,
                         key: str | None = None) -> dict[str, Any]:
        """Uploads `video` with tus (resumable.py): a rerun of the same upload resumes it. `filename` names it (the
        file's own name by default); `key` is what the upload is remembered by (by default the file's path, size and
        modification time). Answers the job id and status URL."""
        from vid2mp3_client import resumable  # tuspy and aiohttp: only here

        stat = video.stat()
        url = resumable.upload(self, video, resume_store,
                               key=key or f"{video.resolve()} {stat.st_size} {stat.st_mtime_ns}",
                               metadata={"filename": filename or video.name, **(options or {})}, on_bytes=on_bytes)
        job_id = url.rstrip("/").rsplit("/", 1)[-1]
        return {"job_id": job_id, "status_url": f"{self.status_url.rstrip('/')}/{job_id}"}

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(answer(self._send("GET", f"{self.status_url}/{job_id}", timeout=self.timeout)))

    def jobs(self) -> list[dict[str, Any]]:
        return list(answer(self._send("GET", f"{self.status_url}/", timeout=self.timeout))["jobs"])

    def delete(self, job_id: str) -> None:
        self._delete(f"{self.status_url}/{job_id}")

    def _delete(self, url: str) -> None:
        """DELETE answered 204 with no body; anything else is raised as its error."""
        response = self._send("DELETE", url, timeout=self.timeout)
        if response.status_code != 204:
            answer(response)

    def create_key(self, name: str, scopes: list[str], expires_in_days: int | None) -> dict[str, Any]:
        """A new API key (its secret, `key`, is in this answer only)."""
        return dict(answer(self._send("POST", f"{self.auth_url}/keys", timeout=self.timeout, json={
            "name": name, "scopes": scopes, "expires_in_days": expires_in_days})))

    def keys(self) -> list[dict[str, Any]]:
        return list(answer(self._send("GET", f"{self.auth_url}/keys", timeout=self.timeout))["keys"])

    def revoke_key(self, key_id: str) -> None:
        self._delete(f"{self.auth_url}/keys/{key_id}")

    def feed(self, rotate: bool = False) -> dict[str, Any]:
        """The private podcast feed's address (`url`), made on demand; with `rotate`, a new one in its place."""
        if rotate:
            return dict(answer(self._send("POST", f"{self.download_url}/feed/rotate", timeout=self.timeout)))
        return dict(answer(self._send("GET", f"{self.download_url}/feed", timeout=self.timeout)))

    def cancel(self, job_id: str) -> dict[str, Any]:
        return dict(answer(self._send("POST", f"{self.status_url}/{job_id}/cancel", timeout=self.timeout)))

    def follow(self, job_id: str, on_change: Callable[[dict[str, Any]], object], timeout: float = 900,
               interval: float = 0.5) -> dict[str, Any]:
        """Calls `on_change` with each new view of the job until it is final, and answers the final view: from the
        status function's event stream, reconnecting when a stream ends early, or by polling if streams fail."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                job = self.stream_until_final(job_id, on_change, deadline)
                if job is not None and job["state"] in FINAL_STATES:
                    return job
                time.sleep(interval)  # the stream's time was up: connect again
        except StreamUnavailable:
            pass
        return self.poll(job_id, on_change, deadline, interval)

    def stream_until_final(self, job_id: str, on_change: Callable[[dict[str, Any]], object],
                           deadline: float | None = None) -> dict[str, Any] | None:
        """Follows one event stream to its end (or `deadline`, checked at least at every keep-alive); answers the
        last view it carried (None if none)."""
        last: dict[str, Any] | None = None
        try:
            with self._send("GET", f"{self.status_url}/{job_id}/events", stream=True, timeout=(self.timeout, 30),
                            headers={"Accept": "text/event-stream"}) as response:
                if response.status_code in (401, 404):
                    answer(response)
                if response.status_code != 200:
                    raise StreamUnavailable(f"HTTP {response.status_code}")
                chunks = until(deadline, response.iter_content(chunk_size=None))
                for name, data in server_sent_events(chunks):
                    if name == "job":
                        last = json.loads(data)
                        on_change(last)
        except requests.RequestException as error:
            raise StreamUnavailable(str(error)) from None
        return last

    def poll(self, job_id: str, on_change: Callable[[dict[str, Any]], object], deadline: float,
             interval: float) -> dict[str, Any]:
        while True:
            job = self.job(job_id)
            on_change(job)
            if job["state"] in FINAL_STATES:
                return job
            if time.monotonic() > deadline:
                raise ClientError(f"job {job_id} is still {job['state']}: gave up waiting")
            time.sleep(interval)

    def download(self, job_id: str, target: Path, on_bytes: Callable[[int], object] = lambda _: None) -> int:
        return self._download_to(f"{self.download_url}/{job_id}", target, on_bytes)

    def download_zip(self, job_ids: list[str], target: Path) -> int:
        """The jobs' MP3s as one ZIP (stored entries, each MP3 byte for byte); a 422 names each job without one."""
        return self._download_to(f"{self.download_url}/zip?jobs={','.join(job_ids)}", target)

    def download_chapters_zip(self, job_id: str, target: Path) -> int:
        """The job's chapter files (`split=chapters`) as one ZIP, in chapter order; 404 when it has none."""
        return self._download_to(f"{self.download_url}/{job_id}/chapters.zip", target)

    def _download_to(self, url: str, target: Path, on_bytes: Callable[[int], object] = lambda _: None) -> int:
        """Streams `url` into `target` (through `<target>.part`, so a broken download leaves no target)."""
        with self._send("GET", url, stream=True, timeout=self.timeout) as response:
            if response.status_code != 200:
                answer(response)
            size = 0
            partial = target.with_name(target.name + ".part")
            with partial.open("wb") as file:
                for chunk in response.iter_content(READ_BYTES):
                    file.write(chunk)
                    size += len(chunk)
                    on_bytes(len(chunk))
            partial.replace(target)
        return size
