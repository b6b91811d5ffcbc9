"""Media in GridFS: videos and MP3s in buckets of their own, each file's id the id of its job.

GridFS writes chunks first and the files document last, so an interrupted write leaves chunks no file owns.
Deterministic ids make a second write of the same media collide instead of duplicating it, and `remove` clears
a file together with any such orphan chunks before a retry writes again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import gridfs
from gridfs import GridFSBucket
from gridfs.grid_file import GridOut
from pymongo.database import Database

VIDEOS = "videos"
AUDIO = "audio"
# Larger than GridFS's 255 KiB default: fewer round trips per file; well under the 16 MiB document limit.
CHUNK_BYTES = 1024 * 1024
COPY_BYTES = 1024 * 1024


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

    def open(self, file_id: str) -> GridOut | None:
        try:
            return self.bucket.open_download_stream(file_id)
        except gridfs.errors.NoFile:
            return None

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


def read_chunks(stream: BinaryIO, size: int = COPY_BYTES) -> Iterator[bytes]:
    return iter(lambda: stream.read(size), b"")
