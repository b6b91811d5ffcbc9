"""Conversion options: parsed and validated in one place (every bad field named at once), carried by the
video-uploaded event without troubling a v1 subscriber, decided once per job (plan.recipe), and applied on the real
local stack: trim, VBR, EBU R 128 loudness, the audio track, channels, ID3v2.4 tags and cover, a copied MP3 that
keeps its audio, and a long video in segments. Every result is measured by ffmpeg or mutagen, not by the code under
test."""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pymongo
import pytest
import requests
from mutagen.id3 import ID3
from mutagen.mp3 import MP3
from vid2mp3_client.api import Vid2mp3

from events import EventEmitter, VideoUploaded
from events.options import ConversionOptions, parse_options
from functions.convert.conversion import Converter
from jobs.records import FINAL_STATES, Jobs
from stack.config import LOCAL
from storage.media import AUDIO, TRACKS, JobSources, MediaStore, remove_job_media
from tests.audio_quality import decode, make_source
from tests.support import new_user, stage_job, wait_for
from transcoding.plan import FanOutPolicy, Mode

# One MPEG-1 Layer III frame at 44.1 kHz: how close a trimmed MP3's length must come.
FRAME_SECONDS = 1152 / 44100


# LAME's documented average bitrate per VBR level (kbit/s, on music), with 10 % either side for synthetic audio.
VBR_RANGES_KBPS = {"V2": (170, 210), "V9": (45, 85)}


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
    # A name that is no option, however it comes, is refused too: a typo must not convert without the choice.
    answer = requests.post(endpoints["UPLOAD_URL"], params={"qualty": "V0", "filename": "clip.mp4"},
                           data=video.read_bytes(), headers=headers, timeout=30)
    assert answer.status_code == 422 and answer.json()["error"] == "invalid_options"
    assert list(answer.json()["fields"]) == ["qualty"] and "'quality'" in answer.json()["fields"]["qualty"]
    with video.open("rb") as file:
        answer = requests.post(endpoints["UPLOAD_URL"], headers=headers, timeout=30,
                               data={"quality": "V2", "chapter": "none"}, files={"file": file})
    assert answer.status_code == 422 and list(answer.json()["fields"]) == ["chapter"]
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


class OnStack:
    def __init__(self, endpoints: dict[str, str]) -> None:
        self.database = pymongo.MongoClient(endpoints["MONGO_URI"], tz_aware=True)["vid2mp3"]
        self.jobs = Jobs(self.database)
        self.endpoints = endpoints
        self.owner_id = f"options-{uuid.uuid4().hex[:8]}"
        self.work_dir = LOCAL / "work" / "options-tests"
        self.work_dir.mkdir(parents=True, exist_ok=True)

    def converter(self, fan_out: FanOutPolicy | None = None) -> Converter:
        return Converter(jobs=self.jobs, sources=JobSources(self.database),
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




@pytest.mark.stack
def test_trim_silence_removes_the_silence_at_either_end_and_moves_the_chapters(endpoints: dict[str, str],
                                                                                 tmp_path: Path) -> None:
    """3 s of silence, 4 s of tone, 3 s of silence, in two chapters (0-5 s, 5-10 s): the MP3 is the tone alone
    (its length decoded by ffmpeg, within 50 ms), its chapters 0-2 s and 2-4 s. Asked together with a trim: 422."""
    metadata = tmp_path / "chapters.txt"
    metadata.write_text(";FFMETADATA1\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=5000\ntitle=First\n"
                        "[CHAPTER]\nTIMEBASE=1/1000\nSTART=5000\nEND=10000\ntitle=Second\n")
    video = tmp_path / "quiet-ends.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10:duration=10",
           "-f", "lavfi", "-i", "aevalsrc=0.2*sin(2*PI*440*t)*between(t\\,3\\,7):s=44100:d=10",
           "-i", str(metadata), "-map", "0:v", "-map", "1:a", "-map_chapters", "2",
           "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", str(video))
    client = new_user(endpoints)[0]
    job, mp3 = convert(endpoints, video, {"trim_silence": "true"}, tmp_path, client)
    assert job["state"] == "done", job
    assert seconds_decoded(mp3) == pytest.approx(4.0, abs=0.05)
    listed = json.loads(subprocess.run(["ffprobe", "-v", "error", "-show_chapters", "-of", "json", str(mp3)],
                                       capture_output=True, check=True).stdout)["chapters"]
    assert [(chapter["tags"]["title"], float(chapter["start_time"]), float(chapter["end_time"]))
            for chapter in listed] == [("First", pytest.approx(0.0, abs=0.05), pytest.approx(2.0, abs=0.05)),
                                       ("Second", pytest.approx(2.0, abs=0.05), pytest.approx(4.0, abs=0.05))]
    assert job["applied"]["start_seconds"] == pytest.approx(3.0, abs=0.05)
    assert any(note.startswith("silence below -50 dBFS trimmed") for note in job["applied"]["forced"])
    refused = requests.post(endpoints["UPLOAD_URL"], params={"trim_silence": "true", "end": "8"},
                            data=video.read_bytes(), headers={"Authorization": f"Bearer {client.token}"}, timeout=30)
    assert refused.status_code == 422 and list(refused.json()["fields"]) == ["trim_silence"]
