"""Makes the media the client's tests read, with the ffmpeg binary: inputs for lavfi's test picture and tones, and a
two-track Matroska with chapters, title tags and an attached picture (what issue 23's tests send every way)."""

from __future__ import annotations

import subprocess
from pathlib import Path

CHAPTERS = """;FFMETADATA1
title=Two tracks
artist=The Testers

[CHAPTER]
TIMEBASE=1/1000
START=0
END=1500
title=Opening

[CHAPTER]
TIMEBASE=1/1000
START=1500
END=3000
title=Closing
"""


def ffmpeg(*arguments: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *arguments], check=True)


def tone(frequency: int, seconds: float = 3, rate: int = 48000) -> list[str]:
    return ["-f", "lavfi", "-i", f"sine=frequency={frequency}:sample_rate={rate}:duration={seconds}"]


def picture(size: str = "320x240", seconds: float = 3) -> list[str]:
    return ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25:duration={seconds}"]


def media_folder(folder: Path) -> Path:
    """`folder` with the chapters and the cover picture the media below take."""
    (folder / "chapters.txt").write_text(CHAPTERS)
    ffmpeg(*picture("200x200"), "-frames:v", "1", str(folder / "cover.jpg"))
    return folder


def two_track_matroska(media: Path) -> Path:
    """Matroska: H.264, AAC "eng" (440 Hz) and Opus "fra" (880 Hz, not default) with titles, chapters, global title
    and artist, and a JPEG attachment."""
    target = media / "two tracks.mkv"
    ffmpeg(*picture(), *tone(440), *tone(880), "-i", str(media / "chapters.txt"),
           "-map", "0:v", "-map", "1:a", "-map", "2:a", "-map_metadata", "3", "-map_chapters", "3",
           "-c:v", "libx264", "-preset", "ultrafast", "-c:a:0", "aac", "-c:a:1", "libopus",
           "-metadata:s:a:0", "language=eng", "-metadata:s:a:0", "title=English",
           "-metadata:s:a:1", "language=fra", "-metadata:s:a:1", "title=Français",
           "-disposition:a:0", "default", "-disposition:a:1", "0",
           "-attach", str(media / "cover.jpg"), "-metadata:s:t", "mimetype=image/jpeg",
           "-metadata:s:t", "filename=cover.jpg", str(target))
    return target


