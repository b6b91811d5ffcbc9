"""An upload's whole file in, what its job keeps out: the source (every audio track copied, never decoded, with the
container's and each track's metadata and the chapters) and the covers (the frame at 10 % of a real video, the
attached picture), made by the same locked-down ffprobe and ffmpeg as the conversion, in one ffmpeg run.

The input is as untrusted as any video: it is probed with the conversion's limits first (the same refusals, with
the same reasons: events.FailureReason), and the source is checked after (a copy of a damaged file can come out
short while ffmpeg exits 0). What a client sends beside it is as untrusted: its cover is decoded and scaled by
ffmpeg like any picture, its chapters' titles are cleaned as tags are, and no text of it reaches a command line
(chapters go through an ffmetadata file this module writes).

The source's container, one rule (docs: README, "What is stored"): MP4 (an `.m4a`) when the upload is MP4/MOV and
every audio codec fits MP4, since MP4's edit list keeps AAC's encoder priming, which Matroska loses (the audio would
start 21 ms late and the MP3 come out 24 ms longer); MP3 for an MP3 file, whose Xing/LAME header keeps its encoder
delay and padding (a copy through Matroska lost 2991 samples on the copy path); Matroska (an `.mka`) otherwise.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from events import FailureReason
from events.options import metadata_text
from transcoding import ffmpeg_tools
from transcoding.ffmpeg_tools import Probe, Rejected
from transcoding.tagging import COVER_FIT, COVER_FRAME_AT, MAX_COVER_BYTES

log = logging.getLogger(__name__)

MP4_FAMILY = "mov,mp4,m4a,3gp,3g2,mj2"
# The audio codecs an MP4 carries and ffmpeg's MP4 muxer writes (FLAC only with `-strict experimental` on 5.1).
MP4_AUDIO_CODECS = frozenset({"aac", "alac", "mp3", "ac3", "eac3", "opus", "flac"})
# format -> (ffmpeg muxer, file extension)
SOURCE_FORMATS = {"mp4": ("mp4", "m4a"), "matroska": ("matroska", "mka"), "mp3": ("mp3", "mp3")}
CONTENT_TYPES = {"mp4": "audio/mp4", "matroska": "audio/x-matroska", "mp3": "audio/mpeg"}
# One ffmpeg run's wall-clock budget: reading a 2 GiB file and copying its audio takes seconds; a run that fails
# with the pictures in it is made again without them, so a picture never costs the upload.
EXTRACTION_TIMEOUT_SECONDS = 120.0
# Seconds of the video read from the cover frame's position on: the frame is the first one there, and a longer read
# would decode the rest of the video (ffmpeg reads an input on after the output it feeds has its one frame).
FRAME_WINDOW_SECONDS = 5.0
# An attached picture is kept as it was, up to this size (convert scales it); a larger one is left out.
MAX_ATTACHED_BYTES = 4 * 1024 * 1024
# A client's chapters (the `chapters` part): at most this many; a container's own beyond this are dropped.
MAX_CHAPTERS = 1000
MAX_CHAPTERS_BYTES = 64 * 1024
JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# The picture demuxers a client's cover may be read with (chosen by its first bytes, never by its name).
PICTURE_DEMUXERS = {"jpeg": "jpeg_pipe", "png": "png_pipe"}
ATTACHED_CODECS = {"mjpeg": ("jpeg", "image/jpeg"), "png": ("png", "image/png")}


class InvalidPart(ValueError):
    """A client's `cover` or `chapters` part is not what it must be; the message says why."""


@dataclass(frozen=True)
class Chapter:
    start: float
    end: float
    title: str | None


@dataclass(frozen=True)
class Cover:
    path: Path
    content_type: str  # image/jpeg or image/png


@dataclass(frozen=True)
class Extracted:
    """What the upload keeps: the source (`source_format` a SOURCE_FORMATS key) and the covers found, by kind
    (`frame`, `attached`); `container` is the upload's as ffprobe named it; `probe` is the source's own."""

    source: Path
    source_format: str
    container: str
    probe: Probe
    covers: dict[str, Cover] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def picture_kind(data: bytes) -> str | None:
    """`jpeg` or `png` by the first bytes; None for anything else."""
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    if data.startswith(PNG_MAGIC):
        return "png"
    return None


def check_cover(data: bytes) -> bytes:
    """A client's cover as sent, once it looks like a JPEG or PNG of a cover's size (ffmpeg decodes it later)."""
    if not data:
        raise InvalidPart("the cover is empty")
    if len(data) > MAX_COVER_BYTES:
        raise InvalidPart(f"the cover is larger than {MAX_COVER_BYTES} bytes")
    if picture_kind(data) is None:
        raise InvalidPart("the cover must be a JPEG or PNG image")
    return data


def parse_chapters(data: bytes) -> list[Chapter]:
    """A client's chapters: JSON `[{"start": seconds, "end": seconds, "title": text}, ...]`, `end` and `title`
    optional (a chapter without an end runs to the next one's start); titles cleaned as tags are; sorted."""
    if len(data) > MAX_CHAPTERS_BYTES:
        raise InvalidPart(f"the chapters are larger than {MAX_CHAPTERS_BYTES} bytes")
    try:
        items = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise InvalidPart("the chapters are not JSON") from None
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise InvalidPart('the chapters must be a list of {"start", "end", "title"} objects')
    if len(items) > MAX_CHAPTERS:
        raise InvalidPart(f"more than {MAX_CHAPTERS} chapters")
    parsed: list[tuple[float, float | None, str | None]] = []
    for number, item in enumerate(items):
        start, end = item.get("start"), item.get("end")
        if not is_seconds(start) or (end is not None and not is_seconds(end)):
            raise InvalidPart(f"chapter {number}: start and end must be seconds (numbers, 0 or more)")
        if end is not None and end <= start:
            raise InvalidPart(f"chapter {number}: it ends before it starts")
        title = item.get("title")
        if title is not None and not isinstance(title, str):
            raise InvalidPart(f"chapter {number}: the title must be text")
        parsed.append((float(start), None if end is None else float(end), metadata_text(title)))
    parsed.sort(key=lambda chapter: chapter[0])
    chapters = []
    for index, (start, end, title) in enumerate(parsed):
        following = parsed[index + 1][0] if index + 1 < len(parsed) else None
        if end is None and following is not None and following <= start:
            raise InvalidPart(f"two chapters start at {start:g} s")
        chapters.append(Chapter(start, end if end is not None else following if following is not None else math.inf,
                                title))
    return chapters


def is_seconds(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def ffmetadata(chapters: list[Chapter], duration: float | None) -> str:
    """The chapters as an ffmetadata file (FFmpeg's own text format), every value escaped; an open end stops at
    `duration`."""
    lines = [";FFMETADATA1"]
    last = max(duration or 0.0, *(chapter.start for chapter in chapters)) if chapters else 0.0
    for chapter in chapters:
        end = chapter.end if math.isfinite(chapter.end) else max(last, chapter.start + 0.001)
        lines += ["[CHAPTER]", "TIMEBASE=1/1000", f"START={round(chapter.start * 1000)}",
                  f"END={max(round(end * 1000), round(chapter.start * 1000) + 1)}"]
        if chapter.title:
            lines.append(f"title={escape_ffmetadata(chapter.title)}")
    return "\n".join(lines) + "\n"


def escape_ffmetadata(text: str) -> str:
    return "".join(f"\\{character}" if character in "=;#\\\n" else character for character in text)


def source_format(probed: Probe) -> str:
    """The one rule (the module's docstring says why)."""
    if probed.container == "mp3":
        return "mp3"
    if probed.container == MP4_FAMILY and all(track.codec in MP4_AUDIO_CODECS for track in probed.audio_tracks):
        return "mp4"
    return "matroska"


@dataclass
class Plan:
    """One ffmpeg run: its inputs and outputs as arguments, and the pictures it is to write."""

    inputs: list[list[str]] = field(default_factory=list)
    outputs: list[list[str]] = field(default_factory=list)
    pictures: dict[str, Path] = field(default_factory=dict)  # "frame", "client", "attached" -> file

    def add_input(self, path: Path, *, formats: str, options: tuple[str, ...] = ()) -> int:
        self.inputs.append([*options, "-protocol_whitelist", ffmpeg_tools.PROTOCOL_WHITELIST,
                            "-format_whitelist", formats, "-i", str(path)])
        return len(self.inputs) - 1

    def command(self) -> list[str]:
        return ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-nostats",
                *[part for arguments in self.inputs for part in arguments],
                *[part for arguments in self.outputs for part in arguments]]


def plan(upload: Path, workdir: Path, probed: Probe, form: str, *, max_duration: float, pictures: bool,
         client_cover: Path | None, chapters: Path | None) -> Plan:
    muxer, extension = SOURCE_FORMATS[form]
    run = Plan()
    run.add_input(upload, formats=ffmpeg_tools.FORMAT_WHITELIST)
    chapters_from = "0" if probed.chapter_count <= MAX_CHAPTERS else "-1"
    if chapters is not None and probed.chapter_count == 0:
        chapters_from = str(run.add_input(chapters, formats="ffmetadata", options=("-f", "ffmetadata")))
    source = workdir / f"source.{extension}"
    run.outputs.append([
        "-map", "0:a", "-c", "copy", "-map_metadata", "0", "-map_chapters", chapters_from,
        # A stream longer than the probe said (a header that lies) is cut where a conversion would cut it; the
        # check after finds it short of the probe's length.
        "-t", f"{max_duration:.3f}", "-fs", str(2 * upload.stat().st_size + 1_000_000),
        *(["-strict", "experimental"] if muxer == "mp4" else []), "-f", muxer, "-y", str(source)])
    if pictures and probed.picture_stream is not None:
        at = (probed.duration or 0.0) * COVER_FRAME_AT
        frame_input = run.add_input(upload, formats=ffmpeg_tools.FORMAT_WHITELIST,
                                    options=("-ss", f"{at:.3f}", "-t", f"{FRAME_WINDOW_SECONDS:.3f}"))
        run.pictures["frame"] = still(run, f"{frame_input}:{probed.picture_stream:d}", workdir / "frame.jpg")
    if pictures and client_cover is not None:
        kind = picture_kind(client_cover.read_bytes()[:16])
        if kind is not None:
            cover_input = run.add_input(client_cover, formats=PICTURE_DEMUXERS[kind],
                                        options=("-f", PICTURE_DEMUXERS[kind]))
            run.pictures["client"] = still(run, f"{cover_input}:0", workdir / "client-cover.jpg")
    attached = ATTACHED_CODECS.get(probed.attached_picture_codec or "")
    if pictures and probed.attached_picture_stream is not None and attached is not None:
        target = workdir / f"attached.{'jpg' if attached[0] == 'jpeg' else 'png'}"
        run.outputs.append(["-map", f"0:{probed.attached_picture_stream:d}", "-c", "copy", "-frames:v", "1",
                            "-f", "image2", "-y", str(target)])
        run.pictures["attached"] = target
    return run


def still(run: Plan, stream: str, target: Path) -> Path:
    """One frame of `stream`, scaled to fit COVER_MAX_PIXELS, as a baseline JPEG (tagging's cover, made here)."""
    run.outputs.append(["-map", stream, "-frames:v", "1", "-vf", COVER_FIT, "-c:v", "mjpeg", "-q:v", "3",
                        "-f", "image2", "-y", str(target)])
    return target


def extract(upload: Path, workdir: Path, *, max_streams: int, max_duration: float,
            client_cover: bytes | None = None, chapters: list[Chapter] | None = None,
            timeout: float = EXTRACTION_TIMEOUT_SECONDS,
            heartbeat: Callable[[], bool] = lambda: True) -> Extracted:
    """The source and covers of `upload` (a local file), written into `workdir`; Rejected with the conversion's
    reasons. `client_cover` (checked by `check_cover`) becomes the frame cover when the upload has no picture to
    take one from; `chapters` are written into the source when the upload has none of its own. `heartbeat` is
    asked about twice a second while ffmpeg runs (False stops it: Stopped)."""
    probed = ffmpeg_tools.probe(upload, max_streams=max_streams, max_duration=max_duration)
    form = source_format(probed)
    cover_file = chapters_file = None
    if client_cover is not None:
        cover_file = workdir / "client-cover.input"
        cover_file.write_bytes(client_cover)
    if chapters:
        chapters_file = workdir / "chapters.ffmetadata"
        chapters_file.write_text(ffmetadata(chapters, probed.duration), encoding="utf-8")
    notes: list[str] = []
    run = plan(upload, workdir, probed, form, max_duration=max_duration, pictures=True, client_cover=cover_file,
               chapters=chapters_file)
    try:
        ffmpeg_run(run, probed, timeout, heartbeat)
    except Rejected as refused:
        if not run.pictures:
            raise
        # A picture ffmpeg could not decode in its limits (a frame-size bomb, a broken cover) must not cost the
        # audio: the same run without the pictures.
        log.info("extraction: the pictures could not be made (%s); the audio alone", refused.message)
        notes.append("no cover: its picture could not be made into a JPEG")
        for picture in run.pictures.values():
            picture.unlink(missing_ok=True)
        run = plan(upload, workdir, probed, form, max_duration=max_duration, pictures=False, client_cover=None,
                   chapters=chapters_file)
        ffmpeg_run(run, probed, timeout, heartbeat)
    source = run.outputs[0][-1]
    kept = check_source(Path(source), probed, max_streams=max_streams, max_duration=max_duration)
    return Extracted(source=Path(source), source_format=form, container=probed.container, probe=kept,
                     covers=covers_of(run), notes=tuple(notes))


def ffmpeg_run(run: Plan, probed: Probe, timeout: float, heartbeat: Callable[[], bool]) -> None:
    ffmpeg_tools.run(run.command(), expected_duration=probed.audio_duration, timeout=timeout,
                     heartbeat=lambda _progress: heartbeat())


def check_source(source: Path, probed: Probe, *, max_streams: int, max_duration: float) -> Probe:
    """The source's own probe, once it holds every audio track of the upload, as long as the upload said: a copy
    of a damaged or cut file comes out short while ffmpeg exits 0 (the conversion's output check, done here)."""
    if not source.exists() or source.stat().st_size == 0:
        raise Rejected(FailureReason.INVALID_OUTPUT, "the audio could not be taken out of the file")
    try:
        kept = ffmpeg_tools.probe(source, max_streams=max_streams, max_duration=max_duration)
    except Rejected as refused:
        raise Rejected(FailureReason.INVALID_OUTPUT, "the audio taken out of the file is unreadable "
                                                     f"({refused.message})") from None
    if len(kept.audio_tracks) != len(probed.audio_tracks):
        raise Rejected(FailureReason.INVALID_OUTPUT, f"{len(kept.audio_tracks)} of the file's "
                                                     f"{len(probed.audio_tracks)} audio tracks could be taken out")
    if probed.audio_duration is not None and kept.audio_duration is not None:
        expected = min(probed.audio_duration, max_duration)
        shortfall = expected - kept.audio_duration
        if shortfall > max(ffmpeg_tools.DURATION_TOLERANCE_SECONDS, expected * ffmpeg_tools.DURATION_TOLERANCE_RATIO):
            raise Rejected(FailureReason.INVALID_OUTPUT,
                           f"the audio lasts {kept.audio_duration:.1f} s but the file says {expected:.1f} s: "
                           "the input is damaged or truncated")
    return kept


def covers_of(run: Plan) -> dict[str, Cover]:
    """The pictures the run made that are what they must be: the frame (else the client's cover) as a JPEG of a
    cover's size, the attached picture as it was."""
    covers: dict[str, Cover] = {}
    for kind in ("frame", "client"):
        path = run.pictures.get(kind)
        if "frame" not in covers and path is not None and path.exists():
            head = path.read_bytes()[:3]
            if head == JPEG_MAGIC and 0 < path.stat().st_size <= MAX_COVER_BYTES:
                covers["frame"] = Cover(path, "image/jpeg")
    attached = run.pictures.get("attached")
    if attached is not None and attached.exists() and 0 < attached.stat().st_size <= MAX_ATTACHED_BYTES:
        picture = picture_kind(attached.read_bytes()[:16])
        if picture is not None:
            covers["attached"] = Cover(attached, f"image/{picture}")
    return covers

