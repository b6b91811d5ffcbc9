"""`trim_silence`: the leading and trailing silence of the chosen audio track, measured on the decoded audio by
ffmpeg's `silencedetect` (every channel below the threshold for at least the minimum length), as the range of the
audio between them, in seconds of the video: convert applies it as the user's own trim would be (chapters move with
it)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import ffmpeg

from events import FailureReason
from transcoding import ffmpeg_tools
from transcoding.ffmpeg_tools import Progress, Rejected

# silencedetect's report lines: `silence_start: 6.99995`, `silence_end: 10.0078 | silence_duration: 3.00785`.
REPORT = re.compile(r"silence_(start|end): (-?\d+(?:\.\d+)?)")
# How near the audio's first sample a silence must start to be leading (silencedetect says 0 for the first).
LEADING_TOLERANCE_SECONDS = 0.01
# How near the audio's end a silence must end to be trailing: a container's duration may be rounded to its time
# base, and silencedetect ends the last silence at its last frame's end.
TRAILING_TOLERANCE_SECONDS = 0.1


@dataclass(frozen=True)
class Audible:
    """Where the sound starts and ends (seconds of the video), None at either end that has no silence to trim."""

    start_seconds: float | None
    end_seconds: float | None


class SilenceReport:
    """silencedetect's silences, from ffmpeg's stderr line by line: the first (which may lead) and the last (which
    may trail) are all that matter, so a long recording's many pauses take no memory."""

    def __init__(self) -> None:
        self.first: tuple[float, float | None] | None = None
        self.last: tuple[float, float | None] | None = None

    def line(self, text: str) -> None:
        found = REPORT.search(text)
        if found is None:
            return
        kind, seconds = found.group(1), float(found.group(2))
        if kind == "start":
            self.last = (seconds, None)
            if self.first is None:
                self.first = self.last
        elif self.last is not None and self.last[1] is None:
            self.last = (self.last[0], seconds)
            if self.first is not None and self.first[1] is None:
                self.first = self.last

    def audible(self, audio_start: float, audio_end: float | None) -> Audible:
        start = end = None
        leading = self.first is not None and self.first[0] <= audio_start + LEADING_TOLERANCE_SECONDS
        if self.first is not None and leading:
            if self.first[1] is None or (audio_end is not None
                                         and self.first[1] >= audio_end - TRAILING_TOLERANCE_SECONDS):
                raise Rejected(FailureReason.INVALID_OPTIONS, "trim_silence: the audio is silent throughout "
                                                              "(nothing louder than the threshold)")
            start = self.first[1]
        if self.last is not None and audio_end is not None and not (leading and self.last is self.first) \
                and (self.last[1] is None or self.last[1] >= audio_end - TRAILING_TOLERANCE_SECONDS):
            end = self.last[0]
        return Audible(start_seconds=start, end_seconds=end)


def detection_command(source: Path, *, track: int, threshold_db: float, min_seconds: float) -> list[str]:
    """Decodes the track into silencedetect, output discarded; the report is on stderr at level `info`."""
    stream = ffmpeg.input(str(source), **ffmpeg_tools.input_options()).output(
        "-", f="null", map=f"0:a:{track:d}", vn=None, sn=None,
        af=f"silencedetect=noise={threshold_db:.1f}dB:d={min_seconds:.3f}")
    stream = stream.global_args("-nostdin", "-hide_banner", "-loglevel", "info", "-nostats", "-progress", "pipe:1")
    return list(stream.compile(cmd="ffmpeg"))


def measure(source: Path, *, track: int, threshold_db: float, min_seconds: float, audio_start: float,
            audio_end: float | None, timeout: float, heartbeat: Callable[[Progress], bool]) -> Audible:
    """The audible range of the track, supervised like an encode (the lease is renewed as it goes)."""
    report = SilenceReport()
    command = detection_command(source, track=track, threshold_db=threshold_db, min_seconds=min_seconds)
    with ffmpeg_tools.Encoding(command, timeout=timeout, on_stderr_line=report.line) as run:
        run.wait(expected_duration=None if audio_end is None else audio_end - audio_start, heartbeat=heartbeat)
    return report.audible(audio_start, audio_end)
