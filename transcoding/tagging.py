"""The MP3's ID3v2.4 tag: title, artist, album and date (the user's, else the video's own metadata, else the file name
as title) and a cover (a frame of the video, its attached picture, or none), as the tag's bytes, made before the
audio so that a joined MP3 streaming into GridFS can start with them.

The text never goes near ffmpeg's command line: mutagen writes it, in-process, as UTF-8 text frames. The covers come
from what the upload kept (transcoding/extraction.py): the frame is a JPEG the extraction's locked-down ffmpeg made,
used as it is; the attached picture, kept as the video had it, is scaled into a JPEG by ffmpeg under the same
lock-down as every conversion. A job recorded before uploads kept covers has its pictures in its video: ffmpeg cuts
them from stream indexes and times the probe gave (numbers).
"""

from __future__ import annotations

import io
import logging
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mutagen.id3 import APIC, CHAP, CTOC, ID3, TALB, TDRC, TIT2, TPE1, CTOCFlags, PictureType

from events.options import ConversionOptions, metadata_text
from transcoding import ffmpeg_tools
from transcoding.ffmpeg_tools import ChapterMark, Probe

log = logging.getLogger(__name__)

# A cover's longer side at most (what players show; keeps the tag small enough to lead the MP3's first chunk).
COVER_MAX_PIXELS = 600
# Where the cover frame is taken, as a share of the video's length (past titles and fades of the very start).
COVER_FRAME_AT = 0.10
# Well inside convert's 10 s lease, which nothing renews while the cover is cut: a picture that takes longer to
# decode (a bomb's enormous frame) leaves the MP3 without a cover.
COVER_TIMEOUT_SECONDS = 5
# A cover JPEG larger than this is left out rather than stored (a 600 px JPEG is typically 20-80 kB).
MAX_COVER_BYTES = 512 * 1024
COPY_BYTES = 1024 * 1024
# Scales a picture down to fit COVER_MAX_PIXELS (never up), in the pixel format a baseline JPEG takes.
COVER_FIT = (f"scale=w='min({COVER_MAX_PIXELS},iw)':h='min({COVER_MAX_PIXELS},ih)'"
             ":force_original_aspect_ratio=decrease,format=yuvj420p")
# The demuxers a stored picture is read with, by its first bytes (never by a name or a stored content type).
PICTURE_DEMUXERS = {b"\xff\xd8\xff": "jpeg_pipe", b"\x89PNG\r\n\x1a\n": "png_pipe"}


@dataclass(frozen=True)
class Tags:
    """What the MP3's tag says, and where each value came from (stated on the job)."""

    title: str
    artist: str | None
    album: str | None
    date: str | None
    cover: str  # "frame", "attached" or "none": what the MP3 got
    cover_jpeg: bytes | None = None
    note: str | None = None  # why the cover differs from what was asked
    # The source's chapters, in the MP3's own time (a trim moves and cuts them).
    chapters: tuple[ChapterMark, ...] = ()

    def chapter_list(self) -> list[dict[str, Any]]:
        """The chapters as the job records them (title, start and end in seconds of the MP3, to the millisecond
        the tag has)."""
        return [{"title": chapter_title(chapter, number), "start_seconds": round(chapter.start, 3),
                 "end_seconds": round(chapter.end, 3)} for number, chapter in enumerate(self.chapters)]

    def as_record(self) -> dict[str, Any]:
        text = {"title": self.title, "artist": self.artist, "album": self.album, "date": self.date}
        return {**{name: value for name, value in text.items() if value}, "cover": self.cover,
                **({"cover_note": self.note} if self.note else {}),
                **({"chapters": len(self.chapters)} if self.chapters else {})}

    def id3_bytes(self) -> bytes:
        """The complete ID3v2.4 tag, ready to precede the MP3's first frame."""
        tag = ID3()
        tag.add(TIT2(encoding=3, text=[self.title]))
        if self.artist:
            tag.add(TPE1(encoding=3, text=[self.artist]))
        if self.album:
            tag.add(TALB(encoding=3, text=[self.album]))
        if self.date:
            tag.add(TDRC(encoding=3, text=[self.date]))
        if self.cover_jpeg:
            tag.add(APIC(encoding=3, mime="image/jpeg", type=PictureType.COVER_FRONT, desc="cover",
                         data=self.cover_jpeg))
        rendered = rendered_tag(tag)
        if not self.chapters:
            return rendered
        # ID3v2 Chapter Frame Addendum: a table of contents and one CHAP per chapter, times in milliseconds. Appended
        # in order (mutagen orders the frames it writes by size, and ffmpeg lists chapters in frame order).
        ids = [f"chp{number}" for number in range(len(self.chapters))]
        frames: list[Any] = [CTOC(element_id="toc", flags=CTOCFlags.TOP_LEVEL | CTOCFlags.ORDERED,
                                  child_element_ids=ids, sub_frames=[])]
        frames += [CHAP(element_id=element_id, start_time=round(chapter.start * 1000),
                        end_time=round(chapter.end * 1000), start_offset=0xFFFFFFFF, end_offset=0xFFFFFFFF,
                        sub_frames=[TIT2(encoding=3, text=[chapter_title(chapter, number)])])
                   for number, (element_id, chapter) in enumerate(zip(ids, self.chapters, strict=True))]
        body = rendered[ID3_HEADER_BYTES:] + b"".join(rendered_tag(single(frame))[ID3_HEADER_BYTES:]
                                                      for frame in frames)
        return rendered[:6] + syncsafe(len(body)) + body


ID3_HEADER_BYTES = 10


def chapter_title(chapter: ChapterMark, number: int) -> str:
    """A chapter's title, or its 1-based number when it has none: the tag, the job and its JSON chapters agree."""
    return chapter.title or f"Chapter {number + 1}"


def rendered_tag(tag: ID3) -> bytes:
    """The complete ID3v2.4 tag, without padding."""
    rendered = io.BytesIO()
    tag.save(rendered, v2_version=4, padding=lambda _: 0)
    return rendered.getvalue()


def single(frame: Any) -> ID3:
    tag = ID3()
    tag.add(frame)
    return tag


def syncsafe(size: int) -> bytes:
    """An ID3v2 size: 28 bits in four bytes of seven."""
    return bytes((size >> shift) & 0x7F for shift in (21, 14, 7, 0))


def title_from_filename(filename: str) -> str:
    return metadata_text(Path(filename).stem or filename) or "audio"


def cover_command(source: Path, target: Path, *, stream: int, at_seconds: float | None,
                  demuxer: str | None = None) -> list[str]:
    """One frame of stream `stream` (an absolute index) at `at_seconds` (None: its first, for a still picture),
    scaled down to fit COVER_MAX_PIXELS, as a baseline JPEG. `demuxer`: a picture's own (`jpeg_pipe`,
    `png_pipe`), the one ffmpeg may open; otherwise the media containers'."""
    command = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-nostats"]
    if demuxer is None:
        for option, value in ffmpeg_tools.input_options().items():
            command += [f"-{option}", value]
    else:
        command += ["-f", demuxer, "-protocol_whitelist", ffmpeg_tools.PROTOCOL_WHITELIST, "-format_whitelist",
                    demuxer]
    if at_seconds is not None:
        command += ["-ss", f"{at_seconds:.3f}"]
    return [*command, "-i", str(source), "-map", f"0:{stream:d}", "-frames:v", "1", "-vf", COVER_FIT,
            "-c:v", "mjpeg", "-q:v", "3", "-f", "image2", "-y", str(target)]


def picture_demuxer(path: Path) -> str | None:
    with path.open("rb") as file:
        head = file.read(8)
    return next((demuxer for magic, demuxer in PICTURE_DEMUXERS.items() if head.startswith(magic)), None)


def extract_cover(source: Path, workdir: Path, *, stream: int, at_seconds: float | None,
                  demuxer: str | None = None) -> bytes | None:
    target = workdir / "cover.jpg"
    command = cover_command(source, target, stream=stream, at_seconds=at_seconds, demuxer=demuxer)
    try:
        result = subprocess.run(ffmpeg_tools.limited(command, COVER_TIMEOUT_SECONDS), capture_output=True,
                                timeout=COVER_TIMEOUT_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        log.info("no cover: its frame took longer than %d s", COVER_TIMEOUT_SECONDS)
        return None
    if result.returncode != 0 or not target.exists():
        log.info("no cover: ffmpeg said %s", result.stderr.decode(errors="replace").strip()[-200:])
        return None
    data = target.read_bytes()
    target.unlink()
    # A JPEG starts with SOI; anything else, or too large, is no cover.
    return data if data.startswith(b"\xff\xd8") and len(data) <= MAX_COVER_BYTES else None


def tags_for(options: ConversionOptions, probed: Probe, filename: str, source: Path, workdir: Path,
             covers: dict[str, Path] | None = None) -> Tags:
    """The MP3's tags: the user's values first, then the video's metadata, then the file name (title only). The
    cover from `covers` (the pictures the upload kept, by kind: `frame`, `attached`), or, None, from the pictures
    in `source` (a job recorded before uploads kept covers)."""
    title = options.title or probed.tags.get("title") or title_from_filename(filename)
    if covers is None:
        found = {kind for kind, stream in (("frame", probed.picture_stream),
                                           ("attached", probed.attached_picture_stream)) if stream is not None}
    else:
        found = set(covers)
    wanted = options.cover or ("frame" if "frame" in found else "attached" if "attached" in found else "none")
    cover, jpeg, note = "none", None, None
    if wanted in found:
        jpeg = cover_jpeg(wanted, probed, source, workdir, covers)
    if jpeg is not None:
        cover = wanted
    elif wanted != "none":
        note = (f"no cover: the video has no {'picture' if wanted == 'frame' else 'attached picture'}"
                if wanted not in found else "no cover: its picture could not be made into a JPEG")
    return Tags(title=title, artist=options.artist or probed.tags.get("artist"),
                album=options.album or probed.tags.get("album"), date=options.date or date_of(probed),
                cover=cover, cover_jpeg=jpeg, note=note,
                chapters=() if options.chapters == "none" else trimmed_chapters(probed.chapters, options))


def trimmed_chapters(chapters: tuple[ChapterMark, ...], options: ConversionOptions) -> tuple[ChapterMark, ...]:
    """The chapters in the MP3's time: moved back by a trim's start, cut at its end, those outside it left out."""
    start = options.start_seconds or 0.0
    end = options.end_seconds if options.end_seconds is not None else float("inf")
    kept = []
    for chapter in chapters:
        first, last = max(chapter.start, start), min(chapter.end, end)
        if last - first >= 0.001:
            kept.append(ChapterMark(first - start, last - start, chapter.title))
    return tuple(kept)


def cover_jpeg(kind: str, probed: Probe, source: Path, workdir: Path, covers: dict[str, Path] | None) -> bytes | None:
    if covers is None:  # the pictures are in the video
        if kind == "frame" and probed.picture_stream is not None:
            return extract_cover(source, workdir, stream=probed.picture_stream,
                                 at_seconds=(probed.duration or 0.0) * COVER_FRAME_AT)
        if kind == "attached" and probed.attached_picture_stream is not None:
            return extract_cover(source, workdir, stream=probed.attached_picture_stream, at_seconds=None)
        return None
    if kind == "frame":
        # Made by the extraction's ffmpeg (a JPEG of a cover's size already): as it is, after a look.
        data = covers["frame"].read_bytes()
        return data if data.startswith(b"\xff\xd8") and len(data) <= MAX_COVER_BYTES else None
    demuxer = picture_demuxer(covers[kind])
    if demuxer is None:
        return None
    return extract_cover(covers[kind], workdir, stream=0, at_seconds=None, demuxer=demuxer)


def date_of(probed: Probe) -> str | None:
    """The container's date if it reads as YYYY[-MM[-DD]] (the start of an ISO timestamp counts)."""
    date = probed.tags.get("date")
    for length in (10, 7, 4):
        candidate = (date or "")[:length]
        if len(candidate) == length and candidate[:4].isdigit() and all(
                part.isdigit() for part in candidate.split("-")):
            return candidate
    return None


def write_tag(target: Path, tag: bytes) -> None:
    """Puts `tag` in front of the MP3's first frame, replacing the ID3v2 tag ffmpeg wrote (if any)."""
    tagged = target.with_name(target.name + ".tagged")
    with target.open("rb") as source, tagged.open("wb") as file:
        head = source.read(10)
        start = 0
        if head[:3] == b"ID3" and len(head) == 10:
            size = (head[6] << 21) | (head[7] << 14) | (head[8] << 7) | head[9]
            start = 10 + size + (10 if head[5] & 0x10 else 0)
        source.seek(start)
        file.write(tag)
        shutil.copyfileobj(source, file, COPY_BYTES)
    tagged.replace(target)
