"""A finished MP3 and its job's chapters in, one MP3 per chapter out (`split=chapters`): each the chapter's frames of
the same encode, cut with an Info/LAME tag of its own (mp3join.plan_cuts, cut_piece) so the files played back to
back by a gapless player are the whole MP3, sample for sample; tagged with the chapter's title, its track number n/N
and the whole's title as album (with the whole's artist, date and cover); stored in GridFS beside the MP3, with the
job's id and owner in their metadata (so erasure, retention and quotas count them with the MP3)."""

from __future__ import annotations

import mmap
import uuid
from pathlib import Path
from typing import Any

from mutagen.id3 import APIC, ID3, TALB, TDRC, TIT2, TPE1, TRCK, ID3NoHeaderError

from events.options import ConversionOptions
from storage.media import MediaStore
from transcoding import mp3join, tagging
from transcoding.ffmpeg_tools import ChapterMark


def chapter_file_id(job_id: str, number: int, write_id: str) -> str:
    """One per write: an attempt that lost its job removes only its own files, never those of the one that won."""
    return f"{job_id}.ch{number}.{write_id}"


def chapter_tag(whole: ID3 | None, title: str, number: int, count: int) -> bytes:
    """The chapter file's ID3v2.4 tag: its title, track n/N, the whole's title as album, its artist, date, cover."""
    tag = ID3()
    tag.add(TIT2(encoding=3, text=[title]))
    tag.add(TRCK(encoding=3, text=[f"{number}/{count}"]))
    if whole is not None:
        if "TIT2" in whole:
            tag.add(TALB(encoding=3, text=[str(whole["TIT2"])]))
        for frame in whole.values():
            if isinstance(frame, TPE1 | TDRC | APIC):
                tag.add(frame)
    return tagging.rendered_tag(tag)


def chapter_starts(chapters: list[dict[str, Any]], sample_rate: int, total_samples: int) -> list[int]:
    """The sample each chapter file starts at: the chapter's own start, to the sample its millisecond names."""
    return [min(total_samples - 1, round(chapter["start_seconds"] * sample_rate)) for chapter in chapters]


def store_chapter_files(mp3: Path, chapters: list[dict[str, Any]], store: MediaStore, *, job_id: str,
                        owner_id: str) -> list[dict[str, Any]]:
    """Cuts `mp3` (tagged and finished) at its chapters and stores each piece; what the job records of each. A
    failure part way removes the files already stored (JoinError: the MP3 is not one this cutter takes apart)."""
    try:
        whole: ID3 | None = ID3(mp3)
    except ID3NoHeaderError:
        whole = None
    write_id = uuid.uuid4().hex[:12]
    stored: list[dict[str, Any]] = []
    with mp3.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
        try:
            layout = mp3join.stream_layout(data)
            rate = layout.tag.layout.sample_rate
            cuts = mp3join.plan_cuts(chapter_starts(chapters, rate, layout.sample_count), layout.sample_count,
                                     layout.frame_count, delay=layout.tag.delay)
            for number, (chapter, cut) in enumerate(zip(chapters, cuts, strict=True), start=1):
                audio = mp3join.cut_piece(data, layout, cut)
                file_id = chapter_file_id(job_id, number, write_id)
                kept = store.store(file_id, [chapter_tag(whole, chapter["title"], number, len(chapters)), audio],
                                   filename=f"{job_id}-{number}.mp3",
                                   metadata={"owner_id": owner_id, "job_id": job_id, "chapter": number})
                stored.append({"number": number, "title": chapter["title"], "file_id": kept.file_id,
                               "size_bytes": kept.size_bytes, "sha256": kept.sha256,
                               "start_seconds": round(cut.start_sample / rate, 6),
                               "duration_seconds": round(cut.sample_count / rate, 6)})
        except BaseException:
            remove_chapter_files(store, stored)
            raise
    return stored


def remove_chapter_files(store: MediaStore, files: list[dict[str, Any]]) -> None:
    for chapter_file in files:
        store.remove(chapter_file["file_id"])


def split_refusal(options: ConversionOptions, chapters: tuple[ChapterMark, ...]) -> str | None:
    """Why `split=chapters` cannot be done for a video with these chapters (None: it can, or was not asked)."""
    if options.split != "chapters":
        return None
    if not chapters:
        return "split=chapters: the video has no chapters to split at"
    if not tagging.trimmed_chapters(chapters, options):
        return "split=chapters: no chapter lies within the trim"
    return None
