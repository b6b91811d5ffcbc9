"""The locked-down ffmpeg command lines: no text of a user's options ever reaches them."""

from __future__ import annotations

from pathlib import Path

from events.options import parse_options
from transcoding import ffmpeg_tools, loudness, plan, tagging
from transcoding.ffmpeg_tools import Probe


def probe_of(codec: str = "aac", seconds: float = 600, channels: int = 2) -> Probe:
    return Probe(container="mov,mp4,m4a,3gp,3g2,mj2", audio_codec=codec, audio_duration=seconds, stream_count=2,
                 audio_sample_rate=44100, audio_channels=channels)


HOSTILE = "x'; rm -rf / #\n-i /etc/passwd $(reboot) \u202e" + "A" * 300


def test_no_option_text_reaches_an_ffmpeg_command(tmp_path: Path) -> None:
    options = parse_options({"title": HOSTILE[:255], "artist": "-f lavfi", "album": "|concat:/etc/passwd",
                             "start": "1", "end": "2", "normalize": "ebu-r128", "channels": "1", "track": "1"})
    probed = probe_of()
    audio = plan.recipe(probed, options)
    commands = [
        ffmpeg_tools.conversion_command(tmp_path / "in", tmp_path / "out.mp3", copy=audio.copy, bitrate_kbps=192,
                                        max_duration=60, start_seconds=audio.start_seconds,
                                        duration_seconds=audio.duration_seconds, shape=audio.shape),
        loudness.measurement_command(tmp_path / "in", shape=audio.shape, target_lufs=-16,
                                     start_seconds=audio.start_seconds, duration_seconds=audio.duration_seconds),
        tagging.cover_command(tmp_path / "in", tmp_path / "cover.jpg", stream=0, at_seconds=1.0),
    ]
    texts = [options.title, options.artist, options.album]
    assert not [argument for command in commands for argument in command
                for text in texts if text and text in argument]


