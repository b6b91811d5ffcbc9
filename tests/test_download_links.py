"""Signed download links (functions/download/links.py): what they open, what they refuse, and that the email and the
status view carry them; on the real stack, and the rules alone."""

from __future__ import annotations

import re
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from functions.download.links import DownloadLinks, InvalidKeys, parse_keys
from functions.shared.http import HttpError
from stack.config import LOGS
from tests.support import download_link_keys, make_clip, new_user, wait_for

JOB, AUDIO = "a" * 32, "b" * 24
URL_PATTERN = re.compile(r"https?://\S+")


def refusal(links: DownloadLinks, link: str, job_id: str = JOB, audio_id: str = AUDIO) -> int | None:
    arguments = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(link).query))
    try:
        links.check(job_id, audio_id, arguments)
    except HttpError as error:
        return error.status
    return None


def with_argument(link: str, name: str, value: str) -> str:
    parts = urllib.parse.urlsplit(link)
    arguments = {**dict(urllib.parse.parse_qsl(parts.query)), name: value}
    return parts._replace(query=urllib.parse.urlencode(arguments)).geturl()


def test_a_link_opens_its_mp3_only_and_only_until_it_expires() -> None:
    links = DownloadLinks(download_link_keys(), "http://download.test/")
    future = datetime.now(UTC) + timedelta(hours=1)
    link = links.link(JOB, AUDIO, future)
    assert link.startswith(f"http://download.test/{JOB}?") and refusal(links, link) is None
    assert refusal(links, link, job_id="c" * 32) == 403  # another job
    assert refusal(links, link, audio_id="d" * 24) == 403  # the job's MP3 was made again
    later = str(int(future.timestamp()) + 3600)
    signature = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(link).query))["signature"]
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    for name, value in (("expires", later), ("signature", flipped), ("key", "other"), ("expires", "-1"),
                        ("signature", "")):
        assert refusal(links, with_argument(link, name, value)) == 403, name
    past = links.link(JOB, AUDIO, datetime.now(UTC) - timedelta(seconds=1))
    assert refusal(links, past) == 410
    assert refusal(DownloadLinks(download_link_keys(), "http://download.test/"), link) == 403  # another key


def test_a_rotation_keeps_old_links_working_until_the_old_key_goes() -> None:
    old = download_link_keys().replace("test:", "old:")
    new = download_link_keys().replace("test:", "new:")
    future = datetime.now(UTC) + timedelta(hours=1)
    link = DownloadLinks(old, "http://d/").link(JOB, AUDIO, future)
    rotated = DownloadLinks(f"{new},{old}", "http://d/")
    assert refusal(rotated, link) is None
    assert "key=new" in rotated.link(JOB, AUDIO, future)
    assert refusal(DownloadLinks(new, "http://d/"), link) == 403


@pytest.mark.parametrize("keys", ["", "k1", "k1:c2hvcnQ", "k-1:" + "A" * 43, "k1:" + "A" * 43 + ",k1:" + "B" * 43])
def test_keys_that_are_not_strong_or_not_named_are_refused(keys: str) -> None:
    with pytest.raises(InvalidKeys):
        parse_keys(keys)


# --- On the stack ----------------------------------------------------------------------------------------------


def emailed_links(endpoints: dict[str, str], job_id: str) -> list[str]:
    def mail() -> str | None:
        messages = requests.get(f"{endpoints['SENDGRID_API_HOST']}/_standin/messages", timeout=5).json()
        texts = [message["body"]["content"][0]["value"] for message in messages]
        return next((text for text in texts if job_id in text), None)
    return URL_PATTERN.findall(wait_for(mail, 30, "the email"))


@pytest.mark.stack
def test_the_email_and_the_status_view_carry_a_link_that_needs_no_token(endpoints: dict[str, str],
                                                                        tmp_path: Path, stack_database: Any) -> None:
    client, _ = new_user(endpoints)
    job = client.follow(client.upload(make_clip(tmp_path / "clip.mp4", seconds=2))["job_id"], lambda _: None,
                        timeout=60)
    assert job["state"] == "done"
    link = job["audio"]["download_link"]
    mp3 = requests.get(job["audio"]["download_url"], timeout=10, headers={"Authorization": f"Bearer {client.token}"})
    assert mp3.status_code == 200

    email_links = emailed_links(endpoints, job["job_id"])
    assert f"{endpoints['WEB_URL']}/#job={job['job_id']}" in email_links
    (emailed,) = [url for url in email_links if url.startswith(endpoints["DOWNLOAD_URL"])]
    for url in (link, emailed):
        opened = requests.get(url, timeout=10)  # no Authorization header
        assert opened.status_code == 200 and opened.content == mp3.content
        assert opened.headers["Content-Disposition"].startswith("attachment")

    extended = with_argument(link, "expires", str(int(datetime.now(UTC).timestamp()) + 10**6))
    assert requests.get(extended, timeout=10).status_code == 403
    assert requests.get(with_argument(link, "signature", "x" * 43), timeout=10).status_code == 403
    assert requests.get(link.replace(job["job_id"], "0" * 32), timeout=10).status_code == 404

    # The MP3 past its retention: the link (still within its own expiry here) finds nothing to give.
    stack_database["jobs"].update_one({"_id": job["job_id"]},
                                {"$set": {"audio.expires_at": datetime.now(UTC) - timedelta(seconds=1)}})
    assert requests.get(link, timeout=10).status_code == 410
    # The job deleted by its owner: 404, as for any job the link cannot name.
    assert requests.delete(f"{endpoints['STATUS_URL']}/{job['job_id']}", timeout=10,
                           headers={"Authorization": f"Bearer {client.token}"}).status_code == 204
    assert requests.get(link, timeout=10).status_code == 404

    # Signatures never reach a log.
    signature = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(link).query))["signature"]
    for log_file in LOGS.rglob("*.log"):
        assert signature not in log_file.read_text(errors="replace"), log_file.name
