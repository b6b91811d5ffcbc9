"""tus 1.0.0 resumable uploads on the real local stack (functions/upload/resumable.py, README: Resumable uploads): an
upload whose connection really drops mid-PATCH resumes into the right MP3; checksums, offsets, sizes, owners and
media types are enforced with the contract's statuses; expiry, termination, erasure and the reconcile sweeps; the
CLI's tuspy uploads, resumed by a rerun."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import subprocess
import threading
import urllib.parse
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import vid2mp3_client.resumable
from vid2mp3_client.api import ClientError, Vid2mp3

from events import EventEmitter
from functions.reconcile.sweeps import Reconciler
from jobs.records import Jobs
from runtime.clock import now
from runtime.settings import UploadSettings
from storage.media import CHUNK_BYTES
from tests.stack.test_cli import VID2MP3
from tests.support import TEST_PASSWORD, audio_duration, make_clip, new_user, probe, wait_for

pytestmark = pytest.mark.stack

OFFSET_STREAM = "application/offset+octet-stream"
# The least a PATCH but the last may bring (RESUMABLE_MIN_PATCH_BYTES; the stack keeps the default).
MIN_PATCH = int(UploadSettings.model_fields["resumable_min_patch_bytes"].default)
# A first PATCH past a GridFS chunk boundary (so the next one completes a part chunk), and at least MIN_PATCH.
PAST_A_CHUNK = max(CHUNK_BYTES, MIN_PATCH) + 1000
assert PAST_A_CHUNK < 2 * CHUNK_BYTES
# A media container's first bytes (Matroska's), then zeros: enough for a PATCH that is not the last.
MEDIA_HEAD = b"\x1a\x45\xdf\xa3" + bytes(MIN_PATCH - 4)


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3 s clip of about 2.3 MB (PCM audio): three GridFS chunks."""
    return make_clip(tmp_path_factory.mktemp("clips") / "short clip.mkv", seconds=3,
                     extra=("-c:a", "pcm_s32le", "-ar", "96000", "-ac", "2"))


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 16 s clip of about 12 MB (PCM audio): twelve GridFS chunks, so a cut falls inside one, and a PATCH writes
    batches of them while it reads on."""
    return make_clip(tmp_path_factory.mktemp("clips") / "resumable clip.mkv", seconds=16,
                     extra=("-c:a", "pcm_s32le", "-ar", "96000", "-ac", "2"))


class Tus:
    """The tus requests of one user, by hand (`requests`), to see every status and header."""

    def __init__(self, endpoints: dict[str, str]) -> None:
        self.user, self.email = new_user(endpoints)
        self.files_url = f"{endpoints['UPLOAD_URL']}/files/"

    def headers(self, **more: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.user.token}", "Tus-Resumable": "1.0.0", **more}

    def create(self, length: int, metadata: dict[str, str] | None = None, body: bytes = b"",
               **headers: str) -> requests.Response:
        encoded = ",".join(f"{key} {base64.b64encode(value.encode()).decode()}"
                           for key, value in {"filename": "clip.mkv", **(metadata or {})}.items())
        extra = {"Content-Type": OFFSET_STREAM} if body else {}
        return requests.post(self.files_url, data=body, timeout=30, headers=self.headers(
            **{"Upload-Length": str(length), "Upload-Metadata": encoded, **extra, **headers}))

    def created(self, length: int, **metadata: str) -> str:
        answer = self.create(length, metadata)
        assert answer.status_code == 201, answer.text
        return str(answer.headers["Location"])

    def patch(self, url: str, offset: int, body: bytes, checksum: bytes | None = None,
              **headers: str) -> requests.Response:
        if checksum is not None:
            headers["Upload-Checksum"] = "sha1 " + base64.b64encode(checksum).decode()
        return requests.patch(url, data=body, timeout=60, headers=self.headers(
            **{"Content-Type": OFFSET_STREAM, "Upload-Offset": str(offset), **headers}))

    def head(self, url: str) -> requests.Response:
        return requests.head(url, headers=self.headers(), timeout=30)

    def offset(self, url: str) -> int:
        answer = self.head(url)
        assert answer.status_code == 200, answer.status_code
        return int(answer.headers["Upload-Offset"])


def send_part_and_drop(tus: Tus, url: str, offset: int, body: bytes, sent: int,
                       hold: threading.Event | None = None) -> None:
    """A PATCH announcing all of `body` whose connection really closes after `sent` bytes (after `hold` is set,
    when given: the request stays open meanwhile)."""
    parts = urllib.parse.urlsplit(url)
    head = "".join(f"{name}: {value}\r\n" for name, value in tus.headers(**{
        "Content-Type": OFFSET_STREAM, "Upload-Offset": str(offset), "Content-Length": str(len(body)),
        "Host": parts.netloc}).items())
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as connection:
        connection.sendall(f"PATCH {parts.path} HTTP/1.1\r\n{head}\r\n".encode() + body[:sent])
        if hold is not None:
            hold.wait(30)


def stored(database: Any, upload_id: str) -> tuple[dict[str, Any] | None, int]:
    """The upload's files document and how many chunks name it."""
    return (database["videos.files"].find_one({"_id": upload_id}),
            database["videos.chunks"].count_documents({"files_id": upload_id}))


def reconcile(database: Any, endpoints: dict[str, str]) -> Any:
    jobs = Jobs(database)
    return Reconciler(database=database, jobs=jobs, emitter=EventEmitter(endpoints["BROKER_INGRESS_URL"], "test"),
                      stuck_after=timedelta(minutes=30), max_redrives=3).run()


def test_an_upload_cut_at_40_percent_resumes_into_the_right_mp3(endpoints: dict[str, str], clip: Path,
                                                                 stack_database: Any, tmp_path: Path) -> None:
    tus, data = Tus(endpoints), clip.read_bytes()
    options = tus.create(len(data), {"quality": "128"})
    assert options.status_code == 201 and options.headers["Tus-Resumable"] == "1.0.0"
    url = options.headers["Location"]
    assert url.startswith(tus.files_url) and "Upload-Expires" in options.headers
    upload_id = url.rsplit("/", 1)[1]
    cut = int(len(data) * 0.4)
    assert cut % CHUNK_BYTES, "the cut falls inside a chunk: the next PATCH completes it"
    send_part_and_drop(tus, url, 0, data, cut)
    # The bytes that reached the server count: it resumes from there, once the dropped request let go.
    wait_for(lambda: tus.offset(url) == cut, 10, "the offset of the dropped PATCH")
    head = tus.head(url)
    assert head.headers["Upload-Length"] == str(len(data)) and head.headers["Cache-Control"] == "no-store"
    assert stack_database["jobs"].find_one({"_id": upload_id}) is None

    rest = tus.patch(url, cut, data[cut:], hashlib.sha1(data[cut:]).digest())  # noqa: S324 - tus's checksum
    assert rest.status_code == 204, rest.text
    assert rest.headers["Upload-Offset"] == str(len(data))
    # The one-shot upload's path: the job, with the upload's id, recorded before the answer.
    job = stack_database["jobs"].find_one({"_id": upload_id})
    assert job is not None and job["sha256"] == hashlib.sha256(data).hexdigest() and job["container"] == "matroska"
    assert job["bitrate_kbps"] == 128
    done = tus.user.follow(upload_id, lambda _: None, timeout=60, interval=0.2)
    assert done["state"] == "done", done
    assert done["filename"] == "clip.mkv"
    target = tmp_path / "out.mp3"
    tus.user.download(upload_id, target)
    assert probe(target)["streams"][0]["codec_name"] == "mp3"
    assert abs(audio_duration(target) - audio_duration(clip)) <= 0.1
    # What the job kept is its audio (the clip's PCM track, in an .mka) and its frame; the video goes after the
    # answer, paced, and the upload still answers complete once it is gone.
    assert job["source_format"] == "matroska" and set(job["covers"]) == {"frame"}
    wait_for(lambda: stored(stack_database, upload_id) == (None, 0), 60, "the finished upload's video to go")
    assert tus.offset(url) == len(data)
    assert tus.patch(url, len(data), b"more").status_code == 409


def test_a_file_the_extraction_refuses_ends_the_upload_at_its_last_byte(endpoints: dict[str, str], tmp_path: Path,
                                                                        stack_database: Any) -> None:
    """A video without audio passes the first bytes' check; its last PATCH answers 422 with the conversion's
    reason, no job is made, and its bytes go."""
    tus = Tus(endpoints)
    data = make_clip(tmp_path / "silent.mkv", seconds=2, audio=None).read_bytes()
    url = tus.created(len(data))
    refused = tus.patch(url, 0, data)
    assert refused.status_code == 422 and refused.json()["error"] == "no_audio", refused.text
    assert refused.headers["Tus-Resumable"] == "1.0.0"
    upload_id = url.rsplit("/", 1)[1]
    assert stack_database["jobs"].find_one({"_id": upload_id}) is None
    wait_for(lambda: stored(stack_database, upload_id) == (None, 0), 30, "the refused upload's bytes to go")
    assert tus.head(url).status_code == 404


def test_a_checksum_mismatch_answers_460_and_keeps_the_offset(endpoints: dict[str, str], short_clip: Path,
                                                              stack_database: Any) -> None:
    tus, data = Tus(endpoints), short_clip.read_bytes()
    first = PAST_A_CHUNK  # so the mismatching PATCH rewrites a part chunk
    created = tus.create(len(data), body=data[:first])
    assert created.status_code == 201 and created.headers["Upload-Offset"] == str(first)
    url = created.headers["Location"]
    wrong = tus.patch(url, first, data[first:first + 500_000], hashlib.sha1(b"other bytes").digest())  # noqa: S324
    assert wrong.status_code == 460 and wrong.json()["error"] == "checksum_mismatch"
    assert wrong.headers["Tus-Resumable"] == "1.0.0"
    assert tus.offset(url) == first
    document, chunks = stored(stack_database, url.rsplit("/", 1)[1])
    assert document is not None and document["length"] == first and chunks == 2
    # An empty Upload-Checksum vouches for nothing and refuses nothing: as if absent (found by schemathesis).
    assert tus.patch(url, first, data[first:], **{"Upload-Checksum": ""}).status_code == 204
    job = stack_database["jobs"].find_one({"_id": url.rsplit("/", 1)[1]})
    assert job is not None and job["sha256"] == hashlib.sha256(data).hexdigest()


def test_only_the_owner_can_touch_an_upload(endpoints: dict[str, str]) -> None:
    owner, stranger = Tus(endpoints), Tus(endpoints)
    url = owner.created(1000)
    for answer in (stranger.head(url), stranger.patch(url, 0, b"\x1a\x45\xdf\xa3"),
                   requests.delete(url, headers=stranger.headers(), timeout=30)):
        assert answer.status_code == 404, answer.status_code
        assert answer.headers["Tus-Resumable"] == "1.0.0"
    # Not a word that the id exists: the same answer as an id nobody has.
    unknown = stranger.patch(f"{owner.files_url}{'0' * 32}", 0, b"x")
    assert unknown.status_code == 404 and unknown.json() == stranger.patch(url, 0, b"x").json()
    assert requests.head(url, headers={"Tus-Resumable": "1.0.0"}, timeout=30).status_code == 401
    assert owner.offset(url) == 0


@pytest.mark.parametrize("case, expected", [
    ("offset mismatch", 409), ("past the length", 413), ("wrong content type", 415), ("bad offset header", 400),
    ("no Tus-Resumable", 412),
])
def test_a_bad_patch_is_refused_and_changes_nothing(endpoints: dict[str, str], case: str, expected: int) -> None:
    tus = Tus(endpoints)
    url = tus.created(MIN_PATCH + 1000)
    assert tus.patch(url, 0, MEDIA_HEAD).status_code == 204
    answer = {
        "offset mismatch": lambda: tus.patch(url, 10, b"more"),
        "past the length": lambda: tus.patch(url, MIN_PATCH, bytes(1001)),
        "wrong content type": lambda: tus.patch(url, MIN_PATCH, b"more", **{"Content-Type": "application/json"}),
        "bad offset header": lambda: tus.patch(url, MIN_PATCH, b"more", **{"Upload-Offset": "-1"}),
        "no Tus-Resumable": lambda: tus.patch(url, MIN_PATCH, b"more", **{"Tus-Resumable": "0.2.2"}),
    }[case]()
    assert answer.status_code == expected, answer.text
    assert answer.json()["error"] and answer.json()["message"]
    if expected == 412:
        assert answer.headers["Tus-Version"] == "1.0.0"
    assert tus.offset(url) == MIN_PATCH


def test_patches_smaller_than_the_least_are_refused_but_the_last(endpoints: dict[str, str], short_clip: Path,
                                                                   stack_database: Any) -> None:
    """200 PATCHes of 1 kB are not taken one after the other (each would rewrite the upload's last chunk): every
    one is refused with `patch_too_small`, by its Content-Length or, chunked, once read, and the offset stays; PATCHes
    of at least RESUMABLE_MIN_PATCH_BYTES are taken, and so is a last one smaller than that."""
    tus, data = Tus(endpoints), short_clip.read_bytes()
    url = tus.created(len(data))
    answers = [tus.patch(url, 0, data[:1024]) for _ in range(200)]
    refused = [answer for answer in answers if answer.status_code == 400
               and answer.json()["error"] == "patch_too_small" and str(MIN_PATCH) in answer.json()["message"]]
    assert len(refused) == 200, {answer.status_code for answer in answers}
    assert refused[0].headers["Tus-Resumable"] == "1.0.0"
    chunked = requests.patch(url, data=iter([data[:512], data[512:1024]]), timeout=60, headers=tus.headers(**{
        "Content-Type": OFFSET_STREAM, "Upload-Offset": "0"}))
    assert chunked.status_code == 400 and chunked.json()["error"] == "patch_too_small", chunked.text
    assert tus.offset(url) == 0
    assert stored(stack_database, url.rsplit("/", 1)[1])[1] == 0
    # A creation's body alike.
    assert tus.create(len(data), body=data[:1024]).json()["error"] == "patch_too_small"

    last = 1000  # the last PATCH, smaller than the least
    assert tus.patch(url, 0, data[:MIN_PATCH]).status_code == 204
    assert tus.patch(url, MIN_PATCH, data[MIN_PATCH:-last]).status_code == 204
    done = tus.patch(url, len(data) - last, data[-last:])
    assert done.status_code == 204, done.text
    job = stack_database["jobs"].find_one({"_id": url.rsplit("/", 1)[1]})
    assert job is not None and job["sha256"] == hashlib.sha256(data).hexdigest()


def test_creation_refuses_what_it_cannot_take(endpoints: dict[str, str]) -> None:
    tus = Tus(endpoints)
    limit = int(requests.options(tus.files_url, timeout=30).headers["Tus-Max-Size"])
    assert tus.create(limit + 1).status_code == 413
    bad_options = tus.create(1000, {"quality": "loud", "start": "soon", "qualty": "V0"})
    assert bad_options.status_code == 422 and set(bad_options.json()["fields"]) == {"quality", "start", "qualty"}
    assert "did you mean 'quality'" in bad_options.json()["fields"]["qualty"]
    # What tus-js-client sends beside the options is taken.
    assert tus.create(1000, {"filename": "a.mp4", "filetype": "video/mp4", "quality": "V2"}).status_code == 201
    assert tus.create(1000, **{"Upload-Length": "many"}).status_code == 400
    not_media = tus.create(5000, body=b"<html>" + bytes(4994))
    assert not_media.status_code == 415 and not_media.json()["error"] == "not_media"
    options = requests.options(tus.files_url, timeout=30)
    assert options.status_code == 204
    assert set(options.headers["Tus-Extension"].split(",")) == {
        "creation", "creation-with-upload", "termination", "expiration", "checksum"}
    assert options.headers["Tus-Checksum-Algorithm"] == "sha1" and options.headers["Tus-Version"] == "1.0.0"


def test_first_bytes_that_are_not_media_terminate_the_upload(endpoints: dict[str, str],
                                                              stack_database: Any) -> None:
    tus = Tus(endpoints)
    url = tus.created(MIN_PATCH + 10_000)
    refused = tus.patch(url, 0, b"%PDF-1.7 " + bytes(MIN_PATCH - 9))
    assert refused.status_code == 415 and refused.json()["error"] == "not_media"
    assert tus.head(url).status_code == 404
    assert stored(stack_database, url.rsplit("/", 1)[1]) == (None, 0)


def test_termination_removes_the_bytes(endpoints: dict[str, str], short_clip: Path, stack_database: Any) -> None:
    tus, data = Tus(endpoints), short_clip.read_bytes()
    url = tus.create(len(data), body=data[:PAST_A_CHUNK]).headers["Location"]
    assert stored(stack_database, url.rsplit("/", 1)[1])[1] == 2
    deleted = requests.delete(url, headers=tus.headers(), timeout=30)
    assert deleted.status_code == 204
    assert stored(stack_database, url.rsplit("/", 1)[1]) == (None, 0)
    assert tus.head(url).status_code == 404


def test_an_expired_upload_answers_410_and_reconcile_removes_it(endpoints: dict[str, str], short_clip: Path,
                                                                 stack_database: Any) -> None:
    tus, data = Tus(endpoints), short_clip.read_bytes()
    expired = tus.create(len(data), body=data[:PAST_A_CHUNK]).headers["Location"]
    alive = tus.create(len(data), body=data[:PAST_A_CHUNK]).headers["Location"]
    expired_id, alive_id = expired.rsplit("/", 1)[1], alive.rsplit("/", 1)[1]
    stack_database["videos.files"].update_one({"_id": expired_id}, {"$set": {
        "metadata.resumable.expires_at": now() - timedelta(seconds=1)}})
    assert tus.head(expired).status_code == 410
    assert tus.patch(expired, PAST_A_CHUNK, b"more").status_code == 410
    # Two sweeps: the second finds what the first left, and the unfinished upload alone all the same.
    for _ in range(2):
        report = reconcile(stack_database, endpoints)
    assert report.unfinished_uploads_expired == 0
    assert stored(stack_database, expired_id) == (None, 0)
    document, chunks = stored(stack_database, alive_id)
    assert document is not None and chunks == 2 and tus.offset(alive) == PAST_A_CHUNK


def test_deleting_the_job_to_be_or_the_account_removes_unfinished_uploads(endpoints: dict[str, str],
                                                                          stack_database: Any) -> None:
    tus = Tus(endpoints)
    first, second = (tus.create(MIN_PATCH + 5000, body=MEDIA_HEAD).headers["Location"] for _ in range(2))
    job_url = f"{endpoints['STATUS_URL']}/{first.rsplit('/', 1)[1]}"
    assert requests.delete(job_url, headers=tus.headers(), timeout=30).status_code == 204
    assert tus.head(first).status_code == 404 and tus.offset(second) == MIN_PATCH
    account = requests.delete(f"{endpoints['AUTH_URL']}/account", headers=tus.headers(), timeout=30,
                              json={"password": TEST_PASSWORD})
    assert account.status_code in (200, 204), account.text
    assert stored(stack_database, second.rsplit("/", 1)[1]) == (None, 0)


def test_two_patches_at_once_cannot_corrupt_an_upload(endpoints: dict[str, str], short_clip: Path,
                                                      stack_database: Any) -> None:
    tus, data = Tus(endpoints), short_clip.read_bytes()
    url = tus.created(len(data))
    release = threading.Event()
    sent = MIN_PATCH + 1000  # enough for a dropped PATCH's bytes to count
    slow = threading.Thread(target=send_part_and_drop, args=(tus, url, 0, data, sent, release))
    slow.start()
    try:
        wait_for(lambda: stored(stack_database, url.rsplit("/", 1)[1])[0]["metadata"]["resumable"]["writer"], 10,
                 "the slow PATCH to hold the upload")
        # It holds the upload while its bytes are in flight: a second PATCH at the same offset is refused.
        conflict = tus.patch(url, 0, data[:MIN_PATCH])
        assert conflict.status_code == 409 and conflict.json()["error"] == "conflict"
    finally:
        release.set()
        slow.join()
    wait_for(lambda: tus.offset(url) == sent, 10, "the dropped PATCH to let go, its bytes kept")
    assert tus.patch(url, sent, data[sent:]).status_code == 204


def interrupted_after_a_chunk(user: Vid2mp3, video: Path, store: Path) -> None:
    """The CLI's resumable upload stopped by its user once the first chunk is in."""
    sent: list[int] = []

    def stop_after_a_chunk(count: int) -> None:
        sent.append(count)
        if sum(sent) >= vid2mp3_client.resumable.CHUNK_BYTES:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        user.upload_resumable(video, store, on_bytes=stop_after_a_chunk, options={"channels": "1"})


def test_the_cli_uploads_with_tuspy_and_a_rerun_resumes(endpoints: dict[str, str], short_clip: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    user, _ = new_user(endpoints)
    # Small chunks (two GridFS chunks, more than a PATCH's least) so that the short clip takes several.
    monkeypatch.setattr(vid2mp3_client.resumable, "CHUNK_BYTES", 2 * CHUNK_BYTES)
    store = tmp_path / "resumable-uploads.json"
    interrupted_after_a_chunk(user, short_clip, store)
    resumed: list[int] = []
    rerun = Vid2mp3(user.auth_url, user.upload_url, user.status_url, user.download_url, token=user.token)
    accepted = rerun.upload_resumable(short_clip, store, on_bytes=resumed.append, options={"channels": "1"})
    assert resumed[0] == 2 * CHUNK_BYTES, "the rerun starts where the first run stopped"
    assert sum(resumed) == short_clip.stat().st_size
    job = user.follow(accepted["job_id"], lambda _: None, timeout=60, interval=0.2)
    assert job["state"] == "done" and job["options"] == {"channels": 1}

    # A kept upload that is gone (terminated, expired) is started afresh rather than failing.
    copy = tmp_path / "copy.mkv"
    copy.write_bytes(short_clip.read_bytes())
    interrupted_after_a_chunk(user, copy, store)
    kept = vid2mp3_client.resumable.FileStorage(str(store))
    (url,) = [item["url"] for item in kept._db.all()]
    kept.close()
    assert requests.delete(url, headers={"Authorization": f"Bearer {user.token}", "Tus-Resumable": "1.0.0"},
                           timeout=30).status_code == 204
    fresh = user.upload_resumable(copy, store)
    assert fresh["job_id"] != url.rsplit("/", 1)[1]
    assert user.job(fresh["job_id"])["state"] in ("uploaded", "converting", "done")

    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"plain words " * 100)
    with pytest.raises(ClientError, match="HTTP 415"):
        user.upload_resumable(notes, store)


def test_the_command_converts_resumably(endpoints: dict[str, str], short_clip: Path, tmp_path: Path) -> None:
    target = tmp_path / "out.mp3"
    converted = subprocess.run(
        [VID2MP3, "convert", str(short_clip), "--resumable", "-o", str(target), "--local"], capture_output=True,
        text=True, timeout=120, env={**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")},
        stdin=subprocess.DEVNULL)
    assert converted.returncode == 0, converted.stdout + converted.stderr
    assert abs(audio_duration(target) - audio_duration(short_clip)) <= 0.1
    # Nothing left to resume once the upload is complete.
    assert json.loads((tmp_path / "config" / "vid2mp3" / "resumable-uploads.json").read_text())["_default"] == {}


def test_resumable_answers_let_the_web_page_read_them(endpoints: dict[str, str]) -> None:
    preflight = requests.options(f"{endpoints['UPLOAD_URL']}/files/{'0' * 32}", timeout=30, headers={
        "Origin": endpoints["WEB_URL"], "Access-Control-Request-Method": "PATCH",
        "Access-Control-Request-Headers": "authorization,tus-resumable,upload-offset,upload-checksum,content-type"})
    assert preflight.status_code == 204
    assert "PATCH" in preflight.headers["Access-Control-Allow-Methods"]
    allowed = {name.strip().lower() for name in preflight.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"tus-resumable", "upload-offset", "upload-length", "upload-metadata", "upload-checksum"} <= allowed
    created = Tus(endpoints).create(1000, Origin=endpoints["WEB_URL"])
    exposed = {name.strip().lower() for name in created.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"location", "upload-offset", "upload-length", "upload-expires", "tus-resumable"} <= exposed
