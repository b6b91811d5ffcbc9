"""ffprobe and ffmpeg, locked down for untrusted input: local files only, accepted containers only, bounded in
time, memory and output, and the result checked against the probe (ffmpeg exits 0 on some broken inputs)."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ffmpeg
from mutagen import MutagenError
from mutagen.mp3 import MP3, MPEGInfo

from events import FailureReason
from events.options import MAX_CHAPTERS, metadata_text
from runtime import telemetry
from transcoding.media_formats import FORMAT_WHITELIST, PROTOCOL_WHITELIST

PROBE_TIMEOUT_SECONDS = 30
# Address space per ffmpeg/ffprobe process: ample for audio work, fatal for a decompression bomb.
MEMORY_LIMIT_BYTES = 1024 * 1024 * 1024
# An MP3 of the longest allowed duration at 320 kbit/s, with room to spare.
BYTES_PER_SECOND_AT_MAX_BITRATE = 320_000 // 8
# A finished MP3 may be this much shorter than its source's audio before it counts as truncated.
DURATION_TOLERANCE_SECONDS = 0.5
# How often a running ffmpeg's supervisor reports its progress and asks whether to go on (a cancel ends it within
# about this much of reaching the job record).
HEARTBEAT_SECONDS = 0.5
DURATION_TOLERANCE_RATIO = 0.02


class Rejected(Exception):
    """A permanent failure: the input is not something vid2mp3 can or may convert."""

    def __init__(self, reason: FailureReason, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


class TrackMissing(Rejected):
    """The `track` option names an audio track the input does not have; `tracks` lists those it has."""

    def __init__(self, message: str, tracks: tuple[AudioTrack, ...]) -> None:
        super().__init__(FailureReason.INVALID_OPTIONS, message)
        self.tracks = tracks


class Stopped(Exception):
    """The conversion was stopped from outside (the job was cancelled or taken over)."""


@dataclass(frozen=True)
class AudioTrack:
    """One audio stream of the input, as the job lists it (language and title are the file's own words, cleaned)."""

    index: int  # among the audio streams, as `track` counts
    codec: str
    channels: int | None
    language: str | None
    title: str | None
    default: bool

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "codec": self.codec, "channels": self.channels, "language": self.language,
                "title": self.title, "default": self.default}


@dataclass(frozen=True)
class ChapterMark:
    """A chapter of the input: seconds from the container's start, and its title (cleaned like a tag)."""

    start: float
    end: float
    title: str | None


# Chapters read into a probe at most (a container may claim any number; the MP3's tag and its event carry these).
MAX_PROBED_CHAPTERS = MAX_CHAPTERS


@dataclass(frozen=True)
class Probe:
    """What ffprobe found; the audio_* fields describe the chosen track (`track`)."""

    container: str
    audio_codec: str
    audio_duration: float | None
    stream_count: int
    audio_sample_rate: int | None = None
    # Seconds from the container's start to the audio's first sample: ffmpeg's input `-ss` counts from the
    # former, a segment's position from the latter.
    audio_seek_offset: float = 0.0
    track: int = 0
    audio_tracks: tuple[AudioTrack, ...] = ()
    audio_channels: int | None = None
    # Absolute stream indexes: the first moving picture (a cover frame is taken from it) and the attached picture.
    picture_stream: int | None = None
    attached_picture_stream: int | None = None
    # The container's title, artist, album and date, cleaned (defaults for the MP3's tags).
    tags: dict[str, str] = field(default_factory=dict)
    duration: float | None = None  # the container's own, for the cover frame's position
    # The attached picture's codec (`mjpeg`, `png`, ...), how many chapters the container has, and the first
    # MAX_PROBED_CHAPTERS of them.
    attached_picture_codec: str | None = None
    chapter_count: int = 0
    chapters: tuple[ChapterMark, ...] = ()


@dataclass(frozen=True)
class AudioShape:
    """What the conversion options make of the audio besides its range: which track, VBR or CBR, channels, gain.
    Numbers only: nothing here is text a user typed."""

    track: int = 0
    vbr_level: int | None = None  # LAME -q:a 0…9; None: CBR at the bitrate given
    channels: int | None = None
    gain_db: float | None = None

    def output_options(self, bitrate_kbps: int) -> dict[str, Any]:
        options: dict[str, Any] = {"acodec": "libmp3lame", "map": f"0:a:{self.track:d}"}
        if self.vbr_level is None:
            options["audio_bitrate"] = f"{bitrate_kbps:d}k"
        else:
            options["q:a"] = f"{self.vbr_level:d}"
        if self.channels is not None:
            options["ac"] = f"{self.channels:d}"
        if self.gain_db is not None:
            # A linear gain (the one the loudness measurement asked for); volume computes in floating point.
            options["af"] = f"volume={self.gain_db:.2f}dB"
        return options


def limited(command: list[str], cpu_seconds: int) -> list[str]:
    """Runs `command` under address-space and CPU-time limits (prlimit from util-linux), and killed if the
    function process dies first (setpriv --pdeathsig), so a crashed converter leaves no ffmpeg behind."""
    prlimit, setpriv = shutil.which("prlimit"), shutil.which("setpriv")
    if prlimit is not None:
        command = [prlimit, f"--as={MEMORY_LIMIT_BYTES}", f"--cpu={cpu_seconds}", "--", *command]
    if setpriv is not None:
        command = [setpriv, "--pdeathsig", "KILL", "--", *command]
    return command


def input_options() -> dict[str, str]:
    return {"protocol_whitelist": PROTOCOL_WHITELIST, "format_whitelist": FORMAT_WHITELIST}


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def without_paths(message: str, arguments: list[str]) -> str:
    """ffmpeg's words for the owner of the job, without the converter's own file paths."""
    for argument in arguments:
        if argument.startswith("/"):
            message = message.replace(argument, Path(argument).name)
    return message


@telemetry.traced("ffprobe")
def probe(path: Path, *, max_streams: int, max_duration: float, track: int | None = None) -> Probe:
    """The input's streams and metadata; its audio fields describe `track` (0-based among the audio streams; None:
    the container's default track). A track the input does not have is Rejected."""
    command = ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-show_chapters", "-of", "json"]
    for option, value in input_options().items():
        command += [f"-{option}", value]
    try:
        result = subprocess.run(limited([*command, str(path)], PROBE_TIMEOUT_SECONDS), capture_output=True,
                                timeout=PROBE_TIMEOUT_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        raise Rejected(FailureReason.NOT_MEDIA, "the file could not be read in time") from None
    if result.returncode != 0:
        detail = result.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["unreadable"]
        raise Rejected(FailureReason.NOT_MEDIA, "not a video or audio file vid2mp3 reads "
                                                f"({without_paths(detail[0], [str(path)])[:200]})")
    info = json.loads(result.stdout or b"{}")
    streams = info.get("streams") or []
    format_info = info.get("format") or {}
    container = format_info.get("format_name", "")
    if len(streams) > max_streams:
        raise Rejected(FailureReason.TOO_MANY_STREAMS, f"the file has {len(streams)} streams; at most "
                                                       f"{max_streams} are accepted")
    audio = [stream for stream in streams if stream.get("codec_type") == "audio"]
    if not audio:
        raise Rejected(FailureReason.NO_AUDIO, "the file has no audio track")
    tracks = tuple(audio_track(number, stream) for number, stream in enumerate(audio))
    if track is None:
        track = next((listed.index for listed in tracks if listed.default), 0)
    elif track >= len(audio):
        raise TrackMissing(f"track {track} was asked for, but the file has {len(audio)} audio "
                           f"track{'s' if len(audio) > 1 else ''} (0 to {len(audio) - 1})", tracks)
    chosen = audio[track]
    duration = _float(chosen.get("duration")) or _float(format_info.get("duration"))
    if duration is not None and duration > max_duration:
        raise Rejected(FailureReason.TOO_LONG, f"the audio lasts {duration:.0f} s; at most {max_duration:.0f} s "
                                               "are accepted")
    sample_rate = _float(chosen.get("sample_rate"))
    audio_start, container_start = _float(chosen.get("start_time")), _float(format_info.get("start_time"))
    pictures = [stream for stream in streams if stream.get("codec_type") == "video"]
    attached = [stream for stream in pictures if (stream.get("disposition") or {}).get("attached_pic")]
    moving = [stream for stream in pictures if stream not in attached]
    return Probe(container=container, audio_codec=str(chosen.get("codec_name", "")),
                 audio_duration=duration, stream_count=len(streams),
                 audio_sample_rate=int(sample_rate) if sample_rate else None,
                 audio_seek_offset=max(0.0, (audio_start or 0.0) - (container_start or 0.0)),
                 track=track, audio_tracks=tracks, audio_channels=tracks[track].channels,
                 picture_stream=int(moving[0]["index"]) if moving else None,
                 attached_picture_stream=int(attached[0]["index"]) if attached else None,
                 tags=container_tags(format_info.get("tags") or {}),
                 duration=_float(format_info.get("duration")) or duration,
                 attached_picture_codec=metadata_text(attached[0].get("codec_name"), 32) if attached else None,
                 chapter_count=len(info.get("chapters") or []),
                 chapters=chapter_marks(info.get("chapters") or []))


def chapter_marks(chapters: list[dict[str, Any]]) -> tuple[ChapterMark, ...]:
    marks = []
    for chapter in chapters[:MAX_PROBED_CHAPTERS]:
        start, end = _float(chapter.get("start_time")) or 0.0, _float(chapter.get("end_time"))
        if end is not None and end > start:
            tags = {str(key).lower(): value for key, value in (chapter.get("tags") or {}).items()}
            marks.append(ChapterMark(start, end, metadata_text(tags.get("title"))))
    return tuple(marks)


def audio_track(number: int, stream: dict[str, Any]) -> AudioTrack:
    tags = {str(key).lower(): value for key, value in (stream.get("tags") or {}).items()}
    channels = stream.get("channels")
    return AudioTrack(index=number, codec=metadata_text(stream.get("codec_name"), 32) or "unknown",
                      channels=channels if isinstance(channels, int) else None,
                      language=metadata_text(tags.get("language"), 16), title=metadata_text(tags.get("title")),
                      default=bool((stream.get("disposition") or {}).get("default")))


def container_tags(tags: dict[str, Any]) -> dict[str, str]:
    """The container's title, artist (or album artist), album and date, as untrusted text made safe for a tag."""
    lowered = {str(key).lower(): value for key, value in tags.items()}
    found = {"title": lowered.get("title"), "artist": lowered.get("artist") or lowered.get("album_artist"),
             "album": lowered.get("album"), "date": lowered.get("date")}
    cleaned = {name: metadata_text(value) for name, value in found.items()}
    return {name: value for name, value in cleaned.items() if value}


def conversion_command(source: Path, target: Path, *, copy: bool, bitrate_kbps: int, max_duration: float,
                       start_seconds: float | None = None, duration_seconds: float | None = None,
                       shape: AudioShape | None = None) -> list[str]:
    """The ffmpeg command for the whole audio, or for a time segment of it (`start_seconds` from the container's
    start, `duration_seconds` long; None: from the start, to the end), shaped by the conversion options."""
    shape = shape or AudioShape()
    audio_options: dict[str, Any] = ({"acodec": "copy", "map": f"0:a:{shape.track:d}"} if copy
                                     else shape.output_options(bitrate_kbps))
    # An input seek, which ffmpeg makes sample-exact when it decodes; none at all for the first segment (even
    # `-ss 0` drops the AAC decoder's priming skip: docs/PERFORMANCE.md).
    segment = {"ss": f"{start_seconds:.6f}"} if start_seconds is not None else {}
    if duration_seconds is not None:
        segment["t"] = f"{duration_seconds:.6f}"
    stream = ffmpeg.input(str(source), **segment, **input_options()).output(
        str(target), f="mp3", map_metadata="-1", t=max_duration,
        fs=int(max_duration * BYTES_PER_SECOND_AT_MAX_BITRATE) + 1_000_000, **audio_options,
    )
    stream = stream.global_args("-nostdin", "-hide_banner", "-loglevel", "error", "-nostats",
                                "-progress", "pipe:1").overwrite_output()
    return list(stream.compile(cmd="ffmpeg"))


@dataclass
class Progress:
    percent: float = 0.0
    eta_seconds: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"percent": round(self.percent, 1),
                "eta_seconds": None if self.eta_seconds is None else round(self.eta_seconds, 1)}


def output_name(command: list[str]) -> str:
    """The file name an ffmpeg command writes (audio.mp3, segment-1.mp3, ...): its last path not given to `-i`."""
    paths = [argument for before, argument in itertools.pairwise(command)
             if argument.startswith("/") and before != "-i"]
    return Path(paths[-1]).name if paths else ""


class Encoding:
    """An ffmpeg run, started at once and supervised by `wait`: progress to `heartbeat` about once a second, stopped
    when the heartbeat answers False (Stopped) or the time runs out (Rejected). Leaving the `with` block stops it."""

    def __init__(self, command: list[str], *, timeout: float, stderr_lines: int = 5,
                 on_stderr_line: Callable[[str], None] | None = None) -> None:
        self.command, self.timeout = command, timeout
        # Sees every line ffmpeg writes on stderr (a filter's report longer than the kept last words), as it comes.
        self.on_stderr_line = on_stderr_line
        self.started = time.monotonic()
        self.expected_duration: float | None = None  # known once the input is probed: the base of the percentage
        self.progress = Progress()
        # ffmpeg's last words: its errors, or (with a filter that reports on stderr) the report.
        self.errors: deque[str] = deque(maxlen=stderr_lines)
        # Not the current span: ffmpeg runs beside the caller (beside ffprobe, beside the other segments).
        self.span = telemetry.open_span("ffmpeg", **{"vid2mp3.ffmpeg.output": output_name(command)})
        self.process = subprocess.Popen(limited(command, int(timeout) + 5), stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        self._progress_reader = threading.Thread(target=self._read_progress, daemon=True)
        self._readers = [self._progress_reader, threading.Thread(target=self._read_errors, daemon=True)]
        for reader in self._readers:
            reader.start()

    def __enter__(self) -> Encoding:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _read_progress(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            key, _, value = line.decode(errors="replace").strip().partition("=")
            if key == "out_time_us" and value.isdigit() and self.expected_duration:
                fraction = min(1.0, int(value) / 1e6 / self.expected_duration)
                elapsed = time.monotonic() - self.started
                # Never backwards: the status and its live stream promise a percentage that only rises.
                self.progress.percent = max(self.progress.percent, fraction * 100)
                self.progress.eta_seconds = elapsed / fraction - elapsed if fraction > 0 else None

    def _read_errors(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            text = line.decode(errors="replace").strip()
            self.errors.append(text)
            if self.on_stderr_line is not None:
                self.on_stderr_line(text)

    def wait(self, *, expected_duration: float | None, heartbeat: Callable[[Progress], bool],
             heartbeat_seconds: float = HEARTBEAT_SECONDS) -> None:
        self.expected_duration = expected_duration
        try:
            while not self.exited_within(heartbeat_seconds):
                self.check_time()
                if not heartbeat(self.progress):
                    raise Stopped()
            self.check_exit_status()
        finally:
            self.stop()

    def exited_within(self, seconds: float) -> bool:
        # Waits on the progress reader, which ends when ffmpeg exits and closes its stdout: a thread's join wakes
        # at once, where Popen.wait(timeout) polls and notices an exit up to 50 ms late.
        self._progress_reader.join(timeout=seconds)
        return not self._progress_reader.is_alive()

    def check_time(self) -> None:
        if time.monotonic() - self.started > self.timeout:
            raise Rejected(FailureReason.CONVERSION_ERROR, f"the conversion took longer than {self.timeout:.0f} s")

    def check_exit_status(self) -> None:
        """Once ffmpeg has closed its output: Rejected unless it exited 0."""
        code = self.process.wait(timeout=max(1.0, self.timeout - (time.monotonic() - self.started)))
        if code != 0:
            self.stop()  # its error reader has read all ffmpeg said
            raise Rejected(FailureReason.CONVERSION_ERROR, "ffmpeg could not convert the audio: "
                           + without_paths("; ".join(self.errors) or f"exit status {code}", self.command)[:500])

    def stop(self) -> None:
        """Kills ffmpeg if it still runs, and waits for it and its readers."""
        finished = self.process.poll() is not None
        if not finished:
            self.process.kill()
            self.process.wait()
        for reader in self._readers:
            reader.join(timeout=5)
        self.ended(finished)

    def ended(self, finished: bool) -> None:
        """Ends the ffmpeg span (once: `stop` may come twice), and counts a finished encode's speed."""
        if self.span.span is None:
            return
        code = self.process.returncode
        if finished and code == 0 and self.expected_duration:
            telemetry.encoding_speed.record((time.monotonic() - self.started) / self.expected_duration)
        # Stopped (by the caller: a wrong guess, a cancellation, the time limit) is not an ffmpeg error.
        self.span.end(error=f"ffmpeg exited {code}" if finished and code != 0 else None, **{
            "vid2mp3.ffmpeg.outcome": ("exited" if finished else "stopped"), "vid2mp3.ffmpeg.exit_code": code,
            "vid2mp3.ffmpeg.media_seconds": self.expected_duration or 0.0})


def run(command: list[str], *, expected_duration: float | None, timeout: float,
        heartbeat: Callable[[Progress], bool], heartbeat_seconds: float = HEARTBEAT_SECONDS) -> None:
    """Runs ffmpeg to its end under `Encoding`'s supervision."""
    with Encoding(command, timeout=timeout) as encoding:
        encoding.wait(expected_duration=expected_duration, heartbeat=heartbeat, heartbeat_seconds=heartbeat_seconds)


def average_kbps(target: Path) -> int | None:
    """A VBR MP3's average bitrate, from its own Xing header (read by mutagen)."""
    try:
        info = MP3(target).info
    except MutagenError:
        return None
    return round(info.bitrate / 1000) if info is not None and info.bitrate else None


@telemetry.traced("mp3 check")
def verify(target: Path, *, expected_duration: float | None, max_duration: float) -> float:
    """The MP3's duration, after checking it is an MP3 as long as its source's audio (or the cap).

    Read in-process by mutagen from the MP3's own frame headers (the frame count ffmpeg writes into the Xing
    header): the durations ffprobe reports, in under a millisecond instead of a 70 ms ffprobe run. Like ffprobe,
    it reads the file ffmpeg left rather than taking ffmpeg's word, which is exit status 0 on some broken inputs."""
    try:
        info = MP3(target).info
    except MutagenError as error:
        detail = without_paths(str(error), [str(target)])[:200]
        raise Rejected(FailureReason.INVALID_OUTPUT, f"the conversion produced no valid MP3 ({detail})") from None
    # max_duration + 60: the cap given to ffmpeg, with room for an encoder's padding, never a forged header.
    if not isinstance(info, MPEGInfo) or info.layer != 3 or not 0 < info.length <= max_duration + 60:
        raise Rejected(FailureReason.INVALID_OUTPUT, "the conversion produced no valid MP3")
    duration = float(info.length)
    # The length comes from the header's frame count; the bytes after it must be there too (ffprobe trusts the
    # header alone, and a file cut short behind a complete header would pass it).
    if target.stat().st_size < duration * info.bitrate / 8 * (1 - DURATION_TOLERANCE_RATIO):
        raise Rejected(FailureReason.INVALID_OUTPUT, "the MP3 is shorter than its own header says")
    if expected_duration is not None:
        expected = min(expected_duration, max_duration)
        shortfall = expected - duration
        if shortfall > max(DURATION_TOLERANCE_SECONDS, expected * DURATION_TOLERANCE_RATIO):
            raise Rejected(FailureReason.INVALID_OUTPUT,
                           f"the MP3 lasts {duration:.1f} s but its source {expected:.1f} s: "
                           "the input is damaged or truncated")
    return duration
