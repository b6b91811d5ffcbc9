"""The web page (issue 7): CORS on the public functions, the `web` function's files, and the page itself in a real
headless Chromium (Debian's, driven by Playwright): sign up, upload a generated clip, watch the conversion reach
100 %, download the MP3 and check it with ffprobe; a file that is not media shows why; a conversion is cancelled
from the page. A failing browser test leaves a screenshot in .local/screenshots/."""

from __future__ import annotations

import contextlib
import hashlib
import re
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from mutagen.id3 import ID3
from mutagen.mp3 import MP3, BitrateMode
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect, sync_playwright

from stack.config import LOCAL
from tests.stack.test_conversion_options import ffmpeg, seconds_decoded
from tests.stack.test_download_links import emailed_links
from tests.support import TEST_PASSWORD, audio_duration, make_clip, new_user, probe, wait_for

CHROMIUM = "/usr/bin/chromium"


CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


SCREENSHOTS = LOCAL / "screenshots"


PUBLIC_FUNCTIONS = ("AUTH_URL", "UPLOAD_URL", "STATUS_URL", "DOWNLOAD_URL")


@pytest.mark.stack
@pytest.mark.parametrize("function", PUBLIC_FUNCTIONS)
def test_public_functions_let_the_web_page_call_them(endpoints: dict[str, str], function: str) -> None:
    url = endpoints[function]
    allowed = requests.options(url, timeout=10, headers={
        "Origin": endpoints["WEB_URL"], "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert allowed.status_code == 204, (
        f"{function} refuses the web page's origin: was the stack started before CORS_ALLOWED_ORIGINS existed? "
        "(`make down && make up` gives every function the new environment)")
    assert allowed.headers["Access-Control-Allow-Origin"] == endpoints["WEB_URL"]
    refused = requests.options(url, timeout=10, headers={
        "Origin": "http://evil.example.test", "Access-Control-Request-Method": "POST"})
    assert refused.status_code == 403 and "Access-Control-Allow-Origin" not in refused.headers
    # Errors are readable by the page too (here: no token).
    error = requests.get(url + "/x", timeout=10, headers={"Origin": endpoints["WEB_URL"]})
    assert error.headers.get("Access-Control-Allow-Origin") == endpoints["WEB_URL"]


@pytest.mark.stack
def test_web_function_serves_the_page_and_names_the_public_urls(endpoints: dict[str, str]) -> None:
    web = endpoints["WEB_URL"]
    page = requests.get(web + "/", timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert '<script src="app.js"' in page.text and "https://" not in page.text  # no CDN
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    for function in PUBLIC_FUNCTIONS:
        assert endpoints[function] in policy
    for name, kind in (("app.js", "text/javascript"), ("style.css", "text/css")):
        answer = requests.get(f"{web}/{name}", timeout=10)
        assert answer.status_code == 200 and answer.headers["Content-Type"].startswith(kind)
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert requests.get(f"{web}/config.json", timeout=10).json() == {
        "auth_url": endpoints["AUTH_URL"], "upload_url": endpoints["UPLOAD_URL"],
        "status_url": endpoints["STATUS_URL"], "download_url": endpoints["DOWNLOAD_URL"]}
    assert requests.get(f"{web}/../functions/web/main.py", timeout=10).status_code == 404
    assert requests.post(f"{web}/", timeout=10).status_code == 405


@dataclass
class Tab:
    page: Any
    # Console errors that mean the page cannot talk to the functions (CORS) or broke its own policy (CSP).
    problems: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make setup` installs Debian's chromium", pytrace=False)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def tab(browser: Any, endpoints: dict[str, str], request: pytest.FixtureRequest) -> Iterator[Tab]:
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(20_000)
    opened = Tab(page)

    def on_console(message: Any) -> None:
        if message.type == "error" and any(word in message.text for word in (
                "CORS", "Access-Control", "Content Security Policy")):
            opened.problems.append(message.text)

    page.on("console", on_console)
    failed_before = request.session.testsfailed
    page.goto(endpoints["WEB_URL"] + "/")
    page.wait_for_selector("body[data-ready=true]", state="attached")
    yield opened
    # The call's report is in by now: a failure counted means this test failed.
    if request.session.testsfailed > failed_before:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{request.node.name}.png"), full_page=True)
    context.close()


def sign_up(tab: Tab) -> str:
    email = f"web-{uuid.uuid4().hex[:12]}@test.vid2mp3.dev"
    tab.page.fill("#email", email)
    tab.page.fill("#password", TEST_PASSWORD)
    tab.page.click("#signup")
    tab.page.wait_for_selector("#convert", state="visible")
    assert tab.page.text_content("#who-email") == email
    return email


def record_progress(tab: Tab) -> None:
    """Notes every state and conversion percentage the page shows, in order, in `window.seen`."""
    tab.page.evaluate("""() => {
        window.seen = [];
        const note = () => {
            const entry = [document.getElementById("state").textContent,
                           document.getElementById("convert-percent").textContent,
                           document.getElementById("upload-percent").textContent];
            const last = window.seen[window.seen.length - 1];
            if (!last || last.join() !== entry.join()) window.seen.push(entry);
        };
        new MutationObserver(note).observe(document.getElementById("job"),
            {subtree: true, childList: true, characterData: true, attributes: true});
    }""")


@pytest.mark.stack
def test_sign_up_upload_follow_and_download_in_a_browser(tab: Tab, tmp_path: Path) -> None:
    video = make_clip(tmp_path / f"holiday {uuid.uuid4().hex[:8]}.mp4", seconds=20)
    sign_up(tab)
    record_progress(tab)
    tab.page.set_input_files("#file", str(video))
    expect(tab.page.locator("#state")).to_have_text("done", timeout=120_000)
    seen = tab.page.evaluate("window.seen")
    print("page showed (state, conversion, upload):", seen)
    assert tab.page.text_content("#convert-percent") == "100 %"
    assert tab.page.text_content("#upload-percent") == "100 %"
    percents = [int(entry[1].removesuffix(" %")) for entry in seen]
    assert percents == sorted(percents), "the conversion bar went backwards"
    assert any(entry[0] == "uploading" for entry in seen)
    assert "can be downloaded until" in (tab.page.text_content("#expires") or "")

    with tab.page.expect_download() as download:
        tab.page.click("#download")
    target = tmp_path / "downloaded.mp3"
    download.value.save_as(str(target))
    assert download.value.suggested_filename == video.with_suffix(".mp3").name
    info = probe(target)
    assert [stream["codec_name"] for stream in info["streams"]] == ["mp3", "mjpeg"]  # the MP3 and its cover
    assert abs(float(info["format"]["duration"]) - audio_duration(video)) <= 0.1
    assert tab.problems == []


@pytest.mark.stack
def test_conversion_options_from_the_page(tab: Tab, tmp_path: Path) -> None:
    sign_up(tab)
    tab.page.click("#options summary")
    tab.page.fill("#option-start", "later")
    tab.page.fill("#option-date", "May")
    tab.page.set_input_files("#file", str(make_clip(tmp_path / "first.mp4", seconds=4)))
    # Refused with every bad field named, back on the form with those fields marked; nothing was stored.
    expect(tab.page.locator("#options-message")).to_contain_text("start:")
    expect(tab.page.locator("#options-message")).to_contain_text("date:")
    assert tab.page.get_attribute("#option-start", "aria-invalid") == "true"
    # The bad field has the focus, and the input is empty again: the same file chosen again is a change again.
    expect(tab.page.locator("#option-start")).to_be_focused()
    assert tab.page.input_value("#file") == ""
    tab.page.fill("#option-start", "1")
    tab.page.fill("#option-end", "0:03")
    tab.page.fill("#option-date", "")
    tab.page.fill("#option-title", "From the page")
    tab.page.select_option("#quality", "V5")
    tab.page.set_input_files("#file", str(make_clip(tmp_path / "second.mp4", seconds=4)))
    expect(tab.page.locator("#state")).to_have_text("done", timeout=60_000)
    expect(tab.page.locator("#applied")).to_contain_text("trimmed to 1 s - 3 s")
    expect(tab.page.locator("#applied")).to_contain_text('tagged "From the page"')
    with tab.page.expect_download() as download:
        tab.page.click("#download")
    target = tmp_path / "options.mp3"
    download.value.save_as(str(target))
    tags = MP3(target)
    assert str(tags["TIT2"]) == "From the page" and tags.info.bitrate_mode == BitrateMode.VBR
    # The next video starts from the defaults: nothing carries over unseen.
    assert [tab.page.input_value(field) for field in ("#option-start", "#option-end", "#option-title", "#quality")] \
        == ["", "", "", "192"]
    assert tab.problems == []


def quiet_ends_with_chapters(target: Path) -> Path:
    """1 s of silence, 2 s of tone, 1 s of silence, in two chapters (0-2 s "First", 2-4 s "Second")."""
    metadata = target.with_suffix(".txt")
    metadata.write_text(";FFMETADATA1\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=2000\ntitle=First\n"
                        "[CHAPTER]\nTIMEBASE=1/1000\nSTART=2000\nEND=4000\ntitle=Second\n")
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10:duration=4",
           "-f", "lavfi", "-i", "aevalsrc=0.2*sin(2*PI*440*t)*between(t\\,1\\,3):s=44100:d=4",
           "-i", str(metadata), "-map", "0:v", "-map", "1:a", "-map_chapters", "2",
           "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", str(target))
    return target


def job_of_the_view(tab: Tab, endpoints: dict[str, str]) -> dict[str, Any]:
    """The job the page's view follows, as the status function gives it to the page's user."""
    job_id, token = tab.page.evaluate("[currentJob.job_id, sessionStorage.getItem('vid2mp3.token')]")
    return requests.get(f"{endpoints['STATUS_URL']}/{job_id}", timeout=10,
                        headers={"Authorization": f"Bearer {token}"}).json()


def download_from_the_view(tab: Tab, target: Path) -> Path:
    with tab.page.expect_download() as download:
        tab.page.click("#download")
    download.value.save_as(str(target))
    return target


@pytest.mark.stack
def test_chapters_and_trim_silence_from_the_page(tab: Tab, endpoints: dict[str, str], tmp_path: Path) -> None:
    """Trim silence (its fields shown only when ticked) gives the tone alone, its chapters listed in the job view
    with the JSON document's link; then chapters=none gives an MP3 without CHAP frames and lists none."""
    video = quiet_ends_with_chapters(tmp_path / "quiet ends.mp4")
    sign_up(tab)
    tab.page.click("#options summary")
    expect(tab.page.locator("#option-silence-threshold")).to_be_hidden()
    tab.page.get_by_label("Trim silence at the start and end").check()
    expect(tab.page.locator("#option-silence-threshold")).to_be_visible()
    assert tab.page.get_attribute("#option-silence-threshold", "placeholder") == "-50"
    tab.page.get_by_label("Silence below").fill("-40")
    tab.page.set_input_files("#file", str(video))
    expect(tab.page.locator("#state")).to_have_text("done", timeout=90_000)
    job = job_of_the_view(tab, endpoints)
    assert job["options"] == {"trim_silence": True, "silence_threshold_db": -40.0}
    assert seconds_decoded(download_from_the_view(tab, tmp_path / "trimmed.mp3")) == pytest.approx(2.0, abs=0.05)
    expect(tab.page.locator("#chapter-list li")).to_have_text(["First (from 0 s)", "Second (from 1 s)"])
    assert tab.page.get_attribute("#chapters-link", "href") == job["audio"]["chapters_link"]
    document = requests.get(job["audio"]["chapters_link"], timeout=10).json()
    assert [chapter["title"] for chapter in document["chapters"]] == ["First", "Second"]

    # The next video starts from the defaults: trim_silence unticked, its fields hidden (and not sent).
    tab.page.click("#again")
    assert not tab.page.is_checked("#option-trim-silence")
    expect(tab.page.locator("#option-silence-threshold")).to_be_hidden()
    tab.page.select_option("#option-chapters", "none")
    tab.page.set_input_files("#file", str(video))
    expect(tab.page.locator("#state")).to_have_text("done", timeout=90_000)
    assert job_of_the_view(tab, endpoints)["options"] == {"chapters": "none"}
    untrimmed = download_from_the_view(tab, tmp_path / "no chapters.mp3")
    assert ID3(untrimmed).getall("CHAP") == [] and seconds_decoded(untrimmed) == pytest.approx(4.0, abs=0.05)
    expect(tab.page.locator("#chapters")).to_be_hidden()
    assert tab.problems == []


@pytest.mark.stack
def test_one_mp3_per_chapter_from_the_page(tab: Tab, endpoints: dict[str, str], tmp_path: Path) -> None:
    """"One MP3 per chapter" ticked: the job view lists each chapter file with its link, and "Download chapters as
    ZIP" gives a ZIP that zipfile opens, each entry the chapter file the link downloads, byte for byte."""
    video = quiet_ends_with_chapters(tmp_path / "two parts.mp4")
    sign_up(tab)
    tab.page.click("#options summary")
    tab.page.get_by_label("One MP3 per chapter, besides the whole MP3").check()
    tab.page.set_input_files("#file", str(video))
    expect(tab.page.locator("#state")).to_have_text("done", timeout=90_000)
    job = job_of_the_view(tab, endpoints)
    assert job["options"] == {"split": "chapters"}
    expect(tab.page.locator("#chapter-file-list li")).to_have_text(["First (2 s)", "Second (2 s)"])
    files = []
    for number, chapter_file in enumerate(job["audio"]["chapter_files"], start=1):
        with tab.page.expect_download() as download:
            tab.page.locator("#chapter-file-list a").nth(number - 1).click()
        target = tmp_path / f"chapter {number}.mp3"
        download.value.save_as(str(target))
        assert str(ID3(target)["TIT2"]) == chapter_file["title"] and str(ID3(target)["TRCK"]) == f"{number}/2"
        files.append(target.read_bytes())
    with tab.page.expect_download() as download:
        tab.page.get_by_text("Download chapters as ZIP").click()
    zipped = tmp_path / "chapters.zip"
    download.value.save_as(str(zipped))
    with zipfile.ZipFile(zipped) as archive:
        assert archive.testzip() is None
        assert [archive.read(name) for name in archive.namelist()] == files
    # The next video starts from the defaults: one MP3, no chapter files.
    tab.page.click("#again")
    assert not tab.page.is_checked("#option-split")
    assert tab.problems == []


@pytest.mark.stack
def test_a_file_that_is_not_media_shows_why(tab: Tab) -> None:
    sign_up(tab)
    # Dropped on the drop zone, as a person would drag it there: a text file wearing a video's name.
    tab.page.evaluate("""([name, text]) => {
        const transfer = new DataTransfer();
        transfer.items.add(new File([text], name, {type: "video/mp4"}));
        document.getElementById("drop").dispatchEvent(
            new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
    }""", ["holiday.mp4", "these are my holiday notes, not a video\n" * 50])
    expect(tab.page.locator("#state")).to_have_text("upload failed")
    message = tab.page.text_content("#job-message") or ""
    assert message.startswith("The upload failed: the file is not a video or audio file vid2mp3 reads"), message
    # The formats by the names people know, not ffmpeg's demuxers.
    assert "MP4" in message and "WebM" in message and "matroska" not in message, message
    assert tab.page.is_visible("#again") and not tab.page.is_visible("#download")
    assert tab.problems == []


@pytest.mark.stack
def test_wrong_password_is_shown(tab: Tab, endpoints: dict[str, str]) -> None:
    email = f"web-{uuid.uuid4().hex[:12]}@test.vid2mp3.dev"
    requests.post(endpoints["AUTH_URL"] + "/signup", json={"email": email, "password": TEST_PASSWORD}, timeout=30)
    tab.page.fill("#email", email)
    tab.page.fill("#password", "not the password")
    tab.page.click("#login")
    expect(tab.page.locator("#account-message")).to_have_text("wrong email address or password")
    assert not tab.page.is_visible("#convert")


@pytest.mark.stack
def test_a_conversion_is_cancelled_from_the_page(tab: Tab, stack_database: Any, tmp_path: Path) -> None:
    video = make_clip(tmp_path / f"long {uuid.uuid4().hex[:8]}.mp4", seconds=1200)
    sign_up(tab)
    tab.page.set_input_files("#file", str(video))
    expect(tab.page.locator("#state")).to_have_text("converting", timeout=90_000)
    expect(tab.page.locator("#convert-percent")).not_to_have_text("0 %", timeout=60_000)
    tab.page.click("#cancel")
    expect(tab.page.locator("#state")).to_have_text("cancelled", timeout=30_000)
    assert "Cancelled" in (tab.page.text_content("#job-message") or "")
    assert not tab.page.is_visible("#cancel") and not tab.page.is_visible("#download")
    # The page may show the state before the cancel's answer: the media go once it is recorded, then it answers.
    record = wait_for(lambda: stack_database["jobs"].find_one({"filename": video.name, "media_deleted_at": {
        "$exists": True}}), 30, "the cancelled job's media to be deleted")
    assert record["state"] == "cancelled"
    for bucket in ("videos", "sources"):
        assert stack_database[f"{bucket}.files"].count_documents({"_id": record["video_id"]}) == 0
    assert stack_database["covers.files"].count_documents({"metadata.job_id": record["_id"]}) == 0
    assert tab.problems == []


@pytest.mark.stack
def test_the_emailed_links_open_in_a_browser_without_a_token(tab: Tab, endpoints: dict[str, str],
                                                             tmp_path: Path) -> None:
    """What the owner does with the email: the direct link downloads the MP3 in a browser that was never logged in;
    the page link asks to log in, then shows that job, ready to download."""
    client, email = new_user(endpoints)
    video = make_clip(tmp_path / f"emailed {uuid.uuid4().hex[:8]}.mp4", seconds=2)
    job = client.follow(client.upload(video)["job_id"], lambda _: None, timeout=60)
    links = emailed_links(endpoints, job["job_id"])
    (direct,) = [url for url in links if url.startswith(endpoints["DOWNLOAD_URL"])]
    (page_link,) = [url for url in links if url.startswith(endpoints["WEB_URL"])]

    with tab.page.expect_download() as download:
        with contextlib.suppress(PlaywrightError):  # Chromium reports a navigation that became a download
            tab.page.goto(direct)
    target = tmp_path / "direct.mp3"
    download.value.save_as(str(target))
    assert download.value.suggested_filename == video.with_suffix(".mp3").name
    assert [stream["codec_name"] for stream in probe(target)["streams"]
            if stream["codec_type"] == "audio"] == ["mp3"]
    tampered = tab.page.request.get(direct.replace("signature=", "signature=x"))
    assert tampered.status == 403 and tampered.json()["error"] == "invalid_link"

    tab.page.goto(page_link)
    tab.page.wait_for_selector("body[data-ready=true]", state="attached")
    expect(tab.page.locator("#account-message")).to_contain_text("Log in to see the job")
    tab.page.fill("#email", email)
    tab.page.fill("#password", TEST_PASSWORD)
    tab.page.click("#login")
    expect(tab.page.locator("#state")).to_have_text("done")
    assert tab.page.text_content("#job-title") == video.name
    # Uploaded long before: its upload is over, not at 0 %.
    assert tab.page.text_content("#upload-percent") == "100 %"
    with tab.page.expect_download() as from_page:
        tab.page.click("#download")
    assert from_page.value.suggested_filename == video.with_suffix(".mp3").name


@pytest.mark.stack
def test_several_videos_dropped_at_once_become_jobs_in_the_history(tab: Tab, endpoints: dict[str, str],
                                                                  tmp_path: Path) -> None:
    """Three videos chosen at once: at most two upload at a time, each has its row; the history then lists every
    job with its length and expiry, downloads one, and deletes one for good."""
    sign_up(tab)
    videos = [make_clip(tmp_path / f"part {index} {uuid.uuid4().hex[:6]}.mp4", seconds=8) for index in range(3)]
    tab.page.evaluate("""() => {
        window.uploadingAtOnce = 0;
        new MutationObserver(() => {
            const now = [...document.querySelectorAll("#jobs tbody tr")]
                .filter((row) => row.cells[1].textContent.startsWith("uploading")).length;
            window.uploadingAtOnce = Math.max(window.uploadingAtOnce, now);
        }).observe(document.getElementById("jobs"), {subtree: true, childList: true, characterData: true});
    }""")
    tab.page.set_input_files("#file", [str(video) for video in videos])
    rows = tab.page.locator("#jobs tbody tr[data-job-id]")
    expect(rows).to_have_count(3, timeout=60_000)
    for video in videos:
        row = tab.page.locator("#jobs tbody tr[data-job-id]", has_text=video.name)
        expect(row.locator("td").nth(1)).to_have_text("done", timeout=90_000)
        expect(row.locator("td").nth(2)).to_have_text("8 s")
        assert row.locator("td").nth(4).text_content()
    assert 1 <= tab.page.evaluate("window.uploadingAtOnce") <= 2
    assert tab.page.is_hidden("#job"), "several files do not take over the single job view"

    first = tab.page.locator("#jobs tbody tr[data-job-id]", has_text=videos[0].name)
    with tab.page.expect_download() as download:
        first.locator("button[data-action=download]").click()
    assert download.value.suggested_filename == videos[0].with_suffix(".mp3").name

    gone_id = first.get_attribute("data-job-id")
    tab.page.once("dialog", lambda dialog: dialog.accept())
    first.locator("button[data-action=delete]").click()
    expect(rows).to_have_count(2)
    token = tab.page.evaluate("sessionStorage.getItem('vid2mp3.token')")
    gone = requests.get(f"{endpoints['STATUS_URL']}/{gone_id}", timeout=10,
                        headers={"Authorization": f"Bearer {token}"})
    assert gone.status_code == 404
    assert tab.problems == []


@pytest.mark.stack
def test_finished_jobs_selected_in_the_list_download_as_one_zip(tab: Tab, endpoints: dict[str, str],
                                                                 tmp_path: Path) -> None:
    """Two finished jobs ticked in the list: one ZIP, which Python's zipfile opens, each entry the job's MP3 byte
    for byte (as the download function serves it); the page says why when nothing is ticked."""
    sign_up(tab)
    videos = [make_clip(tmp_path / f"{name}.mp4", seconds=2) for name in ("talk", "q and a")]
    tab.page.set_input_files("#file", [str(video) for video in videos])
    for video in videos:
        row = tab.page.locator("#jobs tbody tr[data-job-id]", has_text=video.name)
        expect(row.locator("td").nth(1)).to_have_text("done", timeout=90_000)
    tab.page.click("#download-zip")
    expect(tab.page.locator("#history-message")).to_have_text("Select the finished jobs to download first.")
    for video in videos:
        tab.page.get_by_label(f"Select {video.name}").check()
    with tab.page.expect_download() as download:
        tab.page.click("#download-zip")
    target = tmp_path / "selected.zip"
    download.value.save_as(str(target))
    token = tab.page.evaluate("sessionStorage.getItem('vid2mp3.token')")
    with zipfile.ZipFile(target) as archive:
        assert archive.testzip() is None
        zipped = {name: archive.read(name) for name in archive.namelist()}
    assert sorted(zipped) == sorted(video.with_suffix(".mp3").name for video in videos)
    for video in videos:
        job_id = tab.page.locator("#jobs tbody tr[data-job-id]", has_text=video.name).get_attribute("data-job-id")
        served = requests.get(f"{endpoints['DOWNLOAD_URL']}/{job_id}", timeout=30,
                              headers={"Authorization": f"Bearer {token}"})
        assert served.status_code == 200 and zipped[video.with_suffix(".mp3").name] == served.content
    assert tab.problems == []


@pytest.mark.stack
def test_the_page_finishes_an_upload_after_the_network_drops(tab: Tab, tmp_path: Path, stack_database: Any) -> None:
    # Over one 8 MiB PATCH of PCM audio: the network drops as the second PATCH starts, with the first chunk stored.
    # Audio alone, so the page sends it whole, with tus (it extracts the audio of a video: test_web_extraction.py).
    video = make_clip(tmp_path / "dropped.mkv", seconds=12, video=False,
                      extra=("-c:a", "pcm_s32le", "-ar", "96000", "-ac", "2"))
    assert video.stat().st_size > 8 * 1024 * 1024
    sign_up(tab)
    context = tab.page.context
    offsets: list[int] = []  # Upload-Offset of each PATCH the page sent
    dropped: list[str] = []

    def drop_the_second_patch(route: Any) -> None:
        if route.request.method == "PATCH":
            offsets.append(int(route.request.headers["upload-offset"]))
            if len(offsets) == 2 and not dropped:
                dropped.append(route.request.url)
                context.set_offline(True)
                route.abort("internetdisconnected")
                return
        route.continue_()

    context.route(re.compile(r"/files/"), drop_the_second_patch)
    tab.page.set_input_files("#file", str(video))
    # Polled through Playwright, whose calls are what let the route handler run (a sleep would block it).
    wait_for(lambda: tab.page.wait_for_timeout(50) or dropped, 30, "the network to drop mid-upload")
    upload_id = dropped[0].rsplit("/", 1)[1]
    expect(tab.page.locator("#state")).to_have_text("uploading")
    tab.page.wait_for_timeout(1000)  # offline for a moment: the page's retries find no network
    assert stack_database["jobs"].find_one({"_id": upload_id}) is None
    context.set_offline(False)
    expect(tab.page.locator("#state")).to_have_text("done", timeout=60_000)
    assert tab.page.text_content("#upload-percent") == "100 %"
    # The page went on from the bytes the server held: no byte sent twice, none skipped.
    assert offsets[:2] == [0, 8 * 1024 * 1024] and offsets[2] == 8 * 1024 * 1024, offsets
    job = stack_database["jobs"].find_one({"_id": upload_id})
    assert job is not None and job["size_bytes"] == video.stat().st_size
    assert job["sha256"] == hashlib.sha256(video.read_bytes()).hexdigest()
    assert tab.problems == []


@pytest.mark.stack
def test_the_page_resumes_an_upload_after_a_reload(tab: Tab, tmp_path: Path, stack_database: Any) -> None:
    # Audio alone: the page sends it whole, with tus.
    video = make_clip(tmp_path / "reloaded.mkv", seconds=2, video=False,
                      extra=("-c:a", "pcm_s32le", "-ar", "96000", "-ac", "2"))
    sign_up(tab)
    created: list[str] = []
    patches_fail = [True]

    def fail_patches(route: Any) -> None:
        if route.request.method == "POST":
            created.append(route.request.url)
        if route.request.method == "PATCH" and patches_fail[0]:
            route.abort("connectionreset")
        else:
            route.continue_()

    tab.page.context.route(re.compile(r"/files/"), fail_patches)
    with tab.page.expect_response(lambda response: response.request.method == "POST" and "/files/" in response.url) \
            as creation:
        tab.page.set_input_files("#file", str(video))
    upload_url = creation.value.headers["location"]
    # The tab is reloaded mid-upload (still signed in: the token is the tab's), the same file chosen again.
    tab.page.reload()
    tab.page.wait_for_selector("#convert", state="visible")
    # The page says the upload can go on, and how.
    expect(tab.page.locator("#resumable")).to_contain_text(f"{video.name}. Choose the same file again")
    patches_fail[0] = False
    tab.page.set_input_files("#file", str(video))
    expect(tab.page.locator("#state")).to_have_text("done", timeout=60_000)
    expect(tab.page.locator("#resumable")).to_be_hidden()
    assert len(created) == 1, "the upload was resumed, not made again"
    job = stack_database["jobs"].find_one({"_id": upload_url.rsplit("/", 1)[1]})
    assert job is not None and job["size_bytes"] == video.stat().st_size
    assert tab.problems == []


