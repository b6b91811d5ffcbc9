"""Incomplete requests are never acted on (RFC 9112 §6.3), through real sockets on the running stack: a one-shot
upload (raw body or multipart form) whose body ends before its `Content-Length`, or a chunked one without its last
chunk, leaves no job, no bytes (GridFS, the scratch spool) and no quota use; a tus PATCH cut short keeps what came
only when it is at least a PATCH's least and does not end the upload, so that no incomplete request ever finishes
one (runtime/server.py: IncompleteBody; functions/upload/resumable.py)."""

from __future__ import annotations

import base64
import json
import socket
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import pytest

from runtime.settings import UploadSettings
from stack.config import LOCAL
from tests.reliability_support import Figures, Stack, User, made, tone_mp3

pytestmark = pytest.mark.stack
FIGURES_SUITE = "incomplete_bodies"
SCRATCH = LOCAL / "work"  # the stack's WORK_DIR: the upload's spools are `upload.<job id>.<random>`
MIN_PATCH = int(UploadSettings.model_fields["resumable_min_patch_bytes"].default)
BUCKETS = ("sources", "covers", "videos", "audio")
BOUNDARY = "----vid2mp3-incomplete"
ANSWER_SECONDS = 30


@pytest.fixture(scope="module")
def user(stack: Stack) -> User:
    return stack.new_user("incomplete")


@pytest.fixture(scope="module")
def mp3() -> bytes:
    """20 s of tone in an MP3 without a Xing/Info header, so nothing in it says how long it is (as in a recorded
    stream): half of it, or its first 64 KiB, is an MP3 the extraction takes as it takes the whole. (An MP3 with the
    header cut short is refused by the extraction as truncated, `invalid_output`, but most containers carry no such
    claim, or carry it at their end.)"""
    return made("tone-20s-no-length-header.mp3", "-f", "lavfi", "-i",
                "sine=frequency=440:sample_rate=44100:duration=20", "-c:a", "libmp3lame", "-b:a", "64k",
                "-write_xing", "0").read_bytes()


# --- raw requests ----------------------------------------------------------------------------------------------

def raw_request(url: str, method: str, headers: dict[str, str], sent: bytes, *, read_answer: bool = True,
                before_closing: Callable[[], object] = lambda: None) -> tuple[int, dict[str, str], bytes] | None:
    """`sent` after the request line and `headers`, then the client's side closed (it gave up); the answer, read
    until the server closes, or None (`read_answer` False: the socket is closed unread, once `before_closing()`
    returns)."""
    parts = urllib.parse.urlsplit(url)
    head = f"{method} {parts.path or '/'}{'?' + parts.query if parts.query else ''} HTTP/1.1\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in {"Host": parts.netloc, **headers}.items()) + "\r\n"
    with socket.create_connection((parts.hostname, parts.port), timeout=ANSWER_SECONDS) as connection:
        connection.sendall(head.encode() + sent)
        if not read_answer:
            before_closing()
            return None
        connection.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    top, _, body = received.partition(b"\r\n\r\n")
    lines = top.decode("latin-1").split("\r\n")
    answer_headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), answer_headers, body


def form(data: bytes) -> bytes:
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"quality\"\r\n\r\n128\r\n"
            f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"cut.mp3\"\r\n"
            "Content-Type: audio/mpeg\r\n\r\n").encode() + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def chunked(data: bytes, piece: int = 16 * 1024) -> bytes:
    return b"".join(f"{len(data[start:start + piece]):x}\r\n".encode() + data[start:start + piece] + b"\r\n"
                    for start in range(0, len(data), piece))


# --- what a user holds -----------------------------------------------------------------------------------------

def holdings(stack: Stack, user: User) -> dict[str, Any]:
    """The user's jobs (as their list shows them), usage of each quota, GridFS files, and the spools on the
    scratch disk."""
    listing = stack.session.get(f"{stack.points['STATUS_URL']}/", headers=user.headers, timeout=30)
    assert listing.status_code == 200, listing.text
    return {
        "jobs": sorted(job["job_id"] for job in listing.json()["jobs"]),
        "usage": {name: limit["used"] for name, limit in listing.json()["usage"].items()},
        "gridfs_files": {bucket: stack.db[f"{bucket}.files"].count_documents({"metadata.owner_id": user.account_id})
                         for bucket in BUCKETS},
        "spools": sorted(path.name for path in SCRATCH.glob("upload.*")),
    }


def chunks_stored(stack: Stack) -> dict[str, int]:
    """Every GridFS chunk of the buckets an upload writes (the stack is this suite's alone while it runs)."""
    return {bucket: stack.db[f"{bucket}.chunks"].count_documents({}) for bucket in ("sources", "covers")}


def chunks_at_rest(stack: Stack) -> dict[str, int]:
    """chunks_stored once it stays the same for a second: the tests before this suite may still be deleting their
    jobs' media."""
    deadline, last = time.monotonic() + ANSWER_SECONDS, chunks_stored(stack)
    while True:
        time.sleep(1)
        if (now := chunks_stored(stack)) == last or time.monotonic() > deadline:
            return now
        last = now


def reserved(stack: Stack, user: User, before: dict[str, Any]) -> None:
    """Waits until the upload function holds the request's reservation (it has read the headers and waits for the
    body), so that what follows the client's close is seen."""
    deadline = time.monotonic() + ANSWER_SECONDS
    while holdings(stack, user)["usage"]["uploads_per_hour"] == before["usage"]["uploads_per_hour"]:
        assert time.monotonic() < deadline, "the upload function never took the request"
        time.sleep(0.1)


def settled(stack: Stack, user: User, before: dict[str, Any]) -> dict[str, Any]:
    """The user's holdings once the server let go of a request whose answer was not read (its upload reservation
    given back), or as they are after ANSWER_SECONDS: an upload acted on never gets back to `before`."""
    deadline = time.monotonic() + ANSWER_SECONDS
    while (now := holdings(stack, user)) != before and time.monotonic() < deadline:
        time.sleep(0.25)
    return now


# --- one-shot uploads ------------------------------------------------------------------------------------------

def one_shot_cases(data: bytes) -> dict[str, tuple[dict[str, str], bytes, bool]]:
    """(headers, what is sent before the client closes, whether the answer is read) per case."""
    half = len(data) // 2
    whole_form = form(data)
    return {
        "raw, half of its declared bytes": ({"Content-Type": "audio/mpeg", "Content-Length": str(len(data))},
                                            data[:half], True),
        "raw, 64 KiB of a declared GiB, closed unread": ({"Content-Type": "audio/mpeg",
                                                         "Content-Length": str(1024**3)}, data[:65536], False),
        "form, half of its declared bytes": ({"Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
                                             "Content-Length": str(len(whole_form))},
                                            whole_form[:len(whole_form) // 2], True),
        "form, whole but short of its declared length": ({"Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
                                                          "Content-Length": str(len(whole_form) + 1000)},
                                                         whole_form, True),
        "raw chunked, without its last chunk": ({"Content-Type": "audio/mpeg", "Transfer-Encoding": "chunked"},
                                                chunked(data), True),
        "form chunked, without its last chunk": ({"Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
                                                  "Transfer-Encoding": "chunked"}, chunked(whole_form), True),
    }


CASES = list(one_shot_cases(b"x" * 10))


@pytest.mark.parametrize("case", CASES)
def test_an_upload_whose_body_ends_early_leaves_nothing(stack: Stack, user: User, mp3: bytes, case: str,
                                                        figures: Figures) -> None:
    headers, sent, read_answer = one_shot_cases(mp3)[case]
    chunks_before = chunks_at_rest(stack)
    before = holdings(stack, user)
    assert before["usage"]["jobs_in_flight"] == 0 and not before["spools"], before
    answer = raw_request(f"{stack.points['UPLOAD_URL']}/?filename=cut.mp3", "POST", {**user.headers, **headers}, sent,
                         read_answer=read_answer, before_closing=lambda: reserved(stack, user, before))
    if answer is not None:
        status, answer_headers, body = answer
        assert status == 400 and json.loads(body)["error"] == "incomplete_body", (case, status, body)
        assert answer_headers["connection"] == "close"
    after = settled(stack, user, before)
    assert after == before, (case, before, after)
    assert chunks_stored(stack) == chunks_before
    figures.setdefault("one_shot", {})[case] = {
        "answer": answer[0] if answer else "not read", "jobs_made": len(after["jobs"]) - len(before["jobs"]),
        "gridfs_files_kept": sum(after["gridfs_files"].values()) - sum(before["gridfs_files"].values()),
        "spools_left": len(after["spools"]), "usage_changed": after["usage"] != before["usage"]}


def test_the_same_upload_whole_is_taken(stack: Stack, user: User, mp3: bytes) -> None:
    """The control: each body above, sent whole, makes a job (so it is their ending early that leaves nothing)."""
    for headers, body in (({"Content-Type": "audio/mpeg", "Content-Length": str(len(mp3))}, mp3),
                          ({"Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
                            "Content-Length": str(len(form(mp3)))}, form(mp3)),
                          ({"Content-Type": "audio/mpeg", "Transfer-Encoding": "chunked"},
                           chunked(mp3) + b"0\r\n\r\n")):
        answer = raw_request(f"{stack.points['UPLOAD_URL']}/?filename=whole.mp3", "POST", {**user.headers, **headers},
                             body)
        assert answer is not None and answer[0] == 202, answer
        job_id = json.loads(answer[2])["job_id"]
        assert stack.wait_final(user, [job_id], timeout=120)[job_id]["state"] == "done"


# --- tus -------------------------------------------------------------------------------------------------------

def tus_headers(user: User, **more: str) -> dict[str, str]:
    return {**user.headers, "Tus-Resumable": "1.0.0", **more}


def tus_create(stack: Stack, user: User, length: int) -> str:
    created = stack.session.post(f"{stack.points['UPLOAD_URL']}/files/", timeout=30, headers=tus_headers(
        user, **{"Upload-Length": str(length), "Upload-Metadata": f"filename {base64.b64encode(b'cut.mp3').decode()}"}))
    assert created.status_code == 201, created.text
    return str(created.headers["Location"])


def tus_offset(stack: Stack, user: User, url: str) -> int:
    answer = stack.session.head(url, headers=tus_headers(user), timeout=30)
    assert answer.status_code == 200, answer.status_code
    return int(answer.headers["Upload-Offset"])


def tus_patch_cut(user: User, url: str, offset: int, headers: dict[str, str], sent: bytes) -> tuple[int, str]:
    answer = raw_request(url, "PATCH", tus_headers(user, **{"Content-Type": "application/offset+octet-stream",
                                                            "Upload-Offset": str(offset), **headers}), sent)
    assert answer is not None
    return answer[0], json.loads(answer[2]).get("error", "")


def job_of(stack: Stack, url: str) -> dict[str, Any] | None:
    return stack.db["jobs"].find_one({"_id": url.rsplit("/", 1)[1]}, {"state": 1})


def test_a_tus_patch_cut_short_never_finishes_the_upload(stack: Stack, user: User, figures: Figures) -> None:
    """Bytes that came count only when at least a PATCH's least came and they do not end the upload; a whole
    request then finishes it (its last byte alone, less than the least: the last PATCH may be small)."""
    data = tone_mp3(120).read_bytes()  # 960 kB: more than twice a PATCH's least
    kept = MIN_PATCH + 1000
    assert len(data) - kept > MIN_PATCH
    url = tus_create(stack, user, len(data))
    outcomes: dict[str, Any] = {}

    def cut(what: str, offset: int, headers: dict[str, str], sent: bytes) -> tuple[int, str, int]:
        status, error = tus_patch_cut(user, url, offset, headers, sent)
        outcomes[what] = {"answer": status, "error": error, "offset_after": tus_offset(stack, user, url)}
        return status, error, outcomes[what]["offset_after"]

    # Less than a PATCH's least arrives: given back, the offset stays.
    assert cut("less than the least", 0, {"Content-Length": str(len(data))},
               data[:MIN_PATCH // 2]) == (400, "incomplete", 0)
    # More arrives: kept (tus: the client resumes from the offset a HEAD gives).
    assert cut("more than the least", 0, {"Content-Length": str(len(data))}, data[:kept]) == (400, "incomplete", kept)
    # Every byte of the upload arrives, but not the chunked body's last chunk: an incomplete request does not finish
    # the upload, so its bytes are given back, and the HEAD after it finds the offset where it was.
    assert cut("every byte, without the last chunk", kept, {"Transfer-Encoding": "chunked"},
               chunked(data[kept:])) == (400, "incomplete", kept)
    # All but the last byte of the rest: kept, and the upload is not finished.
    assert cut("all but the last byte", kept, {"Content-Length": str(len(data) - kept)},
               data[kept:-1]) == (400, "incomplete", len(data) - 1)
    assert job_of(stack, url) is None
    assert stack.db["sources.files"].count_documents({"_id": url.rsplit("/", 1)[1]}) == 0

    # The last byte, in a whole request: the job.
    last = stack.session.patch(url, data=data[-1:], timeout=120, headers=tus_headers(user, **{
        "Content-Type": "application/offset+octet-stream", "Upload-Offset": str(len(data) - 1)}))
    assert last.status_code == 204, last.text
    assert job_of(stack, url) is not None
    figures["tus_cut_short"] = outcomes
