"""trim_silence's measurement: the leading and trailing silence of real audio as ffmpeg's silencedetect hears it, a
pause in the middle left alone, and audio that is silent throughout refused."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from transcoding import silence
from transcoding.ffmpeg_tools import Rejected


def tone_between_silences(target: Path, *, before: float, tone: float, pause: float, after: float) -> Path:
    """Silence, a tone, a pause, the tone again, silence (AAC in M4A, as a phone records)."""
    parts = [f"anullsrc=r=44100:cl=stereo:d={before}", f"sine=f=440:r=44100:d={tone}",
             f"anullsrc=r=44100:cl=stereo:d={pause}", f"sine=f=440:r=44100:d={tone}",
             f"anullsrc=r=44100:cl=stereo:d={after}"]
    inputs = [argument for part in parts if not part.endswith("d=0") for argument in ("-f", "lavfi", "-i", part)]
    count = len(inputs) // 4
    graph = "".join(f"[{index}]aformat=channel_layouts=stereo:sample_rates=44100[a{index}];" for index in range(count))
    graph += "".join(f"[a{index}]" for index in range(count)) + f"concat=n={count}:v=0:a=1"
    subprocess.run(["ffmpeg", "-v", "error", "-y", *inputs, "-filter_complex", graph, "-c:a", "aac", str(target)],
                   check=True)
    return target


def audible(path: Path, length: float) -> silence.Audible:
    return silence.measure(path, track=0, threshold_db=-50, min_seconds=0.5, audio_start=0.0, audio_end=length,
                           timeout=60, heartbeat=lambda _: True)


def test_the_leading_and_trailing_silence_are_found_and_a_pause_is_not(tmp_path: Path) -> None:
    clip = tone_between_silences(tmp_path / "clip.m4a", before=2, tone=1.5, pause=1, after=3)
    found = audible(clip, 9.0)
    assert found.start_seconds == pytest.approx(2.0, abs=0.03)
    assert found.end_seconds == pytest.approx(6.0, abs=0.03)


def test_no_silence_at_either_end_trims_nothing(tmp_path: Path) -> None:
    clip = tone_between_silences(tmp_path / "clip.m4a", before=0, tone=1.5, pause=1, after=0)
    assert audible(clip, 4.0) == silence.Audible(None, None)


def test_audio_silent_throughout_is_refused(tmp_path: Path) -> None:
    clip = tmp_path / "silent.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "anullsrc=r=44100:cl=stereo:d=3",
                    "-c:a", "aac", str(clip)], check=True)
    with pytest.raises(Rejected) as refused:
        audible(clip, 3.0)
    assert refused.value.reason == "invalid_options"
