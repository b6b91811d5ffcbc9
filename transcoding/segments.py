"""Encodes a job's audio as time segments at once, one locked-down ffmpeg per segment, and joins their MP3 frames
in order as each segment finishes: consumes the local copy of the video and a plan, produces the joined MP3's
bytes as a stream (the caller stores it while the later segments still encode) and the finished local file."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from transcoding import ffmpeg_tools
from transcoding.ffmpeg_tools import AudioShape, Encoding, Progress, Stopped
from transcoding.mp3join import Mp3Joiner, SegmentPlan


@dataclass
class SegmentTimes:
    """When each segment's ffmpeg finished, in seconds from the start of them all."""

    started: float = field(default_factory=time.monotonic)
    finished: dict[int, float] = field(default_factory=dict)

    def note(self, index: int) -> None:
        self.finished.setdefault(index, round(time.monotonic() - self.started, 3))


class SegmentEncodings:
    """One ffmpeg per segment, all started at once and supervised as one: progress summed over the segments and
    reported to `heartbeat` about once a second; every ffmpeg stopped when the heartbeat answers False (Stopped),
    when the time runs out or one fails (Rejected), and on leaving the `with` block."""

    def __init__(self, commands: list[list[str]], seconds_per_segment: list[float], *, timeout: float) -> None:
        self.seconds_per_segment = seconds_per_segment
        self.times = SegmentTimes()
        self._stack = ExitStack()
        try:
            self.encodings = [self._stack.enter_context(Encoding(command, timeout=timeout)) for command in commands]
        except BaseException:
            self._stack.close()
            raise
        for encoding, seconds in zip(self.encodings, seconds_per_segment, strict=True):
            encoding.expected_duration = seconds

    def __enter__(self) -> SegmentEncodings:
        return self

    def __exit__(self, *_: object) -> None:
        self._stack.close()

    def progress(self) -> Progress:
        total = sum(self.seconds_per_segment) or 1.0
        done = sum(encoding.progress.percent / 100 * seconds
                   for encoding, seconds in zip(self.encodings, self.seconds_per_segment, strict=True))
        fraction = min(1.0, done / total)
        elapsed = time.monotonic() - self.times.started
        return Progress(percent=fraction * 100, eta_seconds=elapsed / fraction - elapsed if fraction > 0 else None)

    def wait_for(self, index: int, heartbeat: Callable[[Progress], bool],
                 heartbeat_seconds: float = ffmpeg_tools.HEARTBEAT_SECONDS) -> None:
        """Returns once segment `index` is encoded; raises Rejected or Stopped (and the `with` block stops all)."""
        encoding = self.encodings[index]
        try:
            while not encoding.exited_within(heartbeat_seconds):
                encoding.check_time()
                if not heartbeat(self.progress()):
                    raise Stopped()
            encoding.check_exit_status()
        except BaseException:
            # Every ffmpeg ends now, before the caller's clean-up (removing the MP3 it was storing) takes its time.
            self.stop()
            raise
        self.times.note(index)

    def stop(self) -> None:
        for encoding in self.encodings:
            encoding.stop()


def segment_commands(source: Path, outputs: list[Path], segments: tuple[SegmentPlan, ...], *, bitrate_kbps: int,
                     max_duration: float, shape: AudioShape | None = None) -> list[list[str]]:
    return [ffmpeg_tools.conversion_command(source, output, copy=False, bitrate_kbps=bitrate_kbps,
                                            max_duration=max_duration, start_seconds=segment.start_seconds,
                                            duration_seconds=segment.duration_seconds, shape=shape)
            for segment, output in zip(segments, outputs, strict=True)]


def finished_segments(encodings: SegmentEncodings, outputs: list[Path], segments: tuple[SegmentPlan, ...],
                      heartbeat: Callable[[Progress], bool]) -> Iterator[tuple[bytes, SegmentPlan]]:
    """Each segment's MP3 in order, as soon as its ffmpeg has finished."""
    for index, (segment, output) in enumerate(zip(segments, outputs, strict=True)):
        encodings.wait_for(index, heartbeat)
        yield output.read_bytes(), segment
        output.unlink()


def joined_mp3(parts: Iterable[tuple[bytes, SegmentPlan]], target: Path, head: bytes = b"") -> Iterator[bytes]:
    """The MP3 joined from segments given in order, piece by piece as each comes, also written to `target`, after
    `head` (its ID3 tag).

    Its first frame, the Info/LAME tag, describes the whole file and is known only at the end: the stream has
    that many zero bytes in its place, and `target` gets the real tag once the stream is exhausted (a stored copy
    gets it from `target`: MediaStore.rewrite_head, which rewrites the first chunk: head and tag fit in it)."""
    joiner = Mp3Joiner()
    with target.open("wb") as file:
        if head:
            file.write(head)
            yield head
        for mp3, segment in parts:
            for piece in joiner.add(mp3, skip_frames=segment.skip_frames, keep_frames=segment.kept_frames):
                if file.tell() == len(head):
                    placeholder = bytes(joiner.tag_frame_length)
                    file.write(placeholder)
                    yield placeholder
                file.write(piece)
                yield piece
        rest = joiner.close()
        file.write(rest)
        yield rest
        file.seek(len(head))
        file.write(joiner.tag_frame())
