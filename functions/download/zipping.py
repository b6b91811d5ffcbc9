"""Streams several stored MP3s as one ZIP, built as it goes: Python's zipfile writes into a sink that hands each
piece on as soon as it is written, so the function holds one read of one MP3 at a time, never the ZIP. Entries are
stored, not deflated (MP3 frames do not compress), with their sizes and CRC in a data descriptor after each one
(the sink cannot seek back) and ZIP64 records for any MP3 past 4 GiB."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath

from storage.media import StoredMedia

READ_BYTES = 256 * 1024


class UnseekableSink(io.RawIOBase):
    """Collects what zipfile writes until it is taken; counts it so zipfile can ask where it is (`tell`)."""

    def __init__(self) -> None:
        super().__init__()
        self.pending = bytearray()
        self.position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self.pending += data
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position

    def take(self) -> bytes:
        taken = bytes(self.pending)
        self.pending.clear()
        return taken


@dataclass(frozen=True)
class ZipEntry:
    """One MP3: its name in the ZIP, its size, when it was made, and how to open its stored bytes (None: gone)."""

    name: str
    size: int
    made_at: datetime
    open: Callable[[], StoredMedia | None]


class MissingMedia(RuntimeError):
    """An MP3 went between the check and its turn in the stream (it expired, or its job was deleted)."""


def zip_stream(entries: Iterable[ZipEntry]) -> Iterator[bytes]:
    sink = UnseekableSink()
    with zipfile.ZipFile(sink, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for entry in entries:
            stored = entry.open()
            if stored is None:
                raise MissingMedia(f"{entry.name} is gone")
            info = zipfile.ZipInfo(entry.name, date_time=entry.made_at.timetuple()[:6])
            info.compress_type = zipfile.ZIP_STORED
            info.file_size = entry.size  # decides whether the entry needs ZIP64 records
            try:
                with archive.open(info, mode="w") as member:
                    while chunk := stored.read(READ_BYTES):
                        member.write(chunk)
                        yield sink.take()
            finally:
                stored.close()
            yield sink.take()
    yield sink.take()


def unique_names(names: Iterable[str]) -> list[str]:
    """The names (`<stem>.mp3`), a ` (2)`, ` (3)`… added before the extension of repeats: two videos of the same
    name stay two files in the ZIP."""
    unique: list[str] = []
    taken: set[str] = set()
    for name in names:
        path = PurePosixPath(name)
        candidate, number = name, 1
        while candidate.lower() in taken:
            number += 1
            candidate = f"{path.stem} ({number}){path.suffix}"
        taken.add(candidate.lower())
        unique.append(candidate)
    return unique
