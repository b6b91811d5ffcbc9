"""The tus headers a resumable upload reads: `Upload-Metadata` pairs, `Upload-Checksum`, integer headers, and the
HTTP dates it writes; every malformed value a 400 that names the header. The clients' PATCHes are above the least
one may bring."""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import flask
import pytest
import vid2mp3_client.resumable

from functions.upload.resumable import header_integer, http_date, parse_checksum, parse_metadata
from runtime.answers import HttpError
from runtime.settings import UploadSettings

ROOT = Path(__file__).resolve().parents[4]


def b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


@pytest.mark.parametrize(("header", "metadata"), [
    ("", {}),
    (f"filename {b64('holiday.mp4')}", {"filename": "holiday.mp4"}),
    (f"filename {b64('été.mov')},bitrate {b64('128')}", {"filename": "été.mov", "bitrate": "128"}),
    (f" filename  {b64('a.mp4')} , ,bitrate {b64('320')} ,", {"filename": "a.mp4", "bitrate": "320"}),
    ("is_confidential", {"is_confidential": ""}),  # a key may come alone
    (f"title,bitrate {b64('64')}", {"title": "", "bitrate": "64"}),
    (f"filename {b64('a')},filename {b64('b')}", {"filename": "b"}),
])
def test_upload_metadata_is_pairs_of_key_and_base64(header: str, metadata: dict[str, str]) -> None:
    assert parse_metadata(header) == metadata


@pytest.mark.parametrize("header", [
    "filename holiday.mp4",  # not base64
    "filename aGVsbG8",  # base64 without its padding
    "filename " + b64(bytes([0xFF, 0xFE])),  # base64, but not of UTF-8
    "filename a$b=",
    "filename aGVs!bG8=",  # base64 of "hello" but for one character outside the alphabet
])
def test_upload_metadata_that_is_not_base64_of_utf8_is_400(header: str) -> None:
    with pytest.raises(HttpError) as refused:
        parse_metadata(header)
    assert (refused.value.status, refused.value.code) == (400, "bad_header")
    assert "Upload-Metadata" in refused.value.message and "'filename'" in refused.value.message


DIGEST = hashlib.sha1(b"the bytes").digest()  # noqa: S324 - tus's checksum extension names sha1


@pytest.mark.parametrize(("header", "digest"), [
    (None, None), ("", None), ("   ", None),  # an empty header vouches for nothing
    (f"sha1 {b64(DIGEST)}", DIGEST),
    (f"  sha1 {b64(DIGEST)}  ", DIGEST),
])
def test_upload_checksum_is_a_sha1_digest_in_base64(header: str | None, digest: bytes | None) -> None:
    assert parse_checksum(header) == digest


@pytest.mark.parametrize(("header", "words"), [
    (f"md5 {b64(DIGEST)}", "sha1"),
    (f"SHA1 {b64(DIGEST)}", "sha1"),
    (f"sha256 {b64(DIGEST)}", "sha1"),
    (b64(DIGEST), "sha1"),  # no algorithm
    ("sha1 not-base64!", "base64"),
    (f"sha1 {b64(DIGEST).rstrip('=')}", "base64"),
])
def test_another_algorithm_or_a_digest_not_in_base64_is_400(header: str, words: str) -> None:
    with pytest.raises(HttpError) as refused:
        parse_checksum(header)
    assert (refused.value.status, refused.value.code) == (400, "bad_header")
    assert "Upload-Checksum" in refused.value.message and words in refused.value.message


def read_integer(headers: dict[str, str]) -> int:
    with flask.Flask(__name__).test_request_context("/files/", method="POST", headers=headers):
        return header_integer(flask.request, "Upload-Length")


@pytest.mark.parametrize(("value", "number"), [("0", 0), ("12", 12), ("0012", 12), ("2147483648", 2**31)])
def test_an_integer_header_is_read(value: str, number: int) -> None:
    assert read_integer({"Upload-Length": value}) == number


# Superscript digits pass str.isdigit() but not int(): they were a 500.
@pytest.mark.parametrize("value", ["", "-1", "+1", "1.5", "1e3", "0x10", "1_000", "12 13", "twelve",
                                   "\u00b2", "1\u00b3"])
def test_an_integer_header_that_is_not_a_non_negative_integer_is_400(value: str) -> None:
    with pytest.raises(HttpError) as refused:
        read_integer({"Upload-Length": value})
    assert (refused.value.status, refused.value.code) == (400, "bad_header")
    assert refused.value.message == "Upload-Length must be a non-negative integer"


def test_a_missing_integer_header_is_400() -> None:
    with pytest.raises(HttpError) as refused:
        read_integer({})
    assert refused.value.status == 400


@pytest.mark.parametrize("moment", [
    datetime(2026, 3, 1, 14, 5, 9, tzinfo=UTC),
    datetime(2026, 3, 1, 16, 5, 9, 999999, tzinfo=timezone(timedelta(hours=2))),
])
def test_upload_expires_is_an_http_date_in_gmt(moment: datetime) -> None:
    assert http_date(moment) == "Sun, 01 Mar 2026 14:05:09 GMT"


def test_the_web_pages_and_the_commands_patches_bring_more_than_the_least() -> None:
    """Their PATCHes but the last are never refused as too small (RESUMABLE_MIN_PATCH_BYTES, by default)."""
    least = UploadSettings.model_fields["resumable_min_patch_bytes"].default
    page = (ROOT / "functions" / "web" / "static" / "app.js").read_text()
    chunk = re.search(r"const UPLOAD_CHUNK_BYTES = (\d+) \* 1024 \* 1024;", page)
    assert chunk is not None, "the web page's tus chunk size"
    assert int(chunk.group(1)) * 1024 * 1024 >= least
    assert vid2mp3_client.resumable.CHUNK_BYTES >= least
