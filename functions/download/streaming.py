"""Turns a stored MP3 into an HTTP response: streamed in chunks, conditional (ETag, Last-Modified) and ranged
(RFC 9110, through endpoints/conditional.py)."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable, Iterator
from pathlib import PurePosixPath
from typing import IO, cast

import flask
from werkzeug.http import http_date, quote_etag
from werkzeug.wsgi import wrap_file

from endpoints.conditional import RangeNotSatisfiable, Validators, byte_range, precondition, precondition_failed
from runtime.answers import HttpError
from storage.media import StoredMedia

CHUNK_BYTES = 256 * 1024


def episode_title(original: str | None) -> str:
    """What an MP3 is called when nothing better is known: its video's file name without the extension."""
    return PurePosixPath(original or "").stem or "audio"


def download_name(original: str) -> str:
    return f"{episode_title(original)}.mp3"


def content_disposition(name: str) -> str:
    """`attachment` with an ASCII fallback name and the exact name in RFC 5987 form."""
    ascii_name = re.sub(r"[^A-Za-z0-9._ -]", "_", name.encode("ascii", "replace").decode()) or "audio.mp3"
    return f'attachment; filename="{ascii_name}"; filename*=UTF-8\'\'{urllib.parse.quote(name, safe="")}'


def mp3_response(request: flask.Request, stored: StoredMedia, sha256: str, original_name: str) -> flask.Response:
    """The MP3, or the part of it the request asks for (RFC 9110): 412 (the JSON error body) when a precondition
    fails, 304 when the client's copy is current, 206 for one satisfiable byte range, 416 for one past the end; a
    Range of another unit, several ranges or one not matching `If-Range` get the whole MP3."""
    validators = Validators(sha256, stored.upload_date)
    headers = {
        "Content-Disposition": content_disposition(download_name(original_name)),
        "Cache-Control": "private, no-cache",
        "X-Content-Type-Options": "nosniff",
        "Accept-Ranges": "bytes",
        "ETag": quote_etag(sha256),
        "Last-Modified": http_date(stored.upload_date),
    }
    try:
        decided = precondition(request, validators)
        if decided == 412:
            raise precondition_failed(validators)
        if decided == 304:
            return flask.Response(status=304, headers={
                name: value for name, value in headers.items() if name in ("Cache-Control", "ETag", "Last-Modified")})
        try:
            wanted = byte_range(request, validators, stored.length)
        except RangeNotSatisfiable:
            raise HttpError(416, "range_not_satisfiable", f"the range starts past the MP3's {stored.length} bytes "
                            "(ask for `bytes=<first>-[<last>]` or `bytes=-<suffix>`)",
                            {"Content-Range": f"bytes */{stored.length}", "Accept-Ranges": "bytes"}) from None
    except BaseException:
        stored.close()
        raise
    first, last = wanted if wanted is not None else (0, stored.length - 1)
    stored.seek(first)
    body = wrap_file(request.environ, cast(IO[bytes], stored), buffer_size=CHUNK_BYTES)
    if wanted is not None or first > 0:
        body = LimitedBody(body, last - first + 1, stored)
    response = flask.Response(body, status=206 if wanted is not None else 200, mimetype="audio/mpeg",
                              headers=headers, direct_passthrough=True)
    response.content_length = last - first + 1
    if wanted is not None:
        response.headers["Content-Range"] = f"bytes {first}-{last}/{stored.length}"
    return response


class LimitedBody:
    """The first `length` bytes of a file's chunks, then the file closed."""

    def __init__(self, chunks: Iterable[bytes], length: int, file: StoredMedia) -> None:
        self._chunks, self._left, self._file = iter(chunks), length, file

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._left <= 0:
            raise StopIteration
        chunk = next(self._chunks)[:self._left]
        self._left -= len(chunk)
        return chunk

    def close(self) -> None:
        self._file.close()
