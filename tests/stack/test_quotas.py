"""Per-user quotas and the sign-up limit, on the real servers: upload, status and auth started in-process at small
limits against the stack's MongoDB (FerretDB) and MariaDB, each test in a database of its own; the last slot taken
by concurrent requests; and the running stack's status view showing a user's usage."""

from __future__ import annotations

import io
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from functions_framework import create_app

from accounts.signup_limits import client_address
from jobs.quotas import OverQuota, QuotaLimits, Quotas
from stack.config import LOCAL, LOCAL_STACK_QUOTAS, ROOT
from tests.support import Sink, download_link_keys, make_clip, new_user, trusted_in

pytestmark = pytest.mark.stack

SIGNING_KEY = LOCAL / "secrets" / "jwt-ed25519.pem"
LIMITS = {"QUOTA_JOBS_IN_FLIGHT": "2", "QUOTA_UPLOADS_PER_HOUR": "4", "QUOTA_MEDIA_BYTES": str(10 * 1024 * 1024),
          "QUOTA_LIVE_STREAMS": "1", "SIGNUPS_PER_ADDRESS_PER_HOUR": "3"}


@pytest.fixture
def app(endpoints: dict[str, str], database_name: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], FlaskClient]]:
    sink = Sink([202])  # the broker ingress: events are not what these tests look at
    env = {
        "MONGO_URI": endpoints["MONGO_URI"], "MONGO_DATABASE": database_name, "MYSQL_URL": endpoints["MYSQL_URL"],
        "K_SINK": sink.url, "JWKS_URL": endpoints["JWKS_URL"], "JWT_PRIVATE_KEY": SIGNING_KEY.read_text(),
        "PUBLIC_STATUS_URL": endpoints["STATUS_URL"], "PUBLIC_DOWNLOAD_URL": endpoints["DOWNLOAD_URL"],
        "DOWNLOAD_LINK_KEYS": download_link_keys(), "WORK_DIR": str(tmp_path), **LIMITS,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    apps: dict[str, Any] = {}
    # One build per function even when threads ask at once: werkzeug compiles routes with `ast`, which CPython 3.11.7
    # does not allow from two threads at a time (a CI run's SystemError "AST constructor recursion depth mismatch").
    building = threading.Lock()

    def make(name: str) -> FlaskClient:
        with building:
            if name not in apps:
                apps[name] = create_app(target=name, source=str(ROOT / "functions" / name / "main.py"))
        return apps[name].test_client()

    yield make
    sink.close()


@pytest.fixture
def user(endpoints: dict[str, str], database: Any) -> tuple[dict[str, str], str]:
    token = trusted_in(database, new_user(endpoints)[0].token)
    import jwt
    return {"Authorization": f"Bearer {token}"}, str(jwt.decode(token, options={"verify_signature": False})["sub"])


@pytest.fixture(scope="module")
def clip_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return make_clip(tmp_path_factory.mktemp("quota") / "clip.mp4", seconds=1).read_bytes()


def upload(client: FlaskClient, headers: dict[str, str], body: bytes) -> Any:
    return client.post("/", headers=headers, data=body, content_type="application/octet-stream")


def assert_over(response: Any, limit: str) -> None:
    assert response.status_code == 429, (response.status_code, response.get_json())
    assert response.get_json()["error"] == "over_quota" and limit in response.get_json()["message"]
    assert int(response.headers["Retry-After"]) >= 1


def stored(database: Any, owner_id: str) -> tuple[int, int, int]:
    """The user's jobs, the sources kept of their uploads, and chunks of any upload (videos, sources, covers)."""
    return (database["jobs"].count_documents({"owner_id": owner_id}),
            database["sources.files"].count_documents({"metadata.owner_id": owner_id}),
            sum(database[f"{bucket}.chunks"].count_documents({}) for bucket in ("videos", "sources", "covers")))


# --- jobs in flight ----------------------------------------------------------------------------------------

def test_concurrent_uploads_take_the_last_job_slot_once(app: Callable[[str], FlaskClient], user: Any,
                                                        database: Any, clip_bytes: bytes) -> None:
    headers, owner_id = user
    # No converter runs here: every accepted job stays in flight. 2 slots, 6 uploads at once.
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda _: upload(app("upload"), headers, clip_bytes), range(6)))
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses.count(202) == 2, [answer.get_json() for answer in answers]
    # The others: over the jobs quota, or (when the usage document was contended) told to retry.
    assert set(statuses) <= {202, 429, 503}
    for answer in answers:
        if answer.status_code == 429:
            assert_over(answer, "jobs_in_flight")
    assert stored(database, owner_id)[:2] == (2, 2)
    # A job that ends frees its slot.
    done = database["jobs"].find_one({"owner_id": owner_id})
    database["jobs"].update_one({"_id": done["_id"]}, {"$set": {"state": "done"}})
    assert upload(app("upload"), headers, clip_bytes).status_code == 202


def test_quota_document_gives_the_last_slot_to_one_of_many(database: Any) -> None:
    quotas = Quotas(database, QuotaLimits(jobs_in_flight=3, uploads_per_hour=100, media_bytes=10**9,
                                          live_streams=1))
    owner = f"owner-{uuid.uuid4().hex[:8]}"
    outcomes: list[str] = []
    lock = threading.Lock()

    def reserve(index: int) -> None:
        try:
            quotas.reserve_upload(owner, f"job-{index}", 100)
            outcome = "taken"
        except OverQuota as over:
            outcome = over.limit
        with lock:
            outcomes.append(outcome)

    with ThreadPoolExecutor(max_workers=12) as pool:
        list(pool.map(reserve, range(12)))
    assert outcomes.count("taken") == 3 and outcomes.count("jobs_in_flight") == 9, outcomes
    assert len(database["quotas"].find_one({"_id": owner})["in_flight"]) == 3


# --- uploads per hour, and nothing counted for a refused upload ----------------------------------------------

def test_uploads_per_hour_and_refused_uploads_are_given_back(app: Callable[[str], FlaskClient], user: Any,
                                                             database: Any, clip_bytes: bytes) -> None:
    headers, owner_id = user
    # A refused upload (not media) takes neither a job slot nor one of the hour's uploads.
    for _ in range(5):
        assert upload(app("upload"), headers, b"not a video at all" * 100).status_code == 415
    for _ in range(4):
        answer = upload(app("upload"), headers, clip_bytes)
        assert answer.status_code == 202, answer.get_json()
        database["jobs"].update_one({"_id": answer.get_json()["job_id"]}, {"$set": {"state": "done"}})
    refused = upload(app("upload"), headers, clip_bytes)
    assert_over(refused, "uploads_per_hour")
    assert 3500 <= int(refused.headers["Retry-After"]) <= 3600
    assert stored(database, owner_id)[:2] == (4, 4)


# --- bytes of media held ---------------------------------------------------------------------------------------

def test_media_bytes_refused_before_reading_or_while_streaming_and_nothing_kept(
        app: Callable[[str], FlaskClient], user: Any, database: Any, clip_bytes: bytes) -> None:
    headers, owner_id = user
    # Declared past the quota (under the upload limit of 2 GiB): refused before a byte is read.
    answer = app("upload").post("/", headers=headers, input_stream=io.BytesIO(b"\x00" * 10),
                                environ_overrides={"CONTENT_LENGTH": str(11 * 1024 * 1024)},
                                content_type="application/octet-stream")
    assert_over(answer, "media_bytes")
    # Chunked (no length): stopped where the quota ends, and what was written removed.
    body = clip_bytes + b"\x00" * (11 * 1024 * 1024)
    answer = app("upload").post("/", headers=headers, input_stream=io.BytesIO(body),
                                environ_overrides={"wsgi.input_terminated": True, "CONTENT_LENGTH": ""},  # chunked
                                content_type="application/octet-stream")
    assert_over(answer, "media_bytes")
    assert "would take your media past" in answer.get_json()["message"]  # stopped while streaming
    assert stored(database, owner_id) == (0, 0, 0)
    # What the user holds counts: a stored 9 MiB leaves room for a small upload, not for another 2 MiB.
    database["audio.files"].insert_one({"_id": "held", "length": 9 * 1024 * 1024, "metadata": {"owner_id": owner_id}})
    assert upload(app("upload"), headers, clip_bytes).status_code == 202
    assert_over(upload(app("upload"), headers, clip_bytes + b"\x00" * (2 * 1024 * 1024)), "media_bytes")


# --- live streams, and the usage the status view shows -------------------------------------------------------

def test_live_streams_per_user_and_the_usage_view(app: Callable[[str], FlaskClient], user: Any,
                                                  clip_bytes: bytes) -> None:
    headers, _ = user
    accepted = upload(app("upload"), headers, clip_bytes).get_json()
    job_id = accepted["job_id"]
    status = app("status")
    first = status.get(f"/{job_id}/events", headers=headers)
    assert first.status_code == 200
    next(iter(first.response))  # the stream is open
    assert_over(status.get(f"/{job_id}/events", headers=headers), "live_streams")
    usage = status.get("/", headers=headers).get_json()["usage"]
    assert usage == {
        "jobs_in_flight": {"used": 1, "limit": 2}, "uploads_per_hour": {"used": 1, "limit": 4},
        # What is stored counts (the audio and the cover kept of the clip), not what was sent.
        "media_bytes": {"used": accepted["stored_bytes"], "limit": 10 * 1024 * 1024},
        "live_streams": {"used": 1, "limit": 1},
    }
    first.close()  # the client went away: its slot is free again
    second = status.get(f"/{job_id}/events", headers=headers)
    assert second.status_code == 200
    second.close()


def test_the_running_stack_shows_a_users_usage_against_its_limits(endpoints: dict[str, str]) -> None:
    client, _ = new_user(endpoints)
    usage = client.session.get(endpoints["STATUS_URL"] + "/", headers={"Authorization": f"Bearer {client.token}"},
                               timeout=30).json()["usage"]
    assert usage["jobs_in_flight"] == {"used": 0, "limit": int(LOCAL_STACK_QUOTAS["QUOTA_JOBS_IN_FLIGHT"])}
    assert usage["media_bytes"] == {"used": 0, "limit": int(LOCAL_STACK_QUOTAS["QUOTA_MEDIA_BYTES"])}


# --- sign-ups per client address -----------------------------------------------------------------------------

def test_signups_per_address_concurrent_last_slot_and_other_addresses(app: Callable[[str], FlaskClient]) -> None:
    address = f"198.51.100.{uuid.uuid4().int % 250 + 1}"  # TEST-NET-2, fresh per run
    other = f"203.0.113.{uuid.uuid4().int % 250 + 1}"

    def sign_up(from_address: str) -> Any:
        return app("auth").post("/signup", environ_overrides={"REMOTE_ADDR": from_address}, json={
            "email": f"quota-{uuid.uuid4().hex[:12]}@test.vid2mp3.dev", "password": "a long passphrase"})

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: sign_up(address), range(8)))
    assert sorted(answer.status_code for answer in answers) == [201] * 3 + [429] * 5
    refused = next(answer for answer in answers if answer.status_code == 429)
    assert refused.get_json()["error"] == "too_many_signups"
    assert "signups_per_address_per_hour" in refused.get_json()["message"]
    assert 3500 <= int(refused.headers["Retry-After"]) <= 3600
    assert sign_up(other).status_code == 201


@pytest.mark.parametrize(("forwarded", "hops", "expected"), [
    (None, 0, "10.0.0.9"),
    ("198.51.100.7", 0, "10.0.0.9"),  # no proxy of ours: a client's header is ignored
    ("198.51.100.7, 10.1.1.1", 2, "198.51.100.7"),
    ("6.6.6.6, 198.51.100.7, 10.1.1.1", 2, "198.51.100.7"),  # what the client wrote itself is left of ours
    ("10.1.1.1", 2, "10.1.1.1"),  # fewer entries than hops: the leftmost there is
])
def test_client_address_read_from_the_right_of_x_forwarded_for(forwarded: str | None, hops: int,
                                                               expected: str) -> None:
    import flask
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    with flask.Flask(__name__).test_request_context("/", headers=headers,
                                                    environ_base={"REMOTE_ADDR": "10.0.0.9"}):
        assert client_address(flask.request, hops) == expected


def test_a_resumable_upload_holds_its_declared_bytes_once_and_termination_frees_them(
        app: Callable[[str], FlaskClient], user: tuple[dict[str, str], str]) -> None:
    headers, _ = user
    tus = {**headers, "Tus-Resumable": "1.0.0"}
    client = app("upload")
    mib = 1024 * 1024

    def create(length: int) -> Any:
        return client.post("/files/", headers={**tus, "Upload-Length": str(length)})

    first = create(6 * mib)
    assert first.status_code == 201
    patched = client.patch(first.headers["Location"], data=b"\x1a\x45\xdf\xa3" + bytes(2 * mib - 4), headers={
        **tus, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
    assert patched.status_code == 204
    # 6 MiB declared (2 of them stored) and 4 more make the 10 MiB limit: counted once, not as 2 + 6.
    second = create(4 * mib)
    assert second.status_code == 201, second.get_json()
    assert client.delete(second.headers["Location"], headers=tus).status_code == 204
    assert_over(create(5 * mib), "media_bytes")
    assert client.delete(first.headers["Location"], headers=tus).status_code == 204
    assert create(10 * mib).status_code == 201
