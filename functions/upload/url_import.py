"""Fetches a video a user names by URL (`POST /` with `{"url": ...}`), as a stream the upload takes as if the client
had sent it (uploads.py): only what becomes the MP3 is kept.

The URL is the user's choice and this function runs inside the cluster, so each address is checked by the rules
webhooks obey (runtime/addresses.py: resolved once, connected to as checked, no loopback, private, link-local,
multicast or reserved address in any form), and so is every redirect, at most MAX_REDIRECTS of them. Any refusal is
a 422 naming the reason, given before a connection is made. The fetch has a deadline as a whole
(`URL_IMPORT_TIMEOUT_SECONDS`); the size is the upload's limit.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import urllib3

from functions.upload.intake import safe_filename
from runtime.addresses import RefusedAddress, connection_pool, host_header, resolve
from runtime.answers import HttpError

MAX_REDIRECTS = 5
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
USER_AGENT = "vid2mp3-import/1"
CONNECT_TIMEOUT_SECONDS = 10
# The longest wait for the next bytes, within the whole fetch's deadline.
READ_TIMEOUT_SECONDS = 60


def refused(code: str, message: str) -> HttpError:
    return HttpError(422, code, message)


@dataclass
class Fetched:
    """The answer being read: a file-like stream of the video, with what its headers said."""

    response: Any
    filename: str
    length: int | None
    deadline: float

    def read(self, size: int = -1, /) -> bytes:
        if time.monotonic() > self.deadline:
            raise refused("url_too_slow", "the video did not arrive within the import's time limit")
        try:
            return bytes(self.response.read(size if size >= 0 else None))
        except urllib3.exceptions.HTTPError as error:
            raise refused("url_unreachable", f"the video's server stopped answering ({type(error).__name__})") \
                from None


def filename_of(url: str) -> str:
    path = urllib.parse.urlsplit(url).path
    return safe_filename(urllib.parse.unquote(path.rsplit("/", 1)[-1]) or None)


def declared_length(headers: Any) -> int | None:
    value = str(headers.get("Content-Length") or "")
    return int(value) if value.isascii() and value.isdigit() else None


@dataclass(frozen=True)
class UrlImports:
    allow_loopback: bool
    timeout_seconds: float

    @contextmanager
    def open(self, url: str) -> Iterator[Fetched]:
        """The video at `url`, its redirects followed and each checked; 422 for what may not be fetched."""
        deadline = time.monotonic() + self.timeout_seconds
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            try:
                target = resolve(current, allow_loopback=self.allow_loopback, allow_http=True)
            except RefusedAddress as refusal:
                where = "the URL" if current == url else f"the redirect to {current[:200]}"
                raise refused("url_refused", f"{where}: {refusal}") from None
            pool = connection_pool(target, urllib3.Timeout(connect=CONNECT_TIMEOUT_SECONDS,
                                                           read=READ_TIMEOUT_SECONDS))
            try:
                response = pool.urlopen("GET", target.path, redirect=False, retries=False, preload_content=False,
                                        headers={"Host": host_header(target), "User-Agent": USER_AGENT,
                                                 "Accept": "video/*, audio/*, */*;q=0.5"})
            except urllib3.exceptions.HTTPError as error:
                pool.close()
                raise refused("url_unreachable", f"the video's server did not answer ({type(error).__name__})") \
                    from None
            try:
                location = response.headers.get("Location")
                if response.status in REDIRECT_STATUSES and location:
                    current = urllib.parse.urljoin(current, location)
                    continue
                if response.status != 200:
                    raise refused("url_not_fetched", f"the video's server answered HTTP {response.status}")
                yield Fetched(response, filename_of(current), declared_length(response.headers), deadline)
                return
            finally:
                response.release_conn()
                pool.close()
        raise refused("too_many_redirects", f"the URL redirects more than {MAX_REDIRECTS} times")
