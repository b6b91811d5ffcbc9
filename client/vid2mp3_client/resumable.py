"""Sends a file to the upload function with tus 1.0 (README: Resumable uploads) and answers the upload's URL: in
chunks, each retried after a dropped connection from the offset the server holds; the URL is kept in a small store
until the upload is complete, so a rerun of the command resumes it. A module of its own because tuspy brings aiohttp
(a third of the command's import time): only a resumable upload imports it."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests
from tusclient.client import TusClient
from tusclient.exceptions import TusCommunicationError, TusUploadFailed
from tusclient.fingerprint.fingerprint import Fingerprint
from tusclient.storage.filestorage import FileStorage

from vid2mp3_client.api import ClientError, Unauthorized

if TYPE_CHECKING:
    from vid2mp3_client.api import Vid2mp3

# Bytes per PATCH: tuspy holds one in memory, and a dropped connection costs at most one again.
CHUNK_BYTES = 8 * 1024 * 1024
# Tries of a PATCH that failed (a dropped connection, a restarting server), each after asking the offset again.
RETRIES = 5
RETRY_DELAY_SECONDS = 2


class UploadKey(Fingerprint):
    """What a resumable upload is remembered by (the caller says: a file's path, size and modification time, or an
    extract's content, and where it goes), rather than tuspy's default (its first 64 KiB and size), which two
    different videos can share."""

    def __init__(self, key: str) -> None:
        self.key = key

    def get_fingerprint(self, fs: Any) -> str:
        return self.key


def upload(client: Vid2mp3, file: Path, resume_store: Path, *, key: str, metadata: dict[str, str],
           on_bytes: Callable[[int], object]) -> str:
    """Answers the upload's URL once every byte is in. A refused token is renewed once, if the client can, and the
    upload goes on from where the server has it. `on_bytes` hears of each step of the server's offset."""
    reported = 0

    def reached(offset: int) -> None:
        nonlocal reported
        if offset > reported:
            on_bytes(offset - reported)
            reported = offset

    try:
        return send(client, file, resume_store, key=key, metadata=metadata, reached=reached)
    except Unauthorized:
        if not client.renew():
            raise
    return send(client, file, resume_store, key=key, metadata=metadata, reached=reached)


def send(client: Vid2mp3, file: Path, resume_store: Path, *, key: str, metadata: dict[str, str],
         reached: Callable[[int], object]) -> str:
    files_url = f"{client.upload_url.rstrip('/')}/files/"
    size = file.stat().st_size
    fingerprint = UploadKey(f"{files_url} {key}")
    resume_store.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    storage = FileStorage(str(resume_store))
    try:
        def uploader() -> Any:
            tus = TusClient(files_url, headers={"Authorization": f"Bearer {client.token}"})
            return tus.uploader(str(file), chunk_size=CHUNK_BYTES, store_url=True, url_storage=storage,
                                fingerprinter=fingerprint, upload_checksum=True, metadata=metadata)
        try:
            upload = uploader()  # asks the server where a kept upload stands
        except TusCommunicationError as error:
            if error.status_code == 401:
                raise
            storage.remove_item(fingerprint.key)  # gone (expired, another user's, another server's): start over
            upload = uploader()
        reached(upload.offset)
        tries = 0
        while upload.offset < size:
            try:
                upload.upload_chunk()
            except (TusCommunicationError, TusUploadFailed) as error:
                # tuspy would retry any failure; a refusal (4xx but a conflict) is final.
                refused = error.status_code is not None and 400 <= error.status_code < 500 \
                    and error.status_code not in (409, 423)
                tries += 1
                if refused or tries > RETRIES:
                    raise
                time.sleep(RETRY_DELAY_SECONDS)
                upload.offset = upload.get_offset()
                continue
            tries = 0
            reached(upload.offset)
        storage.remove_item(fingerprint.key)
    except (TusCommunicationError, TusUploadFailed) as error:
        content = error.response_content
        words = content.decode(errors="replace") if isinstance(content, bytes) else str(content or error)
        if error.status_code == 401:
            raise Unauthorized(f"HTTP 401: {words}") from None
        raise ClientError(f"HTTP {error.status_code}: {words}") from None
    except requests.ConnectionError as error:  # tuspy lets these through: the server is not there
        raise ClientError(f"the upload stopped: {error}; run the same command again to resume") from None
    finally:
        storage.close()
    return str(upload.url)
