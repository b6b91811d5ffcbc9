"""Unfinished resumable uploads as stored (functions/upload/resumable.py speaks the protocol): a GridFS video whose
files document carries the upload's tus state in `metadata.resumable`. Its `length` is the offset (the bytes its
chunks surely hold); the offset, the state and the lease of the one request writing change together, in that one
document, by compare-and-set. So the reconcile sweep of orphan chunks sees a file owning its chunks, and the quota of
media bytes counts what is stored. Found and removed here too for those who clean up after them: reconcile (the
expired ones) and erasure (a deleted job's or account's).

Once finished (its source and covers extracted, its job recorded) an upload's state is cleared and its video is on
its way out: the upload function removes it in the background, paced, chunks first and the files document last, so
that an instance that dies part way leaves a file that still owns what is left, and the reconcile sweep removes it
(`remove_finished`)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pymongo.database import Database

from runtime.clock import now
from storage.media import VIDEOS, ChunkWriter, MediaStore

# Where an unfinished upload keeps its tus state, in its files document.
STATE = "metadata.resumable"
# The request writing to an upload holds it this long past its last chunk; a writer that died frees it then.
WRITER_LEASE = timedelta(seconds=60)
# When a finished upload's job was recorded (its video is then removed).
FINISHED_AT = "metadata.finished_at"


class LostLease(Exception):
    """Another request took the upload over (this one stalled past its lease), or it was removed."""


class WriterBusy(Exception):
    """Another request is writing to the upload."""


class OffsetMoved(Exception):
    """The upload's offset is not the one the request started from (None: the upload is gone)."""

    def __init__(self, offset: int | None) -> None:
        super().__init__(f"the upload's offset is {offset}")
        self.offset = offset


@dataclass
class UnfinishedUploads:
    videos: MediaStore
    lifetime: timedelta

    def create(self, upload_id: str, *, owner_id: str, filename: str, length: int, fields: dict[str, str]) -> None:
        """A files document of length 0, written before its chunks: the file grows as they land."""
        moment = now()
        self.videos.create_empty(upload_id, filename=filename, metadata={
            "owner_id": owner_id, "job_id": upload_id,
            "resumable": {"length": length, "fields": fields, "created_at": moment,
                          "expires_at": moment + self.lifetime, "writer": None, "container": None}})

    def get(self, upload_id: str) -> dict[str, Any] | None:
        # By _id alone (the local FerretDB answers only that from an index); the owner is compared by the caller.
        return self.videos.files.find_one({"_id": upload_id})

    def claim(self, document: dict[str, Any], lease: timedelta = WRITER_LEASE) -> str:
        """Takes the upload's lease at its offset (compare-and-set: of two requests at once, one gets `WriterBusy`);
        the writer's id."""
        writer = uuid.uuid4().hex
        moment = now()
        free = {"$or": [{f"{STATE}.writer": None}, {f"{STATE}.writer.until": {"$lt": moment}}]}
        claimed = self.videos.files.update_one(
            {"_id": document["_id"], "length": document["length"], **free},
            {"$set": {f"{STATE}.writer": {"id": writer, "until": moment + lease}}})
        if claimed.matched_count != 1:
            current = self.videos.files.find_one({"_id": document["_id"]}, {"length": 1}) or {"length": None}
            if current["length"] != document["length"]:
                raise OffsetMoved(current["length"])
            raise WriterBusy(document["_id"])
        return writer

    def renew(self, upload_id: str, writer: str, lease: timedelta) -> bool:
        """Keeps the lease `writer`'s for `lease` from now; False when it is no longer its."""
        return self.videos.files.update_one({"_id": upload_id, f"{STATE}.writer.id": writer},
                                            {"$set": {f"{STATE}.writer.until": now() + lease}}).matched_count == 1

    def release(self, upload_id: str, writer: str) -> None:
        self.videos.files.update_one({"_id": upload_id, f"{STATE}.writer.id": writer},
                                     {"$set": {f"{STATE}.writer": None}})

    def advance(self, upload_id: str, writer: str, offset: int | None, container: str | None = None) -> None:
        """Moves the offset on (None: keeps it) and renews the lease and the expiry, while the lease is `writer`'s."""
        moment = now()
        changes: dict[str, Any] = {f"{STATE}.writer.until": moment + WRITER_LEASE,
                                   f"{STATE}.expires_at": moment + self.lifetime}
        if offset is not None:
            changes["length"] = offset
        if container is not None:
            changes[f"{STATE}.container"] = container
        if self.videos.files.update_one({"_id": upload_id, f"{STATE}.writer.id": writer},
                                        {"$set": changes}).matched_count != 1:
            raise LostLease(upload_id)

    @contextmanager
    def appending(self, document: dict[str, Any], after_batch: Callable[[int], None]) -> Iterator[Appending]:
        """Writes bytes at the upload's offset (its part last chunk read back and written again completed), a few
        chunks per round trip with `after_batch(offset)` after each; `flush()` writes what is left."""
        upload_id, offset, chunk_size = document["_id"], document["length"], document["chunkSize"]
        first = offset // chunk_size
        kept = self.videos.chunk_data(upload_id, first)[:offset % chunk_size] if offset % chunk_size else b""
        with ChunkWriter(lambda start, pieces: self.videos.write_chunks(upload_id, start, pieces), first=first,
                         head=kept, after_batch=lambda end: after_batch(end * chunk_size)) as writer:
            yield Appending(self.videos, upload_id, writer, first, kept)

    def finished(self, upload_id: str) -> None:
        """The upload is complete and its job recorded: its video is on its way out."""
        self.videos.files.update_one({"_id": upload_id}, {"$set": {FINISHED_AT: now()}, "$unset": {STATE: ""}})


@dataclass
class Appending:
    videos: MediaStore
    upload_id: str
    writer: ChunkWriter
    first_chunk: int
    kept: bytes

    def take_back(self) -> None:
        """The bytes appended are discarded: the stored part chunk restored, the chunks they added deleted."""
        self.writer.settle()
        if self.kept:
            self.videos.write_chunks(self.upload_id, self.first_chunk, [self.kept])
        self.videos.delete_chunks_from(self.upload_id, self.first_chunk + (1 if self.kept else 0),
                                       self.writer.last_written)


def remove_unfinished(database: Database[dict[str, Any]], owner_id: str, upload_id: str | None = None) -> int:
    """Removes the owner's unfinished uploads (only `upload_id`, when given) with their bytes; how many."""
    videos = MediaStore(database, VIDEOS)
    query: dict[str, Any] = {"metadata.owner_id": owner_id, STATE: {"$exists": True}}
    if upload_id is not None:
        # By _id alone, the one query the local FerretDB answers from an index; the rest compared here.
        document = videos.files.find_one({"_id": upload_id}, {"metadata": 1}) or {}
        metadata = document.get("metadata") or {}
        if metadata.get("owner_id") != owner_id or "resumable" not in metadata:
            return 0
        query = {"_id": upload_id}
    removed = 0
    for document in list(videos.files.find(query, {"_id": 1})):
        videos.remove(document["_id"])
        removed += 1
    return removed


def remove_finished(database: Database[dict[str, Any]], is_kept: Callable[[str], bool],
                    each: Callable[[list[dict[str, Any]]], Iterable[dict[str, Any]]] = iter,
                    pace: Callable[[], None] = lambda: None) -> int:
    """Removes, paced, the videos of finished uploads that are still there (their instance died before removing
    them); how many. `is_kept(id)`: the video is still a job's source (a job recorded before sources existed keeps
    its whole video until its MP3 is made)."""
    videos = MediaStore(database, VIDEOS)
    removed = 0
    for document in each(list(videos.files.find({STATE: {"$exists": False}}, {"_id": 1}))):
        if not is_kept(document["_id"]):
            videos.clear(document["_id"], pace=pace)
            removed += 1
    return removed


def remove_expired(database: Database[dict[str, Any]], has_job: Callable[[str], bool],
                   each: Callable[[list[dict[str, Any]]], Iterable[dict[str, Any]]] = iter,
                   pace: Callable[[], None] = lambda: None) -> int:
    """Removes the unfinished uploads past their expiry, with their bytes; how many. One whose job exists
    (`has_job`) had finished but for its last write (clearing its state): that write is done instead. Their quota
    reservations have long lapsed by then (jobs/quotas.py: RESERVATION_LIFETIME is shorter than any upload's
    lifetime). `each` and `pace` are the caller's pacing (reconcile's: storage/pacing.py): the uploads
    one by one for as long as it allows, and a rest between a file's chunk deletions."""
    videos = MediaStore(database, VIDEOS)
    removed = 0
    for document in each(list(videos.files.find({f"{STATE}.expires_at": {"$lt": now()}}, {"_id": 1}))):
        if has_job(document["_id"]):
            # Its job was recorded: it is a finished upload's video, which remove_finished takes.
            videos.files.update_one({"_id": document["_id"]}, {"$set": {FINISHED_AT: now()}, "$unset": {STATE: ""}})
            continue
        videos.remove(document["_id"], pace=pace)
        removed += 1
    return removed
