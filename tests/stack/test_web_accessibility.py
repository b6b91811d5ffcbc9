"""The web page for everyone (issue 27): axe-core (WCAG 2 A/AA and best practice) finds nothing on any view at
1280x800 and 390x844, and nothing scrolls sideways on a phone; the whole page works from the keyboard alone with
the focus never dropped on the body; rows update in place and say what the job view says; what a screen reader
hears (named bars and buttons, a polite status). Small clips throughout: the file runs in a few minutes."""

from __future__ import annotations

import contextlib
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

from stack.config import LOCAL
from tests.stack import test_web
from tests.stack.test_download_links import emailed_links
from tests.stack.test_web import Tab, sign_up
from tests.support import TEST_PASSWORD, make_clip, new_user, wait_for

pytestmark = pytest.mark.stack
browser, tab = test_web.browser, test_web.tab

AXE = LOCAL / "node" / "node_modules" / "axe-core" / "axe.min.js"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]
SIZES = {"desktop": (1280, 800), "phone": (390, 844)}


@pytest.fixture(scope="module")
def axe_source() -> str:
    if not AXE.is_file():
        pytest.fail(f"{AXE} is missing: `make setup` installs the tests' npm packages (stack/node)", pytrace=False)
    return AXE.read_text()


@pytest.fixture(scope="module")
def long_audio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An hour of audio in 29 MB, made at once (PCM, nothing to encode): its conversion lasts long enough to be seen,
    and cancelled, with room to spare (20 minutes were 78 % converted by the time the keyboard walk cancelled)."""
    target = tmp_path_factory.mktemp("long") / "long talk.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=8000:"
                    "duration=3600", "-c:a", "pcm_u8", "-ac", "1", str(target)], check=True)
    return target


def check_view(tab: Tab, axe_source: str, view: str) -> None:
    """axe-core's WCAG 2 A/AA and best-practice rules at both sizes, and no sideways scroll on the phone."""
    page = tab.page
    for size, (width, height) in SIZES.items():
        page.set_viewport_size({"width": width, "height": height})
        if not page.evaluate("typeof window.axe === 'object'"):
            page.evaluate(axe_source)  # through the debugger: the page's CSP allows no injected <script>
        results = page.evaluate("(tags) => axe.run(document, {runOnly: {type: 'tag', values: tags}})", AXE_TAGS)
        violations = [(violation["id"], violation["impact"], [node["target"] for node in violation["nodes"]])
                      for violation in results["violations"]]
        assert violations == [], f"{view} at {size}: {violations}"
        scroll_width, inner_width = page.evaluate("[document.scrollingElement.scrollWidth, innerWidth]")
        assert scroll_width <= inner_width, f"{view} at {size} scrolls sideways: {scroll_width} > {inner_width}"


def hold_uploads(tab: Tab) -> list[Any]:
    """Keeps every upload request the page sends waiting (never answered) until the test lets it go."""
    held: list[Any] = []
    tab.page.context.route(re.compile(r"/files/|/upload"), lambda route: held.append(route)
                           if route.request.method in ("PATCH", "POST") else route.continue_())
    return held


def release(tab: Tab, held: list[Any]) -> None:
    tab.page.context.unroute(re.compile(r"/files/|/upload"))
    for route in held:
        with contextlib.suppress(PlaywrightError):  # answered already (a cancelled upload's)
            route.abort()


def history_row(tab: Tab, name: str) -> Any:
    return tab.page.locator("#jobs tbody tr", has_text=name)


def test_every_view_passes_axe_at_both_sizes_and_never_scrolls_sideways(
        tab: Tab, axe_source: str, endpoints: dict[str, str], tmp_path: Path, long_audio: Path) -> None:
    page = tab.page
    check_view(tab, axe_source, "signed out")
    page.fill("#email", f"nobody-{uuid.uuid4().hex[:8]}@test.vid2mp3.dev")
    page.fill("#password", "not the password")
    page.click("#login")
    expect(page.locator("#account-message")).to_have_text("wrong email address or password")
    check_view(tab, axe_source, "a refused log-in")
    sign_up(tab)
    expect(page.locator("#no-jobs")).to_be_visible()
    check_view(tab, axe_source, "signed in, no jobs")

    held = hold_uploads(tab)
    page.set_input_files("#file", str(make_clip(tmp_path / "held.mka", seconds=2, video=False)))
    wait_for(lambda: page.wait_for_timeout(50) or held, 30, "the upload to start")
    expect(page.locator("#state")).to_have_text("uploading")
    expect(page.get_by_role("progressbar", name="Upload")).to_be_visible()
    expect(page.get_by_role("progressbar", name="Conversion")).to_be_visible()
    check_view(tab, axe_source, "a job uploading")
    page.click("#cancel")
    expect(page.locator("#state")).to_have_text("cancelled")
    # No job came of it: no bars, whatever the upload had reached.
    expect(page.locator("#upload-bar")).to_be_hidden()
    check_view(tab, axe_source, "an upload cancelled")
    release(tab, held)

    page.click("#again")
    silent = make_clip(tmp_path / f"silent {uuid.uuid4().hex[:6]}.mp4", seconds=2, audio=None)
    page.set_input_files("#file", str(silent))
    expect(page.locator("#state")).to_have_text("upload failed", timeout=60_000)
    expect(page.locator("#job-message")).to_have_text("The upload failed: the file has no audio track")
    expect(page.locator("#upload-bar")).to_be_hidden()  # not "Upload 100 %" beside "upload failed"
    expect(page.locator("#convert-bar")).to_be_hidden()
    check_view(tab, axe_source, "a file refused")

    page.click("#again")
    page.click("#options summary")
    page.fill("#option-start", "100")  # past the end of the clip: its conversion fails
    late = make_clip(tmp_path / f"late {uuid.uuid4().hex[:6]}.mp4", seconds=2)
    page.set_input_files("#file", str(late))
    expect(page.locator("#state")).to_have_text("failed", timeout=60_000)
    # The list says why a job failed, not only that it did.
    expect(history_row(tab, late.name).locator("td.state")).to_contain_text("failed: start 100 s is past the end")
    check_view(tab, axe_source, "a job failed")

    page.click("#again")
    expect(page.locator("#job")).to_be_hidden()
    assert page.input_value("#option-start") == "", "each video starts from the defaults"
    page.check("#keep-options")
    page.fill("#option-title", "Kept for the next one")
    # Whenever the job view says done, its row in the list says so too (never "converting" with a Cancel).
    page.evaluate("""() => {
        window.mismatches = [];
        new MutationObserver(() => {
            if (document.getElementById("state").textContent !== "done") return;
            const row = document.querySelector(`#jobs tr[data-job-id="${currentJob.job_id}"]`);
            const said = row ? row.cells[1].textContent : "no row";
            if (said !== "done") window.mismatches.push(said);
        }).observe(document.getElementById("job"), {subtree: true, childList: true, characterData: true});
    }""")
    short = make_clip(tmp_path / f"short {uuid.uuid4().hex[:6]}.mp4", seconds=3)
    page.set_input_files("#file", str(short))
    expect(page.locator("#state")).to_have_text("done", timeout=60_000)
    assert page.evaluate("window.mismatches") == []
    expect(page.locator("#announce")).to_have_text(f"{short.name} is converted: the MP3 is ready to download.")
    expect(page.get_by_role("button", name=f"Download {short.name}")).to_be_visible()
    expect(page.get_by_role("button", name=f"Delete {short.name}")).to_be_visible()
    check_view(tab, axe_source, "a job done")
    # A length ("3 min 0 s") stays on one line.
    assert page.eval_on_selector("#jobs tr[data-job-id] td.length", "cell => getComputedStyle(cell).whiteSpace") \
        == "nowrap"
    done_id = page.evaluate("currentJob.job_id")

    page.click("#again")
    assert page.input_value("#option-title") == "Kept for the next one", "kept, as the user chose"
    page.check("#option-trim-silence")
    expect(page.get_by_label("lasting at least")).to_be_visible()
    check_view(tab, axe_source, "the silence fields shown")
    page.uncheck("#option-trim-silence")
    page.uncheck("#keep-options")
    page.fill("#option-title", "")
    page.set_input_files("#file", str(long_audio))
    # A new video starts at 0 %, not at the 100 % of the one before.
    assert page.text_content("#convert-percent") == "0 %"
    expect(page.locator("#state")).to_have_text("converting", timeout=90_000)
    check_view(tab, axe_source, "a job converting")
    page.click("#cancel")
    expect(page.locator("#state")).to_have_text("cancelled", timeout=30_000)
    check_view(tab, axe_source, "a job cancelled")

    for link, view in ((f"#job={uuid.uuid4().hex}", "a link to a job that is gone"),
                       ("#job=0123-altered", "an altered link")):
        page.evaluate("(hash) => { location.hash = hash; }", link)
        expect(page.locator("#job-message")).to_contain_text("link")
        assert "{" not in (page.text_content("#job") or ""), "no raw JSON"
        check_view(tab, axe_source, view)
    token = page.evaluate("sessionStorage.getItem('vid2mp3.token')")
    requests.delete(f"{endpoints['STATUS_URL']}/{done_id}", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    page.evaluate("(hash) => { location.hash = hash; }", f"#job={done_id}")
    expect(page.locator("#job-message")).to_contain_text("deleted")
    check_view(tab, axe_source, "a link to a deleted job")
    assert tab.problems == []


def test_uploads_waiting_or_under_way_can_be_cancelled_from_the_list(tab: Tab, axe_source: str,
                                                                     tmp_path: Path) -> None:
    sign_up(tab)
    held = hold_uploads(tab)
    clips = [make_clip(tmp_path / f"row {index} {uuid.uuid4().hex[:6]}.mka", seconds=1, video=False)
             for index in range(3)]
    tab.page.set_input_files("#file", [str(clip) for clip in clips])
    expect(history_row(tab, clips[2].name).locator("td.state")).to_have_text("waiting")
    expect(history_row(tab, clips[0].name).locator("td.state")).to_have_text(re.compile("^uploading"))
    check_view(tab, axe_source, "uploads waiting and under way")
    tab.page.get_by_role("button", name=f"Cancel {clips[2].name}").click()
    expect(history_row(tab, clips[2].name)).to_have_count(0)
    tab.page.get_by_role("button", name=f"Cancel {clips[0].name}").click()
    expect(history_row(tab, clips[0].name)).to_have_count(0)
    expect(tab.page.locator("#history-message")).to_contain_text(f"The upload of {clips[0].name} is cancelled")
    release(tab, held)


def test_the_favicon_is_served_as_the_other_files(tab: Tab, endpoints: dict[str, str]) -> None:
    missing: list[str] = []
    tab.page.on("response", lambda response: missing.append(response.url) if response.status == 404 else None)
    tab.page.reload()
    tab.page.wait_for_selector("body[data-ready=true]", state="attached")
    tab.page.wait_for_timeout(500)
    assert missing == []
    icon = requests.get(f"{endpoints['WEB_URL']}/favicon.svg", timeout=10)
    assert icon.status_code == 200 and icon.headers["Content-Type"].startswith("image/svg+xml")
    assert icon.headers["Cache-Control"] == "no-cache" and icon.headers["ETag"]
    again = requests.get(f"{endpoints['WEB_URL']}/favicon.svg", headers={"If-None-Match": icon.headers["ETag"]},
                         timeout=10)
    assert again.status_code == 304


# --- Keyboard alone -------------------------------------------------------------------------------------------------

def watch_focus(tab: Tab) -> None:
    """Notes, every 50 ms, any moment the focus is on the body (or nowhere) in `window.focusLost`."""
    tab.page.evaluate("""() => {
        window.focusLost = [];
        setInterval(() => {
            const active = document.activeElement;
            if (!active || active === document.body) {
                window.focusLost.push(document.getElementById("state").textContent || "(no job)");
            }
        }, 50);
    }""")


def focus_kept(tab: Tab, step: str) -> None:
    lost = tab.page.evaluate("window.focusLost")
    assert lost == [], f"after {step}, the focus fell on the body ({lost[:5]})"
    assert tab.page.evaluate("document.activeElement !== document.body"), f"after {step}, the focus is on the body"


def tab_to(tab: Tab, selector: str, step: str, limit: int = 80, backwards: bool = False) -> None:
    """Presses Tab (or Shift+Tab), nothing else, until the element `selector` has the focus."""
    for _ in range(limit):
        if tab.page.evaluate("(selector) => document.activeElement.matches(selector)", selector):
            focus_kept(tab, step)
            return
        tab.page.keyboard.press("Shift+Tab" if backwards else "Tab")
    raise AssertionError(f"{selector} is not reached with Tab ({step})")


def choose_with_the_keyboard(tab: Tab, path: Path) -> None:
    tab_to(tab, "#choose", f"reaching the file chooser for {path.name}")
    with tab.page.expect_file_chooser() as chooser:
        tab.page.keyboard.press("Enter")
    chooser.value.set_files(str(path))


def test_everything_from_the_keyboard_without_the_focus_on_the_body(
        tab: Tab, endpoints: dict[str, str], tmp_path: Path, long_audio: Path) -> None:
    page = tab.page
    # Playwright turns the browser's file-chooser interception on with the first listener, asynchronously: on from the
    # start, a chooser the keyboard opens is never missed.
    page.on("filechooser", lambda _: None)
    email = f"keys-{uuid.uuid4().hex[:12]}@test.vid2mp3.dev"
    page.keyboard.press("Tab")
    watch_focus(tab)
    tab_to(tab, "#email", "the page opened")
    page.keyboard.type(email)
    page.keyboard.press("Tab")
    page.keyboard.type(TEST_PASSWORD)
    tab_to(tab, "#signup", "typing the credentials")
    page.keyboard.press("Enter")
    expect(page.locator("#convert")).to_be_visible()
    expect(page.locator("#choose")).to_be_focused()
    focus_kept(tab, "signing up")
    tab_to(tab, "#logout", "signing up", backwards=True)
    page.keyboard.press("Enter")
    expect(page.locator("#email")).to_be_focused()
    focus_kept(tab, "logging out")
    tab_to(tab, "#password", "logging out")
    page.keyboard.type(TEST_PASSWORD)
    page.keyboard.press("Enter")  # the form's submit: Log in
    expect(page.locator("#choose")).to_be_focused()
    focus_kept(tab, "logging in")

    # Options first (they come before the chooser), then the file, through the chooser the keyboard opened.
    tab_to(tab, "#quality", "going back to the options", backwards=True)
    page.keyboard.press("ArrowDown")  # 192 → 256 kbit/s
    tab_to(tab, "#options summary", "choosing the quality")
    page.keyboard.press("Enter")
    tab_to(tab, "#option-title", "opening the options")
    page.keyboard.type("Typed title")
    clip = make_clip(tmp_path / f"typed {uuid.uuid4().hex[:6]}.mp4", seconds=3)
    choose_with_the_keyboard(tab, clip)
    expect(page.locator("#state")).to_have_text("done", timeout=60_000)
    expect(page.locator("#download")).to_be_focused()
    focus_kept(tab, "the upload and the conversion")
    expect(page.locator("#applied")).to_contain_text('tagged "Typed title"')
    with page.expect_download() as download:
        page.keyboard.press("Enter")
    assert download.value.suggested_filename == clip.with_suffix(".mp3").name
    focus_kept(tab, "the download")

    # The next video starts from the defaults: the options were not kept.
    tab_to(tab, "#again", "the download")
    page.keyboard.press("Enter")
    expect(page.locator("#choose")).to_be_focused()
    assert page.input_value("#option-title") == "" and page.input_value("#quality") == "192"
    choose_with_the_keyboard(tab, long_audio)
    expect(page.locator("#state")).to_have_text("converting", timeout=90_000)
    # Cancelled from the list's row: its button keeps the focus while the list refreshes around it.
    tab_to(tab, f'#jobs button[aria-label="Cancel {long_audio.name}"]', "the conversion starting")
    page.wait_for_timeout(5000)
    focus_kept(tab, "5 s on the list while it refreshed")
    expect(page.locator(f'#jobs button[aria-label="Cancel {long_audio.name}"]')).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#state")).to_have_text("cancelled", timeout=30_000)
    focus_kept(tab, "the cancel")

    # Deleted from the list: confirmed in the browser's dialog, the focus goes to the row that took its place.
    page.once("dialog", lambda dialog: dialog.accept())
    tab_to(tab, f'#jobs button[aria-label="Delete {clip.name}"]', "the cancel")
    page.keyboard.press("Enter")
    expect(history_row(tab, clip.name)).to_have_count(0, timeout=30_000)  # its media deleted first
    focus_kept(tab, "the delete")

    # The account goes, after its password and a tick.
    tab_to(tab, "#close-password", "the delete")
    page.keyboard.type("not the password")
    page.keyboard.press("Tab")
    page.keyboard.press("Space")
    tab_to(tab, "#close-account-submit", "the confirmation")
    page.keyboard.press("Enter")
    expect(page.locator("#close-account-message")).to_have_text("the password does not match this account")
    focus_kept(tab, "a wrong password")
    page.evaluate("""() => {
        const message = document.getElementById("close-account-message");
        window.closeMessages = [];
        new MutationObserver(() => window.closeMessages.push(message.textContent))
            .observe(message, {subtree: true, childList: true, characterData: true});
    }""")
    page.keyboard.press("Control+a")
    page.keyboard.type(TEST_PASSWORD)
    tab_to(tab, "#close-account-submit", "typing the password")
    page.keyboard.press("Enter")
    expect(page.locator("#account-message")).to_have_text("Your account is deleted, with all its jobs and their MP3s.",
                                                           timeout=30_000)  # every job's media first
    assert "Deleting your account and its jobs…" in page.evaluate("window.closeMessages"), "said while it lasted"
    assert page.text_content("#close-account-message") == ""  # nothing left for the next account signed in
    expect(page.locator("#account")).to_be_visible()
    focus_kept(tab, "deleting the account")
    gone = requests.post(f"{endpoints['AUTH_URL']}/login", json={"email": email, "password": TEST_PASSWORD},
                         timeout=30)
    assert gone.status_code == 401
    assert tab.problems == []



def test_an_emailed_link_that_no_longer_works_opens_a_readable_page(tab: Tab, axe_source: str,
                                                                    endpoints: dict[str, str], tmp_path: Path) -> None:
    """The email's direct link, altered or to a job deleted since, opened in a browser: the web page says why in
    words, where the download function's JSON error was shown; a program fetching the link still gets the JSON."""
    client, _ = new_user(endpoints)
    job = client.follow(client.upload(make_clip(tmp_path / "emailed.mp4", seconds=2))["job_id"], lambda _: None,
                        timeout=60)
    (direct,) = [url for url in emailed_links(endpoints, job["job_id"]) if url.startswith(endpoints["DOWNLOAD_URL"])]
    page = tab.page
    page.goto(direct.replace("signature=", "signature=x"))
    page.wait_for_selector("body[data-ready=true]", state="attached")
    assert page.url == endpoints["WEB_URL"] + "/"  # the problem read, the address is the page's own again
    expect(page.locator("#job-message")).to_have_text(re.compile("^This link is not complete or was altered"))
    expect(page.locator("#again")).to_be_hidden()  # signed out: nothing to convert from here
    check_view(tab, axe_source, "an altered emailed link")
    assert requests.get(direct.replace("signature=", "signature=x"), timeout=10).json()["error"] == "invalid_link"

    client.delete(job["job_id"])
    page.goto(direct)
    page.wait_for_selector("body[data-ready=true]", state="attached")
    expect(page.locator("#job-message")).to_have_text(re.compile("^The MP3 this link was for is no longer here"))
    check_view(tab, axe_source, "an emailed link to a deleted job")
    assert tab.problems == []
