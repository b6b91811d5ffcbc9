"""Media in GridFS: videos and MP3s in buckets of their own, each file's id the id of its job.

GridFS writes chunks first and the files document last, so an interrupted write leaves chunks no file owns.
Deterministic ids make a second write of the same media collide instead of duplicating it, and `remove` clears
a file together with any such orphan chunks before a retry writes again.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO

import gridfs.synchronous.grid_file
from gridfs import GridFSBucket
from pymongo.collection import Collection
from pymongo.cursor import Cursor
from pymongo.database import Database

VIDEOS = "videos"
AUDIO = "audio"
# Larger than GridFS's 255 KiB default: fewer round trips per file; well under the 16 MiB document limit.
CHUNK_BYTES = 1024 * 1024
COPY_BYTES = 1024 * 1024
# Chunks fetched per round trip when reading. A server may answer a query with more than one reply can carry
# (FerretDB does not cap a batch at 16 MiB), so reads ask for small batches themselves.
READ_BATCH_CHUNKS = 8
# pymongo buffers up to 48 MB of chunks per insert while writing a file, which costs an upload several times
# that in memory; a few chunks per insert keep an upload's footprint flat at no cost in speed (docs/BENCHMARKS.md).
gridfs.synchronous.grid_file._UPLOAD_BUFFER_SIZE = 4 * CHUNK_BYTES


class TooLarge(Exception):
    """A stream went past its size limit; nothing of it is left stored."""


@dataclass(frozen=True)
class StoredFile:
    file_id: str
    size_bytes: int
    sha256: str


class MediaStore:
    def __init__(self, db: Database[dict[str, Any]], bucket_name: str) -> None:
        self.db = db
        self.bucket_name = bucket_name
        self.bucket = GridFSBucket(db, bucket_name=bucket_name, chunk_size_bytes=CHUNK_BYTES)

    def store(self, file_id: str, chunks: Iterable[bytes], *, filename: str, metadata: dict[str, Any],
              max_bytes: int | None = None) -> StoredFile:
        """Streams `chunks` into GridFS under `file_id`, hashing as it goes; on any failure removes what it wrote."""
        digest = hashlib.sha256()
        size = 0
        stream = self.bucket.open_upload_stream_with_id(file_id, filename, metadata=metadata)
        try:
            for chunk in chunks:
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise TooLarge(f"more than {max_bytes} bytes")
                digest.update(chunk)
                stream.write(chunk)
            # sha256 travels in the files document; GridFS's md5 is deprecated.
            setattr(stream, "sha256", digest.hexdigest())  # noqa: B010 - GridIn stores extra attributes
            stream.close()
        except BaseException:
            stream.abort()
            self.remove(file_id)
            raise
        return StoredFile(file_id=file_id, size_bytes=size, sha256=digest.hexdigest())

    def store_file(self, file_id: str, source: BinaryIO, *, filename: str, metadata: dict[str, Any]) -> StoredFile:
        return self.store(file_id, read_chunks(source), filename=filename, metadata=metadata)

    def open(self, file_id: str) -> StoredMedia | None:
        document = self.db[f"{self.bucket_name}.files"].find_one({"_id": file_id})
        if document is None:
            return None
        return StoredMedia(self.db[f"{self.bucket_name}.chunks"], document)

    def exists(self, file_id: str) -> bool:
        return self.db[f"{self.bucket_name}.files"].count_documents({"_id": file_id}, limit=1) == 1

    def copy_to(self, file_id: str, destination: BinaryIO) -> bool:
        """Writes the stored file to `destination`; False when there is no such file."""
        source = self.open(file_id)
        if source is None:
            return False
        for chunk in read_chunks(source):
            destination.write(chunk)
        return True

    def remove(self, file_id: str) -> None:
        """Deletes the file and every chunk that names it, whether or not its files document was ever written."""
        self.db[f"{self.bucket_name}.files"].delete_one({"_id": file_id})
        self.db[f"{self.bucket_name}.chunks"].delete_many({"files_id": file_id})

    def orphan_chunk_owners(self) -> list[Any]:
        """Ids that chunks name but no files document has: what interrupted writes left behind."""
        chunk_owners = set(self.db[f"{self.bucket_name}.chunks"].distinct("files_id"))
        file_ids = set(self.db[f"{self.bucket_name}.files"].distinct("_id"))
        return sorted(chunk_owners - file_ids, key=str)


def read_chunks(stream: BinaryIO | io.RawIOBase, size: int = COPY_BYTES) -> Iterator[bytes]:
    return iter(lambda: stream.read(size), b"")


def remove_job_media(db: Database[dict[str, Any]], job: dict[str, Any]) -> None:
    """Deletes every stored byte of a job: its video and its MP3 (whose id is the job's), with any chunks an
    interrupted write left. Safe to repeat."""
    MediaStore(db, VIDEOS).remove(job["video_id"])
    MediaStore(db, AUDIO).remove(job["_id"])


class StoredMedia(io.RawIOBase):
    """A stored file, read chunk by chunk in small batches; seekable, for ranged downloads."""

    def __init__(self, chunks: Collection[dict[str, Any]], document: dict[str, Any]) -> None:
        super().__init__()
        self._chunks = chunks
        self.file_id = document["_id"]
        self.length: int = document["length"]
        self.chunk_size: int = document["chunkSize"]
        self.upload_date: datetime = document["uploadDate"]
        self._position = 0
        self._cursor: Cursor[dict[str, Any]] | None = None
        self._buffer = b""
        self._buffer_start = 0  # file offset of self._buffer[0]

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.length}[whence]
        self._position = max(0, min(self.length, base + offset))
        return self._position

    def _next_chunk(self) -> bytes:
        index = self._position // self.chunk_size
        if self._cursor is None or self._buffer_start + len(self._buffer) != index * self.chunk_size:
            if self._cursor is not None:
                self._cursor.close()
            self._cursor = self._chunks.find({"files_id": self.file_id, "n": {"$gte": index}},
                                             sort=[("n", 1)], batch_size=READ_BATCH_CHUNKS)
        chunk = next(self._cursor, None)
        if chunk is None or chunk["n"] != index:
            raise OSError(f"stored file {self.file_id!r} is missing chunk {index}")
        self._buffer, self._buffer_start = bytes(chunk["data"]), index * self.chunk_size
        return self._buffer

    def read(self, size: int = -1) -> bytes:
        end = self.length if size is None or size < 0 else min(self.length, self._position + size)
        parts = []
        while self._position < end:
            inside = self._buffer_start <= self._position < self._buffer_start + len(self._buffer)
            buffer = self._buffer if inside else self._next_chunk()
            offset = self._position - self._buffer_start
            part = buffer[offset:offset + end - self._position]
            parts.append(part)
            self._position += len(part)
        return b"".join(parts)

    def readinto(self, target: Any) -> int:
        data = self.read(len(target))
        target[:len(data)] = data
        return len(data)

    def close(self) -> None:
        if self._cursor is not None:
            self._cursor.close()
        super().close()
