"""One MP3 per chapter (`split=chapters`) on the real local stack, from the same encode, in each of the three ways a
job is encoded: one pass (through the upload function), segments at once (the real Converter) and a fan-out (the
stack's segment function joins). Measured by tools vid2mp3 did not write: ffmpeg decodes each chapter file to the
sample count of its span, and the files decoded one after another (each with its own delay and padding removed, as a
gapless player does) to the whole MP3's samples with no click at the joins on a pure tone; mutagen reads the tags;
Python's zipfile opens the chapter ZIP. The 422s for a split that cannot be made, and the files' lifetime: counted
in the quota, erased with the job and at its retention."""

from __future__ import annotations

import io
import urllib.parse
import zipfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from mutagen.id3 import ID3
from mutagen.mp3 import MP3

from events import AUDIO_CONVERTED
from functions.reconcile.sweeps import Reconciler
from jobs.records import Jobs, JobState
from jobs.view import job_view
from runtime.clock import now
from storage.media import AUDIO, MediaStore
from tests.audio_quality import click_ratio, decode
from tests.stack import test_segmented_conversion
from tests.stack.test_conversion_options import ffmpeg
from tests.stack.test_segmented_conversion import OnStack
from tests.support import event_tap, new_user, wait_for
from transcoding.plan import FanOutPolicy, Mode

pytestmark = pytest.mark.stack
# The real Converter in this process on the stack; the fixture removes its jobs after the module.
on_stack = test_segmented_conversion.on_stack

RATE = 44100
TONE_HZ = 1000
FRAME_SAMPLES = 1152
TITLES = ("Opening", "Middle part", "Coda")
# The 180 s video below fanned out in 3 segments of 60 s (the threshold lowered from the deployment's 30 min).
FORCED_FAN_OUT = FanOutPolicy(min_seconds=120, segment_seconds=60, max_segments=3)


def chaptered_tone(folder: Path, seconds: float, starts: tuple[float, ...], *, end: float | None = None,
                   title: str = "Lecture") -> Path:
    """An H.264 + AAC MP4 of one pure tone whose MP4 chapters start at `starts` (the last ends at `end`, else at
    the end), titled `title`."""
    stops = [*starts[1:], end if end is not None else seconds]
    metadata = folder / f"chapters-{seconds}-{len(starts)}.txt"
    metadata.write_text(f";FFMETADATA1\ntitle={title}\n" + "".join(
        f"[CHAPTER]\nTIMEBASE=1/1000\nSTART={round(start * 1000)}\nEND={round(stop * 1000)}\ntitle={name}\n"
        for start, stop, name in zip(starts, stops, TITLES, strict=False)))
    target = folder / f"tone-{seconds}-{len(starts)}-{end}.mp4"
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size=160x120:rate=5:duration={seconds}",
           "-f", "lavfi", "-i", f"sine=frequency={TONE_HZ}:sample_rate={RATE}:duration={seconds}",
           "-i", str(metadata), "-map", "0:v", "-map", "1:a", "-map_chapters", "2", "-map_metadata", "2",
           "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k",
           str(target))
    return target


@pytest.fixture(scope="module")
def three_chapters(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return chaptered_tone(tmp_path_factory.mktemp("split"), 10.4, (0.0, 3.217, 7.5))


def fetch(url: str, headers: dict[str, str] | None = None) -> requests.Response:
    return requests.get(url, headers=headers or {}, timeout=60)


def assert_chapter_files_play_back_to_back_as_the_whole(whole: Path, files: list[Path],
                                                         listed: list[dict[str, Any]]) -> None:
    """Each file decodes to its span's samples (the job's, within one MP3 frame of the chapters' own starts); back
    to back they are the whole, sample for sample, with no click where they meet."""
    whole_pcm = decode(whole)
    pieces = [decode(path) for path in files]
    starts = [round(chapter_file["start_seconds"] * RATE) for chapter_file in listed]
    spans = [after - before for before, after in zip(starts, [*starts[1:], len(whole_pcm)], strict=True)]
    assert [len(piece) for piece in pieces] == spans
    for piece, chapter_file in zip(pieces, listed, strict=True):
        assert abs(len(piece) / RATE - chapter_file["duration_seconds"]) <= FRAME_SAMPLES / RATE
    joined = np.concatenate(pieces)
    assert len(joined) == len(whole_pcm)
    assert float(np.abs(joined - whole_pcm).max()) < 1e-4
    ratio = click_ratio(joined, RATE, TONE_HZ, starts[1:], RATE // 10)
    assert ratio <= 1.25, f"tone residual near the joins / elsewhere: {ratio:.2f}"


def assert_tagged(files: list[Path], titles: list[str], album: str) -> None:
    for number, (path, title) in enumerate(zip(files, titles, strict=True), start=1):
        tag = ID3(path)
        assert str(tag["TIT2"]) == title and str(tag["TRCK"]) == f"{number}/{len(files)}"
        assert str(tag["TALB"]) == album
        assert MP3(path).info.sample_rate == RATE


def test_one_pass_split_lists_serves_and_zips_each_chapter(endpoints: dict[str, str], three_chapters: Path,
                                                           stack_database: Any, tmp_path: Path) -> None:
    client = new_user(endpoints)[0]
    with event_tap(endpoints, [AUDIO_CONVERTED]) as tap:
        accepted = client.upload(three_chapters, options={"split": "chapters"})
        job = client.follow(accepted["job_id"], lambda _: None, timeout=90, interval=0.2)
        assert job["state"] == "done", job
        (converted,) = wait_for(lambda: tap.events_for(job["job_id"]), 20, "audio converted")
    assert job["encoding"]["mode"] == Mode.ONE_PASS
    whole = tmp_path / "whole.mp3"
    client.download(job["job_id"], whole)
    listed = job["audio"]["chapter_files"]
    assert [(chapter_file["number"], chapter_file["title"]) for chapter_file in listed] == list(
        enumerate(TITLES, start=1))
    assert [chapter_file["start_seconds"] for chapter_file in listed] == pytest.approx([0.0, 3.217, 7.5], abs=1 / RATE)
    token = {"Authorization": f"Bearer {client.token}"}
    files = []
    for chapter_file in listed:
        assert chapter_file["download_url"] == (f"{endpoints['DOWNLOAD_URL'].rstrip('/')}/{job['job_id']}/chapters/"
                                                f"{chapter_file['number']}.mp3")
        answer = fetch(chapter_file["download_url"], token)
        assert answer.status_code == 200 and answer.headers["Content-Type"] == "audio/mpeg"
        assert answer.headers["ETag"] == f'"{chapter_file["sha256"]}"'
        assert f"{three_chapters.stem} - {chapter_file['number']:02d} {chapter_file['title']}.mp3" in \
            urllib.parse.unquote(answer.headers["Content-Disposition"])
        path = tmp_path / f"chapter-{chapter_file['number']}.mp3"
        path.write_bytes(answer.content)
        assert len(answer.content) == chapter_file["size_bytes"]
        files.append(path)
    assert_chapter_files_play_back_to_back_as_the_whole(whole, files, listed)
    assert_tagged(files, list(TITLES), album="Lecture")
    # The event carries them, as the job lists them (less the links).
    assert [chapter_file["file_id"] for chapter_file in converted["data"]["chapter_files"]] == [
        document["_id"] for document in stack_database["audio.files"].find(
            {"metadata.job_id": job["job_id"], "metadata.chapter": {"$exists": True}}).sort("metadata.chapter")]
    # Served as the MP3 is: a range, and 304 on the ETag.
    ranged = fetch(listed[1]["download_url"], {**token, "Range": "bytes=10-19"})
    assert ranged.status_code == 206 and ranged.content == files[1].read_bytes()[10:20]
    assert fetch(listed[1]["download_url"], {**token, "If-None-Match": ranged.headers["ETag"]}).status_code == 304
    assert fetch(f"{listed[0]['download_url'].rsplit('/', 1)[0]}/4.mp3", token).status_code == 404
    # The ZIP: Python's zipfile opens it, each entry stored and byte-identical, in chapter order.
    answer = fetch(job["audio"]["chapter_files_zip_url"], token)
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(answer.content)) as archive:
        assert archive.testzip() is None
        entries = archive.infolist()
        assert [entry.filename for entry in entries] == [
            f"{three_chapters.stem} - {number:02d} {title}.mp3" for number, title in enumerate(TITLES, start=1)]
        assert all(entry.compress_type == zipfile.ZIP_STORED for entry in entries)
        assert [archive.read(entry) for entry in entries] == [path.read_bytes() for path in files]


def test_chapter_files_keep_the_mp3s_owner_and_link_rules_and_go_with_the_job(
        endpoints: dict[str, str], three_chapters: Path, stack_database: Any) -> None:
    owner = new_user(endpoints)[0]
    accepted = owner.upload(three_chapters, options={"split": "chapters"})
    job = owner.follow(accepted["job_id"], lambda _: None, timeout=90, interval=0.2)
    chapter_file = job["audio"]["chapter_files"][0]
    assert fetch(chapter_file["download_url"]).status_code == 401
    someone_else = new_user(endpoints)[0]
    assert fetch(chapter_file["download_url"], {"Authorization": f"Bearer {someone_else.token}"}).status_code == 404
    assert fetch(job["audio"]["chapter_files_zip_url"],
                 {"Authorization": f"Bearer {someone_else.token}"}).status_code == 404
    # Signed links open one file each, without a token; the MP3's signature opens none of them.
    assert fetch(chapter_file["download_link"]).status_code == 200
    assert fetch(job["audio"]["chapter_files_zip_link"]).status_code == 200
    mp3_query = urllib.parse.urlsplit(job["audio"]["download_link"]).query
    assert fetch(f"{chapter_file['download_url']}?{mp3_query}").status_code == 403
    second_query = urllib.parse.urlsplit(job["audio"]["chapter_files"][1]["download_link"]).query
    assert fetch(f"{chapter_file['download_url']}?{second_query}").status_code == 403
    owner.delete(job["job_id"])
    assert fetch(chapter_file["download_link"]).status_code == 404
    assert stack_database[f"{AUDIO}.files"].count_documents({"metadata.job_id": job["job_id"]}) == 0


@pytest.mark.parametrize(("fields", "video", "problem"), [
    ({"split": "chapters"}, "no chapters", "no chapters"),
    ({"split": "chapters", "chapters": "none"}, "three chapters", "chapters=none"),
    ({"split": "chapters", "start": "6"}, "chapters in the first 4 s", "no chapter lies within the trim"),
    ({"split": "scenes"}, "three chapters", "give one of chapters"),
])
def test_a_split_that_cannot_be_made_is_refused_naming_split(
        endpoints: dict[str, str], three_chapters: Path, tmp_path: Path, fields: dict[str, str], video: str,
        problem: str) -> None:
    videos = {"three chapters": three_chapters,
              "no chapters": chaptered_tone(tmp_path, 8.0, ()),
              "chapters in the first 4 s": chaptered_tone(tmp_path, 10.0, (0.0, 2.0), end=4.0)}
    client = new_user(endpoints)[0]
    answer = requests.post(f"{endpoints['UPLOAD_URL'].rstrip('/')}/?{urllib.parse.urlencode(fields)}",
                           headers={"Authorization": f"Bearer {client.token}"},
                           files={"file": ("video.mp4", videos[video].read_bytes(), "video/mp4")}, timeout=60)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == "invalid_options" and problem in answer.json()["fields"]["split"]


@pytest.fixture(scope="module")
def long_three_chapters(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Long enough for segments (over the 150 s threshold), its chapters away from the segments' own joins."""
    return chaptered_tone(tmp_path_factory.mktemp("split-long"), 180.0, (0.0, 47.123, 121.5))


def chapter_files_of(stack: OnStack, job: dict[str, Any], folder: Path) -> list[Path]:
    store, files = MediaStore(stack.database, AUDIO), []
    for chapter_file in job["audio"]["chapter_files"]:
        path = folder / f"chapter-{chapter_file['number']}.mp3"
        with path.open("wb") as file:
            assert store.copy_to(chapter_file["file_id"], file)
        files.append(path)
    return files


@pytest.mark.parametrize("mode", [Mode.SEGMENTS, Mode.FAN_OUT])
def test_segments_and_fan_out_split_the_same_encode(on_stack: OnStack, long_three_chapters: Path, tmp_path: Path,
                                                    mode: Mode) -> None:
    event = on_stack.stage(long_three_chapters)
    on_stack.jobs.collection.update_one({"_id": event.job_id}, {"$set": {"options": {"split": "chapters"}}})
    on_stack.converter(cpus=2, fan_out=FORCED_FAN_OUT if mode is Mode.FAN_OUT else None).handle(event)
    job = on_stack.wait_final(event.job_id) if mode is Mode.FAN_OUT else on_stack.job(event.job_id)
    assert job["state"] == JobState.DONE, job.get("failure")
    assert job["encoding"]["mode"] == mode
    listed = job["audio"]["chapter_files"]
    assert [chapter_file["start_seconds"] for chapter_file in listed] == pytest.approx([0.0, 47.123, 121.5],
                                                                                      abs=1 / RATE)
    files = chapter_files_of(on_stack, job, tmp_path)
    assert_chapter_files_play_back_to_back_as_the_whole(on_stack.mp3(event.job_id, tmp_path / "whole.mp3"), files,
                                                         listed)
    assert_tagged(files, list(TITLES), album="Lecture")
    # Counted with the MP3 in the owner's media, and listed with it (no links without a download function).
    held = MediaStore(on_stack.database, AUDIO).bytes_held_by(on_stack.owner_id)
    assert held >= job["audio"]["size_bytes"] + sum(chapter_file["size_bytes"] for chapter_file in listed)
    assert len(job_view(job)["audio"]["chapter_files"]) == 3


def test_chapter_files_go_with_their_mp3_at_its_retention(on_stack: OnStack, three_chapters: Path) -> None:
    audio = on_stack.database[f"{AUDIO}.files"]
    events = [on_stack.stage(three_chapters) for _ in range(2)]
    for event in events:
        on_stack.jobs.collection.update_one({"_id": event.job_id}, {"$set": {"options": {"split": "chapters"}}})
        on_stack.converter(cpus=1).handle(event)
        assert audio.count_documents({"metadata.job_id": event.job_id, "metadata.chapter": {"$exists": True}}) == 3
    expired, kept = events
    on_stack.jobs.collection.update_one({"_id": expired.job_id}, {"$set": {"audio.expires_at": now() - timedelta(1)}})
    Reconciler(database=on_stack.database, jobs=Jobs(on_stack.database), emitter=on_stack.emitter,
               stuck_after=timedelta(minutes=30), max_redrives=3).delete_expired_audio()
    assert audio.count_documents({"metadata.job_id": expired.job_id}) == 0
    assert audio.count_documents({"metadata.job_id": kept.job_id}) == 4  # the MP3 and its chapters, not yet due

