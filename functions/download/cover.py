"""Reads the cover an MP3's ID3 tag holds (convert wrote it there: a frame of the video or its attached picture, a
JPEG of at most 600 px) and answers it, conditional on its ETag, as the podcast feed's episode image. Only the tag
at the MP3's start is read, never the audio."""

from __future__ import annotations

import flask
from mutagen.id3 import ID3
from mutagen.id3 import error as ID3Error

from endpoints.conditional import cacheable
from storage.media import StoredMedia


def cover_of(stored: StoredMedia) -> tuple[bytes, str] | None:
    """The first picture in the MP3's tag and its media type; None when it has none."""
    try:
        tag = ID3(stored)
    except ID3Error:  # no tag, or one mutagen cannot read: no cover
        return None
    pictures = tag.getall("APIC")
    return (pictures[0].data, pictures[0].mime) if pictures else None


def cover_response(request: flask.Request, picture: bytes, mimetype: str) -> flask.Response:
    return cacheable(request, picture, mimetype, cache_control="private, no-cache",
                     headers={"X-Content-Type-Options": "nosniff"})
