"""End to end on the real local stack: sign-up, upload through the upload function URL, conversion through the real
broker, the MP3 downloaded and checked with ffprobe, exactly one email as the SendGrid v3 API would receive it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests
from vid2mp3_client.api import ClientError

from events import AUDIO_CONVERTED, NOTIFICATION_SENT
from tests.support import audio_duration, event_tap, make_clip, new_user, probe, wait_for

pytestmark = pytest.mark.stack


def emails_to(endpoints: dict[str, str], recipient: str) -> list[dict]:
    messages = requests.get(f"{endpoints['SENDGRID_API_HOST']}/_standin/messages", timeout=5).json()
    return [message for message in messages
            if any(to["email"] == recipient for p in message["body"]["personalizations"] for to in p["to"])]


def test_a_video_becomes_an_mp3_and_one_email(endpoints: dict[str, str], tmp_path: Path) -> None:
    video = make_clip(tmp_path / "holiday clip.mp4", seconds=4)
    client, email = new_user(endpoints)
    with event_tap(endpoints, [AUDIO_CONVERTED, NOTIFICATION_SENT]) as tap:
        accepted = client.upload(video, bitrate_kbps=128)
        assert accepted["state"] == "uploaded"
        assert accepted["status_url"].endswith(accepted["job_id"])
        job = client.follow(accepted["job_id"], lambda _: None, timeout=60, interval=0.2)
        assert job["state"] == "done", job
        assert [step["state"] for step in job["history"]] == ["uploaded", "converting", "done"]
        target = tmp_path / "out.mp3"
        client.download(job["job_id"], target)
        info = probe(target)
        # The MP3 and its cover (a frame of the video, an attached picture: README, Conversion options).
        assert [(stream["codec_name"], stream["disposition"]["attached_pic"]) for stream in info["streams"]] == \
            [("mp3", 0), ("mjpeg", 1)]
        assert abs(float(info["format"]["duration"]) - audio_duration(video)) <= 0.1
        assert int(info["format"]["bit_rate"]) == pytest.approx(128_000, rel=0.1)
        assert job["audio"]["stream_copied"] is False

        mails = wait_for(lambda: emails_to(endpoints, email), 20, "the email")
        wait_for(lambda: len(tap.events_for(job["job_id"])) >= 2, 20, "audio converted and notification sent")
        events = tap.events_for(job["job_id"])
    assert len(mails) == 1
    body = mails[0]["body"]
    assert body["subject"] == "Your MP3 of holiday clip.mp4 is ready"  # the video named: several emails tell apart
    assert body["from"]["email"]
    assert f"{endpoints['DOWNLOAD_URL']}/{job['job_id']}" in body["content"][0]["value"]
    assert body["content"][0]["type"] == "text/plain"
    assert sorted(event["attributes"]["type"] for event in events) == sorted([AUDIO_CONVERTED, NOTIFICATION_SENT])
    converted = next(event for event in events if event["attributes"]["type"] == AUDIO_CONVERTED)
    assert converted["attributes"]["source"] == "/vid2mp3/convert"
    assert converted["attributes"]["id"] == f"{job['job_id']}.audio-converted"
    assert converted["data"]["audio_id"] == job["audio"]["audio_id"]


# An MKV's audio codec is known only once probed; an MP3 file's from its first bytes (convert starts copying it
# before the probe has answered).
@pytest.mark.parametrize("name, with_video", [("with-mp3-audio.mkv", True), ("just-audio.mp3", False)])
def test_mp3_audio_is_copied_not_reencoded(endpoints: dict[str, str], tmp_path: Path, name: str,
                                           with_video: bool) -> None:
    video = make_clip(tmp_path / name, seconds=3, audio="mp3", video=with_video)
    client, _ = new_user(endpoints)
    job = client.follow(client.upload(video)["job_id"], lambda _: None, timeout=60, interval=0.2)
    assert job["state"] == "done", job
    assert job["audio"]["stream_copied"] is True
    target = tmp_path / "copied.mp3"
    client.download(job["job_id"], target)
    copied = probe(target)
    # With a cover when the source has a picture (README, Conversion options).
    assert [stream["codec_name"] for stream in copied["streams"]] == (["mp3", "mjpeg"] if with_video else ["mp3"])
    # The source's own stream, not a re-encode at the job's bitrate.
    source_audio = next(stream for stream in probe(video)["streams"] if stream["codec_type"] == "audio")
    assert int(copied["streams"][0]["bit_rate"]) == int(source_audio["bit_rate"]) != job["bitrate_kbps"] * 1000


def test_another_user_sees_neither_job_nor_mp3(endpoints: dict[str, str], tmp_path: Path) -> None:
    owner, _ = new_user(endpoints)
    stranger, _ = new_user(endpoints)
    job = owner.follow(owner.upload(make_clip(tmp_path / "mine.mp4", 2))["job_id"], lambda _: None, timeout=60,
                       interval=0.2)
    assert job["state"] == "done"
    missing = "0" * 32
    for base in (endpoints["STATUS_URL"], endpoints["DOWNLOAD_URL"]):
        theirs = requests.get(f"{base}/{job['job_id']}", headers=stranger._headers(), timeout=10)
        nobodys = requests.get(f"{base}/{missing}", headers=stranger._headers(), timeout=10)
        assert theirs.status_code == nobodys.status_code == 404
        assert theirs.json() == nobodys.json()
        assert b"ID3" not in theirs.content and len(theirs.content) < 200
    with pytest.raises(ClientError, match="404"):
        stranger.download(job["job_id"], tmp_path / "stolen.mp3")
    assert not (tmp_path / "stolen.mp3").exists()


def test_a_video_without_audio_is_refused_at_the_upload_with_its_reason(endpoints: dict[str, str],
                                                                       tmp_path: Path) -> None:
    """The upload's extraction refuses what convert would fail (the same reason), before a job exists: nothing is
    kept, no event, no email."""
    video = make_clip(tmp_path / "silent-film.mp4", seconds=2, audio=None)
    client, email = new_user(endpoints)
    raw = requests.post(endpoints["UPLOAD_URL"], data=video.read_bytes(), timeout=60, headers={
        **client._headers(), "Content-Type": "application/octet-stream"})
    assert raw.status_code == 422 and raw.json() == {"error": "no_audio", "message": "the file has no audio track"}
    with pytest.raises(ClientError, match="HTTP 422: the file has no audio track"):
        client.upload(video)
    listed = requests.get(f"{endpoints['STATUS_URL']}/", headers=client._headers(), timeout=10).json()
    assert listed["jobs"] == [] and listed["usage"]["media_bytes"]["used"] == 0
    assert listed["usage"]["jobs_in_flight"]["used"] == 0, "a refused upload gives its slot back"
    time.sleep(1.0)  # an email could only show itself over time
    assert emails_to(endpoints, email) == []
