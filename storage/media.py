"""Media in GridFS: what each job keeps of its upload (its source: the audio tracks; its covers), its MP3, and the
resumable uploads still arriving, in buckets of their own, each file's id the id of its job (a cover's `<job>/<kind>`).

The layout is GridFS's (a `<bucket>.files` document per file; `<bucket>.chunks` documents with `files_id`, `n`
and `data`), so any driver's GridFS reads it. One thing is chosen: a chunk's `_id` is `<file id>/<n>`, not an
ObjectId, and this module reads and deletes chunks one `_id` at a time. A lookup by `_id` alone is the one query
every MongoDB server answers from its primary index. FerretDB 1.x, the local stack's, answers a query on
`files_id` by decoding every chunk of the bucket, so its cost grows with all the media stored, not with the file
read (docs/PERFORMANCE.md). Files written with ObjectId chunk ids (by another GridFS writer) are still read and
removed, by `files_id`.

Chunks are written first and the files document last, so an interrupted write leaves chunks no file owns.
Deterministic ids make a second write of the same media collide instead of duplicating it, and `remove` clears
a file together with any such orphan chunks before a retry writes again. A write records itself under way
(`media_writes`) until its files document is in, so what a killed writer left is found from those few records
(`abandoned_writes`), never by reading every chunk.
"""

from __future__ import annotations

import hashlib
import io
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from bson import Binary
from pymongo import ASCENDING, DeleteOne, ReplaceOne
from pymongo.collection import Collection
from pymongo.cursor import Cursor
from pymongo.database import Database

from runtime import telemetry

# A job's source: every audio track of its upload, copied (transcoding/extraction.py), under the job's id.
SOURCES = "sources"
# A job's covers: the frame at 10 % of its video (`<job>/frame`, a JPEG) and its attached picture (`<job>/attached`).
COVERS = "covers"
COVER_KINDS = ("frame", "attached")
# Resumable (tus) uploads while their bytes arrive, and, once finished, until their paced removal.
VIDEOS = "videos"
AUDIO = "audio"
# A fanned-out job's audio track (copied out of its video once) and the MP3 segments encoded from it.
TRACKS = "tracks"
SEGMENTS = "segments"
# Larger than GridFS's 255 KiB default: fewer round trips per file; well under the 16 MiB document limit.
CHUNK_BYTES = 1024 * 1024
COPY_BYTES = 1024 * 1024
# Chunks per insert while writing: few round trips, and a writer's memory stays at a few MiB whatever the size
# (pymongo's own GridFS writer buffers up to 48 MB per insert).
WRITE_BATCH_CHUNKS = 4
# Chunks per delete command: one round trip deletes this many, each by its _id. Few: the local FerretDB lets one
# write command through at a time and commits each delete on its own (about 30 ms each on this machine), so a batch
# of 32 held every other write (a converter's lease renewal, which is how it learns of a cancel) for a second.
DELETE_BATCH_CHUNKS = 8
# Chunks requested ahead while a whole file is copied out: the server reads and sends the next while this process
# writes the last (7 MiB on the local FerretDB: 0.14 s one chunk at a time, 0.08 s two ahead).
PREFETCH_CHUNKS = 2
# Chunks fetched per round trip when reading a file by files_id. A server may answer a query with more than one
# reply can carry (FerretDB does not cap a batch at 16 MiB), so reads ask for small batches themselves.
READ_BATCH_CHUNKS = 8


# Writes under way: `{"_id": "<bucket>:<file id>", "bucket", "file_id", "started_at"}` from before a stored file's
# first chunk until its files document is in.
WRITES_UNDER_WAY = "media_writes"


def chunk_id(file_id: str, n: int) -> str:
    return f"{file_id}/{n}"


def cover_file_id(job_id: str, kind: str) -> str:
    return f"{job_id}/{kind}"


class TooLarge(Exception):
    """A stream went past its size limit; nothing of it is left stored."""


@dataclass(frozen=True)
class StoredFile:
    file_id: str
    size_bytes: int
    sha256: str


class ChunkWriter:
    """Bytes written as a stored file's chunks from chunk `first` on (`head`: the part of that chunk already
    stored, written again completed). Whole chunks go a batch per round trip through `write(first, chunks)` on a
    writer thread while the next batch is read, one batch in flight, in order, and `after_batch(end)` follows each
    there (`end`: the first chunk not written); `flush()` writes what is left, a last part chunk too. Memory: two
    batches. Leaving the `with` block waits for the batch in flight, so nothing is written after it."""

    def __init__(self, write: Callable[[int, list[bytes]], None], *, first: int = 0, head: bytes = b"",
                 after_batch: Callable[[int], None] = lambda end: None) -> None:
        self._write, self._after_batch = write, after_batch
        self.next_chunk = first  # the first chunk not handed on yet
        self.last_written = first - 1  # the last chunk handed on (with the part chunk `flush` wrote)
        self._buffer = bytearray(head)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chunk-writer")
        self._in_flight: Future[None] | None = None

    def add(self, piece: bytes) -> None:
        self._buffer += piece
        while len(self._buffer) >= WRITE_BATCH_CHUNKS * CHUNK_BYTES:
            first, pieces = self._take(WRITE_BATCH_CHUNKS)
            self.settle()

            self._in_flight = self._thread.submit(self._write_batch, first, pieces)

    def _write_batch(self, first: int, pieces: list[bytes]) -> None:
        self._write(first, pieces)
        self._after_batch(first + len(pieces))

    def flush(self) -> None:
        """Writes all that is buffered, here, once the batch in flight is in."""
        self.settle()
        if self._buffer:
            first, pieces = self._take(-(-len(self._buffer) // CHUNK_BYTES))
            self._write(first, pieces)

    def settle(self) -> None:
        """Waits for the batch in flight; raises what it raised."""
        if self._in_flight is not None:
            pending, self._in_flight = self._in_flight, None
            pending.result()

    def _take(self, count: int) -> tuple[int, list[bytes]]:
        size = min(len(self._buffer), count * CHUNK_BYTES)
        pieces = [bytes(self._buffer[start:min(start + CHUNK_BYTES, size)]) for start in range(0, size, CHUNK_BYTES)]
        del self._buffer[:size]
        first = self.next_chunk
        self.next_chunk += count
        self.last_written = first + len(pieces) - 1
        return first, pieces

    def __enter__(self) -> ChunkWriter:
        return self

    def __exit__(self, *exception: object) -> None:
        try:
            self.settle()
        finally:
            self._thread.shutdown(wait=True)


class MediaStore:
    def __init__(self, db: Database[dict[str, Any]], bucket_name: str) -> None:
        self.bucket = bucket_name
        self.files = db[f"{bucket_name}.files"]
        self.chunks = db[f"{bucket_name}.chunks"]
        self.writes = db[WRITES_UNDER_WAY]
        self._indexed = False

    @telemetry.traced("gridfs write")
    def store(self, file_id: str, pieces: Iterable[bytes], *, filename: str, metadata: dict[str, Any],
              max_bytes: int | None = None) -> StoredFile:
        """Streams `pieces` into GridFS under `file_id`, hashing as it goes; on any failure removes what it wrote."""
        self._ensure_indexes()
        digest = hashlib.sha256()
        size = 0

        def insert(first: int, pieces: list[bytes]) -> None:
            self.chunks.insert_many([{"_id": chunk_id(file_id, n), "files_id": file_id, "n": n, "data": Binary(data)}
                                     for n, data in enumerate(pieces, start=first)])

        under_way = {"_id": f"{self.bucket}:{file_id}"}
        self.writes.replace_one(under_way, {**under_way, "bucket": self.bucket, "file_id": file_id,
                                            "started_at": datetime.now(UTC)}, upsert=True)
        writer = ChunkWriter(insert)
        try:
            with writer:
                for piece in pieces:
                    size += len(piece)
                    if max_bytes is not None and size > max_bytes:
                        raise TooLarge(f"more than {max_bytes} bytes")
                    digest.update(piece)
                    writer.add(piece)
                writer.flush()
            # sha256 travels in the files document; GridFS's md5 is deprecated.
            self.files.insert_one({"_id": file_id, "length": size, "chunkSize": CHUNK_BYTES,
                                   "uploadDate": datetime.now(UTC), "filename": filename, "metadata": metadata,
                                   "sha256": digest.hexdigest()})
        except BaseException:
            self.remove(file_id)
            self.writes.delete_one(under_way)
            raise
        self.writes.delete_one(under_way)
        return StoredFile(file_id=file_id, size_bytes=size, sha256=digest.hexdigest())

    def rewrite_head(self, file_id: str, source: BinaryIO) -> StoredFile:
        """For a file stored while its first bytes were still a placeholder (an MP3's tag, which describes the whole
        file): writes its first chunk again from `source`, the finished copy of the same bytes, and records the
        sha256 of `source` (a stored stream is hashed as it goes, so the placeholder's would be wrong)."""
        document = self.files.find_one({"_id": file_id}, {"length": 1, "chunkSize": 1})
        if document is None:
            raise FileNotFoundError(f"stored file {file_id!r} is missing")
        digest = hashlib.file_digest(source, "sha256").hexdigest()  # type: ignore[arg-type]
        source.seek(0)
        head = source.read(document["chunkSize"])
        written = self.chunks.update_one({"_id": chunk_id(file_id, 0)}, {"$set": {"data": Binary(head)}})
        if written.matched_count != 1:
            raise FileNotFoundError(f"stored file {file_id!r} has no chunk 0 of ours")
        self.files.update_one({"_id": file_id}, {"$set": {"sha256": digest}})
        return StoredFile(file_id=file_id, size_bytes=document["length"], sha256=digest)

    # --- a file written piece by piece, across requests (functions/upload/resumable.py) -----------------------

    def create_empty(self, file_id: str, *, filename: str, metadata: dict[str, Any]) -> None:
        """A files document of length 0, written before its chunks: the file grows by `write_chunks` and the
        writer moves `length` on as the chunks land, so the file always owns its chunks."""
        self._ensure_indexes()
        self.files.insert_one({"_id": file_id, "length": 0, "chunkSize": CHUNK_BYTES, "uploadDate": datetime.now(UTC),
                               "filename": filename, "metadata": metadata})

    def chunk_data(self, file_id: str, n: int) -> bytes:
        chunk = self.chunks.find_one({"_id": chunk_id(file_id, n)})
        return bytes(chunk["data"]) if chunk is not None else b""

    def write_chunks(self, file_id: str, first: int, pieces: list[bytes]) -> None:
        """Writes chunks `first`, `first` + 1, ... in one round trip, replacing what is there: a last chunk written
        partly is completed by writing it again."""
        self.chunks.bulk_write([
            ReplaceOne({"_id": chunk_id(file_id, n)}, {"_id": chunk_id(file_id, n), "files_id": file_id, "n": n,
                                                        "data": Binary(data)}, upsert=True)
            for n, data in enumerate(pieces, start=first)], ordered=True)

    def delete_chunks_from(self, file_id: str, n: int, until: int) -> None:
        """Deletes chunks `n` to `until` (inclusive) of the file: what a write that is taken back had added."""
        if until >= n:
            self.chunks.bulk_write([DeleteOne({"_id": chunk_id(file_id, index)}) for index in range(n, until + 1)],
                                   ordered=False)

    def _ensure_indexes(self) -> None:
        """The indexes the GridFS spec asks of every writer, so that other drivers' reads (by files_id) use one."""
        if not self._indexed:
            self.chunks.create_index([("files_id", ASCENDING), ("n", ASCENDING)], unique=True)
            self.files.create_index([("filename", ASCENDING), ("uploadDate", ASCENDING)])
            self._indexed = True

    def store_file(self, file_id: str, source: BinaryIO, *, filename: str, metadata: dict[str, Any]) -> StoredFile:
        return self.store(file_id, read_chunks(source), filename=filename, metadata=metadata)

    def open(self, file_id: str) -> StoredMedia | None:
        document = self.files.find_one({"_id": file_id})
        if document is None:
            return None
        return StoredMedia(self.chunks, document)

    def documents(self, query: dict[str, Any] | None = None, fields: tuple[str, ...] = ("metadata",)) \
            -> list[dict[str, Any]]:
        """The files documents matching `query` (on their `metadata`, say), with their `_id` and `fields`."""
        return list(self.files.find(query or {}, dict.fromkeys(fields, 1)))

    def bytes_held_by(self, owner_id: str, *, unfinished_only: bool = False) -> int:
        """The bytes of the owner's files, an unfinished resumable upload counting all it declared (Upload-Length):
        what it is about to hold (storage/unfinished_uploads.py). `unfinished_only`: those uploads alone (a finished
        one's video is no longer the owner's: it is on its way out)."""
        total = 0
        query: dict[str, Any] = {"metadata.owner_id": owner_id}
        if unfinished_only:
            query["metadata.resumable"] = {"$exists": True}
        for document in self.files.find(query, {"length": 1, "metadata.resumable.length": 1}):
            declared = ((document.get("metadata") or {}).get("resumable") or {}).get("length")
            total += int(declared if declared is not None else document.get("length", 0))
        return total

    def exists(self, file_id: str) -> bool:
        return self.files.count_documents({"_id": file_id}, limit=1) == 1

    @telemetry.traced("gridfs read")
    def copy_to(self, file_id: str, destination: BinaryIO) -> bool:
        """Writes the stored file to `destination`; False when there is no such file."""
        source = self.open(file_id)
        if source is None:
            return False
        with source:
            for chunk in source.prefetched(PREFETCH_CHUNKS):
                destination.write(chunk)
        return True

    def remove(self, file_id: str, pace: Callable[[], None] = lambda: None) -> None:
        """Deletes the file and every chunk that names it, whether or not its files document was ever written;
        `pace` is called between its commands (a sweep's pacing rests there: storage/pacing.py).

        The files document goes first: a reader then finds no file, never a file with chunks missing."""
        document = self.files.find_one({"_id": file_id}, {"length": 1, "chunkSize": 1})
        self.files.delete_one({"_id": file_id})
        expected = -(-document["length"] // document["chunkSize"]) if document else 0
        if self._delete_chunks_by_id(file_id, expected, pace) < expected:
            self.remove_chunks_of(file_id)  # written with other chunk ids

    def clear(self, file_id: str, pace: Callable[[], None] = lambda: None) -> None:
        """Deletes a file that no one reads any more, chunks first and its files document last: a clear that stops
        part way leaves a file that still owns the chunks left (and says how many there were), so a later clear
        (or `remove`) finishes it by _id, paced, instead of an orphan sweep deleting them in one command."""
        document = self.files.find_one({"_id": file_id}, {"length": 1, "chunkSize": 1})
        if document is None:
            self.remove(file_id, pace)
            return
        # By _id only (the files this clears were written by this module; a query on files_id would decode every
        # chunk of the bucket on the local FerretDB): a clear that stopped part way deleted a prefix of them.
        self._delete_chunks_by_id(file_id, -(-document["length"] // document["chunkSize"]), pace)
        self.files.delete_one({"_id": file_id})

    def _delete_chunks_by_id(self, file_id: str, expected: int, pace: Callable[[], None]) -> int:
        """Deletes chunks 0, 1, ... of the file by _id: at least `expected` of them, then on until a batch finds
        gaps (chunks are written in order, so an interrupted write left a prefix of them)."""
        deleted = start = 0
        while True:
            pace()
            batch = [DeleteOne({"_id": chunk_id(file_id, n)}) for n in range(start, start + DELETE_BATCH_CHUNKS)]
            found = self.chunks.bulk_write(batch, ordered=False).deleted_count
            deleted += found
            start += DELETE_BATCH_CHUNKS
            if start >= expected and found < DELETE_BATCH_CHUNKS:
                return deleted

    def remove_chunks_of(self, file_id: Any) -> None:
        """Deletes every chunk naming `file_id`, whatever its _id (chunks another GridFS writer wrote)."""
        self.chunks.delete_many({"files_id": file_id})

    def settle_abandoned(self, file_id: str, started_at: datetime, pace: Callable[[], None] = lambda: None) -> bool:
        """Ends the record of a write that started at `started_at` and never finished: removes the chunks it left
        unless its files document is in after all (killed between the two). A write of the same file started since
        has a record of its own, left alone. True when chunks were removed."""
        under_way = {"_id": f"{self.bucket}:{file_id}", "started_at": started_at}
        if self.exists(file_id):
            self.writes.delete_one(under_way)
            return False
        if self.writes.delete_one(under_way).deleted_count == 0:
            return False
        self.remove(file_id, pace)
        return True

    def orphan_chunk_owners(self) -> list[Any]:
        """Ids that chunks name but no files document has: what interrupted writes left behind. It reads every chunk
        of the bucket on FerretDB: for tests and audits, never a sweep (`abandoned_writes`)."""
        chunk_owners = set(self.chunks.distinct("files_id"))
        file_ids = set(self.files.distinct("_id"))
        return sorted(chunk_owners - file_ids, key=str)


def abandoned_writes(db: Database[dict[str, Any]], started_before: datetime) -> list[dict[str, Any]]:
    """The records of writes under way that started before `started_before`: those whose writer was killed (no write
    takes that long)."""
    return list(db[WRITES_UNDER_WAY].find({"started_at": {"$lt": started_before}}))


def read_chunks(stream: BinaryIO | io.RawIOBase, size: int = COPY_BYTES) -> Iterator[bytes]:
    return iter(lambda: stream.read(size), b"")


@dataclass(frozen=True)
class KeptSource:
    """What a job keeps of its upload: the bytes of its source and covers, and the covers' file ids by kind."""

    stored_bytes: int
    covers: dict[str, str]


class JobSources:
    """What jobs keep of their uploads, as the upload stores it and the converters read it: a job's source (bucket
    `sources`; a job recorded before sources existed, without `source_format`, has its whole video in `videos`)
    and its covers."""

    def __init__(self, db: Database[dict[str, Any]]) -> None:
        self.db = db
        self.sources, self.covers, self.videos = MediaStore(db, SOURCES), MediaStore(db, COVERS), MediaStore(db, VIDEOS)

    def keep(self, job_id: str, owner_id: str, *, source: Path, source_format: str, name: str,
             covers: dict[str, tuple[Path, str]], received_bytes: int, container: str) -> KeptSource:
        """Stores the job's source (the file `source`, named `name`) and its covers (kind -> (file, content type)).
        On a failure, what was stored stays: the caller removes it (`remove_kept`)."""
        metadata = {"owner_id": owner_id, "job_id": job_id}
        with source.open("rb") as file:
            stored = self.sources.store_file(job_id, file, filename=name, metadata={
                **metadata, "format": source_format, "received_bytes": received_bytes, "container": container})
        stored_bytes, cover_ids = stored.size_bytes, {}
        for kind, (path, content_type) in covers.items():
            with path.open("rb") as file:
                cover = self.covers.store_file(cover_file_id(job_id, kind), file, filename=path.name,
                                               metadata={**metadata, "kind": kind, "content_type": content_type})
            stored_bytes += cover.size_bytes
            cover_ids[kind] = cover.file_id
        return KeptSource(stored_bytes, cover_ids)

    def remove_kept(self, job_id: str) -> None:
        """The source and covers stored under the job's id, whatever its record says (safe to repeat)."""
        self.sources.remove(job_id)
        for kind in COVER_KINDS:
            self.covers.remove(cover_file_id(job_id, kind))

    def store_of(self, job: dict[str, Any]) -> MediaStore:
        return self.sources if job.get("source_format") else self.videos

    def copy_source_to(self, job: dict[str, Any], destination: BinaryIO) -> bool:
        """Writes the job's source to `destination`; False when it is gone."""
        return self.store_of(job).copy_to(job["video_id"], destination)

    def copy_covers_to(self, job: dict[str, Any], folder: Path) -> dict[str, Path] | None:
        """The job's covers, each copied to a file in `folder`, by kind; None for a job recorded before sources
        (its pictures are in its video)."""
        if not job.get("source_format"):
            return None
        found = {}
        for kind, file_id in (job.get("covers") or {}).items():
            if kind in COVER_KINDS:
                target = folder / f"cover-{kind}"
                with target.open("wb") as file:
                    if self.covers.copy_to(file_id, file):
                        found[kind] = target
        return found

    def exists(self, job: dict[str, Any]) -> bool:
        return self.store_of(job).exists(job["video_id"])

    def remove(self, job: dict[str, Any], pace: Callable[[], None] = lambda: None) -> None:
        remove_job_source(self.db, job, pace)


def remove_job_source(db: Database[dict[str, Any]], job: dict[str, Any],
                      pace: Callable[[], None] = lambda: None) -> None:
    """Deletes what a job kept of its upload: its source and its covers. A job recorded before sources existed (no
    `source_format`) kept its whole video as its source. Safe to repeat."""
    bucket = SOURCES if job.get("source_format") else VIDEOS
    MediaStore(db, bucket).remove(job["video_id"], pace=pace)
    covers = MediaStore(db, COVERS)
    for kind in COVER_KINDS:
        covers.remove(cover_file_id(job["_id"], kind), pace=pace)


def remove_job_media(db: Database[dict[str, Any]], job: dict[str, Any]) -> None:
    """Deletes every stored byte of a job: its source and covers, what is left of its resumable upload's video, its
    MP3 (whose id is the job's, or a fan-out join's own), a fan-out's track and segments, with any chunks an
    interrupted write left. Safe to repeat."""
    remove_job_source(db, job)
    MediaStore(db, VIDEOS).remove(job["video_id"])
    audio = MediaStore(db, AUDIO)
    audio.remove(job["_id"])
    for document in list(audio.files.find({"metadata.job_id": job["_id"], "_id": {"$ne": job["_id"]}}, {"_id": 1})):
        audio.remove(document["_id"])
    remove_fan_out_media(db, job["_id"])


def remove_fan_out_media(db: Database[dict[str, Any]], job_id: str) -> None:
    """Every audio track and segment stored for the job's fan-outs, of any attempt."""
    for bucket in (TRACKS, SEGMENTS):
        store = MediaStore(db, bucket)
        for document in list(store.files.find({"metadata.job_id": job_id}, {"_id": 1})):
            store.remove(document["_id"])


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

    def prefetched(self, ahead: int) -> Iterator[bytes]:
        """The whole file, chunk by chunk, with the next `ahead` chunks requested by _id on other connections
        meanwhile. A file whose chunks have other ids is read in order instead, from the first chunk not found."""
        count = -(-self.length // self.chunk_size)

        def fetch(n: int) -> dict[str, Any] | None:
            return self._chunks.find_one({"_id": chunk_id(self.file_id, n)})

        pool = ThreadPoolExecutor(max_workers=ahead, thread_name_prefix="chunk-prefetch")
        try:
            requested = deque(pool.submit(fetch, n) for n in range(min(ahead, count)))
            for n in range(count):
                chunk = requested.popleft().result()
                if chunk is None:
                    self.seek(n * self.chunk_size)
                    yield from read_chunks(self)
                    return
                if n + ahead < count:
                    requested.append(pool.submit(fetch, n + ahead))
                yield bytes(chunk["data"])
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _next_chunk(self) -> bytes:
        index = self._position // self.chunk_size
        chunk = None if self._cursor is not None else self._chunks.find_one({"_id": chunk_id(self.file_id, index)})
        if chunk is None:
            chunk = self._next_chunk_by_files_id(index)
        if chunk is None or chunk["n"] != index:
            raise OSError(f"stored file {self.file_id!r} is missing chunk {index}")
        self._buffer, self._buffer_start = bytes(chunk["data"]), index * self.chunk_size
        return self._buffer

    def _next_chunk_by_files_id(self, index: int) -> dict[str, Any] | None:
        """For a file whose chunks have other ids: a cursor over its chunks by files_id and n, from `index` on."""
        if self._cursor is None or self._buffer_start + len(self._buffer) != index * self.chunk_size:
            if self._cursor is not None:
                self._cursor.close()
            self._cursor = self._chunks.find({"files_id": self.file_id, "n": {"$gte": index}},
                                             sort=[("n", 1)], batch_size=READ_BATCH_CHUNKS)
        return next(self._cursor, None)

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
