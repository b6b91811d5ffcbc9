"""A small client of vid2mp3's public function URLs: auth, upload, status (with its live event stream and
cancel), download."""

from __future__ import annotations

import codecs
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import requests
from tusclient.client import TusClient
from tusclient.exceptions import TusCommunicationError, TusUploadFailed
from tusclient.fingerprint.fingerprint import Fingerprint
from tusclient.storage.filestorage import FileStorage

FINAL_STATES = ("done", "failed", "cancelled")
READ_BYTES = 1024 * 1024
# Bytes per PATCH of a resumable upload: tuspy holds one in memory, and a dropped connection costs at most one again.
RESUMABLE_CHUNK_BYTES = 8 * 1024 * 1024
# Tries of a PATCH that failed (a dropped connection, a restarting server), each after asking the offset again.
RESUMABLE_RETRIES = 5
RESUMABLE_RETRY_DELAY_SECONDS = 2


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
        # Conversion options, named as the command's flags (`--quality`) are: each bad one and what is wrong.
        raise ClientError("invalid options: " + "; ".join(f"--{name}: {problem}"
                                                          for name, problem in body["fields"].items()))
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


class UploadKey(Fingerprint):
    """What a resumable upload is remembered by: the file (its path, size and modification time) and where it goes,
    rather than tuspy's default (its first 64 KiB and size), which two different videos can share."""

    def __init__(self, key: str) -> None:
        self.key = key

    def get_fingerprint(self, fs: Any) -> str:
        return self.key


class ProgressReader:
    """Wraps a file so that each read reports how many bytes went out (for an upload progress bar); its length
    lets requests send a Content-Length, so the server can refuse an oversized upload before it is sent."""

    def __init__(self, file: BinaryIO, size: int, on_read: Callable[[int], object]) -> None:
        self.file, self.size, self.on_read = file, size, on_read

    def __len__(self) -> int:
        return self.size

    def read(self, size: int = READ_BYTES) -> bytes:
        chunk = self.file.read(size)
        self.on_read(len(chunk))
        return chunk


@dataclass
class Vid2mp3:
    auth_url: str
    upload_url: str
    status_url: str
    download_url: str
    token: str = ""
    timeout: float = 30

    def __post_init__(self) -> None:
        self.session = requests.Session()

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def sign_up(self, email: str, password: str) -> None:
        answer(self.session.post(f"{self.auth_url}/signup", json={"email": email, "password": password},
                                 timeout=self.timeout))

    def log_in(self, email: str, password: str) -> None:
        self.token = answer(self.session.post(f"{self.auth_url}/login", json={"email": email, "password": password},
                                              timeout=self.timeout))["access_token"]

    def sign_up_or_log_in(self, email: str, password: str) -> None:
        response = self.session.post(f"{self.auth_url}/signup", json={"email": email, "password": password},
                                     timeout=self.timeout)
        if response.status_code not in (201, 409):
            answer(response)
        self.log_in(email, password)

    def upload(self, video: Path, bitrate_kbps: int | None = None,
               on_bytes: Callable[[int], object] = lambda _: None,
               options: dict[str, str] | None = None) -> dict[str, Any]:
        """Uploads `video`; `options`: conversion options as the upload function's fields (events/options.py)."""
        params: dict[str, str] = {"filename": video.name, **(options or {})}
        if bitrate_kbps:
            params["bitrate"] = str(bitrate_kbps)
        with video.open("rb") as file:
            response = self.session.post(
                self.upload_url, params=params, data=ProgressReader(file, video.stat().st_size, on_bytes),
                headers={**self._headers(), "Content-Type": "application/octet-stream"},
                timeout=(self.timeout, 600),
            )
        return dict(answer(response))

    def upload_resumable(self, video: Path, resume_store: Path, on_bytes: Callable[[int], object] = lambda _: None,
                         options: dict[str, str] | None = None) -> dict[str, Any]:
        """Uploads `video` with tus (README: Resumable uploads): in chunks, each retried after a dropped connection
        from the offset the server holds; the upload's URL is kept in `resume_store` until it is complete, so
        uploading the same file again (a rerun of the command) resumes it. Answers the job id and status URL."""
        files_url = f"{self.upload_url.rstrip('/')}/files/"
        stat = video.stat()
        key = UploadKey(f"{files_url} {video.resolve()} {stat.st_size} {stat.st_mtime_ns}")
        resume_store.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        storage = FileStorage(str(resume_store))
        try:
            tus = TusClient(files_url, headers=self._headers())

            def uploader() -> Any:
                return tus.uploader(str(video), chunk_size=RESUMABLE_CHUNK_BYTES, store_url=True,
                                    url_storage=storage, fingerprinter=key, upload_checksum=True,
                                    metadata={"filename": video.name, **(options or {})})
            try:
                upload = uploader()  # asks the server where a kept upload stands
            except TusCommunicationError:  # gone (expired, another user's, another server's): start over
                storage.remove_item(key.key)
                upload = uploader()
            on_bytes(upload.offset)
            tries = 0
            while upload.offset < stat.st_size:
                before = upload.offset
                try:
                    upload.upload_chunk()
                except (TusCommunicationError, TusUploadFailed) as error:
                    # tuspy would retry any failure; a refusal (4xx but a conflict) is final.
                    refused = error.status_code is not None and 400 <= error.status_code < 500 \
                        and error.status_code not in (409, 423)
                    tries += 1
                    if refused or tries > RESUMABLE_RETRIES:
                        raise
                    time.sleep(RESUMABLE_RETRY_DELAY_SECONDS)
                    upload.offset = upload.get_offset()
                    continue
                tries = 0
                on_bytes(upload.offset - before)
            storage.remove_item(key.key)
        except (TusCommunicationError, TusUploadFailed) as error:
            content = error.response_content
            words = content.decode(errors="replace") if isinstance(content, bytes) else str(content or error)
            raise ClientError(f"HTTP {error.status_code}: {words}") from None
        except requests.ConnectionError as error:  # tuspy lets these through: the server is not there
            raise ClientError(f"the upload stopped: {error}; run the same command again to resume") from None
        finally:
            storage.close()
        job_id = str(upload.url).rstrip("/").rsplit("/", 1)[-1]
        return {"job_id": job_id, "status_url": f"{self.status_url.rstrip('/')}/{job_id}"}

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(answer(self.session.get(f"{self.status_url}/{job_id}", headers=self._headers(),
                                            timeout=self.timeout)))

    def jobs(self) -> list[dict[str, Any]]:
        return list(answer(self.session.get(f"{self.status_url}/", headers=self._headers(),
                                            timeout=self.timeout))["jobs"])

    def delete(self, job_id: str) -> None:
        response = self.session.delete(f"{self.status_url}/{job_id}", headers=self._headers(), timeout=self.timeout)
        if response.status_code != 204:
            answer(response)

    def cancel(self, job_id: str) -> dict[str, Any]:
        return dict(answer(self.session.post(f"{self.status_url}/{job_id}/cancel", headers=self._headers(),
                                             timeout=self.timeout)))

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
            with self.session.get(f"{self.status_url}/{job_id}/events", stream=True, timeout=(self.timeout, 30),
                                  headers={**self._headers(), "Accept": "text/event-stream"}) as response:
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
        with self.session.get(f"{self.download_url}/{job_id}", headers=self._headers(), stream=True,
                              timeout=self.timeout) as response:
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
