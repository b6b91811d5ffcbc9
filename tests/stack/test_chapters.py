"""Chapters on the real local stack: an MP4's chapters become the MP3's ID3 chapter markers, the job's list, its
audio.converted event's and the Podcasting 2.0 JSON chapters document, all on the MP3's own timeline (after a trim
too), measured against where the decoded MP3's tone changes (each chapter of the source has its own);
`chapters=none` leaves them out. The chapters document keeps the MP3's owner and signed-link rules."""

from __future__ import annotations

import json
import subprocess
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
import requests

from events import AUDIO_CONVERTED
from tests.audio_quality import decode
from tests.stack.test_conversion_options import FRAME_SECONDS, convert, ffmpeg
from tests.support import event_tap, new_user, wait_for

pytestmark = pytest.mark.stack

RATE = 44100
# The source's chapters (start, end, title) and the tone each one plays, so the decoded MP3 shows where each begins.
CHAPTERS = ((0.0, 3.217, "Opening"), (3.217, 7.5, "Middle part"), (7.5, 10.4, "Coda"))
TONES_HZ = (440, 1000, 2200)


@pytest.fixture(scope="module")
def chaptered_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """H.264 + AAC MP4 of 10.4 s whose three chapters (MP4 chapters, as ffprobe lists them) each play a tone."""
    folder = tmp_path_factory.mktemp("chapters")
    metadata = folder / "chapters.txt"
    metadata.write_text(";FFMETADATA1\n" + "".join(
        f"[CHAPTER]\nTIMEBASE=1/1000\nSTART={round(start * 1000)}\nEND={round(end * 1000)}\ntitle={title}\n"
        for start, end, title in CHAPTERS))
    end = CHAPTERS[-1][1]
    # Commas escaped: the filter graph's parser would split the expression at them.
    frequency = (f"if(lt(t,{CHAPTERS[1][0]}),{TONES_HZ[0]},if(lt(t,{CHAPTERS[2][0]}),{TONES_HZ[1]},{TONES_HZ[2]}))"
                 .replace(",", "\\,"))
    target = folder / "chaptered.mp4"
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size=160x120:rate=10:duration={end}",
           "-f", "lavfi", "-i", f"aevalsrc=0.3*sin(2*PI*{frequency}*t):s={RATE}:d={end}",
           "-i", str(metadata), "-map", "0:v", "-map", "1:a", "-map_chapters", "2",
           "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", str(target))
    return target


def listed_chapters(media: Path) -> list[tuple[float, float, str]]:
    """(start, end, title) of each chapter, as ffprobe reads them (ID3 CHAP frames in an MP3)."""
    listing = subprocess.run(["ffprobe", "-v", "error", "-show_chapters", "-of", "json", str(media)],
                             capture_output=True, check=True).stdout
    return [(float(chapter["start_time"]), float(chapter["end_time"]), chapter.get("tags", {}).get("title", ""))
            for chapter in json.loads(listing)["chapters"]]


def same_chapters(found: list[tuple[float, float, str]], expected: list[tuple[float, float, str]], *,
                  within: float) -> bool:
    """The same titles in the same order, each start and end within `within` seconds."""
    return len(found) == len(expected) and all(
        title == want_title and abs(start - want_start) <= within and abs(end - want_end) <= within
        for (start, end, title), (want_start, want_end, want_title) in zip(found, expected, strict=True))


def tone_change_seconds(mp3: Path, before_hz: int, after_hz: int, near: float) -> float:
    """Where, within a second of `near`, the decoded MP3's tone turns from `before_hz` to `after_hz`: the middle of
    the first 5 ms window in which the new tone is the louder (by the power of each tone, Goertzel-style)."""
    samples = decode(mp3).mean(axis=1)
    window, hop = 220, 22
    first = max(0, round((near - 1) * RATE))
    last = min(len(samples) - window, round((near + 1) * RATE))
    times = np.arange(window) / RATE

    def power(chunk: np.ndarray, hz: int) -> float:
        return float(abs(np.dot(chunk, np.exp(-2j * np.pi * hz * times))))

    for start in range(first, last, hop):
        chunk = samples[start:start + window]
        if power(chunk, after_hz) > power(chunk, before_hz):
            return (start + window / 2) / RATE
    raise AssertionError(f"no change from {before_hz} Hz to {after_hz} Hz near {near} s")


def chapters_document(url: str, headers: dict[str, str] | None = None) -> requests.Response:
    return requests.get(url, headers=headers or {}, timeout=30)


@pytest.mark.parametrize(("trim", "expected"), [
    ({}, [(0.0, 3.217, "Opening"), (3.217, 7.5, "Middle part"), (7.5, 10.4, "Coda")]),
    # Cut and moved by a trim: the first chapter starts inside it, the last is cut at its end.
    ({"start": "2", "end": "9"}, [(0.0, 1.217, "Opening"), (1.217, 5.5, "Middle part"), (5.5, 7.0, "Coda")]),
])
def test_chapters_are_on_the_mp3s_timeline_in_its_tag_its_job_and_its_json(
        endpoints: dict[str, str], chaptered_video: Path, tmp_path: Path, trim: dict[str, str],
        expected: list[tuple[float, float, str]]) -> None:
    assert same_chapters(listed_chapters(chaptered_video), list(CHAPTERS), within=0.001)
    client = new_user(endpoints)[0]
    with event_tap(endpoints, [AUDIO_CONVERTED]) as tap:
        job, mp3 = convert(endpoints, chaptered_video, trim, tmp_path, client)
        assert job["state"] == "done", job
        (converted,) = wait_for(lambda: tap.events_for(job["job_id"]), 20, "audio converted")
    in_tag = listed_chapters(mp3)
    assert same_chapters(in_tag, expected, within=FRAME_SECONDS)
    # The markers fall where the MP3's audio changes chapter, within one MP3 frame.
    for (start, _, _), before, after in zip(in_tag[1:], TONES_HZ[:-1], TONES_HZ[1:], strict=True):
        assert abs(tone_change_seconds(mp3, before, after, start) - start) <= FRAME_SECONDS
    # The job lists them as the tag has them, and so does its audio.converted event; the JSON chapters document says
    # the same.
    listed = [(chapter["start_seconds"], chapter["end_seconds"], chapter["title"]) for chapter in job["chapters"]]
    assert same_chapters(listed, in_tag, within=0.001)
    assert converted["data"]["chapters"] == job["chapters"]
    answer = chapters_document(job["audio"]["chapters_url"], {"Authorization": f"Bearer {client.token}"})
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "application/json+chapters"
    document = answer.json()
    assert document["version"] == "1.2.0"
    assert same_chapters([(chapter["startTime"], chapter["endTime"], chapter["title"])
                          for chapter in document["chapters"]], in_tag, within=0.001)
    # Current: 304 on its ETag.
    again = chapters_document(job["audio"]["chapters_url"], {"Authorization": f"Bearer {client.token}",
                                                             "If-None-Match": answer.headers["ETag"]})
    assert again.status_code == 304


def test_the_chapters_document_keeps_the_mp3s_owner_and_link_rules(endpoints: dict[str, str], chaptered_video: Path,
                                                                   tmp_path: Path) -> None:
    owner = new_user(endpoints)[0]
    job, _ = convert(endpoints, chaptered_video, {}, tmp_path, owner)
    url, link, mp3_link = job["audio"]["chapters_url"], job["audio"]["chapters_link"], job["audio"]["download_link"]
    assert url == f"{endpoints['DOWNLOAD_URL'].rstrip('/')}/{job['job_id']}/chapters.json"
    assert chapters_document(url).status_code == 401
    someone_else = new_user(endpoints)[0]
    refused = chapters_document(url, {"Authorization": f"Bearer {someone_else.token}"})
    assert refused.status_code == 404 and refused.json()["error"] == "not_found"
    # A signed link opens the chapters without a token; the MP3's signature does not open them, nor theirs the MP3.
    assert chapters_document(link).status_code == 200
    mp3_query = urllib.parse.urlsplit(mp3_link).query
    assert chapters_document(f"{url}?{mp3_query}").status_code == 403
    chapters_query = urllib.parse.urlsplit(link).query
    assert requests.get(f"{endpoints['DOWNLOAD_URL'].rstrip('/')}/{job['job_id']}?{chapters_query}",
                        timeout=30).status_code == 403
    # Deleted with the job: the link opens nothing.
    owner.delete(job["job_id"])
    assert chapters_document(link).status_code == 404


def test_chapters_none_leaves_them_out(endpoints: dict[str, str], chaptered_video: Path, tmp_path: Path) -> None:
    client = new_user(endpoints)[0]
    with event_tap(endpoints, [AUDIO_CONVERTED]) as tap:
        job, mp3 = convert(endpoints, chaptered_video, {"chapters": "none"}, tmp_path, client)
        assert job["state"] == "done" and job["options"] == {"chapters": "none"}
        (converted,) = wait_for(lambda: tap.events_for(job["job_id"]), 20, "audio converted")
    assert "chapters" not in converted["data"]
    assert listed_chapters(mp3) == []
    assert "chapters" not in job and "chapters_url" not in job["audio"]
    url = f"{endpoints['DOWNLOAD_URL'].rstrip('/')}/{job['job_id']}/chapters.json"
    answer = chapters_document(url, {"Authorization": f"Bearer {client.token}"})
    assert answer.status_code == 404 and answer.json()["error"] == "no_chapters"

