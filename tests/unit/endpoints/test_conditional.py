"""Conditional and range requests (endpoints/conditional.py) against RFC 9110's rules: preconditions in §13.2.2's
order, one byte range or the whole, `If-Range`, and the in-memory documents' ETags, 304s and gzip."""

from __future__ import annotations

import gzip
import os
from datetime import UTC, datetime

import flask
import pytest

from endpoints.conditional import Document, RangeNotSatisfiable, Validators, byte_range, cacheable, precondition
from runtime.answers import HttpError

APP = flask.Flask(__name__)
MODIFIED = datetime(2026, 12, 1, 12, 0, 0, 250_000, tzinfo=UTC)
VALIDATORS = Validators("abc123", MODIFIED)
BEFORE, AT, AFTER = "Tue, 01 Dec 2026 11:59:59 GMT", "Tue, 01 Dec 2026 12:00:00 GMT", "Tue, 01 Dec 2026 12:00:01 GMT"


def decided(method: str = "GET", **headers: str) -> int | None:
    with APP.test_request_context(method=method, headers={name.replace("_", "-"): v for name, v in headers.items()}):
        return precondition(flask.request, VALIDATORS)


@pytest.mark.parametrize(("headers", "method", "expected"), [
    ({}, "GET", None),
    ({"If_Match": '"abc123"'}, "GET", None),
    ({"If_Match": '"other"'}, "GET", 412),
    ({"If_Match": 'W/"abc123"'}, "GET", 412),  # If-Match compares strongly
    ({"If_Match": "*"}, "GET", None),
    ({"If_Unmodified_Since": BEFORE}, "GET", 412),  # in the past
    ({"If_Unmodified_Since": AT}, "GET", None),  # the same second
    ({"If_Unmodified_Since": "yesterday"}, "GET", None),  # not a date: ignored
    ({"If_Match": '"abc123"', "If_Unmodified_Since": BEFORE}, "GET", None),  # If-Match wins
    ({"If_None_Match": '"abc123"'}, "GET", 304),
    ({"If_None_Match": 'W/"abc123"'}, "HEAD", 304),  # If-None-Match compares weakly
    ({"If_None_Match": '"abc123"'}, "POST", 412),
    ({"If_None_Match": '"other"', "If_Modified_Since": AFTER}, "GET", None),  # If-None-Match decides
    ({"If_Modified_Since": AT}, "GET", 304),
    ({"If_Modified_Since": BEFORE}, "GET", None),
    ({"If_Match": '"other"', "If_None_Match": '"abc123"'}, "GET", 412),  # If-Match first
])
def test_preconditions_in_rfc_9110_order(headers: dict[str, str], method: str, expected: int | None) -> None:
    assert decided(method, **headers) == expected


def ranged(range_header: str | None, length: int = 1000, **headers: str) -> tuple[int, int] | None:
    if range_header is not None:
        headers["Range"] = range_header
    with APP.test_request_context(headers={name.replace("_", "-"): v for name, v in headers.items()}):
        return byte_range(flask.request, VALIDATORS, length)


@pytest.mark.parametrize(("header", "expected"), [
    (None, None),
    ("bytes=0-99", (0, 99)),
    ("bytes=900-", (900, 999)),
    ("bytes=900-5000", (900, 999)),
    ("bytes=-100", (900, 999)),
    ("bytes=-999999", (0, 999)),  # a suffix longer than the file: all of it
    ("BYTES = 5-9", (5, 9)),  # the unit is case-insensitive
    ("items=0-1", None),  # another unit: ignored
    ("bytes=0-1,5-9", None),  # several ranges: the whole
    ("bytes=9-5", None),  # not valid: ignored
    ("bytes=abc", None),
])
def test_one_range_or_the_whole(header: str | None, expected: tuple[int, int] | None) -> None:
    assert ranged(header) == expected


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=5000-6000", "bytes=-0"])
def test_a_range_past_the_end_is_not_satisfiable(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable):
        ranged(header)


@pytest.mark.parametrize(("if_range", "expected"), [
    ('"abc123"', (0, 9)), ('W/"abc123"', None), ('"other"', None), (AT, (0, 9)), (BEFORE, None), ("soon", None),
])
def test_if_range_matches_only_the_strong_tag_or_the_exact_date(if_range: str,
                                                                expected: tuple[int, int] | None) -> None:
    assert ranged("bytes=0-9", If_Range=if_range) == expected


def answer(document: Document, **headers: str) -> flask.Response:
    with APP.test_request_context(headers={name.replace("_", "-"): v for name, v in headers.items()}):
        return cacheable(flask.request, document)


def test_a_document_has_an_etag_per_encoding_and_304s_on_it() -> None:
    document = Document.of(b"console.log('vid2mp3');\n" * 200, "text/javascript")
    plain = answer(document)
    assert plain.status_code == 200 and plain.get_data() == document.body
    assert plain.headers["Cache-Control"] == "no-cache" and plain.headers["Vary"] == "Accept-Encoding"
    zipped = answer(document, Accept_Encoding="gzip, br")
    assert zipped.headers["Content-Encoding"] == "gzip" and gzip.decompress(zipped.get_data()) == document.body
    assert len(zipped.get_data()) < len(document.body) / 10
    assert zipped.headers["ETag"] != plain.headers["ETag"]
    again = answer(document, Accept_Encoding="gzip", If_None_Match=zipped.headers["ETag"])
    assert again.status_code == 304 and again.get_data() == b"" and again.headers["ETag"] == zipped.headers["ETag"]
    assert answer(document, If_None_Match=plain.headers["ETag"]).status_code == 304
    assert answer(document, Accept_Encoding="gzip;q=0", If_None_Match=plain.headers["ETag"]).status_code == 304
    with pytest.raises(HttpError) as failed:
        answer(document, If_Match='"stale"')
    assert failed.value.status == 412


def test_a_small_document_is_not_compressed_and_does_not_vary() -> None:
    small = answer(Document.of(b'{"keys": []}', "application/json"), Accept_Encoding="gzip")
    assert "Content-Encoding" not in small.headers and "Vary" not in small.headers
    assert Document.of(os.urandom(4096), "application/octet-stream").gzipped is None  # does not pay
