"""Signed download links: a URL that downloads one job's MP3 without a token, for the email and for software an
owner hands it to.

`<download URL>/<job id>?expires=<unix time>&key=<key id>&signature=<base64url HMAC-SHA256>`, the signature over
the path below the download URL (the job id for the MP3; `<job id>/chapters.json` for its chapters,
`<job id>/chapters/<n>.mp3` and `<job id>/chapters.zip` for its chapter files), the id of the
MP3 it was made for, the expiry and the owner's credential generation (accounts/credentials.py), with a server-side
key (the Secret's `download-link-keys`). A link opens the one document it was signed for. So a link is unguessable
(256 bits), opens that one MP3 only (a changed job, MP3 or expiry is a changed message: 403), ends with the MP3's
retention (410), dies with the job (deleted or cancelled: 404) and with the account (deleted: 404), and stops when
the owner changes their password (another generation, a changed message: 403). Links are never logged: the
functions log no request lines (functions-framework's server writes no access log), and no code here logs one.
The cover in an MP3's tag is signed likewise, for `<job id>/cover.jpg`.

Keys: `DOWNLOAD_LINK_KEYS` is `<id>:<base64url key>[,<id>:<key>...]`; the first signs, every one verifies. To
rotate: put a new key first, keep the old one after it until the last link it signed has expired (the MP3
retention, 24 h by default), then remove it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime

from runtime.answers import NOT_FOUND, HttpError

MIN_KEY_BYTES = 32
LINK_PARAMETERS = ("expires", "key", "signature")
TAMPERED = HttpError(403, "invalid_link", "this download link is not valid (it was changed or is incomplete)")
EXPIRED = HttpError(410, "gone", "this download link has expired, and so has the MP3")


class InvalidKeys(ValueError):
    """DOWNLOAD_LINK_KEYS is not a list of `<id>:<base64url key of 32 bytes or more>`."""


def parse_keys(text: str) -> dict[str, bytes]:
    keys: dict[str, bytes] = {}
    for entry in (part.strip() for part in text.split(",")):
        key_id, _, encoded = entry.partition(":")
        try:
            key = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except ValueError:
            raise InvalidKeys(f"key {key_id!r} is not base64url") from None
        if not key_id or not key_id.isalnum() or len(key) < MIN_KEY_BYTES or key_id in keys:
            raise InvalidKeys(f"each key must be <alphanumeric id>:<base64url of {MIN_KEY_BYTES}+ bytes>, ids unique")
        keys[key_id] = key
    return keys


def signature(key: bytes, path: str, audio_id: str, expires: int, generation: int) -> str:
    digest = hmac.new(key, f"{path}\n{audio_id}\n{expires}\n{generation}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def chapters_path(job_id: str) -> str:
    """Where the download function serves a job's chapters (the Podcasting 2.0 JSON chapters document)."""
    return f"{job_id}/chapters.json"


def cover_path(job_id: str) -> str:
    """Where the download function serves the cover in a job's MP3 (the podcast feed's episode image)."""
    return f"{job_id}/cover.jpg"


def chapter_file_path(job_id: str, number: int) -> str:
    """Where the download function serves one of a job's chapter files (`split=chapters`), numbered from 1."""
    return f"{job_id}/chapters/{number}.mp3"


def chapter_files_zip_path(job_id: str) -> str:
    """Where the download function serves all of a job's chapter files as one ZIP."""
    return f"{job_id}/chapters.zip"


class DownloadLinks:
    def __init__(self, keys: str, public_download_url: str, *,
                 generation_of: Callable[[str], int | None]) -> None:
        """`generation_of(owner id)`: the account's credential generation, None once it has ended."""
        self.keys = parse_keys(keys)
        self.generation_of = generation_of
        self.signing_key_id = next(iter(self.keys))
        self.base_url = public_download_url.rstrip("/")

    def link(self, path: str, audio_id: str, expires_at: datetime, owner_id: str) -> str | None:
        """A link to `path` below the download URL (a job id: its MP3; `chapters_path(job id)`: its chapters); None
        when the owner's account has ended."""
        generation = self.generation_of(owner_id)
        if generation is None:
            return None
        expires = int(expires_at.timestamp())
        query = urllib.parse.urlencode({
            "expires": expires, "key": self.signing_key_id,
            "signature": signature(self.keys[self.signing_key_id], path, audio_id, expires, generation)})
        return f"{self.base_url}/{path}?{query}"

    @staticmethod
    def is_link(arguments: dict[str, str]) -> bool:
        return any(name in arguments for name in LINK_PARAMETERS)

    def check(self, path: str, audio_id: str, owner_id: str, arguments: dict[str, str]) -> None:
        """Raises 404 once the owner's account has ended, 403 unless the arguments sign `path` for this MP3 and the
        owner's current credential generation with one of our keys, then 410 past the expiry."""
        key = self.keys.get(arguments.get("key", ""))
        expires = arguments.get("expires", "")
        if key is None or not (expires.isascii() and expires.isdigit()) or len(expires) > 12:
            raise TAMPERED
        generation = self.generation_of(owner_id)
        if generation is None:
            raise NOT_FOUND
        expected = signature(key, path, audio_id, int(expires), generation)
        if not hmac.compare_digest(expected, arguments.get("signature", "")):
            raise TAMPERED
        if int(expires) <= datetime.now(UTC).timestamp():
            raise EXPIRED
