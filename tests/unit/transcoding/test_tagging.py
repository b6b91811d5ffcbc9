"""The MP3's tags: a video's own metadata is cleaned as a user's text is."""

from __future__ import annotations

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


