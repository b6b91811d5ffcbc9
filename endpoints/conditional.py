"""Conditional and range requests (RFC 9110 §13 and §14) for answers with validators: `precondition` decides 412 or
304 in the order §13.2.2 gives, `byte_range` the one range to send; `cacheable` answers a document held in memory
(the web page's assets, the API documents, the JWKS) with a validator from its content, 304s, and gzip where the
client takes it and it pays.

Written here rather than left to werkzeug's `make_conditional`, which answers a failed `If-Match` with status 412
and the whole representation as its body, never evaluates `If-Unmodified-Since`, lets a weak `If-Range` match, and
refuses a range of another unit or a suffix longer than the representation (RFC 9110: ignore, and the whole)."""

from __future__ import annotations

import gzip
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime

import flask
from werkzeug.http import parse_date, parse_etags, quote_etag

from runtime.answers import HttpError

SAFE_METHODS = ("GET", "HEAD")
# Below this, gzip's header and the work cost more than they save.
COMPRESS_FROM_BYTES = 1024


@dataclass(frozen=True)
class Validators:
    """A representation's strong entity tag (unquoted) and its modification time, if known."""

    etag: str
    last_modified: datetime | None = None

    def modified_after(self, moment: datetime) -> bool:
        # HTTP dates have whole seconds.
        return self.last_modified is not None and self.last_modified.replace(microsecond=0) > moment


class RangeNotSatisfiable(Exception):
    pass


def precondition(request: flask.Request, validators: Validators) -> int | None:
    """412 or 304 when the request's preconditions say so, None to answer as usual (RFC 9110 §13.2.2). `If-Match`
    compares strongly (a weak tag never matches), `If-None-Match` weakly; a date a precondition cannot parse is
    ignored, as the RFC says."""
    if_match = request.headers.get("If-Match")
    if if_match is not None:
        tags = parse_etags(if_match)
        if not (tags.star_tag or tags.contains(validators.etag)):
            return 412
    else:
        unmodified_since = parse_date(request.headers.get("If-Unmodified-Since"))
        if unmodified_since is not None and validators.modified_after(unmodified_since):
            return 412
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None:
        tags = parse_etags(if_none_match)
        if tags.star_tag or tags.contains_weak(validators.etag):
            return 304 if request.method in SAFE_METHODS else 412
    elif request.method in SAFE_METHODS and validators.last_modified is not None:
        modified_since = parse_date(request.headers.get("If-Modified-Since"))
        if modified_since is not None and not validators.modified_after(modified_since):
            return 304
    return None


def precondition_failed(validators: Validators) -> HttpError:
    return HttpError(412, "precondition_failed", "a precondition of the request (If-Match, If-Unmodified-Since or "
                     "If-None-Match) does not hold for the current representation",
                     {"ETag": quote_etag(validators.etag)})


def byte_range(request: flask.Request, validators: Validators, length: int) -> tuple[int, int] | None:
    """The one range of bytes to send, `(first, last)` inclusive, or None for the whole representation: without
    `Range`, with a unit other than `bytes` or a specification that is not valid (both ignored, RFC 9110 §14.2),
    with several ranges (ignored: no multipart answers), or with an `If-Range` that does not match (a weak tag
    never does, a date only the exact `Last-Modified`). RangeNotSatisfiable when the one range starts past the end;
    a suffix longer than the representation is all of it."""
    header = request.headers.get("Range")
    if header is None or request.method != "GET" or not if_range_matches(request, validators):
        return None
    unit, _, specification = header.partition("=")
    if unit.strip().lower() != "bytes":
        return None
    ranges = [part.strip() for part in specification.split(",") if part.strip()]
    if len(ranges) != 1:
        return None
    if bounded := re.fullmatch(r"([0-9]{1,20})-([0-9]{0,20})", ranges[0]):
        first, last = int(bounded[1]), int(bounded[2]) if bounded[2] else None
        if last is not None and last < first:
            return None
        if first >= length:
            raise RangeNotSatisfiable()
        return first, min(length - 1, length - 1 if last is None else last)
    if suffix := re.fullmatch(r"-([0-9]{1,20})", ranges[0]):
        if int(suffix[1]) == 0 or length == 0:
            raise RangeNotSatisfiable()
        return max(0, length - int(suffix[1])), length - 1
    return None


def if_range_matches(request: flask.Request, validators: Validators) -> bool:
    if_range = request.headers.get("If-Range")
    if if_range is None:
        return True
    if_range = if_range.strip()
    if if_range.startswith(('"', "W/")):
        return if_range == quote_etag(validators.etag)
    date = parse_date(if_range)
    return (date is not None and validators.last_modified is not None
            and validators.last_modified.replace(microsecond=0) == date)


@dataclass(frozen=True)
class Document:
    """A representation held in memory, with its gzip form when that pays."""

    body: bytes
    mimetype: str
    etag: str
    gzipped: bytes | None

    @classmethod
    def of(cls, body: bytes, mimetype: str) -> Document:
        gzipped = gzip.compress(body, compresslevel=9, mtime=0) if len(body) >= COMPRESS_FROM_BYTES else None
        if gzipped is not None and len(gzipped) >= len(body) * 0.9:
            gzipped = None
        return cls(body, mimetype, hashlib.sha256(body).hexdigest()[:32], gzipped)


def cacheable(request: flask.Request, document: Document | bytes, mimetype: str = "application/json", *,
              cache_control: str = "no-cache", headers: dict[str, str] | None = None,
              last_modified: datetime | None = None) -> flask.Response:
    """`document`'s answer: its ETag from its content (one per encoding), 304 on a matching `If-None-Match` (or,
    with `last_modified`, `If-Modified-Since`), gzip when `Accept-Encoding` takes it and it pays, `Vary:
    Accept-Encoding` when it may. `no-cache` (the default) lets a browser keep it and ask each time whether it
    changed, a 304 of a few hundred bytes while it has not."""
    if isinstance(document, bytes):
        document = Document.of(document, mimetype)
    compressed = document.gzipped is not None and accepts_gzip(request)
    validators = Validators(document.etag + ("-gzip" if compressed else ""), last_modified)
    response = flask.Response(status=200, headers=headers or {})
    response.headers["Cache-Control"] = cache_control
    response.set_etag(validators.etag)
    if last_modified is not None:
        response.last_modified = last_modified
    if document.gzipped is not None:
        response.vary.add("Accept-Encoding")
    decided = precondition(request, validators)
    if decided == 412:
        raise precondition_failed(validators)
    if decided == 304:
        response.status_code = 304
        return response
    response.mimetype = document.mimetype
    if compressed:
        response.headers["Content-Encoding"] = "gzip"
    response.set_data(document.gzipped if compressed and document.gzipped is not None else document.body)
    return response


def accepts_gzip(request: flask.Request) -> bool:
    return request.accept_encodings["gzip"] > 0
