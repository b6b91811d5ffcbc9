"""Signed download links (jobs/links.py): what they open, what they refuse, and that the email and the
status view carry them; on the real stack, and the rules alone."""

from __future__ import annotations

import re
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from stack.config import LOGS
from tests.support import make_clip, new_user, wait_for

URL_PATTERN = re.compile(r"https?://\S+")


def with_argument(link: str, name: str, value: str) -> str:
    parts = urllib.parse.urlsplit(link)
    arguments = {**dict(urllib.parse.parse_qsl(parts.query)), name: value}
    return parts._replace(query=urllib.parse.urlencode(arguments)).geturl()


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


