"""The `vid2mp3` command against the running stack as a deployment, from an empty config folder: log in by the web
page's URL, convert several videos at once, list, download, cancel, delete, log out; and its errors in words."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import uuid
from pathlib import Path

import pytest

from stack.config import ROOT
from tests.support import TEST_PASSWORD, make_clip, probe

pytestmark = pytest.mark.stack
VID2MP3 = shutil.which("vid2mp3", path=str(ROOT / ".local/venv/bin")) or "vid2mp3"


def run(config: Path, *arguments: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_CONFIG_HOME": str(config)}
    env.pop("VID2MP3_PASSWORD", None)
    if password is not None:
        env["VID2MP3_PASSWORD"] = password
    # --endpoints names nothing: the command must work from its login alone, as on any other machine.
    return subprocess.run([VID2MP3, *arguments, "--endpoints", str(config / "no-local-stack.env")], env=env,
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


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
    refused = run(config, "convert", str(video), "--start", "soon", "--quality", "V12", "--date", "2024-13")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    said = refused.stdout + refused.stderr  # each video's outcome is its own line
    assert all(f"--{name}:" in said for name in ("start", "quality", "date")), said
    assert run(config, "jobs").stdout.strip() == "no jobs"
