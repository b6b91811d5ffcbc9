"""The web page extracts in the browser (issue 23; functions/web/static/extract.js): in a real headless Chromium on
the running stack, a video chosen in the page sends only its audio tracks (mediabunny's copy), the frame at 10 %
drawn from a <video> and the chapters the page reads; the MP3 is the one a raw POST of the whole file gives, for each
track and with the cover choices. A file the page cannot read goes whole by tus, says why, and still converts. The
extraction's script loads only once a file is chosen."""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import expect
from vid2mp3_client.cli import megabytes

from tests.stack import test_web
from tests.stack.test_cli import assert_the_tracks_mp3, chapters, cover_of, dominant_hz
from tests.stack.test_conversion_options import packets_md5
from tests.stack.test_web import Tab, sign_up
from tests.support import audio_duration, make_clip, make_two_tracks, new_user, probe

pytestmark = pytest.mark.stack
# The browser test's own Chromium and tab (a screenshot of a failing test in .local/screenshots/).
browser, tab = test_web.browser, test_web.tab


@pytest.fixture(scope="module")
def two_tracks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_two_tracks(tmp_path_factory.mktemp("two-tracks"))


@pytest.fixture(scope="module")
def one_track_mp4(two_tracks: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MP4: the two-track file's H.264 and AAC track, its title, artist, chapters and (as `covr`) picture."""
    target = tmp_path_factory.mktemp("mp4") / "one track.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(two_tracks), "-map", "0:v", "-map", "0:a:0", "-c", "copy",
                    "-map_metadata", "0", "-map_chapters", "0", str(target)], check=True)
    return target


def audio_bytes(video: Path) -> int:
    """The bytes of the video's audio packets and attached pictures: what an extract cannot do without."""
    kept = {stream["index"] for stream in probe(video)["streams"]
            if stream["codec_type"] == "audio" or stream.get("disposition", {}).get("attached_pic")}
    packets = json.loads(subprocess.run(["ffprobe", "-v", "error", "-show_entries", "packet=stream_index,size",
                                         "-of", "json", str(video)], capture_output=True, check=True).stdout)
    return sum(int(packet["size"]) for packet in packets["packets"] if packet["stream_index"] in kept)


def job_view(tab: Tab, endpoints: dict[str, str], job_id: str) -> dict[str, Any]:
    token = tab.page.evaluate("sessionStorage.getItem('vid2mp3.token')")
    return dict(requests.get(f"{endpoints['STATUS_URL']}/{job_id}", headers={"Authorization": f"Bearer {token}"},
                             timeout=30).json())


def convert_in_the_page(tab: Tab, video: Path, target: Path, **options: str) -> str:
    """Chooses `video` in the page with the options panel's `options` set, waits for the MP3 and downloads it to
    `target`; answers the job id."""
    if options:
        tab.page.click("#options summary")
        for name, value in options.items():
            field = tab.page.locator(f"#option-{name}")
            if field.evaluate("element => element.tagName") == "SELECT":
                field.select_option(value)
            else:
                field.fill(value)
    tab.page.set_input_files("#file", str(video))
    expect(tab.page.locator("#state")).to_have_text("done", timeout=120_000)
    with tab.page.expect_download() as download:
        tab.page.click("#download")
    download.value.save_as(str(target))
    job_id = tab.page.evaluate("currentJob.job_id")
    return str(job_id)


def convert_whole(endpoints: dict[str, str], video: Path, target: Path, **options: str) -> dict[str, Any]:
    """The whole file in one raw POST (as curl would send it), converted and downloaded; answers the final view."""
    client, _ = new_user(endpoints)
    accepted = client.upload(video, options=options)
    job = client.follow(accepted["job_id"], lambda _: None, timeout=120)
    assert job["state"] == "done", job
    client.download(accepted["job_id"], target)
    return job


@pytest.mark.parametrize(("track", "cover"), [(0, ""), (1, "attached")])
def test_a_two_track_matroska_sends_only_its_audio_and_each_track_gives_the_whole_files_mp3(
        tab: Tab, endpoints: dict[str, str], two_tracks: Path, tmp_path: Path, track: int, cover: str) -> None:
    sign_up(tab)
    page_mp3, whole_mp3 = tmp_path / "page.mp3", tmp_path / "whole.mp3"
    options = {"track": str(track), **({"cover": cover} if cover else {})}
    job_id = convert_in_the_page(tab, two_tracks, page_mp3, **options)
    said = tab.page.text_content("#sending") or ""
    assert re.fullmatch(rf"Sending only the audio: \d+ kB of {megabytes(two_tracks.stat().st_size)}", said), said
    convert_whole(endpoints, two_tracks, whole_mp3, **options)

    for mp3 in (page_mp3, whole_mp3):
        assert_the_tracks_mp3(mp3, track)  # the chosen track (its tone), the video's title and artist
    # The page read the chapters mediabunny does not, and sent them beside the extract.
    assert chapters(page_mp3) == chapters(whole_mp3) == [("Opening", 0.0, 1.5), ("Closing", 1.5, 3.0)]
    # The default cover is the frame at 10 % (here the page's, drawn from a <video>); the attached picture is
    # still there to choose.
    assert cover_of(page_mp3, tmp_path) == cover_of(whole_mp3, tmp_path) == ((200, 200) if cover else (320, 240))
    if track == 0:  # AAC: the very same MP3 frames
        assert packets_md5(page_mp3) == packets_md5(whole_mp3)
    else:
        # Opus: mediabunny's Matroska muxer drops the codec delay and the last packet's discard padding (it writes
        # the pre-skip as SeekPreRoll), so the page's MP3 runs up to 27 ms longer than the whole file's.
        assert 0 <= audio_duration(page_mp3) - audio_duration(whole_mp3) <= 0.03

    job = job_view(tab, endpoints, job_id)
    size = two_tracks.stat().st_size
    # What the server received is the audio (and the attached picture) in its container, not the video.
    assert audio_bytes(two_tracks) <= job["received_bytes"] <= 1.1 * audio_bytes(two_tracks) + 4096, job
    assert job["stored_bytes"] < size / 2 and job["received_bytes"] < size / 4
    assert tab.problems == []


def test_an_mp4_sends_only_its_audio_and_gives_the_whole_files_mp3(tab: Tab, endpoints: dict[str, str],
                                                                   one_track_mp4: Path, tmp_path: Path) -> None:
    scripts: list[str] = []
    tab.page.on("request", lambda request: scripts.append(request.url.rsplit("/", 1)[-1])
                if request.resource_type == "script" or request.url.endswith((".js", ".mjs")) else None)
    tab.page.reload()
    tab.page.wait_for_selector("body[data-ready=true]", state="attached")
    sign_up(tab)
    assert "mediabunny.min.mjs" not in scripts and "extract.js" not in scripts, "loaded before a file was chosen"
    page_mp3, whole_mp3 = tmp_path / "page.mp3", tmp_path / "whole.mp3"
    job_id = convert_in_the_page(tab, one_track_mp4, page_mp3)
    assert {"extract.js", "mediabunny.min.mjs"} <= set(scripts)
    said = tab.page.text_content("#sending") or ""
    assert re.fullmatch(rf"Sending only the audio: \d+ kB of {megabytes(one_track_mp4.stat().st_size)}", said), said
    convert_whole(endpoints, one_track_mp4, whole_mp3)

    for mp3 in (page_mp3, whole_mp3):
        assert_the_tracks_mp3(mp3, 0)
    assert packets_md5(page_mp3) == packets_md5(whole_mp3)
    assert dominant_hz(page_mp3) == pytest.approx(440, abs=5)
    # The chapters came from MP4's Nero box (the last one ends where the audio does).
    assert [title for title, _, _ in chapters(page_mp3)] == ["Opening", "Closing"]
    assert [start for _, start, _ in chapters(page_mp3)] == [start for _, start, _ in chapters(whole_mp3)]
    assert cover_of(page_mp3, tmp_path) == cover_of(whole_mp3, tmp_path) == (320, 240)
    job = job_view(tab, endpoints, job_id)
    assert audio_bytes(one_track_mp4) <= job["received_bytes"] <= 1.1 * audio_bytes(one_track_mp4) + 4096, job
    assert tab.problems == []


def test_a_file_the_page_cannot_read_goes_whole_by_tus_and_converts(tab: Tab, endpoints: dict[str, str],
                                                                    tmp_path: Path) -> None:
    video = make_clip(tmp_path / f"old camera {uuid.uuid4().hex[:6]}.avi", seconds=4, audio="mp3")
    sign_up(tab)
    patches: list[str] = []
    tab.page.on("request", lambda request: patches.append(request.url) if request.method == "PATCH" else None)
    tab.page.set_input_files("#file", str(video))
    expect(tab.page.locator("#sending")).to_have_text(
        "Sending the whole file: the page reads only MP4, MOV, WebM and Matroska files")
    expect(tab.page.locator("#state")).to_have_text("done", timeout=120_000)
    assert patches and all("/files/" in url for url in patches)
    job = job_view(tab, endpoints, tab.page.evaluate("currentJob.job_id"))
    assert job["received_bytes"] == video.stat().st_size
    assert abs(job["audio"]["duration_seconds"] - audio_duration(video)) <= 0.1
    assert tab.problems == []


def test_the_web_function_serves_mediabunny_as_its_other_files(endpoints: dict[str, str]) -> None:
    web = endpoints["WEB_URL"]
    page = requests.get(web + "/", timeout=10).text
    assert "mediabunny" not in page and "extract.js" not in page  # imported by app.js once a file is chosen
    for name in ("mediabunny.min.mjs", "extract.js"):
        answer = requests.get(f"{web}/{name}", headers={"Accept-Encoding": "gzip"}, timeout=10)
        assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/javascript")
        assert answer.headers["Content-Encoding"] == "gzip" and answer.headers["X-Content-Type-Options"] == "nosniff"
        again = requests.get(f"{web}/{name}", timeout=10, headers={"Accept-Encoding": "gzip",
                                                                    "If-None-Match": answer.headers["ETag"]})
        assert again.status_code == 304 and not again.content
    bundle = requests.get(f"{web}/mediabunny.min.mjs", timeout=10)
    # The stock bundle, its licence notice kept, and one file: it imports nothing, statically or dynamically.
    assert "Mozilla Public" in bundle.text[:1000] and re.search(r"\bimport\s*\(|\bfrom\s*[\"']", bundle.text) is None
    assert "media-src blob:" in requests.get(web + "/", timeout=10).headers["Content-Security-Policy"]


def test_an_extract_of_64_mib_or_more_goes_by_tus_without_the_frame(tab: Tab, endpoints: dict[str, str],
                                                                     tmp_path: Path) -> None:
    # 100 s of 96 kHz 32-bit stereo PCM: a 77 MB extract, past the page's 64 MiB for one request.
    video = make_clip(tmp_path / "lossless.mkv", seconds=100, extra=("-c:a", "pcm_s32le", "-ar", "96000", "-ac", "2"))
    sign_up(tab)
    patches: list[str] = []
    tab.page.on("request", lambda request: patches.append(request.url) if request.method == "PATCH" else None)
    tab.page.set_input_files("#file", str(video))
    expect(tab.page.locator("#sending")).to_contain_text("; resumable, so without the cover frame", timeout=60_000)
    expect(tab.page.locator("#state")).to_have_text("done", timeout=180_000)
    assert len(patches) >= 9  # 8 MiB each
    job = job_view(tab, endpoints, tab.page.evaluate("currentJob.job_id"))
    assert 64 * 1024 * 1024 <= job["received_bytes"] < video.stat().st_size
    assert abs(job["audio"]["duration_seconds"] - 100) <= 0.1
    assert tab.problems == []
