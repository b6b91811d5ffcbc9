"""A ZIP of many on the real local stack: one call streams several finished jobs' MP3s as one ZIP that Python's
zipfile opens, stored entries byte-identical to each MP3 downloaded alone; a job that is not the caller's, or that
does not exist, is named in a 422 and no ZIP is sent; and `vid2mp3 download --zip` writes the same ZIP."""

from __future__ import annotations

import io
import uuid
import zipfile
from pathlib import Path

import pytest
import requests

from tests.stack.test_cli import run
from tests.stack.test_conversion_options import convert
from tests.support import TEST_PASSWORD, make_clip, new_user

pytestmark = pytest.mark.stack


def test_a_zip_of_several_jobs_holds_each_mp3_byte_for_byte(endpoints: dict[str, str], tmp_path: Path) -> None:
    owner, email = new_user(endpoints)
    clips = [make_clip(tmp_path / name, seconds=seconds)
             for name, seconds in (("talk.mp4", 2), ("song.mp4", 3), ("talk.mkv", 1))]
    done = [convert(endpoints, clip, {}, tmp_path, owner) for clip in clips]
    assert all(job["state"] == "done" for job, _ in done)
    job_ids = [job["job_id"] for job, _ in done]
    headers = {"Authorization": f"Bearer {owner.token}"}
    zip_url = f"{endpoints['DOWNLOAD_URL'].rstrip('/')}/zip"
    answer = requests.get(zip_url, params={"jobs": ",".join(job_ids)}, headers=headers, timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"] == "application/zip" and "Content-Length" not in answer.headers
    with zipfile.ZipFile(io.BytesIO(answer.content)) as archive:
        assert archive.testzip() is None
        # Two videos named `talk` stay two files.
        assert archive.namelist() == ["talk.mp3", "song.mp3", "talk (2).mp3"]
        assert all(info.compress_type == zipfile.ZIP_STORED for info in archive.infolist())
        assert [archive.read(name) for name in archive.namelist()] == [mp3.read_bytes() for _, mp3 in done]

    # Someone else's job, or no job at all: named, and no ZIP (someone else's answers as a missing one).
    stranger = new_user(endpoints)[0]
    theirs = convert(endpoints, clips[2], {}, tmp_path, stranger)[0]["job_id"]
    missing = uuid.uuid4().hex
    refused = requests.get(zip_url, params={"jobs": f"{job_ids[0]},{theirs},{missing}"}, headers=headers,
                           timeout=60)
    assert refused.status_code == 422 and refused.json()["error"] == "unavailable_jobs"
    assert refused.json()["jobs"] == {theirs: "not_found: no such job", missing: "not_found: no such job"}
    assert requests.get(zip_url, params={"jobs": job_ids[0]}, timeout=60).status_code == 401
    assert requests.get(zip_url, headers=headers, timeout=60).status_code == 422

    # The command writes the same ZIP.
    config = tmp_path / "config"
    assert run(config, "login", "--server", endpoints["WEB_URL"], "--email", email,
               password=TEST_PASSWORD).returncode == 0
    target = tmp_path / "all.zip"
    written = run(config, "download", "--zip", *job_ids, "-o", str(target))
    assert written.returncode == 0, written.stdout + written.stderr
    with zipfile.ZipFile(target) as archive:
        assert [archive.read(name) for name in archive.namelist()] == [mp3.read_bytes() for _, mp3 in done]
    refused_by_command = run(config, "download", "--zip", job_ids[0], theirs)
    assert refused_by_command.returncode == 1 and theirs in refused_by_command.stderr
