"""Signed download links: a link opens its own MP3 only, until it expires; a key rotation keeps old links working
until the old key goes; weak or unnamed keys are refused."""

from __future__ import annotations

import urllib.parse
from datetime import UTC, datetime, timedelta

import pytest

from jobs.links import DownloadLinks, InvalidKeys, chapters_path, parse_keys
from runtime.answers import HttpError
from tests.support import download_link_keys

JOB, AUDIO, OWNER = "a" * 32, "b" * 24, "7"
# The owner's credential generation (accounts/credentials.py).
GENERATIONS: dict[str, int | None] = {OWNER: 2}


def links_with(keys: str, url: str = "http://d/") -> DownloadLinks:
    return DownloadLinks(keys, url, generation_of=GENERATIONS.get)


def refusal(links: DownloadLinks, link: str, job_id: str = JOB, audio_id: str = AUDIO) -> int | None:
    arguments = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(link).query))
    try:
        links.check(job_id, audio_id, OWNER, arguments)
    except HttpError as error:
        return error.status
    return None


def with_argument(link: str, name: str, value: str) -> str:
    parts = urllib.parse.urlsplit(link)
    arguments = {**dict(urllib.parse.parse_qsl(parts.query)), name: value}
    return parts._replace(query=urllib.parse.urlencode(arguments)).geturl()


def test_a_link_opens_its_mp3_only_and_only_until_it_expires() -> None:
    links = links_with(download_link_keys(), "http://download.test/")
    future = datetime.now(UTC) + timedelta(hours=1)
    link = links.link(JOB, AUDIO, future, OWNER)
    assert link.startswith(f"http://download.test/{JOB}?") and refusal(links, link) is None
    assert refusal(links, link, job_id="c" * 32) == 403  # another job
    assert refusal(links, link, audio_id="d" * 24) == 403  # the job's MP3 was made again
    later = str(int(future.timestamp()) + 3600)
    signature = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(link).query))["signature"]
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    # A superscript digit passes str.isdigit() but not int(): it was a 500.
    for name, value in (("expires", later), ("signature", flipped), ("key", "other"), ("expires", "-1"),
                        ("expires", "\u00b2"), ("signature", "")):
        assert refusal(links, with_argument(link, name, value)) == 403, name
    past = links.link(JOB, AUDIO, datetime.now(UTC) - timedelta(seconds=1), OWNER)
    assert refusal(links, past) == 410
    assert refusal(links_with(download_link_keys(), "http://download.test/"), link) == 403  # another key


def test_a_link_stops_when_its_owner_changes_the_password_or_ends_the_account() -> None:
    generations: dict[str, int | None] = {OWNER: 2}
    links = DownloadLinks(download_link_keys(), "http://d/", generation_of=generations.get)
    link = links.link(JOB, AUDIO, datetime.now(UTC) + timedelta(hours=1), OWNER)
    assert link is not None and refusal(links, link) is None
    generations[OWNER] = 3
    assert refusal(links, link) == 403
    generations[OWNER] = None
    assert refusal(links, link) == 404
    assert links.link(JOB, AUDIO, datetime.now(UTC) + timedelta(hours=1), OWNER) is None


def test_a_link_to_the_chapters_opens_them_only() -> None:
    links = links_with(download_link_keys(), "http://download.test/")
    future = datetime.now(UTC) + timedelta(hours=1)
    chapters, mp3 = links.link(chapters_path(JOB), AUDIO, future, OWNER), links.link(JOB, AUDIO, future, OWNER)
    assert chapters is not None and mp3 is not None
    assert chapters.startswith(f"http://download.test/{JOB}/chapters.json?")
    assert refusal(links, chapters, job_id=chapters_path(JOB)) is None
    assert refusal(links, chapters) == 403  # the MP3's path with the chapters' signature
    assert refusal(links, mp3, job_id=chapters_path(JOB)) == 403  # and the other way round


def test_a_rotation_keeps_old_links_working_until_the_old_key_goes() -> None:
    old = download_link_keys().replace("test:", "old:")
    new = download_link_keys().replace("test:", "new:")
    future = datetime.now(UTC) + timedelta(hours=1)
    link = links_with(old).link(JOB, AUDIO, future, OWNER)
    rotated = links_with(f"{new},{old}")
    assert refusal(rotated, link) is None
    assert "key=new" in rotated.link(JOB, AUDIO, future, OWNER)
    assert refusal(links_with(new), link) == 403


@pytest.mark.parametrize("keys", ["", "k1", "k1:c2hvcnQ", "k-1:" + "A" * 43, "k1:" + "A" * 43 + ",k1:" + "B" * 43])
def test_keys_that_are_not_strong_or_not_named_are_refused(keys: str) -> None:
    with pytest.raises(InvalidKeys):
        parse_keys(keys)


