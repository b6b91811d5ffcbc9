"""Conversion options: parsed and validated in one place (every bad field named at once), carried by the
video-uploaded event without troubling a v1 subscriber, decided once per job (plan.recipe), and applied on the real
local stack: trim, VBR, EBU R 128 loudness, the audio track, channels, ID3v2.4 tags and cover, a copied MP3 that
keeps its audio, and a long video in segments. Every result is measured by ffmpeg or mutagen, not by the code under
test."""

from __future__ import annotations

import argparse
import copy
import json
import re
import subprocess
import unicodedata
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pymongo
import pytest
import requests
from mutagen.id3 import ID3
from mutagen.mp3 import MP3
from pydantic import BaseModel, ConfigDict

from client import cli
from client.api import Vid2mp3
from events import EventEmitter, VideoUploaded
from events.options import ConversionOptions, InvalidOptions, as_fields, parse_options
from events.publish_schemas import SCHEMA_DIR
from functions.convert import ffmpeg_tools, loudness, plan, tagging
from functions.convert.conversion import Converter
from functions.convert.ffmpeg_tools import Probe, Rejected
from functions.convert.plan import FanOutPolicy, Mode
from functions.shared.jobs import FINAL_STATES, Jobs
from functions.shared.media import AUDIO, TRACKS, VIDEOS, MediaStore, remove_job_media
from stack.config import LOCAL
from tests.audio_quality import decode, make_source
from tests.support import new_user, stage_job, wait_for

JOB = "0" * 32
# One MPEG-1 Layer III frame at 44.1 kHz: how close a trimmed MP3's length must come.
FRAME_SECONDS = 1152 / 44100
# LAME's documented average bitrate per VBR level (kbit/s, on music), with 10 % either side for synthetic audio.
VBR_RANGES_KBPS = {"V2": (170, 210), "V9": (45, 85)}


# --- Parsing and validation, without a stack ---------------------------------------------------------------

@pytest.mark.parametrize(("fields", "expected"), [
    ({}, {}),
    ({"start": "12.5", "end": "1:02:03.25"}, {"start_seconds": 12.5, "end_seconds": 3723.25}),
    ({"start": "01:05", "end": "00:01:10.5"}, {"start_seconds": 65.0, "end_seconds": 70.5}),
    ({"start": "10800.125"}, {"start_seconds": 10800.125}),  # to the millisecond, also sent back by a client
    ({"quality": "v0"}, {"quality": "V0"}),
    ({"quality": "320k"}, {"quality": "320"}),
    ({"bitrate": "128"}, {"quality": "128"}),  # the older spelling still works
    ({"bitrate": "128", "quality": "V4"}, {"quality": "V4"}),  # and the newer wins
    ({"normalize": "EBU-R128", "loudness": "-23"}, {"normalize": "ebu-r128", "loudness_lufs": -23.0}),
    ({"track": "1", "channels": "1", "cover": "none"}, {"track": 1, "channels": 1, "cover": "none"}),
    ({"title": "  Ode\tto\njoy ", "artist": "Ana Ñ", "album": "", "date": "2024-05"},
     {"title": "Ode to joy", "artist": "Ana Ñ", "date": "2024-05"}),
    ({"title": "\u200b\x07"}, {}),  # nothing but invisible characters: no tag
])
def test_options_are_parsed_from_form_fields(fields: dict[str, str], expected: dict[str, Any]) -> None:
    options = parse_options(fields)
    assert options.given() == expected
    assert parse_options(as_fields(options)) == options  # what a client sends says the same again


def test_every_bad_option_is_named_at_once() -> None:
    with pytest.raises(InvalidOptions) as raised:
        parse_options({"start": "1:75", "end": "soon", "quality": "V10", "bitrate": "100", "normalize": "loud",
                       "loudness": "-5", "track": "-1", "channels": "6", "title": "x" * 256, "date": "2024-13-01",
                       "cover": "poster"})
    assert set(raised.value.errors) == {"start", "end", "quality", "bitrate", "normalize", "loudness", "track",
                                        "channels", "title", "date", "cover"}
    assert all(raised.value.errors.values())


@pytest.mark.parametrize(("fields", "field", "problem"), [
    ({"start": "20", "end": "10"}, "end", "after start"),
    ({"start": "10", "end": "10"}, "end", "after start"),
    ({"loudness": "-18"}, "loudness", "normalize"),
])
def test_options_are_checked_together(fields: dict[str, str], field: str, problem: str) -> None:
    with pytest.raises(InvalidOptions) as raised:
        parse_options(fields)
    assert problem in raised.value.errors[field]


def test_the_cli_checks_its_option_flags_before_uploading(tmp_path: Path) -> None:
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"not read: the options are refused first")
    with pytest.raises(SystemExit) as exited:
        cli.main(["convert", str(video), "--start", "soon", "--quality", "V12", "--date", "2024-13",
                  "--endpoints", str(tmp_path / "none.env")])
    assert all(f"--{name}:" in str(exited.value) for name in ("start", "quality", "date"))
    flags = argparse.Namespace(**dict.fromkeys(cli.OPTION_FLAGS), bitrate=None)
    flags.start, flags.quality, flags.title, flags.normalize = "1:05", "v2", " Live ", "ebu-r128"
    assert cli.conversion_fields(flags) == {"start": "65", "quality": "V2", "title": "Live", "normalize": "ebu-r128"}


# --- The event: optional fields a v1 subscriber does not notice ---------------------------------------------

def uploaded(**change: Any) -> VideoUploaded:
    return VideoUploaded(job_id=JOB, owner_id="owner", video_id=JOB, filename="clip.mp4", size_bytes=10,
                         sha256="a" * 64, bitrate_kbps=192, uploaded_at=datetime.now(UTC), **change)


def schema_before_options() -> dict[str, Any]:
    """The video-uploaded v1 schema as published before the options: the current one without them."""
    schema = json.loads((SCHEMA_DIR / VideoUploaded.schema_file_name()).read_text())
    old = copy.deepcopy(schema)
    del old["properties"]["options"]
    old.pop("$defs", None)
    return old


class V1Subscriber(BaseModel):
    """A subscriber written against v1 before the options: it reads the fields it knows and ignores the rest, as
    events/README.md asks of every subscriber."""

    model_config = ConfigDict(extra="ignore")

    job_id: str
    video_id: str
    bitrate_kbps: int


def test_an_event_without_options_is_the_v1_payload_as_before() -> None:
    data = uploaded().model_dump(mode="json")
    assert "options" not in data
    jsonschema.validate(data, schema_before_options())  # even a strict v1 validator takes it


def test_an_event_with_options_still_serves_a_v1_subscriber() -> None:
    options = parse_options({"start": "1", "quality": "V2", "title": "T"}).for_event()
    data = uploaded(options=options).model_dump(mode="json")
    assert data["options"] == {"start_seconds": 1.0, "quality": "V2", "title": "T"}
    jsonschema.validate(data, json.loads((SCHEMA_DIR / VideoUploaded.schema_file_name()).read_text()))
    lenient = schema_before_options()
    lenient["additionalProperties"] = True
    jsonschema.validate(data, lenient)
    assert V1Subscriber.model_validate(data).bitrate_kbps == 192
    assert VideoUploaded.model_validate(data).options == options


def test_a_cbr_quality_travels_as_the_bitrate_so_the_payload_stays_v1() -> None:
    options = parse_options({"quality": "256"})
    assert options.cbr_kbps == 256 and options.for_event() is None


# --- What the options force, decided once --------------------------------------------------------------------

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


def test_the_loudness_gain_stops_where_the_true_peak_would_pass_the_limit() -> None:
    assert loudness.gain_for(-20.0, -10.0, -16.0).gain_db == pytest.approx(4.0)
    capped = loudness.gain_for(-20.0, -3.0, -16.0)
    assert capped.gain_db == pytest.approx(loudness.TRUE_PEAK_LIMIT_DBTP + 3.0) and capped.limited_by
    assert loudness.gain_for(float("-inf"), float("-inf"), -16.0).gain_db == 0.0


# --- Hostile text: cleaned, and never an ffmpeg argument -----------------------------------------------------

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


def test_a_videos_own_metadata_is_cleaned_like_a_users(tmp_path: Path) -> None:
    video = tone_video(tmp_path / "hostile.mkv", seconds=1, metadata=(f"title={HOSTILE}", "artist=\x07\x1b[31m"))
    probed = ffmpeg_tools.probe(video, max_streams=8, max_duration=60)
    title = probed.tags["title"]
    assert len(title) <= 255 and title.startswith("x'; rm -rf / # -i /etc/passwd")
    assert not [ch for ch in title if unicodedata.category(ch)[0] == "C"]
    assert "artist" not in probed.tags or not [ch for ch in probed.tags["artist"]
                                              if unicodedata.category(ch)[0] == "C"]


# --- On the local stack ----------------------------------------------------------------------------------

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


def convert(endpoints: dict[str, str], video: Path, fields: dict[str, str], tmp_path: Path,
            client: Vid2mp3 | None = None) -> tuple[dict[str, Any], Path]:
    """Uploads `video` with the options as query parameters, follows the job, downloads its MP3."""
    client = client or new_user(endpoints)[0]
    accepted = client.upload(video, options=fields)
    job = client.follow(accepted["job_id"], lambda _: None, timeout=90, interval=0.2)
    target = tmp_path / f"{video.stem}-{uuid.uuid4().hex[:6]}.mp3"
    if job["state"] == "done":
        client.download(job["job_id"], target)
    return job, target


def seconds_decoded(mp3: Path) -> float:
    """The MP3's length as ffmpeg decodes it (encoder delay and padding removed)."""
    return len(decode(mp3)) / 44100


def loudness_of(mp3: Path) -> tuple[float, float]:
    """Integrated loudness (LUFS) and true peak (dBTP), by ffmpeg's ebur128 filter."""
    report = subprocess.run(["ffmpeg", "-nostats", "-nostdin", "-i", str(mp3), "-af", "ebur128=peak=true",
                             "-f", "null", "-"], capture_output=True, text=True, check=True).stderr
    summary = report[report.rindex("Summary:"):]
    integrated = float(re.search(r"I:\s+(-?[\d.]+) LUFS", summary).group(1))  # type: ignore[union-attr]
    peak = float(re.search(r"True peak:\s+Peak:\s+(-?[\d.]+|-inf) dBFS", summary).group(1))  # type: ignore[union-attr]
    return integrated, peak


def dominant_hz(mp3: Path) -> float:
    samples = decode(mp3).mean(axis=1)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / 44100)[int(np.argmax(spectrum))])


def frame_bitrates_kbps(mp3: Path) -> list[int]:
    """Each audio frame's bitrate, from its size as ffprobe lists the packets (the frames of an MP3)."""
    listing = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries", "packet=size",
                              "-of", "csv=p=0", str(mp3)], capture_output=True, text=True, check=True).stdout
    return [round(int(size) * 8 * 44100 / 1152 / 1000) for size in re.findall(r"^(\d+)", listing, re.MULTILINE)]


def packets_md5(mp3: Path) -> str:
    """The MD5 of the audio frames' bytes, as ffmpeg copies them (tags and the Info frame left out)."""
    return subprocess.run(["ffmpeg", "-v", "error", "-i", str(mp3), "-map", "0:a", "-c", "copy", "-f", "md5", "-"],
                          capture_output=True, text=True, check=True).stdout.strip()


def jpeg_size(data: bytes, tmp_path: Path) -> tuple[int, int]:
    """Width and height of a picture that ffprobe reads as a JPEG (and ffmpeg decodes)."""
    picture = tmp_path / f"cover-{uuid.uuid4().hex[:6]}.jpg"
    picture.write_bytes(data)
    ffmpeg("-i", str(picture), "-f", "null", "-")
    info = json.loads(subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(picture)],
                                     capture_output=True, check=True).stdout)["streams"][0]
    assert info["codec_name"] == "mjpeg"
    return int(info["width"]), int(info["height"])


@pytest.mark.stack
def test_invalid_options_are_refused_with_422_naming_each(endpoints: dict[str, str], tmp_path: Path) -> None:
    client = new_user(endpoints)[0]
    video = tone_video(tmp_path / "clip.mp4", seconds=1)
    headers = {"Authorization": f"Bearer {client.token}"}
    bad = {"start": "later", "quality": "V11", "channels": "5", "cover": "poster"}
    answer = requests.post(endpoints["UPLOAD_URL"], params=bad, data=video.read_bytes(), headers=headers, timeout=30)
    assert answer.status_code == 422
    assert answer.json()["error"] == "invalid_options" and set(answer.json()["fields"]) == set(bad)
    # As multipart form fields, read as the body streams past: refused too, and nothing of the upload is kept.
    with video.open("rb") as file:
        answer = requests.post(endpoints["UPLOAD_URL"], headers=headers, timeout=30,
                               data={"end": "-3", "loudness": "-30", "date": "May"}, files={"file": file})
    assert answer.status_code == 422 and set(answer.json()["fields"]) == {"end", "loudness", "date"}
    assert client.session.get(endpoints["STATUS_URL"], headers=headers, timeout=10).json()["jobs"] == []


@pytest.mark.stack
def test_a_trimmed_mp3_lasts_end_minus_start(endpoints: dict[str, str], tmp_path: Path) -> None:
    video = tone_video(tmp_path / "trim.mp4", seconds=6)
    job, mp3 = convert(endpoints, video, {"start": "00:01.5", "end": "4.25", "quality": "128"}, tmp_path)
    assert job["state"] == "done", job.get("failure")
    assert abs(seconds_decoded(mp3) - 2.75) <= FRAME_SECONDS
    assert job["options"] == {"start_seconds": 1.5, "end_seconds": 4.25}
    assert job["applied"]["start_seconds"] == 1.5 and job["bitrate_kbps"] == 128
    # Past the end: the job fails with the reason once the probe knows the length.
    job, _ = convert(endpoints, video, {"start": "2", "end": "9"}, tmp_path)
    assert job["state"] == "failed" and job["failure"]["reason"] == "invalid_options"
    assert "end 9 s is past the end of the audio" in job["failure"]["message"]


@pytest.mark.stack
def test_vbr_output_varies_its_bitrate_within_the_levels_range(endpoints: dict[str, str], tmp_path: Path) -> None:
    # Broadband sound, loud one second and quiet the next: what VBR spends more and fewer bits on.
    video = tmp_path / "varied.m4a"
    ffmpeg("-f", "lavfi", "-i", "anoisesrc=color=white:amplitude=0.2:r=44100:d=8:seed=3", "-f", "lavfi", "-i",
           "aevalsrc=0.3*sin(2*PI*(330*t+15*sin(2*PI*0.5*t)))|0.25*sin(2*PI*2500*t):s=44100:d=8",
           "-filter_complex", "[0]aformat=channel_layouts=stereo[noise];[noise][1]amix=inputs=2:normalize=0,"
           "volume='if(lt(mod(t,2),1),1,0.05)':eval=frame[mixed]", "-map", "[mixed]", "-c:a", "aac", "-b:a", "192k",
           str(video))
    client = new_user(endpoints)[0]
    averages = {}
    for level, (low, high) in VBR_RANGES_KBPS.items():
        job, mp3 = convert(endpoints, video, {"quality": level}, tmp_path, client)
        assert job["state"] == "done", job.get("failure")
        assert job["encoding"]["mode"] == "one_pass" and "VBR" in job["encoding"]["reason"]
        frames = frame_bitrates_kbps(mp3)
        assert len(set(frames)) >= 3, f"{level}: the frame bitrates do not vary: {sorted(set(frames))}"
        averages[level] = MP3(mp3).info.bitrate / 1000
        assert low * 0.9 <= averages[level] <= high * 1.1, f"{level}: {averages[level]:.0f} kbit/s"
    print(f"VBR average bitrates (kbit/s): {averages}")


@pytest.mark.stack
@pytest.mark.parametrize("target", [None, -20])
def test_ebu_r128_normalisation_reaches_the_target_under_the_peak_limit(endpoints: dict[str, str], tmp_path: Path,
                                                                         target: int | None) -> None:
    video = tone_video(tmp_path / "quiet.mp4", seconds=5, amplitude=0.05)
    fields = {"normalize": "ebu-r128", **({"loudness": str(target)} if target is not None else {})}
    job, mp3 = convert(endpoints, video, fields, tmp_path)
    assert job["state"] == "done", job.get("failure")
    integrated, peak = loudness_of(mp3)
    assert abs(integrated - (target or -16)) <= 1.0, f"{integrated} LUFS"
    assert peak <= -1.0, f"true peak {peak} dBTP"
    assert job["applied"]["loudness"]["target_lufs"] == (target or -16)
    print(f"normalised to {target or -16} LUFS: measured {integrated} LUFS, true peak {peak} dBTP")


@pytest.mark.stack
def test_the_chosen_audio_track_is_the_one_converted(endpoints: dict[str, str], tmp_path: Path) -> None:
    video = tone_video(tmp_path / "two tracks.mp4", seconds=3, tones=(300, 1000))
    client = new_user(endpoints)[0]
    job, mp3 = convert(endpoints, video, {"track": "1", "channels": "1"}, tmp_path, client)
    assert job["state"] == "done", job.get("failure")
    assert dominant_hz(mp3) == pytest.approx(1000, abs=5)
    assert [track["index"] for track in job["audio_tracks"]] == [0, 1]
    assert MP3(mp3).info.channels == 1
    job, mp3 = convert(endpoints, video, {}, tmp_path, client)  # the default track
    assert dominant_hz(mp3) == pytest.approx(300, abs=5)
    job, _ = convert(endpoints, video, {"track": "2"}, tmp_path, client)
    assert job["state"] == "failed" and job["failure"]["reason"] == "invalid_options"
    assert len(job["audio_tracks"]) == 2  # listed, so the owner can choose again


@pytest.mark.stack
def test_tags_and_cover_are_written_as_id3v24(endpoints: dict[str, str], tmp_path: Path) -> None:
    video = tone_video(tmp_path / "My holiday.mp4", seconds=4, size="1280x720",
                       metadata=("title=Beach day", "artist=The Waves"))
    client = new_user(endpoints)[0]
    job, mp3 = convert(endpoints, video, {"album": "Summer", "date": "2024-07-01"}, tmp_path, client)
    assert job["state"] == "done", job.get("failure")
    tags = ID3(mp3)
    assert tags.version == (2, 4, 0)
    assert (str(tags["TIT2"]), str(tags["TPE1"]), str(tags["TALB"]), str(tags["TDRC"])) == \
        ("Beach day", "The Waves", "Summer", "2024-07-01")  # the video's metadata, then the options
    cover = tags.getall("APIC")
    assert len(cover) == 1 and cover[0].mime == "image/jpeg"
    assert max(jpeg_size(cover[0].data, tmp_path)) == 600  # a frame of the 1280x720 video, scaled down
    assert job["applied"]["tags"]["cover"] == "frame"
    plain = tone_video(tmp_path / "no title.mp4", seconds=2)
    job, mp3 = convert(endpoints, plain, {"title": "Mine", "cover": "none"}, tmp_path, client)
    assert str(ID3(mp3)["TIT2"]) == "Mine" and not ID3(mp3).getall("APIC")
    job, mp3 = convert(endpoints, plain, {}, tmp_path, client)
    assert str(ID3(mp3)["TIT2"]) == "no title"  # the file name without its extension


@pytest.mark.stack
def test_a_copied_mp3_keeps_its_audio_bytes_and_gains_the_tags(endpoints: dict[str, str], tmp_path: Path) -> None:
    source = tmp_path / "song.mp3"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=4", "-c:a", "libmp3lame", "-b:a",
           "160k", "-metadata", "title=Old title", str(source))
    job, mp3 = convert(endpoints, source, {"artist": "Someone", "quality": "V0"}, tmp_path)
    assert job["state"] == "done", job.get("failure")
    assert job["audio"]["stream_copied"] is True and job["applied"]["forced"]
    assert packets_md5(mp3) == packets_md5(source)
    tags = ID3(mp3)
    assert (str(tags["TIT2"]), str(tags["TPE1"])) == ("Old title", "Someone")


# --- A long video: the options with the segmented plan, in this process on the stack's stores -----------------

class OnStack:
    def __init__(self, endpoints: dict[str, str]) -> None:
        self.database = pymongo.MongoClient(endpoints["MONGO_URI"], tz_aware=True)["vid2mp3"]
        self.jobs = Jobs(self.database)
        self.endpoints = endpoints
        self.owner_id = f"options-{uuid.uuid4().hex[:8]}"
        self.work_dir = LOCAL / "work" / "options-tests"
        self.work_dir.mkdir(parents=True, exist_ok=True)

    def converter(self, fan_out: FanOutPolicy | None = None) -> Converter:
        return Converter(jobs=self.jobs, videos=MediaStore(self.database, VIDEOS),
                         audio=MediaStore(self.database, AUDIO),
                         emitter=EventEmitter(self.endpoints["BROKER_INGRESS_URL"], "convert"),
                         work_dir=self.work_dir, max_duration_seconds=3600, max_streams=32,
                         ffmpeg_timeout_seconds=120, audio_retention=timedelta(hours=1), cpus=2,
                         segment_min_seconds=20, fan_out=fan_out, tracks=MediaStore(self.database, TRACKS))

    def stage(self, source: Path, fields: dict[str, str]) -> VideoUploaded:
        event = stage_job(self.database, source, self.owner_id, 192)
        options = ConversionOptions.model_validate(parse_options(fields).for_event() or {})
        self.jobs.collection.update_one({"_id": event.job_id}, {"$set": {"options": options.given()}})
        return event

    def mp3(self, job_id: str, target: Path) -> Path:
        with target.open("wb") as file:
            assert MediaStore(self.database, AUDIO).copy_to(self.jobs.get(job_id)["audio"]["audio_id"], file)  # type: ignore[index]
        return target


@pytest.fixture(scope="module")
def on_stack(endpoints: dict[str, str]) -> Iterator[OnStack]:
    stack = OnStack(endpoints)
    yield stack
    for job in stack.jobs.collection.find({"owner_id": stack.owner_id}):
        remove_job_media(stack.database, job)
        stack.jobs.delete(job["_id"])


@pytest.fixture(scope="module")
def long_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Long enough for the segmented plan with its threshold lowered to 20 s (the deployment's is 150 s).
    return make_source(tmp_path_factory.mktemp("long") / "long.mp4", rate=44100, channels=2, tone=False, seconds=45)


@pytest.mark.stack
def test_trim_loudness_and_tags_work_with_the_segmented_plan(on_stack: OnStack, long_video: Path,
                                                            tmp_path: Path) -> None:
    event = on_stack.stage(long_video, {"start": "3.2", "end": "41", "normalize": "ebu-r128", "title": "Long"})
    on_stack.converter().handle(event)
    job = on_stack.jobs.get(event.job_id) or {}
    assert job["state"] == "done", job.get("failure")
    assert job["encoding"]["mode"] == Mode.SEGMENTS and len(job["encoding"]["segments"]) == 2
    mp3 = on_stack.mp3(event.job_id, tmp_path / "long.mp3")
    assert abs(seconds_decoded(mp3) - 37.8) <= FRAME_SECONDS
    integrated, peak = loudness_of(mp3)
    assert abs(integrated + 16) <= 1.0 and peak <= -1.0, (integrated, peak)
    assert str(ID3(mp3)["TIT2"]) == "Long" and ID3(mp3).getall("APIC")
    print(f"segmented with options: {seconds_decoded(mp3):.4f} s (37.8 asked), {integrated} LUFS, {peak} dBTP")


@pytest.mark.stack
def test_a_fanned_out_job_gets_its_track_tags_channels_and_loudness(on_stack: OnStack, tmp_path: Path) -> None:
    video = tone_video(tmp_path / "fan.mp4", seconds=40, tones=(300, 1000), metadata=("title=Fanned",))
    event = on_stack.stage(video, {"track": "1", "channels": "1", "normalize": "ebu-r128", "loudness": "-18"})
    on_stack.converter(fan_out=FanOutPolicy(min_seconds=30, segment_seconds=20, max_segments=2)).handle(event)
    job = wait_for(lambda: (found := on_stack.jobs.get(event.job_id) or {}).get("state") in FINAL_STATES and found,
                   90, "the fanned-out job to end", interval=0.2)
    assert job["state"] == "done", job.get("failure")
    assert job["encoding"]["mode"] == Mode.FAN_OUT
    mp3 = on_stack.mp3(event.job_id, tmp_path / "fan.mp3")
    assert dominant_hz(mp3) == pytest.approx(1000, abs=5)
    assert str(ID3(mp3)["TIT2"]) == "Fanned" and ID3(mp3).getall("APIC")
    assert abs(seconds_decoded(mp3) - 40) <= FRAME_SECONDS
    assert MP3(mp3).info.channels == 1
    integrated, peak = loudness_of(mp3)  # one gain for every segment: the whole file at the target
    assert abs(integrated + 18) <= 1.0 and peak <= -1.0, (integrated, peak)
    print(f"fanned out with options: {integrated} LUFS (-18 asked), {peak} dBTP, mono, 1 kHz")
