"""The GridFS chunk writer: batches of whole chunks in order, each followed by `after_batch`, the rest and a part chunk
on `flush`, a stored part chunk completed, a failed batch raised at the next wait; small chunks, a recording write."""

from __future__ import annotations

import threading
import time

import pytest

from storage import media
from storage.media import ChunkWriter

CHUNK = 4
BATCH = 3


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(media, "CHUNK_BYTES", CHUNK)
    monkeypatch.setattr(media, "WRITE_BATCH_CHUNKS", BATCH)


class Recorder:
    """A write function and an after_batch that log, in one list, what reached them and in which order."""

    def __init__(self, fail_on_call: int | None = None) -> None:
        self.log: list[tuple[str, int, list[bytes]]] = []
        self.writes = 0
        self._fail_on_call = fail_on_call

    def write(self, first: int, chunks: list[bytes]) -> None:
        self.writes += 1
        if self.writes == self._fail_on_call:
            raise OSError("the store went away")
        self.log.append(("write", first, chunks))

    def after_batch(self, end: int) -> None:
        self.log.append(("after", end, []))

    def written(self) -> list[tuple[int, list[bytes]]]:
        return [(first, chunks) for kind, first, chunks in self.log if kind == "write"]


def test_whole_chunks_go_a_batch_at_a_time_in_order_and_flush_writes_the_rest() -> None:
    data = bytes(range(50))
    recorder = Recorder()
    with ChunkWriter(recorder.write, after_batch=recorder.after_batch) as writer:
        for start in range(0, len(data), 5):
            writer.add(data[start:start + 5])
        writer.flush()
    # In pieces of 5 bytes: a batch of 12 goes once 15, 25, 40 and 50 bytes are in; flush writes the 2 left.
    assert recorder.log == [
        ("write", 0, [data[0:4], data[4:8], data[8:12]]), ("after", 3, []),
        ("write", 3, [data[12:16], data[16:20], data[20:24]]), ("after", 6, []),
        ("write", 6, [data[24:28], data[28:32], data[32:36]]), ("after", 9, []),
        ("write", 9, [data[36:40], data[40:44], data[44:48]]), ("after", 12, []),
        ("write", 12, [data[48:50]]),
    ]
    assert (writer.next_chunk, writer.last_written) == (13, 12)


def test_flush_with_nothing_buffered_writes_nothing() -> None:
    recorder = Recorder()
    with ChunkWriter(recorder.write, after_batch=recorder.after_batch) as writer:
        writer.add(b"x" * BATCH * CHUNK)
        writer.flush()
    assert recorder.log == [("write", 0, [b"xxxx"] * BATCH), ("after", BATCH, [])]
    assert writer.last_written == BATCH - 1


def test_a_stored_part_chunk_is_written_again_completed() -> None:
    """Appending at offset 22 of a file: chunk 5 holds 2 bytes (`head`), which the next bytes complete."""
    recorder = Recorder()
    with ChunkWriter(recorder.write, first=5, head=b"ab", after_batch=recorder.after_batch) as writer:
        writer.add(b"cdefghi")
        writer.flush()
    assert recorder.written() == [(5, [b"abcd", b"efgh", b"i"])]
    assert (writer.next_chunk, writer.last_written) == (8, 7)


def test_the_head_alone_is_written_back_by_flush() -> None:
    recorder = Recorder()
    with ChunkWriter(recorder.write, first=2, head=b"ab") as writer:
        writer.flush()
    assert recorder.written() == [(2, [b"ab"])]


def test_a_batch_past_the_head_counts_from_its_chunk() -> None:
    recorder = Recorder()
    with ChunkWriter(recorder.write, first=5, head=b"ab", after_batch=recorder.after_batch) as writer:
        writer.add(b"c" * 10)
        writer.flush()
    assert recorder.log == [("write", 5, [b"abcc", b"cccc", b"cccc"]), ("after", 8, [])]


def test_one_batch_is_in_flight_at_a_time() -> None:
    """The add that fills a second batch waits for the first to be written: memory stays at two batches."""
    release = threading.Event()
    written: list[int] = []

    def slow_write(first: int, chunks: list[bytes]) -> None:
        if first == 0:
            assert release.wait(5)
        written.append(first)

    with ChunkWriter(slow_write) as writer:
        writer.add(b"a" * BATCH * CHUNK)  # handed to the writer thread, which waits
        second = threading.Thread(target=writer.add, args=(b"b" * BATCH * CHUNK,))
        second.start()
        second.join(0.2)
        assert second.is_alive() and written == []
        release.set()
        second.join(5)
        assert not second.is_alive()
    assert written == [0, BATCH]


def test_leaving_the_block_waits_for_the_batch_in_flight() -> None:
    written: list[int] = []

    def slow_write(first: int, chunks: list[bytes]) -> None:
        time.sleep(0.1)
        written.append(first)

    with ChunkWriter(slow_write) as writer:
        writer.add(b"a" * BATCH * CHUNK)
    assert written == [0]


def test_a_failed_batch_surfaces_at_the_next_batch_not_before() -> None:
    recorder = Recorder(fail_on_call=1)
    writer = ChunkWriter(recorder.write, after_batch=recorder.after_batch)
    writer.add(b"a" * BATCH * CHUNK)  # fails on the writer thread
    writer.add(b"b" * (BATCH * CHUNK - 1))  # no batch filled: no wait, nothing raised yet
    with pytest.raises(OSError, match="the store went away"):
        writer.add(b"b")  # fills the next batch: waits for the failed one first
    assert recorder.log == []  # no after_batch for the failed batch, and nothing written after it
    writer.__exit__(None, None, None)


@pytest.mark.parametrize("wait", ["settle", "flush", "exit"])
def test_a_failed_batch_surfaces_at_settle_flush_and_exit(wait: str) -> None:
    recorder = Recorder(fail_on_call=1)
    with pytest.raises(OSError, match="the store went away"), \
            ChunkWriter(recorder.write, after_batch=recorder.after_batch) as writer:
        writer.add(b"a" * (BATCH * CHUNK + 2))
        if wait == "settle":
            writer.settle()
        elif wait == "flush":
            writer.flush()
    assert recorder.log == []  # flush wrote nothing after the failed batch
