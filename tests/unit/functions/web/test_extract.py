"""The web page's extraction (functions/web/static/extract.js) run by Node on files made with ffmpeg, with the
mediabunny bundle the web function serves: the audio tracks copied with their tags, the Matroska title and the
chapters mediabunny does not read restored, and what it cannot read refused with the reason the page shows. Node has
no <video>, so no cover frame here (tests/stack/test_web_extraction.py covers it in Chromium)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from stack.config import LOCAL, ROOT
from tests.support import make_clip, make_two_tracks, probe

EXTRACT_JS = ROOT / "functions" / "web" / "static" / "extract.js"
MEDIABUNNY = LOCAL / "node" / "node_modules" / "mediabunny" / "dist" / "bundles" / "mediabunny.min.mjs"
HARNESS = """
import { extract, NotExtracted } from "./extract.js";
import { readFileSync, writeFileSync } from "node:fs";
const [path, out] = process.argv.slice(2);
const video = new File([readFileSync(path)], path.split("/").pop());
try {
  const made = await extract(video);
  writeFileSync(out, new Uint8Array(await made.file.arrayBuffer()));
  console.log(JSON.stringify({ name: made.file.name, type: made.file.type, sent_as: made.name,
                               chapters: made.chapters, words: made.words }));
} catch (error) {
  console.log(JSON.stringify({ not_extracted: error instanceof NotExtracted, message: error.message }));
}
"""


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """extract.js beside the mediabunny bundle, as the web function serves them, and a Node entry point."""
    if not MEDIABUNNY.is_file() or shutil.which("node") is None:
        pytest.fail("Node.js and the npm packages are missing: run `make setup`", pytrace=False)
    folder = tmp_path_factory.mktemp("page")
    shutil.copy(EXTRACT_JS, folder / "extract.js")
    (folder / "mediabunny.min.mjs").symlink_to(MEDIABUNNY)
    (folder / "harness.mjs").write_text(HARNESS)
    return folder


def extracted(page: Path, video: Path) -> tuple[dict[str, Any], Path]:
    out = video.with_name(video.name + ".extract")
    done = subprocess.run(["node", str(page / "harness.mjs"), str(video), str(out)], capture_output=True, text=True,
                          timeout=60, check=True)
    return json.loads(done.stdout), out


def test_a_two_track_matroska_gives_both_tracks_its_tags_title_chapters_and_picture(page: Path,
                                                                                   tmp_path: Path) -> None:
    video = make_two_tracks(tmp_path)
    made, out = extracted(page, video)
    assert made["name"] == "two tracks.mka" and made["type"] == "audio/x-matroska" and made["sent_as"] == video.name
    assert made["words"].startswith("Sending only the audio: ") and " of 3" in made["words"]
    assert made["chapters"] == [{"start": 0, "end": 1.5, "title": "Opening"},
                                {"start": 1.5, "end": 3, "title": "Closing"}]
    info = probe(out)
    assert info["format"]["format_name"] == "matroska,webm"
    # Plain tags, as ffmpeg reads them (not MOVIE/TITLE), and the title mediabunny does not read.
    tags = info["format"]["tags"]
    assert (tags.get("TITLE"), tags.get("ARTIST")) == ("Two tracks", "The Testers"), tags
    audio = [(stream["codec_name"], stream["tags"].get("language"), stream["tags"].get("title"))
             for stream in info["streams"] if stream["codec_type"] == "audio"]
    assert audio == [("aac", "eng", "English"), ("opus", "fra", "Français")]
    pictures = [stream for stream in info["streams"] if stream["codec_type"] == "video"]
    assert [(stream["codec_name"], stream["width"]) for stream in pictures] == [("mjpeg", 200)]  # the attachment
    assert out.stat().st_size < video.stat().st_size / 2


def test_an_mp4_gives_an_m4a_and_its_nero_chapters_as_a_part(page: Path, tmp_path: Path) -> None:
    two_tracks = make_two_tracks(tmp_path)
    video = tmp_path / "one track.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(two_tracks), "-map", "0:v", "-map", "0:a:0", "-c", "copy",
                    "-map_metadata", "0", "-map_chapters", "0", str(video)], check=True)
    made, out = extracted(page, video)
    assert made["name"] == "one track.m4a" and made["type"] == "audio/mp4"
    # The last chapter runs to the end, which the server knows.
    assert made["chapters"] == [{"start": 0, "end": 1.5, "title": "Opening"}, {"start": 1.5, "title": "Closing"}]
    info = probe(out)
    assert [stream["codec_name"] for stream in info["streams"] if stream["codec_type"] == "audio"] == ["aac"]
    assert info["format"]["tags"]["title"] == "Two tracks"
    # The Nero box is not copied raw: ffmpeg would read nonsense chapters from it.
    listed = json.loads(subprocess.run(["ffprobe", "-v", "error", "-show_chapters", "-of", "json", str(out)],
                                       capture_output=True, check=True).stdout)["chapters"]
    assert listed == []


@pytest.mark.parametrize(("name", "audio", "video", "reason"), [
    ("clip.avi", "mp3", True, "the page reads only MP4, MOV, WebM and Matroska files"),
    ("song.m4a", "aac", False, "it holds only audio already"),
    ("silent.mp4", None, True, "it has no audio track"),
])
def test_what_the_page_cannot_extract_goes_whole_and_says_why(page: Path, tmp_path: Path, name: str,
                                                              audio: str | None, video: bool, reason: str) -> None:
    made, _ = extracted(page, make_clip(tmp_path / name, seconds=1, audio=audio, video=video))
    assert made == {"not_extracted": True, "message": reason}


def test_text_wearing_a_video_name_goes_whole(page: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes.mkv"
    notes.write_text("not a video, whatever its name says\n" * 100)
    made, _ = extracted(page, notes)
    assert made["not_extracted"] is True
