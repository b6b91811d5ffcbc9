"""Fetches a video a user names by URL (`POST /` with `{"url": ...}`), as a stream the upload takes as if the client
had sent it (uploads.py): only what becomes the MP3 is kept.

The URL is the user's choice and this function runs inside the cluster, so each address is checked by the rules
webhooks obey (runtime/addresses.py: resolved once, connected to as checked, no loopback, private, link-local,
multicast or reserved address in any form), and so is every redirect, at most MAX_REDIRECTS of them. Any refusal is
a 422 naming the reason, given before a connection is made. `connect` ends with the answer's headers (the request
waits for them: each refusal is known by then); the body is read afterwards, in the background, and `stop` ends
that from another thread (a cancel). The fetch has a deadline as a whole (`URL_IMPORT_TIMEOUT_SECONDS`); the size
is the upload's limit.
"""

from __future__ import annotations

import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

import urllib3

from functions.upload.intake import safe_filename
from runtime.addresses import IpNetwork, RefusedAddress, connection_pool, host_header, resolve
from runtime.answers import HttpError

MAX_REDIRECTS = 5
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
USER_AGENT = "vid2mp3-import/1"
CONNECT_TIMEOUT_SECONDS = 10
# The longest wait for the next bytes, within the whole fetch's deadline.
READ_TIMEOUT_SECONDS = 60


def refused(code: str, message: str) -> HttpError:
    return HttpError(422, code, message)


STOPPED = HttpError(409, "import_stopped", "the import was stopped")


@dataclass
class Fetched:
    """The answer being read: a file-like stream of the video, with what its headers said and how much of it came."""

    response: Any
    pool: Any
    filename: str
    length: int | None
    deadline: float
    fetched_bytes: int = 0
    stopped: bool = False

    def read(self, size: int = -1, /) -> bytes:
        if time.monotonic() > self.deadline:
            raise refused("url_too_slow", "the video did not arrive within the import's time limit")
        try:
            # What has come, without waiting for all of `size`: the bytes fetched are counted as they arrive.
            chunk = bytes(self.response.read1(size if size >= 0 else None))
        except (urllib3.exceptions.HTTPError, OSError) as error:
            if self.stopped:
                raise STOPPED from None
            raise refused("url_unreachable", f"the video's server stopped answering ({type(error).__name__})") \
                from None
        if self.stopped:  # a read cut short by `stop` is not the video's end
            raise STOPPED
        self.fetched_bytes += len(chunk)
        return chunk

    def stop(self) -> None:
        """Ends the fetch from another thread: the read under way returns at once, the connection is closed."""
        self.stopped = True
        try:
            self.response.shutdown()
        except (ValueError, OSError):  # its body was read already: nothing to cut short
            pass

    def close(self) -> None:
        self.response.release_conn()
        self.pool.close()


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
    allowed_networks: tuple[IpNetwork, ...] = ()

    def connect(self, url: str) -> Fetched:
        """The video at `url`, its redirects followed and each checked, its headers read; 422 for what may not be
        fetched. The caller closes it."""
        deadline = time.monotonic() + self.timeout_seconds
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            try:
                target = resolve(current, allow_loopback=self.allow_loopback, allow_http=True,
                                 allowed_networks=self.allowed_networks)
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
            fetched = Fetched(response, pool, filename_of(current), declared_length(response.headers), deadline)
            location = response.headers.get("Location")
            if response.status == 200:
                return fetched
            fetched.close()
            if response.status in REDIRECT_STATUSES and location:
                current = urllib.parse.urljoin(current, location)
                continue
            raise refused("url_not_fetched", f"the video's server answered HTTP {response.status}")
        raise refused("too_many_redirects", f"the URL redirects more than {MAX_REDIRECTS} times")
