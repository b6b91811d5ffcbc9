"""The upload keeps only the audio, on the real local stack (issue 23; README: What is stored): a raw POST of a
two-track Matroska with chapters, title tags and an attached picture gives the right MP3 for each track (its audio
compared with the source track's, sample by sample), with the tags, chapters and cover, and GridFS never holds more
than the audio, the covers and the MP3, never the video; a kill -9 of the upload function mid-extraction leaves
nothing once it restarts; a tus upload whose instance dies while extracting is finished by the client's next HEAD."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from mutagen.id3 import ID3

from stack.config import LOCAL
from tests.audio_quality import best_lag, snr_db
from tests.reliability_support import (
    Stack,
    Timer,
    User,
    function_pid,
    kill_function,
    made,
    processes_with,
)
from tests.stack.test_resumable_uploads import Tus
from tests.support import probe, wait_for

pytestmark = pytest.mark.stack

WORK = LOCAL / "work"  # the stack's WORK_DIR: the upload function's scratch folders are `upload.<job id>.<random>`
BUCKETS = ("videos", "sources", "covers", "audio", "tracks", "segments")
CHAPTERS = ";FFMETADATA1\ntitle=Two Tracks\nartist=The Band\n\n" + "".join(
    f"[CHAPTER]\nTIMEBASE=1/1000\nSTART={start}\nEND={start + 4000}\ntitle=Part {number}\n\n"
    for number, start in enumerate((0, 4000, 8000), start=1))
TONES = (440, 1250)  # track 0, track 1


def two_track_matroska() -> Path:
    """12 s of H.264 at 720p, an AAC track (440 Hz, "eng") and an Opus track (1250 Hz, "fra"), three titled
    chapters, title and artist tags, and a 320x240 JPEG attachment (its attached picture)."""
    picture = made("attached-320x240.jpg", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=1", "-frames:v", "1")
    chapters = WORK.parent / "samples" / "reliability" / "two-track-chapters.txt"
    chapters.parent.mkdir(parents=True, exist_ok=True)
    chapters.write_text(CHAPTERS)
    return made("two-tracks-chapters-cover.mkv",
                "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25:duration=12",
                "-f", "lavfi", "-i", f"sine=frequency={TONES[0]}:sample_rate=48000:duration=12",
                "-f", "lavfi", "-i", f"sine=frequency={TONES[1]}:sample_rate=48000:duration=12",
                "-i", str(chapters), "-map", "0:v", "-map", "1:a", "-map", "2:a", "-map_metadata", "3",
                "-map_chapters", "3", "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "4M",
                "-c:a:0", "aac", "-b:a:0", "128k", "-c:a:1", "libopus", "-b:a:1", "96k",
                "-metadata:s:a:0", "language=eng", "-metadata:s:a:0", "title=English",
                "-metadata:s:a:1", "language=fra", "-metadata:s:a:1", "title=Français",
                "-attach", str(picture), "-metadata:s:t", "mimetype=image/jpeg", "-metadata:s:t", "filename=cover.jpg")


def decoded(path: Path, track: int = 0) -> np.ndarray:
    """The audio track as ffmpeg decodes it (gapless trimming applied), mono float32 at 48 kHz."""
    pcm = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-map", f"0:a:{track}", "-ac", "1", "-ar", "48000",
                          "-f", "f32le", "-c:a", "pcm_f32le", "-"], check=True, capture_output=True).stdout
    return np.frombuffer(pcm, dtype="<f4").reshape(-1, 1)


def audio_packet_bytes(path: Path) -> int:
    sizes = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "a", "-show_entries", "packet=size", "-of",
                            "csv=p=0", str(path)], check=True, capture_output=True, text=True).stdout.split()
    return sum(int(size.strip(",")) for size in sizes)


def user_bytes(stack: Stack, owner_id: str) -> dict[str, int]:
    """What GridFS holds for the user now, by bucket (files' lengths)."""
    return {bucket: sum(document["length"] for document in stack.db[f"{bucket}.files"].find(
        {"metadata.owner_id": owner_id}, {"length": 1})) for bucket in BUCKETS}


class Watch:
    """Samples what GridFS holds for a user beyond what it held when the `with` block began, about every 50 ms,
    while the block runs: its peak in all, and the most any bucket held."""

    def __init__(self, stack: Stack, owner_id: str) -> None:
        self.stack, self.owner_id = stack, owner_id
        self.peak_total, self.peak = 0, dict.fromkeys(BUCKETS, 0)
        self._before = dict.fromkeys(BUCKETS, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            held = {bucket: size - self._before[bucket]
                    for bucket, size in user_bytes(self.stack, self.owner_id).items()}
            self.peak_total = max(self.peak_total, sum(held.values()))
            self.peak = {bucket: max(self.peak[bucket], held[bucket]) for bucket in BUCKETS}
            self._stop.wait(0.05)

    def __enter__(self) -> Watch:
        self._before = user_bytes(self.stack, self.owner_id)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def scratch_folders() -> list[Path]:
    return sorted(WORK.glob("upload.*"))


@pytest.fixture(scope="module")
def video() -> Path:
    return two_track_matroska()


@pytest.fixture(scope="module")
def user(stack: Stack) -> User:
    return stack.new_user("extraction")


@pytest.mark.parametrize("track", [0, 1])
def test_a_two_track_matroska_by_raw_post_gives_each_tracks_mp3_with_tags_chapters_and_cover(
        stack: Stack, user: User, video: Path, track: int, tmp_path: Path) -> None:
    with Watch(stack, user.account_id) as watch:
        answer = stack.upload(user, video, "two tracks.mkv", track=str(track))
        assert answer.status_code == 202, answer.text
        job_id = answer.json()["job_id"]
        job = stack.wait_final(user, [job_id], 120)[job_id]
        mp3 = tmp_path / f"track-{track}.mp3"
        mp3.write_bytes(stack.download(user, job_id).content)
    assert job["state"] == "done", job.get("failure")
    accepted = answer.json()
    assert accepted["received_bytes"] == job["received_bytes"] == video.stat().st_size
    assert accepted["stored_bytes"] == job["stored_bytes"]

    # The MP3 is the chosen track: its samples line up with that track's at lag 0, and not with the other's.
    got, wanted, other = decoded(mp3), decoded(video, track), decoded(video, 1 - track)
    assert abs(len(got) - len(wanted)) <= 1152, (len(got), len(wanted))
    assert best_lag(got, wanted, 2000) == 0
    middle = len(wanted) // 2
    assert snr_db(got, wanted, middle, 96000) > 20
    assert snr_db(got, other, middle, 96000) < 3, "the other track's audio"

    # The container's tags, the chapters and the cover (the frame at 10 %: the video has a picture).
    tag = ID3(mp3)
    assert (str(tag["TIT2"]), str(tag["TPE1"])) == ("Two Tracks", "The Band")
    [cover] = tag.getall("APIC")
    assert cover.data[:3] == b"\xff\xd8\xff"
    chapters = subprocess.run(["ffprobe", "-v", "error", "-show_chapters", "-of", "json", str(mp3)],
                              check=True, capture_output=True).stdout
    assert [(round(float(chapter["start_time"])), chapter["tags"]["title"])
            for chapter in json.loads(chapters)["chapters"]] == [(0, "Part 1"), (4, "Part 2"), (8, "Part 3")]
    assert job["applied"]["tags"] == {"title": "Two Tracks", "artist": "The Band", "cover": "frame", "chapters": 3}
    assert [(listed["language"], listed["title"]) for listed in job["audio_tracks"]] == \
        [("eng", "English"), ("fra", "Français")]

    # Stored: at most the audio tracks (as the container had them, with a container's overhead) and the covers,
    # then the MP3; never the video.
    audio = audio_packet_bytes(video)
    assert job["stored_bytes"] <= audio * 1.1 + 2 * 512 * 1024
    assert watch.peak["videos"] == 0, "the video was written to GridFS"
    assert watch.peak_total <= job["stored_bytes"] + job["audio"]["size_bytes"], (watch.peak, job["stored_bytes"])
    assert watch.peak_total < video.stat().st_size / 4
    # Once the MP3 is stored, the source and covers are gone: what is left is the MP3.
    wait_for(lambda: (held := user_bytes(stack, user.account_id))["sources"] + held["covers"] == 0, 30,
             "the source and covers to go")
    assert stack.db["audio.files"].count_documents({"_id": job_id}) == 1
    print(f"track {track}: {video.stat().st_size} bytes received, {job['stored_bytes']} stored "
          f"({audio} bytes of audio packets), GridFS peak {watch.peak_total} for the job")


def test_the_attached_picture_is_the_cover_when_asked_for(stack: Stack, user: User, video: Path,
                                                          tmp_path: Path) -> None:
    answer = stack.upload(user, video, "two tracks.mkv", cover="attached")
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["job_id"]
    job = stack.wait_final(user, [job_id], 120)[job_id]
    assert job["state"] == "done" and job["applied"]["tags"]["cover"] == "attached"
    mp3 = tmp_path / "attached.mp3"
    mp3.write_bytes(stack.download(user, job_id).content)
    picture = tmp_path / "cover.jpg"
    picture.write_bytes(ID3(mp3).getall("APIC")[0].data)
    stream = probe(picture)["streams"][0]
    assert (stream["width"], stream["height"]) == (320, 240), "the attached picture, not the 600 px frame"


# --- A kill -9 mid-extraction ---------------------------------------------------------------------------------

def big_video() -> Path:
    """60 s at 8 Mbit/s with a PCM track (about 100 MB, 23 MB of audio): its extraction runs long enough to be
    caught."""
    return made("big-pcm-60s.mkv", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25:duration=60",
                "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=60", "-c:v", "libx264",
                "-preset", "ultrafast", "-b:v", "8M", "-c:a", "pcm_s16le", "-ac", "2")


def extracting(marker: str, timeout: float) -> list[int]:
    """The extraction's ffmpeg processes (their command line names the scratch folder `marker`), once there are."""
    return wait_for(lambda: [pid for pid in processes_with("ffmpeg", marker) if is_ffmpeg(pid)], timeout,
                    f"an ffmpeg extracting {marker}", interval=0.005)


def is_ffmpeg(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].endswith(b"ffmpeg")
    except OSError:
        return False


def restarted(name: str, before: int) -> int:
    return wait_for(lambda: (pid := function_pid(name)) != before and pid, 60, f"{name} to restart", interval=0.2)


def answering(stack: Stack) -> None:
    """Once the upload function answers (a restarted one imports its modules first)."""
    def answers() -> bool:
        try:
            return stack.session.options(f"{stack.points['UPLOAD_URL']}/files/", timeout=5).status_code == 204
        except requests.ConnectionError:
            return False
    wait_for(answers, 60, "the upload function to answer", interval=0.2)


@pytest.fixture
def upload_restarts(stack: Stack) -> Iterator[None]:
    """The upload function answers again after the test killed it."""
    yield
    answering(stack)


@pytest.mark.slow
def test_a_kill_mid_extraction_leaves_nothing_once_the_upload_function_restarts(
        stack: Stack, upload_restarts: None) -> None:
    user = stack.new_user("killed-extraction")
    data = big_video().read_bytes()
    before = function_pid("upload")
    outcome: dict[str, Any] = {}

    def post() -> None:
        try:
            outcome["answer"] = stack.upload(user, data, "big.mkv")
        except Exception as error:  # the connection dies with the function
            outcome["error"] = error

    poster = threading.Thread(target=post)
    poster.start()
    timer = Timer()
    ffmpeg = extracting(str(WORK / "upload."), 120)
    assert scratch_folders(), "the spool is on the scratch disk while it is extracted"
    kill_function("upload")
    poster.join(60)
    assert "answer" not in outcome or outcome["answer"].status_code >= 500, outcome
    restarted("upload", before)
    # The restarted function cleared its scratch folders; ffmpeg died with its parent (pdeathsig).
    wait_for(lambda: not scratch_folders(), 30, "the scratch folders to be cleared")
    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in ffmpeg), 10, "the extraction's ffmpeg to end")
    assert stack.db["jobs"].count_documents({"owner_id": user.account_id}) == 0
    assert user_bytes(stack, user.account_id) == dict.fromkeys(BUCKETS, 0)
    print(f"killed {timer.seconds} s into the upload; nothing left after the restart")


@pytest.mark.slow
def test_a_tus_uploads_extraction_killed_midway_is_finished_by_the_next_head(
        stack: Stack, endpoints: dict[str, str], upload_restarts: None) -> None:
    tus, data = Tus(endpoints), big_video().read_bytes()
    url = tus.created(len(data), quality="128")
    try:
        head_finishes_it(stack, tus, url, data)
    finally:  # whatever happened, no 70 MB upload is left for the other tests to read past
        answering(stack)
        requests.delete(url, headers=tus.headers(), timeout=60)


def head_finishes_it(stack: Stack, tus: Tus, url: str, data: bytes) -> None:
    upload_id = url.rsplit("/", 1)[1]
    before = function_pid("upload")
    last: dict[str, Any] = {}

    def send_all() -> None:
        try:
            last["answer"] = tus.patch(url, 0, data)
        except Exception as error:  # the final PATCH's connection dies with the function
            last["error"] = error

    sender = threading.Thread(target=send_all)
    sender.start()
    extracting(f"upload.{upload_id}.", 180)
    kill_function("upload")
    sender.join(60)
    assert "answer" not in last or last["answer"].status_code >= 500, last
    restarted("upload", before)
    answering(stack)
    assert not scratch_folders(), "the restarted function cleared its scratch folders"
    assert stack.db["jobs"].find_one({"_id": upload_id}) is None, "no job yet: the extraction was cut short"

    # The client resumes as tus clients do: HEAD for the offset. Every byte is in, so the HEAD finishes the upload
    # (once the dead request's lease has lapsed) and answers the full offset only then.
    timer = Timer()
    head = requests.head(url, headers=tus.headers(), timeout=120)
    assert head.status_code == 200 and head.headers["Upload-Offset"] == str(len(data))
    job = stack.db["jobs"].find_one({"_id": upload_id})
    assert job is not None and job["source_format"] == "matroska" and job["received_bytes"] == len(data)
    print(f"the HEAD after the restart finished the upload in {timer.seconds} s")
    done = tus.user.follow(upload_id, lambda _: None, timeout=120, interval=0.3)
    assert done["state"] == "done", done
    # One source (no second, no orphan chunks of the killed attempt), and the video removed, paced.
    assert stack.db["sources.files"].count_documents({"_id": upload_id}) in (0, 1)
    assert stack.orphan_chunks("sources", [upload_id]) == 0
    wait_for(lambda: stack.db["videos.files"].count_documents({"_id": upload_id}) == 0
             and stack.db["videos.chunks"].count_documents({"files_id": upload_id}) == 0, 120,
             "the finished upload's video to be removed")
    # Asked again, the upload answers complete though its video is gone.
    again = tus.head(url)
    assert again.status_code == 200 and again.headers["Upload-Offset"] == str(len(data))
