"""What a job's options force on its plan: copies and re-encodes, trims narrowing the segments, what keeps a long job on
its own instance, and a range outside the audio refused once the probe knows its length."""

from __future__ import annotations

import pytest

from events.options import parse_options
from transcoding import plan
from transcoding.ffmpeg_tools import Probe, Rejected
from transcoding.plan import FanOutPolicy, Mode


def probe_of(codec: str = "aac", seconds: float = 600, channels: int = 2) -> Probe:
    return Probe(container="mov,mp4,m4a,3gp,3g2,mj2", audio_codec=codec, audio_duration=seconds, stream_count=2,
                 audio_sample_rate=44100, audio_channels=channels)


@pytest.mark.parametrize(("codec", "fields", "copied", "mode"), [
    ("mp3", {}, True, Mode.ONE_PASS),
    ("mp3", {"quality": "V2"}, True, Mode.ONE_PASS),  # a quality never re-encodes an MP3
    ("mp3", {"start": "5", "end": "60"}, True, Mode.ONE_PASS),  # trimmed on its frames
    ("mp3", {"channels": "2"}, True, Mode.ONE_PASS),  # stereo already
    ("mp3", {"channels": "1"}, False, Mode.SEGMENTS),
    ("mp3", {"normalize": "ebu-r128"}, False, Mode.SEGMENTS),
    ("aac", {"quality": "V0"}, False, Mode.ONE_PASS),  # VBR is not joined
    ("aac", {"start": "300", "end": "400"}, False, Mode.ONE_PASS),  # 100 s left: under the split threshold
    ("aac", {"start": "100"}, False, Mode.SEGMENTS),
])
def test_what_the_options_force(codec: str, fields: dict[str, str], copied: bool, mode: Mode) -> None:
    probed = probe_of(codec)
    audio = plan.recipe(probed, parse_options(fields))
    chosen = plan.choose(probed, copy=audio.copy, cpus=2, segment_min_seconds=150, fan_out=None, audio=audio)
    assert (audio.copy, chosen.mode) == (copied, mode), (audio, chosen.reason)
    assert audio.as_record()["forced"] or codec != "mp3"  # an MP3 source always says what happened to it


def test_a_trim_narrows_the_segments_to_its_range() -> None:
    probed = probe_of(seconds=600)
    audio = plan.recipe(probed, parse_options({"start": "100.5", "end": "400"}))
    chosen = plan.choose(probed, copy=False, cpus=2, segment_min_seconds=150, fan_out=None, audio=audio)
    first, last = chosen.segments[0], chosen.segments[-1]
    assert first.start_seconds == 100.5 and first.skip_frames == 0
    assert last.start_seconds + last.duration_seconds == pytest.approx(400)  # type: ignore[operator]


def test_a_trim_keeps_a_long_job_on_its_own_instance_other_options_fan_out() -> None:
    probed = probe_of(seconds=7200)
    fan_out = FanOutPolicy(1800, 300, 64)
    for fields in ({"title": "x", "track": "0"}, {"normalize": "ebu-r128", "channels": "1"}):
        audio = plan.recipe(probed, parse_options(fields))
        assert plan.choose(probed, copy=False, cpus=2, segment_min_seconds=150, fan_out=fan_out,
                           audio=audio).mode is Mode.FAN_OUT
    trimmed = plan.recipe(probed, parse_options({"start": "60"}))
    chosen = plan.choose(probed, copy=False, cpus=2, segment_min_seconds=150, fan_out=fan_out, audio=trimmed)
    assert chosen.mode is Mode.SEGMENTS and "trim" in chosen.reason


@pytest.mark.parametrize(("fields", "words"), [({"start": "600"}, "start 600 s"), ({"end": "601"}, "end 601 s")])
def test_a_range_outside_the_audio_is_refused_once_probed(fields: dict[str, str], words: str) -> None:
    with pytest.raises(Rejected) as raised:
        plan.recipe(probe_of(seconds=600), parse_options(fields))
    assert raised.value.reason == "invalid_options" and words in raised.value.message


