"""The ZIP of many MP3s: what the stream yields is a ZIP Python's zipfile opens, with stored (not deflated) entries
byte-identical to the MP3s, built one read at a time; repeated names stay apart."""

from __future__ import annotations

import io
import os
import zipfile
from datetime import UTC, datetime

import pytest

from functions.download.zipping import READ_BYTES, MissingMedia, ZipEntry, unique_names, zip_stream


def entry(name: str, data: bytes) -> ZipEntry:
    return ZipEntry(name, len(data), datetime(2026, 12, 7, 21, 30, tzinfo=UTC),
                    lambda: io.BytesIO(data))  # type: ignore[arg-type,return-value]


def test_the_stream_is_a_zip_of_the_mp3s_stored_byte_for_byte_one_read_at_a_time() -> None:
    mp3s = {"talk.mp3": os.urandom(3 * READ_BYTES + 17), "song.mp3": os.urandom(1000), "empty.mp3": b""}
    pieces = list(zip_stream(entry(name, data) for name, data in mp3s.items()))
    # Never more than a read and the headers around it at once.
    assert max(len(piece) for piece in pieces) <= READ_BYTES + 1024
    with zipfile.ZipFile(io.BytesIO(b"".join(pieces))) as archive:
        assert archive.testzip() is None
        assert [info.filename for info in archive.infolist()] == list(mp3s)
        assert all(info.compress_type == zipfile.ZIP_STORED for info in archive.infolist())
        assert {name: archive.read(name) for name in mp3s} == mp3s
        assert archive.getinfo("talk.mp3").date_time == (2026, 12, 7, 21, 30, 0)


def test_an_mp3_gone_mid_stream_breaks_the_stream() -> None:
    gone = ZipEntry("gone.mp3", 10, datetime(2026, 12, 7, tzinfo=UTC), lambda: None)
    with pytest.raises(MissingMedia):
        list(zip_stream([entry("first.mp3", b"x" * 10), gone]))


def test_repeated_names_are_numbered() -> None:
    assert unique_names(["a.mp3", "b.mp3", "A.mp3", "a.mp3"]) == ["a.mp3", "b.mp3", "A (2).mp3", "a (3).mp3"]
