"""Each function driven through functions-framework's test client (HTTP functions with requests, CloudEvent
functions with binary- and structured-mode events), against the local stack's real MongoDB and MySQL.

Every test gets a database of its own and a capture sink in place of the broker, so the running stack's functions
never see what these tests emit."""

from __future__ import annotations

import io
import json
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pymongo
import pytest
import requests
from cloudevents.conversion import to_binary, to_structured
from flask.testing import FlaskClient
from functions_framework import create_app

from accounts.credentials import CredentialGenerations
from events import (
    AUDIO_CONVERTED,
    CONVERSION_FAILED,
    NOTIFICATION_SENT,
    AudioConverted,
    EventEmitter,
    EventPayload,
    SegmentRequested,
    VideoUploaded,
    to_cloud_event,
)
from functions.notify.notifier import Mailer, Notifier
from functions.reconcile.sweeps import Reconciler
from jobs.links import DownloadLinks
from jobs.records import Jobs
from stack.config import ALLOCATOR_TUNING, FUNCTION_PORTS, LOCAL, LOCAL_STACK_QUOTAS, ROOT, RUN
from storage.media import AUDIO, COVERS, SOURCES, VIDEOS, WRITES_UNDER_WAY, MediaStore
from tests.support import Sink, download_link_keys, make_clip, new_user, probe, stage_job, trusted_in, wait_for
from transcoding.fanout import FanOutRecord

pytestmark = pytest.mark.stack

SIGNING_KEY = LOCAL / "secrets" / "jwt-ed25519.pem"


@pytest.fixture
def sink() -> Iterator[Sink]:
    sink = Sink([202])
    yield sink
    sink.close()


@pytest.fixture
def function_env(endpoints: dict[str, str], sink: Sink, database_name: str, tmp_path: Path,
                 monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {
        "MONGO_URI": endpoints["MONGO_URI"], "MONGO_DATABASE": database_name, "MYSQL_URL": endpoints["MYSQL_URL"],
        "K_SINK": sink.url, "JWKS_URL": endpoints["JWKS_URL"], "JWT_PRIVATE_KEY": SIGNING_KEY.read_text(),
        "PUBLIC_STATUS_URL": endpoints["STATUS_URL"], "PUBLIC_DOWNLOAD_URL": endpoints["DOWNLOAD_URL"],
        "PUBLIC_WEB_URL": endpoints["WEB_URL"], "DOWNLOAD_LINK_KEYS": download_link_keys(),
        "SENDGRID_API_HOST": endpoints["SENDGRID_API_HOST"], "SENDGRID_API_KEY": "local-standin-key",
        "WORK_DIR": str(tmp_path), "MAX_UPLOAD_BYTES": str(5 * 1024 * 1024),
        # As the stack's: every test signs users up from 127.0.0.1 (tests/stack/test_quotas.py tests the limits).
        **LOCAL_STACK_QUOTAS,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def app(function_env: dict[str, str]) -> Callable[[str], FlaskClient]:
    def make(name: str) -> FlaskClient:
        return create_app(target=name, source=str(ROOT / "functions" / name / "main.py")).test_client()
    return make


@pytest.fixture
def bearer(endpoints: dict[str, str], database: Any) -> tuple[dict[str, str], str]:
    token = trusted_in(database, new_user(endpoints)[0].token)
    return {"Authorization": f"Bearer {token}"}, token


def owner_of(token: str) -> str:
    import jwt
    return str(jwt.decode(token, options={"verify_signature": False})["sub"])


def post_event(client: FlaskClient, payload: EventPayload, mode: str) -> Any:
    event = to_cloud_event(payload, source_function="test")
    headers, body = (to_binary if mode == "binary" else to_structured)(event)
    return client.post("/", headers=headers, data=body)


def seed_job(database: Any, owner_id: str, video: Path, bitrate: int = 192, *, extract: bool = True) -> VideoUploaded:
    """A job as the upload leaves it (tests/support.py stage_job), its event already sent."""
    event = stage_job(database, video, owner_id, bitrate, extract=extract)  # type: ignore[arg-type]
    Jobs(database).clear_pending(event.job_id, event.event_id())
    return event


# --- auth ---------------------------------------------------------------------------------------------------

def test_auth_signup_login_and_jwks(app: Callable[[str], FlaskClient]) -> None:
    auth = app("auth")
    email = f"unit-{uuid.uuid4().hex[:8]}@test.vid2mp3.dev"
    credentials = {"email": email.upper(), "password": "long enough password"}
    created = auth.post("/signup", json=credentials)
    assert created.status_code == 201 and created.json["email"] == email and created.headers["Location"] == "account"
    # Signing up again answers the same: a sign-up tells nobody which addresses have an account.
    again = auth.post("/signup", json=credentials)
    assert (again.status_code, again.json, again.headers["Location"]) == (201, created.json, "account")
    login = auth.post("/login", json=credentials)
    assert login.status_code == 200 and login.json["token_type"] == "Bearer"
    account = auth.get("/account", headers={"Authorization": f"Bearer {login.json['access_token']}"})
    assert account.status_code == 200 and account.json == {"account_id": owner_of(login.json["access_token"]),
                                                           "email": email}
    jwks = auth.get("/.well-known/jwks.json").json
    assert [key["alg"] for key in jwks["keys"]] == ["EdDSA"] and "d" not in jwks["keys"][0]


@pytest.mark.parametrize(("body", "problem"), [
    ({"email": "not-an-address", "password": "long enough password"}, "email"),
    ({"email": "a@b.example", "password": "short"}, "password"),
    ({"password": "long enough password"}, "email"),
    ({"email": "a@b.example", "password": "long enough password", "admin": True}, "admin"),
    ("not json", "email"),
])
def test_auth_rejects_malformed_credentials(app: Callable[[str], FlaskClient], body: Any, problem: str) -> None:
    response = app("auth").post("/signup", json=body)
    assert response.status_code == 422
    assert problem in response.json["message"]


def test_signing_up_with_an_existing_address_tells_its_owner_once_an_hour(
        app: Callable[[str], FlaskClient], endpoints: dict[str, str]) -> None:
    auth = app("auth")
    email = f"unit-{uuid.uuid4().hex[:8]}@test.vid2mp3.dev"
    new = auth.post("/signup", json={"email": email, "password": "the owner's password"})
    existing = [auth.post("/signup", json={"email": email, "password": f"someone else's {n}"}) for n in range(3)]
    assert all((answer.status_code, answer.json) == (new.status_code, new.json) for answer in existing)

    def mails() -> list[dict[str, Any]]:
        sent = requests.get(f"{endpoints['SENDGRID_API_HOST']}/_standin/messages", timeout=5).json()
        return [mail for mail in sent if any(to.get("email") == email for personalization in
                                             mail["body"]["personalizations"] for to in personalization["to"])]

    told = wait_for(mails, 10, "the email to the address's owner")
    time.sleep(1)
    assert len(mails()) == 1 and told[0]["body"]["subject"] == "Someone tried to sign up with your address"
    assert "Nothing was changed" in told[0]["body"]["content"][0]["value"]
    assert auth.post("/login", json={"email": email, "password": "the owner's password"}).status_code == 200


def login_from(auth: FlaskClient, address: str, email: str, password: str) -> Any:
    return auth.post("/login", environ_overrides={"REMOTE_ADDR": address}, json={"email": email, "password": password})


def test_failed_logins_from_one_address_leave_the_owner_elsewhere_in(app: Callable[[str], FlaskClient],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGIN_MAX_FAILURES", "3")
    auth = app("auth")
    email, password = f"unit-{uuid.uuid4().hex[:8]}@test.vid2mp3.dev", "the owner's password"
    auth.post("/signup", json={"email": email, "password": password})
    attacker, owner = f"198.51.100.{uuid.uuid4().int % 250 + 1}", f"203.0.113.{uuid.uuid4().int % 250 + 1}"
    answers = [login_from(auth, attacker, email, "a wrong guess").status_code for _ in range(3)]
    refused = login_from(auth, attacker, email, password)
    assert answers == [401] * 3 and refused.status_code == 429 and refused.json["error"] == "too_many_attempts"
    assert 890 <= int(refused.headers["Retry-After"]) <= 900
    assert login_from(auth, owner, email, password).status_code == 200  # the owner, elsewhere
    # An address without an account is throttled alike.
    nobody = f"nobody-{uuid.uuid4().hex[:8]}@test.vid2mp3.dev"
    assert [login_from(auth, attacker, nobody, "a wrong guess").status_code for _ in range(4)] == [401] * 3 + [429]


def test_one_address_guessing_over_many_accounts_is_stopped(app: Callable[[str], FlaskClient],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGIN_MAX_FAILURES_PER_ADDRESS", "4")
    auth = app("auth")
    sprayer, elsewhere = f"198.51.100.{uuid.uuid4().int % 250 + 1}", f"203.0.113.{uuid.uuid4().int % 250 + 1}"
    accounts = [f"spray-{uuid.uuid4().hex[:8]}@test.vid2mp3.dev" for _ in range(6)]
    answers = [login_from(auth, sprayer, email, "Password1!").status_code for email in accounts]
    assert answers == [401] * 4 + [429] * 2
    assert login_from(auth, elsewhere, accounts[5], "Password1!").status_code == 401  # another address: counted anew


def test_many_addresses_guessing_one_account_leave_the_owners_known_address_in(
        app: Callable[[str], FlaskClient], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGIN_MAX_FAILURES_PER_ACCOUNT", "5")
    auth = app("auth")
    email, password = f"unit-{uuid.uuid4().hex[:8]}@test.vid2mp3.dev", "the owner's password"
    auth.post("/signup", json={"email": email, "password": password})
    home = f"203.0.113.{uuid.uuid4().int % 250 + 1}"
    assert login_from(auth, home, email, password).status_code == 200  # the owner's address, known from now on
    guesses = [login_from(auth, f"198.51.{n}.{uuid.uuid4().int % 250 + 1}", email, "a wrong guess").status_code
               for n in range(6)]
    assert guesses == [401] * 5 + [429]
    assert login_from(auth, "192.0.2.77", email, password).status_code == 429  # a new address waits
    assert login_from(auth, home, email, password).status_code == 200  # the owner's known address does not


def test_auth_answers_unknown_user_and_wrong_password_alike(app: Callable[[str], FlaskClient]) -> None:
    auth = app("auth")
    email = f"unit-{uuid.uuid4().hex[:8]}@test.vid2mp3.dev"
    auth.post("/signup", json={"email": email, "password": "the right password"})
    wrong = auth.post("/login", json={"email": email, "password": "the wrong password"})
    unknown = auth.post("/login", json={"email": "nobody-" + email, "password": "the wrong password"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json == unknown.json
    assert wrong.headers["WWW-Authenticate"] == unknown.headers["WWW-Authenticate"] == \
        'Password realm="vid2mp3", charset="UTF-8"'  # RFC 9110: a 401 carries a challenge


# --- upload -------------------------------------------------------------------------------------------------

def test_upload_multipart_stores_records_and_emits(app: Callable[[str], FlaskClient], bearer: Any, sink: Sink,
                                                   database: Any, tmp_path: Path) -> None:
    headers, token = bearer
    video = make_clip(tmp_path / "clip.mp4", seconds=1)
    response = app("upload").post("/", headers=headers, content_type="multipart/form-data",
                                  data={"bitrate": "256", "file": (video.open("rb"), "..\\..\\my:clip\x07.mp4")})
    assert response.status_code == 202, response.json
    job_id = response.json["job_id"]
    assert response.headers["Location"].endswith(job_id)
    assert response.json["filename"] == "my_clip.mp4"
    job = Jobs(database).get(job_id)
    assert job["state"] == "uploaded" and job["owner_id"] == owner_of(token)
    assert "pending_event" not in job  # sent: nothing for the reconcile sweep to send again
    # What is kept: the audio (an m4a: the clip is an MP4 with AAC) and the frame, never the video.
    assert (job["source_format"], job["received_bytes"]) == ("mp4", video.stat().st_size)
    assert MediaStore(database, SOURCES).exists(job_id) and not MediaStore(database, VIDEOS).exists(job_id)
    assert job["covers"] == {"frame": f"{job_id}/frame"} and MediaStore(database, COVERS).exists(f"{job_id}/frame")
    stored = sum(document["length"] for bucket in (SOURCES, COVERS)
                 for document in database[f"{bucket}.files"].find({"metadata.job_id": job_id}))
    assert response.json["stored_bytes"] == job["stored_bytes"] == stored < video.stat().st_size
    [event] = sink.events()
    assert event["attributes"]["type"] == "io.vid2mp3.video.uploaded.v1"
    assert event["data"]["bitrate_kbps"] == 256 and event["data"]["size_bytes"] == video.stat().st_size
    assert event["data"]["stored_bytes"] == stored and event["data"]["video_id"] == job_id
    assert list(tmp_path.glob("upload.*")) == [], "the spool is gone"


def test_upload_raw_body(app: Callable[[str], FlaskClient], bearer: Any, tmp_path: Path) -> None:
    headers, _ = bearer
    video = make_clip(tmp_path / "raw.mkv", seconds=1)
    response = app("upload").post("/?filename=raw.mkv&bitrate=320", headers=headers, data=video.read_bytes(),
                                  content_type="application/octet-stream")
    assert response.status_code == 202 and response.json["bitrate_kbps"] == 320


def test_upload_refused_by_the_extraction_answers_its_reason_and_keeps_nothing(
        app: Callable[[str], FlaskClient], bearer: Any, sink: Sink, database: Any, tmp_path: Path) -> None:
    headers, _ = bearer
    silent = make_clip(tmp_path / "silent.mp4", seconds=1, audio=None)
    response = app("upload").post("/?filename=silent.mp4", headers=headers, data=silent.read_bytes(),
                                  content_type="application/octet-stream")
    assert response.status_code == 422 and response.json["error"] == "no_audio", response.json
    assert "audio" in response.json["message"]
    assert sink.requests == [] and database["jobs"].count_documents({}) == 0
    assert all(database[f"{bucket}.files"].count_documents({}) == 0 for bucket in ("videos", SOURCES, COVERS))
    assert list(tmp_path.glob("upload.*")) == [], "the spool is gone"


def test_upload_takes_a_clients_cover_and_chapters_beside_an_extract(
        app: Callable[[str], FlaskClient], bearer: Any, database: Any, tmp_path: Path) -> None:
    """What a client that extracted the audio itself sends: the audio (no picture of its own), the video's frame as
    `cover` and the chapters its library could not write as `chapters`."""
    headers, _ = bearer
    extract = make_clip(tmp_path / "extract.m4a", seconds=4, video=False)
    cover = tmp_path / "cover.png"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=800x600:rate=1", "-frames:v", "1",
                    str(cover)], check=True)
    chapters = '[{"start": 0, "end": 2, "title": "One"}, {"start": 2, "title": "Two"}]'
    response = app("upload").post("/", headers=headers, content_type="multipart/form-data", data={
        "file": (extract.open("rb"), "talk.m4a"), "cover": (cover.open("rb"), "cover.png", "image/png"),
        "chapters": (io.BytesIO(chapters.encode()), "chapters.json", "application/json")})
    assert response.status_code == 202, response.json
    job = Jobs(database).get(response.json["job_id"])
    assert job is not None and set(job["covers"]) == {"frame"}
    frame = tmp_path / "frame.jpg"
    with frame.open("wb") as file:
        assert MediaStore(database, COVERS).copy_to(job["covers"]["frame"], file)
    assert frame.read_bytes()[:3] == b"\xff\xd8\xff" and probe(frame)["streams"][0]["width"] == 600
    source = tmp_path / "source.m4a"
    with source.open("wb") as file:
        assert MediaStore(database, SOURCES).copy_to(job["video_id"], file)
    found = subprocess.run(["ffprobe", "-v", "error", "-show_chapters", "-of", "json", str(source)],
                           capture_output=True, check=True).stdout
    assert [chapter["tags"]["title"] for chapter in json.loads(found)["chapters"]] == ["One", "Two"]


@pytest.mark.parametrize(("parts", "fields"), [
    ({"cover": (b"GIF89a" + bytes(64), "cover.gif")}, {"cover"}),
    ({"cover": (b"\xff\xd8\xff" + bytes(600 * 1024), "big.jpg")}, {"cover"}),
    ({"chapters": (b"[{\"start\": -1}]", "c.json")}, {"chapters"}),
    ({"cover": (b"", "empty.jpg"), "chapters": (b"nonsense", "c.json")}, {"cover", "chapters"}),
])
def test_upload_refuses_bad_cover_and_chapters_parts_naming_them(
        app: Callable[[str], FlaskClient], bearer: Any, database: Any, tmp_path: Path,
        parts: dict[str, tuple[bytes, str]], fields: set[str]) -> None:
    headers, _ = bearer
    clip = make_clip(tmp_path / "clip.mp4", seconds=1)
    response = app("upload").post("/", headers=headers, content_type="multipart/form-data", data={
        "file": (clip.open("rb"), "clip.mp4"),
        **{name: (io.BytesIO(data), filename) for name, (data, filename) in parts.items()}})
    assert response.status_code == 422 and response.json["error"] == "invalid_options", response.json
    assert set(response.json["fields"]) == fields
    assert database["jobs"].count_documents({}) == 0 and database[f"{SOURCES}.files"].count_documents({}) == 0


def test_the_upload_function_clears_its_scratch_folders_when_it_starts(
        app: Callable[[str], FlaskClient], tmp_path: Path) -> None:
    """What a process killed mid-extraction left (its spool, half an extraction) goes when the function starts
    again; another function's folders in the same place stay."""
    left = tmp_path / "upload.0123456789abcdef0123456789abcdef.x1y2z3"
    left.mkdir()
    (left / "upload").write_bytes(b"half a video")
    (left / "source.m4a").write_bytes(b"half an extraction")
    other = tmp_path / "0123456789abcdef0123456789abcdef.convert.abc"
    other.mkdir()
    app("upload")
    assert not left.exists() and other.exists()


@pytest.mark.parametrize(("body", "query", "status", "code"), [
    (b"just some text, not a video at all", "", 415, "not_media"),
    (b"#EXTM3U\n#EXT-X-VERSION:3\nsegment.ts\n", "", 415, "not_media"),
    (b"", "", 400, "bad_upload"),
    (b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 600, "?bitrate=100", 422, "unsupported_bitrate"),
])
def test_upload_refusals(app: Callable[[str], FlaskClient], bearer: Any, sink: Sink, database: Any,
                         body: bytes, query: str, status: int, code: str) -> None:
    headers, _ = bearer
    response = app("upload").post(f"/{query}", headers=headers, data=body, content_type="application/octet-stream")
    assert response.status_code == status and response.json["error"] == code
    assert sink.requests == [] and database["jobs"].count_documents({}) == 0
    assert all(database[f"{bucket}.chunks"].count_documents({}) == 0 for bucket in ("videos", SOURCES, COVERS))


def test_upload_over_the_limit_is_refused_before_reading(app: Callable[[str], FlaskClient], bearer: Any) -> None:
    headers, _ = bearer
    # The request claims 50 MiB (the limit here is 5 MiB) but sends 10 bytes: the answer cannot have read a body.
    response = app("upload").post("/", headers=headers, input_stream=io.BytesIO(b"\x00" * 10),
                                  environ_overrides={"CONTENT_LENGTH": str(50 * 1024 * 1024)},
                                  content_type="application/octet-stream")
    assert response.status_code == 413 and response.json["error"] == "too_large"


def test_upload_needs_a_valid_token(app: Callable[[str], FlaskClient]) -> None:
    for headers in ({}, {"Authorization": "Bearer nonsense"}, {"Authorization": "Basic Zm9vOmJhcg=="}):
        response = app("upload").post("/", headers=headers, data=b"x")
        assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")


def test_upload_is_kept_while_the_broker_is_away_and_its_event_leaves_when_it_is_back(
        app: Callable[[str], FlaskClient], sink: Sink, bearer: Any, database: Any, tmp_path: Path) -> None:
    # The ingress refuses the upload's two quick tries and the background retry's first two rounds, then takes it.
    sink.statuses[:] = [503, 503, 503, 503, 202]
    headers, token = bearer
    video = make_clip(tmp_path / "kept.mp4", seconds=1)
    response = app("upload").post("/", headers=headers, data=video.read_bytes(),
                                  content_type="application/octet-stream")
    assert response.status_code == 202, response.json
    job_id = response.json["job_id"]
    job = Jobs(database).get(job_id)
    assert job is not None and job["state"] == "uploaded" and job["owner_id"] == owner_of(token)
    assert database[f"{SOURCES}.files"].count_documents({"_id": job_id}) == 1
    wait_for(lambda: "pending_event" not in Jobs(database).get(job_id), 30, "the pending event to leave")
    sent = [event for event in sink.events() if event["attributes"].get("subject") == job_id]
    assert len(sent) == 5 and sent[-1]["attributes"]["type"] == VideoUploaded.event_type


# --- convert ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_convert_makes_one_mp3_however_often_delivered(app: Callable[[str], FlaskClient], sink: Sink,
                                                       database: Any, tmp_path: Path, mode: str) -> None:
    event = seed_job(database, "42", make_clip(tmp_path / "clip.mp4", seconds=2), bitrate=128)
    convert = app("convert")
    for _ in range(5):
        assert post_event(convert, event, mode).status_code == 200
    job = Jobs(database).get(event.job_id)
    assert job["state"] == "done" and job["audio"]["duration_seconds"] > 1.9
    assert [step["state"] for step in job["history"]] == ["uploaded", "converting", "done"]
    assert database["audio.files"].count_documents({}) == 1
    # The source and covers go once the MP3 is stored.
    assert not MediaStore(database, SOURCES).exists(event.video_id)
    assert database[f"{COVERS}.files"].count_documents({}) == 0
    assert [e["attributes"]["type"] for e in sink.events()] == [AUDIO_CONVERTED]
    assert list(tmp_path.glob(f"{event.job_id}.*")) == []  # the work dir is gone


def answered_while_held(renew: Callable[[], object], deliver: Callable[[], int]) -> tuple[int, float]:
    """The status of `deliver()` and how long it took, while another worker renews its hold every 0.5 s."""
    stop = threading.Event()

    def keep_renewing() -> None:
        while not stop.wait(0.5):
            renew()

    renewer = threading.Thread(target=keep_renewing)
    renewer.start()
    try:
        started = time.monotonic()
        status = deliver()
        return status, time.monotonic() - started
    finally:
        stop.set()
        renewer.join()


def test_convert_leaves_a_job_to_its_live_holder_at_once(app: Callable[[str], FlaskClient], sink: Sink,
                                                         database: Any, tmp_path: Path) -> None:
    """A duplicate delivery while a live attempt renews the lease: acknowledged within about one renewal, the job
    left to that attempt (no second attempt, no event)."""
    event = seed_job(database, "42", make_clip(tmp_path / "held.mp4", seconds=1))
    jobs = Jobs(database)
    assert jobs.claim_conversion(event.job_id, "holder", timedelta(seconds=10)) is not None
    status, waited = answered_while_held(
        lambda: jobs.renew_lease(event.job_id, "holder", timedelta(seconds=10), {"percent": 1.0, "eta_seconds": None}),
        lambda: post_event(app("convert"), event, "binary").status_code)
    assert status == 200
    job = jobs.get(event.job_id)
    assert job["state"] == "converting" and job["attempt_id"] == "holder" and job["attempts"] == 1
    assert waited < 3, waited
    assert sink.requests == []


def test_convert_takes_over_from_a_holder_that_stopped_renewing(app: Callable[[str], FlaskClient], sink: Sink,
                                                                database: Any, tmp_path: Path) -> None:
    """The broker's retry of a holder that died looks like a duplicate: it waits for the lease to lapse, not for
    a renewal that never comes, and converts the job itself."""
    event = seed_job(database, "42", make_clip(tmp_path / "orphaned.mp4", seconds=1))
    jobs = Jobs(database)
    assert jobs.claim_conversion(event.job_id, "dead", timedelta(seconds=2)) is not None
    started = time.monotonic()
    assert post_event(app("convert"), event, "binary").status_code == 200
    job = jobs.get(event.job_id)
    assert job["state"] == "done" and job["attempts"] == 2 and job["attempt_id"] != "dead"
    assert 1.5 < time.monotonic() - started < 10
    assert [e["attributes"]["type"] for e in sink.events()] == [AUDIO_CONVERTED]


def test_convert_leaves_an_emitted_fan_out_to_its_segments(app: Callable[[str], FlaskClient], sink: Sink,
                                                           database: Any, tmp_path: Path) -> None:
    event = seed_job(database, "42", make_clip(tmp_path / "fanned.mp4", seconds=1))
    jobs = Jobs(database)
    assert jobs.claim_conversion(event.job_id, "fanner", timedelta(minutes=5)) is not None
    jobs.update(event.job_id, {}, {"fanout": {"attempt_id": "fanner", "emitted": True}})
    started = time.monotonic()
    assert post_event(app("convert"), event, "binary").status_code == 200
    assert time.monotonic() - started < 2
    job = jobs.get(event.job_id)
    assert job["state"] == "converting" and job["attempt_id"] == "fanner" and job["attempts"] == 1


def held_segment(database: Any, tmp_path: Path, holder_lease: timedelta) -> tuple[SegmentRequested, Jobs]:
    """A fanned-out job whose segment 0 a worker named `holder` has claimed for `holder_lease`."""
    event = seed_job(database, "42", make_clip(tmp_path / "fanned.mp4", seconds=1))
    jobs, attempt_id = Jobs(database), uuid.uuid4().hex
    assert jobs.claim_conversion(event.job_id, attempt_id, timedelta(minutes=5)) is not None
    jobs.update(event.job_id, {}, {"fanout": {
        "attempt_id": attempt_id, "count": 2, "done": [], "emitted": True, "progress": {}, "files": {},
        "encodings": {"0": 1}, "claims": {"0": {"worker_id": "holder", "until": datetime.now(UTC) + holder_lease}},
    }})
    segment = SegmentRequested(job_id=event.job_id, owner_id="42", attempt_id=attempt_id, index=0, count=2,
                               track_id="no-such-track", start_seconds=None, duration_seconds=0.5, skip_frames=0,
                               keep_frames=None, bitrate_kbps=192)
    return segment, jobs


def test_segment_leaves_a_segment_to_its_live_worker_at_once(app: Callable[[str], FlaskClient], sink: Sink,
                                                             database: Any, tmp_path: Path) -> None:
    """A duplicate delivery of a segment while its worker renews the claim: acknowledged within about one renewal
    (not 503, which the dispatcher would hold through its backoff), the segment left to that worker."""
    segment, jobs = held_segment(database, tmp_path, timedelta(seconds=10))
    record = FanOutRecord(jobs)
    status, waited = answered_while_held(
        lambda: record.renew_segment(segment.job_id, segment.attempt_id, 0, "holder", 10.0),
        lambda: post_event(app("segment"), segment, "binary").status_code)
    assert status == 200
    fan = jobs.get(segment.job_id)["fanout"]
    assert fan["claims"]["0"]["worker_id"] == "holder" and fan["encodings"] == {"0": 1}
    assert waited < 3, waited
    assert sink.requests == []


def test_segment_takes_over_from_a_worker_that_stopped_renewing(app: Callable[[str], FlaskClient], sink: Sink,
                                                                database: Any, tmp_path: Path) -> None:
    """The broker's retry of a worker that died looks like a duplicate: it waits for the claim to lapse and takes
    the segment itself (here the track is missing, so the taken-over segment fails the job with that reason)."""
    segment, jobs = held_segment(database, tmp_path, timedelta(seconds=2))
    started = time.monotonic()
    assert post_event(app("segment"), segment, "binary").status_code == 200
    assert 1.5 < time.monotonic() - started < 10
    job = jobs.get(segment.job_id)
    assert job["fanout"]["encodings"] == {"0": 2}
    assert job["state"] == "failed" and job["failure"]["reason"] == "source_missing"


def test_convert_failure_is_recorded_and_announced(app: Callable[[str], FlaskClient], sink: Sink, database: Any,
                                                   tmp_path: Path) -> None:
    # A source convert cannot use (the upload's extraction refuses such a file: as if it were damaged since).
    event = seed_job(database, "42", make_clip(tmp_path / "mute.mp4", seconds=1, audio=None), extract=False)
    assert post_event(app("convert"), event, "binary").status_code == 200
    job = Jobs(database).get(event.job_id)
    assert job["state"] == "failed" and job["failure"]["reason"] == "no_audio"
    [failed] = sink.events()
    assert failed["attributes"]["type"] == CONVERSION_FAILED and failed["data"]["reason"] == "no_audio"


def test_convert_ignores_events_that_do_not_fit_a_job(app: Callable[[str], FlaskClient], sink: Sink,
                                                      database: Any, tmp_path: Path) -> None:
    event = seed_job(database, "42", make_clip(tmp_path / "mine.mp4", seconds=1))
    forged = event.model_copy(update={"owner_id": "666"})
    ghost = event.model_copy(update={"job_id": uuid.uuid4().hex})
    convert = app("convert")
    for payload in (forged, ghost):
        assert post_event(convert, payload, "binary").status_code == 200
    assert Jobs(database).get(event.job_id)["state"] == "uploaded" and sink.requests == []
    malformed = convert.post("/", headers={"ce-specversion": "1.0", "ce-type": event.event_type, "ce-id": "x",
                                           "ce-source": "/forged", "content-type": "application/json"},
                             data=b'{"job_id": "nope"}')
    assert malformed.status_code == 200 and sink.requests == []


def test_convert_asks_for_a_retry_while_the_database_is_away(app: Callable[[str], FlaskClient], tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONGO_URI", "mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=300")
    event = VideoUploaded(job_id=uuid.uuid4().hex, owner_id="1", video_id="v", filename="a.mp4", size_bytes=1,
                          sha256="0" * 64, uploaded_at=datetime.now(UTC))
    assert post_event(app("convert"), event, "binary").status_code == 503


def test_public_functions_answer_retry_later_while_a_data_store_is_away(
        app: Callable[[str], FlaskClient], bearer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing listens on port 9: MongoDB and MySQL are both away. A caller gets 503 with a reason it can show,
    not a crash's 500, and never a hang."""
    monkeypatch.setenv("MONGO_URI", "mongodb://127.0.0.1:9/")
    monkeypatch.setenv("MYSQL_URL", "mysql://vid2mp3:secret@127.0.0.1:9/vid2mp3")
    headers, _ = bearer
    answers = {
        "status": app("status").get(f"/{uuid.uuid4().hex}", headers=headers),
        "download": app("download").get(f"/{uuid.uuid4().hex}", headers=headers),
        "upload": app("upload").post("/?filename=a.mp3", data=b"ID3" + b"\0" * 64, headers=headers),
        "login": app("auth").post("/login", json={"email": "someone@test.vid2mp3.dev", "password": "x" * 12}),
    }
    for name, answer in answers.items():
        assert answer.status_code == 503, (name, answer.status_code, answer.get_data(as_text=True))
        assert answer.get_json()["error"] in ("unavailable", "storage_unavailable"), name
        assert "try again" in answer.get_json()["message"] and answer.headers["Retry-After"], name


# --- notify -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_notify_sends_exactly_one_email(app: Callable[[str], FlaskClient], endpoints: dict[str, str],
                                        bearer: Any, sink: Sink, database: Any, tmp_path: Path, mode: str) -> None:
    _, token = bearer
    owner = owner_of(token)
    event = seed_job(database, owner, make_clip(tmp_path / "clip.mp4", seconds=1))
    assert post_event(app("convert"), event, "binary").status_code == 200
    job = Jobs(database).get(event.job_id)
    converted = AudioConverted.model_validate(sink.events()[0]["data"])
    notify = app("notify")
    for _ in range(5):
        assert post_event(notify, converted, mode).status_code == 200
    messages = requests.get(f"{endpoints['SENDGRID_API_HOST']}/_standin/messages", timeout=5).json()
    mine = [m for m in messages if event.job_id in m["body"]["content"][0]["value"]]
    assert len(mine) == 1
    assert Jobs(database).get(event.job_id)["notification"]["state"] == "sent"
    assert [e["attributes"]["type"] for e in sink.events()] == [AUDIO_CONVERTED, NOTIFICATION_SENT]
    assert job["audio"]["audio_id"] == converted.audio_id


def test_notify_retries_later_when_the_mail_api_fails(app: Callable[[str], FlaskClient], endpoints: dict[str, str],
                                                      bearer: Any, sink: Sink, database: Any, tmp_path: Path) -> None:
    _, token = bearer
    event = seed_job(database, owner_of(token), make_clip(tmp_path / "clip.mp4", seconds=1))
    post_event(app("convert"), event, "binary")
    converted = AudioConverted.model_validate(sink.events()[0]["data"])
    notify = app("notify")
    requests.post(f"{endpoints['SENDGRID_API_HOST']}/_standin/fail", json={"status": 503, "count": 1}, timeout=5)
    assert post_event(notify, converted, "binary").status_code == 503
    assert Jobs(database).get(event.job_id)["notification"]["state"] == "retry"
    assert post_event(notify, converted, "binary").status_code == 200
    assert Jobs(database).get(event.job_id)["notification"]["state"] == "sent"


class StoreAwayOnce(Jobs):
    """The job store dropping the connection the first time the notifier records a sent email, as it did while
    FerretDB restarted in the fault suite (the write may or may not have been applied)."""

    def __init__(self, database: Any, *, applied: bool) -> None:
        super().__init__(database)
        self.applied, self.failures = applied, 0

    def update(self, job_id: str, query: dict[str, Any], fields: dict[str, Any], event: Any = None) -> Any:
        if self.failures == 0 and fields.get("notification", {}).get("state") == "sent":
            self.failures += 1
            if self.applied:
                super().update(job_id, query, fields, event)
            raise pymongo.errors.AutoReconnect("connection closed")
        return super().update(job_id, query, fields, event)


@pytest.mark.parametrize("applied", [False, True], ids=["write-lost", "answer-lost"])
def test_notify_keeps_one_email_when_the_store_drops_its_sent_record(
        app: Callable[[str], FlaskClient], endpoints: dict[str, str], function_env: dict[str, str], bearer: Any,
        sink: Sink, database: Any, tmp_path: Path, applied: bool) -> None:
    _, token = bearer
    event = seed_job(database, owner_of(token), make_clip(tmp_path / "clip.mp4", seconds=1))
    post_event(app("convert"), event, "binary")
    converted = AudioConverted.model_validate(sink.events()[0]["data"])
    jobs = StoreAwayOnce(database, applied=applied)
    notifier = Notifier(jobs=jobs, mailer=Mailer(api_key="local-standin-key", api_host=endpoints["SENDGRID_API_HOST"],
                                                 sender="vid2mp3@test.vid2mp3.dev"),
                        emitter=EventEmitter(sink.url, "notify"), mysql_url=endpoints["MYSQL_URL"],
                        links=DownloadLinks(function_env["DOWNLOAD_LINK_KEYS"], function_env["PUBLIC_DOWNLOAD_URL"],
                                            generation_of=CredentialGenerations(database).current),
                        public_web_url=function_env["PUBLIC_WEB_URL"])
    notifier.handle(converted)
    notifier.handle(converted)  # a redelivery
    messages = requests.get(f"{endpoints['SENDGRID_API_HOST']}/_standin/messages", timeout=5).json()
    assert len([m for m in messages if event.job_id in m["body"]["content"][0]["value"]]) == 1
    assert jobs.failures == 1 and jobs.get(event.job_id)["notification"]["state"] == "sent"
    assert [e["attributes"]["type"] for e in sink.events()] == [AUDIO_CONVERTED, NOTIFICATION_SENT]


# --- status and download ------------------------------------------------------------------------------------

def test_status_and_download_for_the_owner_only(app: Callable[[str], FlaskClient], endpoints: dict[str, str],
                                                bearer: Any, sink: Sink, database: Any, tmp_path: Path) -> None:
    headers, token = bearer
    event = seed_job(database, owner_of(token), make_clip(tmp_path / "clip.mp4", seconds=2))
    post_event(app("convert"), event, "binary")
    status, download = app("status"), app("download")
    view = status.get(f"/{event.job_id}", headers=headers).json
    assert view["state"] == "done" and view["audio"]["download_url"].endswith(event.job_id)
    assert [job["job_id"] for job in status.get("/", headers=headers).json["jobs"]] == [event.job_id]
    full = download.get(f"/{event.job_id}", headers=headers)
    assert full.status_code == 200 and full.data[:3] in (b"ID3", b"\xff\xfb")
    assert int(full.headers["Content-Length"]) == len(full.data) == view["audio"]["size_bytes"]
    assert 'filename="clip.mp3"' in full.headers["Content-Disposition"]
    ranged = download.get(f"/{event.job_id}", headers={**headers, "Range": "bytes=10-19"})
    assert ranged.status_code == 206 and ranged.data == full.data[10:20]
    assert download.get(f"/{event.job_id}", headers={**headers, "Range": "bytes=99999999-"}).status_code == 416
    cached = download.get(f"/{event.job_id}", headers={**headers, "If-None-Match": full.headers["ETag"]})
    assert cached.status_code == 304
    stranger = {"Authorization": f"Bearer {trusted_in(database, new_user(endpoints)[0].token)}"}
    for client in (status, download):
        for job_id in (event.job_id, uuid.uuid4().hex, "../../etc/passwd", "x" * 500):
            answer = client.get(f"/{job_id}", headers=stranger)
            assert answer.status_code == 404 and answer.json == {"error": "not_found", "message": "no such job"}
    assert MediaStore(database, AUDIO).exists(event.job_id)


# --- reconcile ----------------------------------------------------------------------------------------------

def test_a_sweep_removes_what_killed_writes_left_and_leaves_writes_under_way(database: Any, sink: Sink) -> None:
    store = MediaStore(database, VIDEOS)
    store.store("kept", [b"kept"], filename="kept", metadata={})
    long_ago, writes = datetime.now(UTC) - timedelta(hours=2), database[WRITES_UNDER_WAY]
    # Each as a store() leaves its record and chunks: killed before its files document, killed just after it, and
    # one writing now.
    for file_id, started_at in (("killed", long_ago), ("kept", long_ago), ("writing", datetime.now(UTC))):
        writes.insert_one({"_id": f"{VIDEOS}:{file_id}", "bucket": VIDEOS, "file_id": file_id,
                           "started_at": started_at})
    for file_id in ("killed", "writing"):
        database["videos.chunks"].insert_many([{"_id": f"{file_id}/{n}", "files_id": file_id, "n": n, "data": b"x"}
                                               for n in range(3)])

    def sweep() -> int:  # a reconcile function scaled to zero between sweeps: a new process each time
        return Reconciler(database=database, jobs=Jobs(database), emitter=EventEmitter(sink.url, "reconcile"),
                          stuck_after=timedelta(minutes=30), max_redrives=3).remove_abandoned_writes()

    assert sweep() == 1
    assert store.orphan_chunk_owners() == ["writing"] and store.exists("kept")
    assert [write["file_id"] for write in writes.find()] == ["writing"]
    assert sweep() == 0


# --- settings -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["auth", "upload", "status", "download", "convert", "notify", "deadletter",
                                  "reconcile"])
def test_a_function_without_its_settings_refuses_to_start_naming_them(name: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from runtime.settings import SETTINGS_BY_FUNCTION, MissingSettings, required_variables

    for variable in ("MONGO_URI", "MYSQL_URL", "K_SINK", "JWKS_URL", "JWT_PRIVATE_KEY", "PUBLIC_STATUS_URL",
                     "PUBLIC_DOWNLOAD_URL"):
        monkeypatch.delenv(variable, raising=False)
    with pytest.raises(MissingSettings) as refusal:
        create_app(target=name, source=str(ROOT / "functions" / name / "main.py"))
    assert all(variable in str(refusal.value) for variable in required_variables(SETTINGS_BY_FUNCTION[name]))


def test_the_stacks_function_processes_run_with_the_images_allocator_settings(
        endpoints: dict[str, str]) -> None:
    """The running functions' environment carries ALLOCATOR_TUNING (the images' is checked in test_manifests)."""
    for name in FUNCTION_PORTS:
        pid = (RUN / f"{name}.child.pid").read_text().strip()
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        variables = dict(entry.partition(b"=")[::2] for entry in environ)
        tuning = {key: variables.get(key.encode(), b"").decode() for key in ALLOCATOR_TUNING}
        assert tuning == ALLOCATOR_TUNING, f"{name} runs with {tuning}"
