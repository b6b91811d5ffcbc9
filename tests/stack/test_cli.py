"""The `vid2mp3` command against the running stack as a deployment, from an empty config folder: log in by the web
page's URL, convert several videos at once, list, download, cancel, delete, log out; and its errors in words. A
two-track Matroska with chapters, title tags and an attached picture gives the same MP3 for each track whether the
command sends its extract (with the cover frame, or by tus without) or the whole file."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import stat
import subprocess
import uuid
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from mutagen.id3 import ID3

from stack.config import ROOT
from tests.stack.test_conversion_options import packets_md5
from tests.stack.test_url_import import VideoServer
from tests.support import TEST_PASSWORD, make_clip, make_two_tracks, probe

pytestmark = pytest.mark.stack
VID2MP3 = shutil.which("vid2mp3", path=str(ROOT / ".local/venv/bin")) or "vid2mp3"


def run(config: Path, *arguments: str, password: str | None = None,
        stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_CONFIG_HOME": str(config)}
    env.pop("VID2MP3_PASSWORD", None)
    if password is not None:
        env["VID2MP3_PASSWORD"] = password
    # --endpoints names nothing: the command must work from its login alone, as on any other machine.
    return subprocess.run([VID2MP3, *arguments, "--endpoints", str(config / "no-local-stack.env")], env=env,
                          capture_output=True, text=True, timeout=300,
                          **({"input": stdin} if stdin is not None else {"stdin": subprocess.DEVNULL}))


def test_the_command_on_a_deployment_from_an_empty_config(endpoints: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "config"
    not_yet = run(config, "jobs")
    assert not_yet.returncode == 2 and "not logged in: run `vid2mp3 login --server" in not_yet.stderr

    email = f"cli-{uuid.uuid4().hex[:12]}@test.vid2mp3.dev"
    logged_in = run(config, "login", "--server", endpoints["WEB_URL"], "--email", email, "--sign-up",
                    password=TEST_PASSWORD)
    assert logged_in.returncode == 0, logged_in.stderr
    login_file = config / "vid2mp3" / "login.json"
    assert stat.S_IMODE(login_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(login_file.parent.stat().st_mode) == 0o700
    kept = json.loads(login_file.read_text())
    assert kept["email"] == email and kept["token"] and TEST_PASSWORD not in login_file.read_text()

    videos = [make_clip(tmp_path / f"{name}.mp4", seconds=2) for name in ("first", "second")]
    out = tmp_path / "mp3s"
    out.mkdir()
    converted = run(config, "convert", *map(str, videos), "-o", str(out), "--channels", "1")
    assert converted.returncode == 0, converted.stdout + converted.stderr
    for video in videos:
        streams = probe(out / f"{video.stem}.mp3")["streams"]
        audio = [(stream["codec_name"], stream["channels"]) for stream in streams if stream["codec_type"] == "audio"]
        assert audio == [("mp3", 1)]

    listed = run(config, "jobs")
    assert listed.returncode == 0
    rows = [line.split() for line in listed.stdout.splitlines()]
    assert sorted(row[-1] for row in rows) == ["first.mp4", "second.mp4"] and all(row[1] == "done" for row in rows)
    job_id = next(row[0] for row in rows if row[-1] == "first.mp4")

    again = tmp_path / "again.mp3"
    fetched = run(config, "download", job_id, "-o", str(again))
    assert fetched.returncode == 0 and again.read_bytes() == (out / "first.mp3").read_bytes()
    refused = run(config, "cancel", job_id)
    assert refused.returncode == 1 and "HTTP 409" in refused.stderr
    deleted = run(config, "delete", job_id)
    assert deleted.returncode == 0, deleted.stderr
    assert job_id not in run(config, "jobs").stdout
    assert "HTTP 404" in run(config, "download", job_id).stderr

    missing = run(config, "convert", str(tmp_path / "nowhere.mp4"))
    assert missing.returncode == 2 and "not a file" in missing.stderr

    login_file.write_text(json.dumps({**kept, "token": kept["token"][:-4] + "AAAA"}))
    expired = run(config, "jobs")
    assert expired.returncode == 1 and "log in again with `vid2mp3 login`" in expired.stderr

    assert run(config, "logout").returncode == 0 and not login_file.exists()
    assert run(config, "jobs").returncode == 2


def test_keys_made_listed_logged_in_with_from_standard_input_and_revoked(endpoints: dict[str, str],
                                                                         tmp_path: Path) -> None:
    owner, script = tmp_path / "owner", tmp_path / "script"
    email = f"cli-keys-{uuid.uuid4().hex[:12]}@test.vid2mp3.dev"
    assert run(owner, "login", "--server", endpoints["WEB_URL"], "--email", email, "--sign-up",
               password=TEST_PASSWORD).returncode == 0
    made = run(owner, "keys", "create", "nightly", "--scope", "read")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert re.fullmatch(r"v2m_[0-9a-f]{80}", key) and "shown only this once" in made.stderr
    key_id = key[4:20]
    assert run(script, "login", "--key", "--server", endpoints["WEB_URL"], stdin="v2m_" + "0" * 80 + "\n") \
        .stderr.count("does not accept this API key") == 1
    logged_in = run(script, "login", "--key", "--server", endpoints["WEB_URL"], stdin=key + "\n")
    assert logged_in.returncode == 0, logged_in.stderr
    assert run(script, "jobs").stdout.strip() == "no jobs"
    refused = run(script, "convert", "--sample")
    assert refused.returncode == 1 and "lacks the scope `convert`" in refused.stdout, refused.stdout
    [row] = run(owner, "keys", "list").stdout.splitlines()
    assert row.startswith(key_id) and "read" in row and "nightly" in row and "used never" not in row
    assert key not in row
    revoked = run(owner, "keys", "revoke", key_id)
    assert revoked.returncode == 0, revoked.stderr
    assert run(owner, "keys", "list").stdout.strip() == "no API keys"


def test_a_server_that_is_not_there_or_not_vid2mp3_is_named(endpoints: dict[str, str], tmp_path: Path) -> None:
    unreachable = run(tmp_path, "login", "--server", "http://127.0.0.1:9", "--email", "a@b.c", password="x" * 12)
    assert unreachable.returncode == 1 and "cannot reach vid2mp3 at http://127.0.0.1:9" in unreachable.stderr
    wrong = run(tmp_path, "login", "--server", endpoints["STATUS_URL"], "--email", "a@b.c", password="x" * 12)
    assert wrong.returncode == 1 and "does not look like a vid2mp3 web page" in wrong.stderr
    assert not (tmp_path / "vid2mp3" / "login.json").exists()


def test_bad_option_flags_are_named_as_flags_and_nothing_is_kept(endpoints: dict[str, str], tmp_path: Path) -> None:
    """The server checks the options (one home: events/options.py) before it keeps anything; the command names each
    bad one by its flag."""
    config = tmp_path / "config"
    email = f"cli-{uuid.uuid4().hex[:12]}@test.vid2mp3.dev"
    assert run(config, "login", "--server", endpoints["WEB_URL"], "--email", email, "--sign-up",
               password=TEST_PASSWORD).returncode == 0
    video = make_clip(tmp_path / "clip.mp4", seconds=1)
    refused = run(config, "convert", str(video), "--start", "soon", "--quality", "V12", "--date", "2024-13",
                  "--silence-threshold-db", "-10")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    said = refused.stdout + refused.stderr  # each video's outcome is its own line
    assert all(f"--{name}:" in said for name in ("start", "quality", "date", "silence-threshold-db")), said
    assert run(config, "jobs").stdout.strip() == "no jobs"


@pytest.fixture(scope="module")
def two_tracks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_two_tracks(tmp_path_factory.mktemp("two-tracks"))


@pytest.fixture
def logged_in(endpoints: dict[str, str], tmp_path: Path) -> Path:
    """A config folder holding a new user's login."""
    config = tmp_path / "config"
    email = f"cli-{uuid.uuid4().hex[:12]}@test.vid2mp3.dev"
    assert run(config, "login", "--server", endpoints["WEB_URL"], "--email", email, "--sign-up",
               password=TEST_PASSWORD).returncode == 0
    return config


def converted(config: Path, video: Path, target: Path, *flags: str) -> tuple[str, str]:
    """Runs `vid2mp3 convert`; answers the job id and the words it said of its upload."""
    done = run(config, "convert", str(video), "-o", str(target), *flags)
    assert done.returncode == 0, done.stdout + done.stderr
    job_id = re.search(r"^job (\w+): done$", done.stdout, re.MULTILINE).group(1)  # type: ignore[union-attr]
    said = re.search(r"^  upload: (.*)$", done.stdout, re.MULTILINE).group(1)  # type: ignore[union-attr]
    return job_id, said


def job_view(config: Path, job_id: str) -> dict[str, Any]:
    login = json.loads((config / "vid2mp3" / "login.json").read_text())
    return dict(requests.get(f"{login['status_url']}/{job_id}", headers={"Authorization": f"Bearer {login['token']}"},
                             timeout=30).json())


def cover_of(mp3: Path, tmp_path: Path) -> tuple[int, int]:
    """The size of the MP3's front cover (a JPEG), as ffprobe reads it."""
    (picture,) = ID3(mp3).getall("APIC")
    assert picture.mime == "image/jpeg"
    path = tmp_path / f"cover-{uuid.uuid4().hex[:6]}.jpg"
    path.write_bytes(picture.data)
    stream = probe(path)["streams"][0]
    return int(stream["width"]), int(stream["height"])


def dominant_hz(mp3: Path) -> float:
    """The tone's frequency, the MP3 decoded to mono at 44.1 kHz whatever its own rate (Opus is 48 kHz)."""
    pcm = subprocess.run(["ffmpeg", "-v", "error", "-i", str(mp3), "-ac", "1", "-ar", "44100", "-f", "f32le", "-"],
                         capture_output=True, check=True).stdout
    samples = np.frombuffer(pcm, dtype="<f4")
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / 44100)[int(np.argmax(spectrum))])


def chapters(mp3: Path) -> list[tuple[str, float, float]]:
    listed = json.loads(subprocess.run(["ffprobe", "-v", "error", "-show_chapters", "-of", "json", str(mp3)],
                                       capture_output=True, check=True).stdout)["chapters"]
    return [(chapter["tags"].get("title", ""), float(chapter["start_time"]), float(chapter["end_time"]))
            for chapter in listed]


def assert_the_tracks_mp3(mp3: Path, track: int) -> None:
    assert dominant_hz(mp3) == pytest.approx((440, 880)[track], abs=5)
    tags = ID3(mp3)
    assert (str(tags["TIT2"]), str(tags["TPE1"])) == ("Two tracks", "The Testers")


@pytest.mark.parametrize("track", [0, 1])
def test_each_track_by_tus_extract_and_whole_file_gives_the_same_mp3(logged_in: Path, two_tracks: Path,
                                                                     tmp_path: Path, track: int) -> None:
    """The extract without its cover frame (tus carries one file) against the whole file: the same audio frames, the
    same tags; the extract's cover is the attached picture it kept, the whole file's the frame at 10 %."""
    extract, whole = tmp_path / "extract.mp3", tmp_path / "whole.mp3"
    _, said = converted(logged_in, two_tracks, extract, "--track", str(track), "--resumable")
    assert said.startswith("extracted the audio: ") and "without the cover frame" in said
    _, said = converted(logged_in, two_tracks, whole, "--track", str(track), "--whole")
    assert said.startswith("the whole file: ")
    for mp3 in (extract, whole):
        assert_the_tracks_mp3(mp3, track)
    assert packets_md5(extract) == packets_md5(whole) and chapters(extract) == chapters(whole)
    assert cover_of(extract, tmp_path) == (200, 200) and cover_of(whole, tmp_path) == (320, 240)


@pytest.mark.parametrize("track", [0, 1])
def test_each_track_by_extract_and_cover_frame_gives_the_whole_files_mp3(logged_in: Path, two_tracks: Path,
                                                                         tmp_path: Path, track: int) -> None:
    """The extract and the cover frame in one request (needs issue 23's upload, which takes the `cover` part, and
    its MP3 chapters): the whole file's MP3, its cover the frame, its chapters the video's; the attached picture is
    still there to choose; less is sent and kept."""
    extract, whole, attached = tmp_path / "extract.mp3", tmp_path / "whole.mp3", tmp_path / "attached.mp3"
    job_id, said = converted(logged_in, two_tracks, extract, "--track", str(track))
    assert said.startswith("extracted the audio: ") and "cover frame" not in said
    converted(logged_in, two_tracks, whole, "--track", str(track), "--whole")
    converted(logged_in, two_tracks, attached, "--track", str(track), "--cover", "attached")
    for mp3 in (extract, whole, attached):
        assert_the_tracks_mp3(mp3, track)
    assert packets_md5(extract) == packets_md5(whole) == packets_md5(attached)
    assert chapters(extract) == chapters(whole) == [("Opening", 0.0, 1.5), ("Closing", 1.5, 3.0)]
    assert cover_of(extract, tmp_path) == cover_of(whole, tmp_path) == (320, 240)
    assert cover_of(attached, tmp_path) == (200, 200)
    job = job_view(logged_in, job_id)
    assert job["received_bytes"] < two_tracks.stat().st_size and job["stored_bytes"] < two_tracks.stat().st_size


def test_chapters_none_and_trim_silence_go_through_the_command(logged_in: Path, two_tracks: Path,
                                                                tmp_path: Path) -> None:
    without = tmp_path / "without.mp3"
    job_id, _ = converted(logged_in, two_tracks, without, "--chapters", "none")
    assert chapters(without) == [] and ID3(without).getall("CTOC") == []
    job = job_view(logged_in, job_id)
    assert job["options"]["chapters"] == "none" and "chapters" not in job
    # The clip has no silence at either end: trimmed or not, the same length (tests/stack/test_conversion_options.py
    # measures the trim itself).
    trimmed = tmp_path / "trimmed.mp3"
    job_id, _ = converted(logged_in, two_tracks, trimmed, "--trim-silence", "--silence-min-seconds", "0.2")
    job = job_view(logged_in, job_id)
    assert job["options"] == {"trim_silence": True, "silence_min_seconds": 0.2}
    assert "no leading or trailing silence to trim" in job["applied"]["forced"]


def test_split_chapters_goes_through_the_command_and_download_fetches_the_chapter_files(
        logged_in: Path, two_tracks: Path, tmp_path: Path) -> None:
    whole = tmp_path / "lecture.mp3"
    job_id, _ = converted(logged_in, two_tracks, whole, "--split-chapters")
    assert job_view(logged_in, job_id)["options"] == {"split": "chapters"}
    beside = tmp_path / "lecture - chapters.zip"
    with zipfile.ZipFile(beside) as archive:
        names = archive.namelist()
        assert [str(ID3(io.BytesIO(archive.read(name)))["TIT2"]) for name in names] == ["Opening", "Closing"]
        assert [str(ID3(io.BytesIO(archive.read(name)))["TRCK"]) for name in names] == ["1/2", "2/2"]
    fetched = tmp_path / "again.zip"
    done = run(logged_in, "download", job_id, "--chapters", "-o", str(fetched))
    assert done.returncode == 0 and "ZIP of 2 chapter files written" in done.stdout, done.stdout + done.stderr
    assert fetched.read_bytes() == beside.read_bytes()


def test_what_no_extract_helps_goes_whole_and_the_command_says_why(logged_in: Path, tmp_path: Path) -> None:
    song = make_clip(tmp_path / "song.m4a", seconds=2, video=False)
    _, said = converted(logged_in, song, tmp_path / "song.mp3")
    assert said.startswith("the whole file: ") and said.endswith("(it holds only audio already)")
    notes = tmp_path / "notes.mp4"
    notes.write_text("not a video, whatever its name says\n" * 100)
    refused = run(logged_in, "convert", str(notes), "-o", str(tmp_path / "notes.mp3"))
    assert refused.returncode == 1 and "HTTP 415" in refused.stdout, refused.stdout + refused.stderr
    assert "upload: the whole file: 4 kB (PyAV cannot read or copy it: " in refused.stdout


def test_a_video_at_a_url_is_converted_by_the_server_fetching_it(logged_in: Path, tmp_path: Path) -> None:
    server = VideoServer(make_clip(tmp_path / "talk.mp4", seconds=2))
    try:
        done = run(logged_in, "convert", f"{server.url}/video.mp4", "-o", str(tmp_path), "--channels", "1")
    finally:
        server.close()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "fetched by the server from the URL" in done.stdout and server.videos_served() == 1
    [audio] = [stream for stream in probe(tmp_path / "video.mp3")["streams"] if stream["codec_type"] == "audio"]
    assert (audio["codec_name"], audio["channels"]) == ("mp3", 1)


def test_the_feed_address_shown_and_rotated(endpoints: dict[str, str], tmp_path: Path) -> None:
    email = f"cli-feed-{uuid.uuid4().hex[:12]}@test.vid2mp3.dev"
    assert run(tmp_path, "login", "--server", endpoints["WEB_URL"], "--email", email, "--sign-up",
               password=TEST_PASSWORD).returncode == 0
    converted = run(tmp_path, "convert", "--sample", "--no-feed", "-o", str(tmp_path / "sample.mp3"))
    assert converted.returncode == 0, converted.stdout + converted.stderr
    shown = run(tmp_path, "feed")
    assert shown.returncode == 0 and "keep it like a password" in shown.stderr, shown.stderr
    address = shown.stdout.strip()
    assert re.fullmatch(re.escape(endpoints["DOWNLOAD_URL"]) + r"/feeds/[0-9a-f]{80}", address)
    assert run(tmp_path, "feed", "show").stdout.strip() == address
    feed = requests.get(address, timeout=30)
    assert feed.status_code == 200 and "<item>" not in feed.text  # the sample went with --no-feed
    rotated = run(tmp_path, "feed", "rotate")
    assert rotated.returncode == 0 and "old feed address no longer works" in rotated.stderr
    assert rotated.stdout.strip() != address
    assert requests.get(address, timeout=30).status_code == 404
    assert requests.get(rotated.stdout.strip(), timeout=30).status_code == 200
