"""The private podcast feed on the real local stack (functions/download/feed.py, accounts/feeds.py): read by
feedparser and gPodder's podcastparser as podcast apps read it, its enclosures the MP3s with no token, chapters and
the cover where the MP3 has them, `feed=false` left out, 304s, httplint; a rotation ends the old address at once, a
password change and the account's deletion end it within a minute."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import feedparser
import podcastparser
import pytest
import requests
from mutagen.id3 import ID3

from tests.reliability_support import Stack, User, clip
from tests.stack.test_chapters import CHAPTERS, chaptered_video  # noqa: F401 - the fixture, shared
from tests.stack.test_http_semantics import lint, unjustified
from tests.support import wait_for

pytestmark = pytest.mark.stack
# Credential generations are read at most CREDENTIALS_CACHE_SECONDS (15) ago: well within this.
ENDS_WITHIN_SECONDS = 60


def feed_address(stack: Stack, user: User, action: str = "") -> str:
    answer = (stack.session.post(f"{stack.points['DOWNLOAD_URL']}/feed/rotate", headers=user.headers, timeout=30)
              if action == "rotate" else
              stack.session.get(f"{stack.points['DOWNLOAD_URL']}/feed", headers=user.headers, timeout=30))
    assert answer.status_code == 200, answer.text
    assert answer.headers["Cache-Control"] == "no-store"
    return str(answer.json()["url"])


def finished(stack: Stack, user: User, video: bytes | Path, filename: str, **options: str) -> dict[str, Any]:
    answer = stack.upload(user, video, filename, **options)
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["job_id"]
    job = stack.wait_final(user, [job_id], timeout=180)[job_id]
    assert job["state"] == "done", job
    return job


def ends_within(url: str, seconds: float) -> None:
    wait_for(lambda: requests.get(url, timeout=10).status_code == 404 or None, seconds, f"{url} to end",
             interval=1)


def test_the_feed_lists_each_kept_mp3_for_podcast_apps(stack: Stack, chaptered_video: Path) -> None:  # noqa: F811
    user = stack.new_user("feed")
    url = feed_address(stack, user)
    assert url.startswith(f"{stack.points['DOWNLOAD_URL']}/feeds/") and feed_address(stack, user) == url
    empty = requests.get(url, timeout=30)
    assert empty.status_code == 200 and feedparser.parse(empty.content).entries == []

    plain = finished(stack, user, clip(2), "plain.mp4", title="A <talk> & more")
    chaptered = finished(stack, user, chaptered_video, "Three parts.mp4", cover="none")
    hidden = finished(stack, user, clip(2), "private.mp4", feed="false")
    answer = requests.get(url, timeout=30)  # no token
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("application/rss+xml")
    assert answer.headers["Cache-Control"].startswith("private")

    parsed = feedparser.parse(answer.content)
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == "rss20" and parsed.feed.itunes_block == 1 and parsed.feed.podcast_locked == "yes"
    entries = {entry.id: entry for entry in parsed.entries}
    assert set(entries) == {plain["job_id"], chaptered["job_id"]}  # the opted-out job is absent
    assert hidden["job_id"] not in answer.text
    assert entries[plain["job_id"]].title == "A <talk> & more"
    assert entries[chaptered["job_id"]].title == "Three parts"
    for job in (plain, chaptered):
        entry = entries[job["job_id"]]
        (enclosure,) = entry.enclosures
        assert enclosure.type == "audio/mpeg" and int(enclosure.length) == job["audio"]["size_bytes"]
        assert entry.itunes_duration == str(round(job["audio"]["duration_seconds"]))
        mp3 = requests.get(enclosure.href, timeout=30)  # a signed link: no token
        assert mp3.status_code == 200 and mp3.content == stack.download(user, job["job_id"]).content

    # The cover in the MP3's tag is the episode's image, through a signed link; an MP3 without one has none.
    cover = requests.get(entries[plain["job_id"]].image.href, timeout=30)
    (picture,) = ID3(io.BytesIO(stack.download(user, plain["job_id"]).content)).getall("APIC")
    assert cover.status_code == 200 and cover.headers["Content-Type"] == "image/jpeg"
    assert cover.content == picture.data
    assert "image" not in entries[chaptered["job_id"]]

    gpodder = podcastparser.parse(url, io.BytesIO(answer.content))
    episodes = {episode["guid"]: episode for episode in gpodder["episodes"]}
    assert set(episodes) == {plain["job_id"], chaptered["job_id"]}
    for job in (plain, chaptered):
        episode = episodes[job["job_id"]]
        assert episode["total_time"] == round(job["audio"]["duration_seconds"])
        (enclosure,) = episode["enclosures"]
        assert enclosure["mime_type"] == "audio/mpeg" and enclosure["file_size"] == job["audio"]["size_bytes"]
        assert requests.get(enclosure["url"], timeout=30).content == stack.download(user, job["job_id"]).content
    assert episodes[plain["job_id"]]["episode_art_url"] == entries[plain["job_id"]].image.href
    assert episodes[chaptered["job_id"]]["published"] >= episodes[plain["job_id"]]["published"]

    # The Podcasting 2.0 chapters, through the signed link the feed names.
    chapters_url = answer.text.split("podcast:chapters url=\"")[1].split('"')[0].replace("&amp;", "&")
    document = requests.get(chapters_url, timeout=30).json()
    assert [chapter["title"] for chapter in document["chapters"]] == [title for _, _, title in CHAPTERS]
    assert "podcast:chapters" not in answer.text.split(plain["job_id"])[1].split("</item>")[0]

    # Conditional: the same feed again is a 304, by ETag and by date; HEAD answers the headers alone.
    again = requests.get(url, headers={"If-None-Match": answer.headers["ETag"]}, timeout=30)
    assert again.status_code == 304 and again.content == b"" and again.headers["ETag"] == answer.headers["ETag"]
    dated = requests.get(url, headers={"If-Modified-Since": answer.headers["Last-Modified"]}, timeout=30)
    assert dated.status_code == 304
    head = requests.head(url, timeout=30)
    assert head.status_code == 200 and head.headers["ETag"] == answer.headers["ETag"] and head.content == b""
    problems = {}
    for method, headers in (("GET", {}), ("HEAD", {}), ("GET", {"If-None-Match": answer.headers["ETag"]})):
        _, _, notes = lint(method, url, headers)
        if bad := unjustified(notes):
            problems[f"{method} {headers}"] = bad
    assert not problems, problems

    # A new MP3 changes the feed, and so its ETag.
    finished(stack, user, clip(2), "later.mp4")
    assert requests.get(url, headers={"If-None-Match": answer.headers["ETag"]}, timeout=30).status_code == 200


def test_a_rotated_address_ends_at_once_and_the_new_one_works(stack: Stack) -> None:
    user = stack.new_user("feed-rotate")
    old = feed_address(stack, user)
    assert requests.get(old, timeout=30).status_code == 200
    new = feed_address(stack, user, "rotate")
    assert new != old
    assert requests.get(old, timeout=30).status_code == 404
    assert requests.get(new, timeout=30).status_code == 200
    assert feed_address(stack, user) == new
    # An address that never was, and one a character off, answer as a rotated one does.
    assert requests.get(new[:-1] + ("0" if new[-1] != "0" else "1"), timeout=30).status_code == 404
    assert requests.get(f"{stack.points['DOWNLOAD_URL']}/feeds/nothing", timeout=30).status_code == 404


def test_an_api_key_cannot_read_the_feed_address(stack: Stack) -> None:
    user = stack.new_user("feed-key")
    made = stack.session.post(f"{stack.points['AUTH_URL']}/keys", headers=user.headers, timeout=30,
                              json={"name": "script", "scopes": ["read"]})
    assert made.status_code == 201, made.text
    refused = stack.session.get(f"{stack.points['DOWNLOAD_URL']}/feed", timeout=30,
                                headers={"Authorization": f"Bearer {made.json()['key']}"})
    assert refused.status_code == 403 and refused.json()["error"] == "insufficient_scope"
    assert stack.session.get(f"{stack.points['DOWNLOAD_URL']}/feed", timeout=30).status_code == 401


def test_a_password_change_ends_the_feed_and_its_links_and_a_new_address_follows(stack: Stack) -> None:
    user = stack.new_user("feed-password")
    job = finished(stack, user, clip(2), "clip.mp4")
    old = feed_address(stack, user)
    enclosure = feedparser.parse(requests.get(old, timeout=30).content).entries[0].enclosures[0].href
    changed = stack.session.post(f"{stack.points['AUTH_URL']}/account/password", headers=user.headers, timeout=30,
                                 json={"password": user.password, "new_password": user.password + "-new"})
    assert changed.status_code == 200, changed.text
    # The new password's token works at once, though the download function read the generation a moment ago.
    user.token = changed.json()["access_token"]
    new = feed_address(stack, user)
    assert new != old
    started = time.monotonic()
    ends_within(old, ENDS_WITHIN_SECONDS)
    assert time.monotonic() - started < ENDS_WITHIN_SECONDS
    assert requests.get(enclosure, timeout=30).status_code in (403, 404)
    (entry,) = feedparser.parse(requests.get(new, timeout=30).content).entries
    assert entry.id == job["job_id"] and requests.get(entry.enclosures[0].href, timeout=30).status_code == 200


def test_the_accounts_deletion_ends_the_feed(stack: Stack) -> None:
    user = stack.new_user("feed-deleted")
    finished(stack, user, clip(2), "clip.mp4")
    url = feed_address(stack, user)
    enclosure = feedparser.parse(requests.get(url, timeout=30).content).entries[0].enclosures[0].href
    deleted = stack.session.delete(f"{stack.points['AUTH_URL']}/account", headers=user.headers, timeout=60,
                                   json={"password": user.password})
    assert deleted.status_code == 204, deleted.text
    ends_within(url, ENDS_WITHIN_SECONDS)
    assert requests.get(enclosure, timeout=30).status_code == 404
    assert stack.db["feeds"].count_documents({"owner_id": user.account_id}) == 0
