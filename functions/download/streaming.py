"""Turns a stored MP3 into an HTTP response: streamed in chunks, conditional (ETag) and ranged (RFC 9110)."""

from __future__ import annotations

import re
import urllib.parse
from pathlib import PurePosixPath
from typing import IO, cast

import flask
from werkzeug.exceptions import RequestedRangeNotSatisfiable
from werkzeug.wsgi import wrap_file

from runtime.answers import HttpError
from storage.media import StoredMedia

CHUNK_BYTES = 256 * 1024


def download_name(original: str) -> str:
    stem = PurePosixPath(original).stem or "audio"
    return f"{stem}.mp3"


def content_disposition(name: str) -> str:
    """`attachment` with an ASCII fallback name and the exact name in RFC 5987 form."""
    ascii_name = re.sub(r"[^A-Za-z0-9._ -]", "_", name.encode("ascii", "replace").decode()) or "audio.mp3"
    return f'attachment; filename="{ascii_name}"; filename*=UTF-8\'\'{urllib.parse.quote(name, safe="")}'


def mp3_response(request: flask.Request, stored: StoredMedia, sha256: str, original_name: str) -> flask.Response:
    body = wrap_file(request.environ, cast(IO[bytes], stored), buffer_size=CHUNK_BYTES)
    response = flask.Response(body, mimetype="audio/mpeg", direct_passthrough=True)
    response.headers["Content-Disposition"] = content_disposition(download_name(original_name))
    response.headers["Cache-Control"] = "private, no-cache"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.set_etag(sha256)
    response.last_modified = stored.upload_date
    response.content_length = stored.length
    # Answers If-None-Match (304) and Range (206), and sets Content-Length.
    try:
        response.make_conditional(request, accept_ranges=True, complete_length=stored.length)
    except RequestedRangeNotSatisfiable:  # werkzeug answers it with an HTML page (found by schemathesis)
        stored.close()
        raise HttpError(416, "range_not_satisfiable", f"ask for one range of bytes within the MP3's "
                        f"{stored.length} (`bytes=<first>-[<last>]` or `bytes=-<suffix>`)",
                        {"Content-Range": f"bytes */{stored.length}", "Accept-Ranges": "bytes"}) from None
    return response
