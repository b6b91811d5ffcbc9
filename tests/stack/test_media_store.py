"""GridFS storage on the stack's MongoDB (FerretDB): large files round-trip in small read batches, reads seek
exactly, an interrupted or oversized write leaves nothing, orphan chunks are found."""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import gridfs
import pymongo
import pytest

from storage.media import CHUNK_BYTES, WRITE_BATCH_CHUNKS, WRITES_UNDER_WAY, MediaStore, TooLarge, read_chunks

pytestmark = pytest.mark.stack


@pytest.fixture
def database(endpoints: dict[str, str]) -> Iterator[Any]:
    name = f"vid2mp3_media_{uuid.uuid4().hex[:10]}"
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(endpoints["MONGO_URI"], tz_aware=True)
    yield client[name]
    client.drop_database(name)
    client.close()


def test_a_file_larger_than_one_reply_reads_back_whole(database: Any) -> None:
    # 60 MiB: more than a 48 MB wire message, the size at which an unbatched read broke on FerretDB.
    data = os.urandom(60 * 1024 * 1024 + 12345)
    store = MediaStore(database, "audio")
    stored = store.store("big", read_chunks(io.BytesIO(data)), filename="big.mp3", metadata={})
    assert stored.size_bytes == len(data) and stored.sha256 == hashlib.sha256(data).hexdigest()
    copy = io.BytesIO()
    assert store.copy_to("big", copy)
    assert copy.getvalue() == data


def test_reads_seek_anywhere(database: Any) -> None:
    data = os.urandom(3 * CHUNK_BYTES + 100)
    store = MediaStore(database, "audio")
    store.store("f", [data], filename="f", metadata={})
    media = store.open("f")
    assert media is not None and media.length == len(data)
    for start, size in [(0, 10), (CHUNK_BYTES - 5, 10), (2 * CHUNK_BYTES + 7, CHUNK_BYTES), (len(data) - 3, 10),
                        (17, 0)]:
        media.seek(start)
        assert media.read(size) == data[start:start + size]
    media.seek(0)
    assert media.read() == data
    assert store.open("missing") is None


def test_a_missing_chunk_fails_a_copy_instead_of_shortening_it(database: Any) -> None:
    store = MediaStore(database, "videos")
    store.store("holed", [os.urandom(4 * CHUNK_BYTES)], filename="holed", metadata={})
    database["videos.chunks"].delete_one({"_id": "holed/2"})
    copy = io.BytesIO()
    with pytest.raises(OSError, match="missing chunk 2"):
        store.copy_to("holed", copy)
    assert copy.tell() == 2 * CHUNK_BYTES


def test_an_oversized_write_leaves_nothing(database: Any) -> None:
    store = MediaStore(database, "videos")
    with pytest.raises(TooLarge):
        store.store("x", [os.urandom(CHUNK_BYTES)] * 5, filename="x", metadata={}, max_bytes=3 * CHUNK_BYTES)
    assert database["videos.files"].count_documents({}) == database["videos.chunks"].count_documents({}) == 0


def test_an_insert_failing_mid_stream_fails_the_write_and_leaves_nothing(database: Any) -> None:
    store = MediaStore(database, "videos")
    # A chunk already stored under the id of the write's sixth: the second batch of inserts fails.
    database["videos.chunks"].insert_one({"_id": "clash/5", "files_id": "other", "n": 0, "data": b""})
    pieces_read = 0

    def pieces() -> Iterator[bytes]:
        nonlocal pieces_read
        for _ in range(16):
            pieces_read += 1
            yield os.urandom(CHUNK_BYTES)

    with pytest.raises(pymongo.errors.BulkWriteError):
        store.store("clash", pieces(), filename="clash", metadata={})
    assert pieces_read < 16, "the failure surfaced only after the whole stream was read"
    assert not store.exists("clash")
    assert database["videos.chunks"].count_documents({"files_id": "clash"}) == 0


def test_orphan_chunks_are_found_and_removed(database: Any) -> None:
    store = MediaStore(database, "videos")
    store.store("kept", [b"a" * 10], filename="kept", metadata={})
    database["videos.chunks"].insert_one({"files_id": "orphan", "n": 0, "data": b"left behind"})
    assert store.orphan_chunk_owners() == ["orphan"]
    store.remove_chunks_of("orphan")
    assert store.orphan_chunk_owners() == [] and store.exists("kept")


class Interrupted(Exception):
    pass


def test_remove_clears_what_a_write_killed_before_its_files_document_left(database: Any,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    store = MediaStore(database, "audio")

    def pieces_then_killed() -> Iterator[bytes]:
        yield os.urandom(40 * CHUNK_BYTES)  # more chunks than one batch of deletes by _id
        raise Interrupted

    with monkeypatch.context() as killed:
        killed.setattr(store, "remove", lambda file_id: None)  # a killed process cleans nothing up
        with pytest.raises(Interrupted):
            store.store("cut", pieces_then_killed(), filename="cut.mp3", metadata={})
    assert database["audio.chunks"].count_documents({"files_id": "cut"}) == 40
    assert store.orphan_chunk_owners() == ["cut"]
    store.remove("cut")
    assert database["audio.chunks"].count_documents({}) == 0


def test_a_write_is_recorded_under_way_until_its_files_document_is_in(database: Any,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    store, writes = MediaStore(database, "audio"), database[WRITES_UNDER_WAY]
    store.store("whole", [b"a" * 10], filename="whole.mp3", metadata={})
    assert writes.count_documents({}) == 0

    def pieces_then_killed() -> Iterator[bytes]:
        yield os.urandom(2 * WRITE_BATCH_CHUNKS * CHUNK_BYTES)  # a batch of chunks written, at least
        raise Interrupted

    def database_gone(file_id: str) -> None:
        raise pymongo.errors.AutoReconnect("gone")

    with monkeypatch.context() as cut_off:  # the clean-up cannot reach the database either
        cut_off.setattr(store, "remove", database_gone)
        with pytest.raises(pymongo.errors.AutoReconnect):
            store.store("cut", pieces_then_killed(), filename="cut.mp3", metadata={})
    [record] = writes.find()
    assert (record["bucket"], record["file_id"]) == ("audio", "cut")
    assert store.orphan_chunk_owners() == ["cut"]
    assert not store.settle_abandoned("cut", record["started_at"] - timedelta(seconds=1)), "another write's record"
    assert store.settle_abandoned("cut", record["started_at"])
    assert store.orphan_chunk_owners() == [] and writes.count_documents({}) == 0 and store.exists("whole")


def test_files_are_gridfs_both_ways(database: Any) -> None:
    """Any driver's GridFS reads what MediaStore writes, and MediaStore reads and removes what a GridFS writer
    with ObjectId chunk ids wrote."""
    data = os.urandom(2 * CHUNK_BYTES + 77)
    ours = MediaStore(database, "audio")
    ours.store("ours", [data], filename="ours.mp3", metadata={"owner": "u"})
    bucket = gridfs.GridFSBucket(database, bucket_name="audio")
    assert bucket.open_download_stream("ours").read() == data
    chunk_ids = [chunk["_id"] for chunk in database["audio.chunks"].find({"files_id": "ours"}, sort=[("n", 1)])]
    assert chunk_ids == ["ours/0", "ours/1", "ours/2"]

    bucket.upload_from_stream_with_id("theirs", "theirs.mp3", data, chunk_size_bytes=CHUNK_BYTES)
    theirs = ours.open("theirs")
    assert theirs is not None
    theirs.seek(CHUNK_BYTES + 5)
    assert theirs.read(10) == data[CHUNK_BYTES + 5:CHUNK_BYTES + 15]
    theirs.seek(0)
    assert theirs.read() == data
    copy = io.BytesIO()
    assert ours.copy_to("theirs", copy) and copy.getvalue() == data
    ours.remove("theirs")
    assert database["audio.chunks"].count_documents({"files_id": "theirs"}) == 0 and not ours.exists("theirs")
    assert ours.exists("ours")
