"""The MP3's tags: a video's own metadata is cleaned as a user's text is."""

from __future__ import annotations

import json
import subprocess
import unicodedata
from pathlib import Path

from transcoding import ffmpeg_tools

HOSTILE = "x'; rm -rf / #\n-i /etc/passwd $(reboot) \u202e" + "A" * 300


def test_a_videos_own_metadata_is_cleaned_like_a_users(tmp_path: Path) -> None:
    video = tone_video(tmp_path / "hostile.mkv", seconds=1, metadata=(f"title={HOSTILE}", "artist=\x07\x1b[31m"))
    probed = ffmpeg_tools.probe(video, max_streams=8, max_duration=60)
    title = probed.tags["title"]
    assert len(title) <= 255 and title.startswith("x'; rm -rf / # -i /etc/passwd")
    assert not [ch for ch in title if unicodedata.category(ch)[0] == "C"]
    assert "artist" not in probed.tags or not [ch for ch in probed.tags["artist"]
                                              if unicodedata.category(ch)[0] == "C"]


def ffmpeg(*arguments: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *arguments], check=True)


def tone_video(target: Path, *, seconds: float, tones: tuple[int, ...] = (440,), size: str = "160x120",
               metadata: tuple[str, ...] = (), amplitude: float = 0.1) -> Path:
    """H.264 + one AAC track per tone (its frequency in Hz), with container metadata given as key=value."""
    command = ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate=10:duration={seconds}"]
    for tone in tones:
        command += ["-f", "lavfi", "-i", f"aevalsrc={amplitude}*sin(2*PI*{tone}*t):s=44100:d={seconds}"]
    command += ["-map", "0:v", *[part for index in range(len(tones)) for part in ("-map", f"{index + 1}:a")],
                "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac"]
    for item in metadata:
        command += ["-metadata", item]
    ffmpeg(*command, str(target))
    return target




def test_the_sources_chapters_become_the_mp3s_chapter_frames(tmp_path: Path) -> None:
    """ID3v2 chapters (CTOC + CHAP), which ffmpeg and players read back, in the MP3's own time after a trim."""
    from mutagen.id3 import ID3

    from events.options import ConversionOptions
    from transcoding.ffmpeg_tools import ChapterMark
    from transcoding.tagging import Tags, trimmed_chapters, write_tag

    chapters = (ChapterMark(0.0, 2.0, "Intro"), ChapterMark(2.0, 4.0, "Middle"), ChapterMark(4.0, 6.0, None))
    trimmed = trimmed_chapters(chapters, ConversionOptions(start_seconds=1.0, end_seconds=5.0))
    assert trimmed == (ChapterMark(0.0, 1.0, "Intro"), ChapterMark(1.0, 3.0, "Middle"), ChapterMark(3.0, 4.0, None))
    assert trimmed_chapters(chapters, ConversionOptions(start_seconds=2.0)) == (
        ChapterMark(0.0, 2.0, "Middle"), ChapterMark(2.0, 4.0, None))
    mp3 = tmp_path / "tone.mp3"
    ffmpeg("-f", "lavfi", "-i", "sine=duration=4", "-c:a", "libmp3lame", str(mp3))
    tags = Tags(title="Chaptered", artist=None, album=None, date=None, cover="none", chapters=trimmed)
    write_tag(mp3, tags.id3_bytes())
    assert tags.as_record()["chapters"] == 3
    assert sorted(frame.element_id for frame in ID3(mp3).getall("CHAP")) == ["chp0", "chp1", "chp2"]
    probed = subprocess.run(["ffprobe", "-v", "error", "-show_chapters", "-of", "json", str(mp3)],
                            capture_output=True, check=True).stdout
    found = [(float(chapter["start_time"]), float(chapter["end_time"]), chapter.get("tags", {}).get("title"))
             for chapter in json.loads(probed)["chapters"]]
    # In order; an untitled chapter is named by its place.
    assert found == [(0.0, 1.0, "Intro"), (1.0, 3.0, "Middle"), (3.0, 4.0, "Chapter 3")]
    assert str(ID3(mp3)["TIT2"]) == "Chaptered"
