"""Progress, cancel and retention (issue 7): the job stream's rules without a server, then on the real local stack:
progress rising to 100 % over a live event stream, a conversion cancelled mid-ffmpeg (ended within 2 s, no media
left, one cancelled event, a late video-uploaded event ignored), cancel refused for a finished job, and an expired
MP3 answering 410 once the reconcile step has deleted its chunks."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent
from vid2mp3_client.api import ClientError, Vid2mp3
from vid2mp3_client.cli import make_sample

from events import JOB_CANCELLED, VideoUploaded, to_cloud_event
from jobs.records import JobState
from stack.config import LOCAL
from tests.support import event_tap, make_clip, new_user, processes_mentioning, wait_for


def job(state: str, percent: float | None = None) -> dict[str, Any]:
    return {"state": state, **({"progress": {"percent": percent}} if percent is not None else {})}


CANCEL_DEADLINE_SECONDS = 2.0


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    return {
        # The 60 s clip, by the client's own recipe (640x360 H.264 + AAC).
        "minute": make_sample(60),
        # Long enough that LAME works for several seconds, even in segments on both cores (about 4.5 s), and short
        # enough to stay in the convert function (under FAN_OUT_MIN_SECONDS): a conversion to cancel half way.
        "long": make_clip(folder / "long.mp4", seconds=1700),
        "short": make_clip(folder / "short.mp4", seconds=3),
    }


@pytest.fixture
def user(endpoints: dict[str, str]) -> Vid2mp3:
    return new_user(endpoints)[0]


def converted(client: Vid2mp3, video: Path) -> dict[str, Any]:
    job_id = client.upload(video)["job_id"]
    return client.follow(job_id, lambda _: None, timeout=90)


def follow_stream(client: Vid2mp3, job_id: str, timeout: float = 120) -> list[dict[str, Any]]:
    """Every view the job's event stream sends until the job is final (reconnecting as the client does)."""
    views: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        last = client.stream_until_final(job_id, views.append)
        if last is not None and last["state"] in ("done", "failed", "cancelled"):
            return views
    raise AssertionError(f"job {job_id} did not end within {timeout} s: {views[-1:]}")


def media_left(stack_database: Any, job: dict[str, Any]) -> dict[str, int]:
    """Files and chunks still stored for the job, by GridFS collection: its source and covers (what its upload kept),
    its MP3, and any video of a resumable upload."""
    counts = {}
    for bucket, file_ids in (("videos", [job["video_id"]]), ("sources", [job["video_id"]]),
                             ("covers", [f"{job['_id']}/frame", f"{job['_id']}/attached"]), ("audio", [job["_id"]])):
        counts[f"{bucket}.files"] = stack_database[f"{bucket}.files"].count_documents({"_id": {"$in": file_ids}})
        counts[f"{bucket}.chunks"] = stack_database[f"{bucket}.chunks"].count_documents(
            {"files_id": {"$in": file_ids}})
    return counts


def ffmpeg_processes_for(job_id: str) -> list[int]:
    """ffmpeg runs in a work directory named after its job, so its command line names the job."""
    found = []
    for pid in processes_mentioning(job_id):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(Path(part.decode(errors="replace")).name in ("ffmpeg", "prlimit") for part in argv[:1]):
            found.append(pid)
    return found


class FfmpegWatch(threading.Thread):
    """Notes when the last ffmpeg of a job is gone, looking every 20 ms, while the test waits on a request."""

    def __init__(self, job_id: str, timeout: float = 30) -> None:
        super().__init__(daemon=True)
        self.job_id, self.timeout = job_id, timeout
        self.ended_at: float | None = None

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if not ffmpeg_processes_for(self.job_id):
                self.ended_at = time.monotonic()
                return
            time.sleep(0.02)


def status_request(client: Vid2mp3, method: str, path: str) -> requests.Response:
    # Generous: deleting media is slow on the local stack's FerretDB (it scans every chunk, blobs and all).
    return requests.request(method, f"{client.status_url}/{path}", headers=client._headers(), timeout=90)


@pytest.mark.stack
@pytest.mark.parametrize("clip", ["minute", "long"])
def test_progress_rises_monotonically_to_100(user: Vid2mp3, clips: dict[str, Path], clip: str) -> None:
    """The 60 s clip takes ffmpeg under a second (0 then 100 %); the 28 min one shows the steps in between."""
    accepted = user.upload(clips[clip])
    views = follow_stream(user, accepted["job_id"])
    percents = [view["progress"]["percent"] for view in views if "progress" in view]
    print(f"{clip}: states {[view['state'] for view in views]}, percents {percents}")
    if clip == "long":
        assert len([percent for percent in percents if 0 < percent < 100]) >= 3, "one update a second expected"
    assert views[-1]["state"] == "done"
    assert percents == sorted(percents), "progress went backwards"
    assert percents[-1] == 100.0
    assert all("progress" not in view for view in views if view["state"] == "uploaded")
    assert all(view["progress"]["eta_seconds"] is None or view["progress"]["eta_seconds"] >= 0
               for view in views if "progress" in view)
    # Polling sees the same final state.
    assert user.job(accepted["job_id"])["progress"] == {"percent": 100.0, "eta_seconds": 0.0}


@pytest.mark.stack
def test_the_client_follows_a_job_through_its_event_stream(user: Vid2mp3, clips: dict[str, Path]) -> None:
    accepted = user.upload(clips["short"])
    response = requests.get(f"{user.status_url}/{accepted['job_id']}/events", headers=user._headers(),
                            stream=True, timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert response.headers["Cache-Control"] == "no-store"
    response.close()
    seen: list[str] = []
    job = user.follow(accepted["job_id"], lambda view: seen.append(view["state"]), timeout=60)
    assert job["state"] == "done" and seen[-1] == "done"


@pytest.mark.stack
def test_cancel_mid_conversion_ends_ffmpeg_within_2_s_and_leaves_no_media(
        endpoints: dict[str, str], user: Vid2mp3, clips: dict[str, Path], stack_database: Any) -> None:
    with event_tap(endpoints, [JOB_CANCELLED]) as tap:
        accepted = user.upload(clips["long"])
        job_id = accepted["job_id"]

        def converting_with_progress() -> dict[str, Any]:
            view = user.job(job_id)
            assert view["state"] in ("uploaded", "converting"), view
            return view if view.get("progress", {}).get("percent", 0) > 0 else {}

        before = wait_for(converting_with_progress, 60, "the conversion to report progress", interval=0.2)
        assert ffmpeg_processes_for(job_id), "ffmpeg should be converting the job"
        watch = FfmpegWatch(job_id)
        watch.start()
        asked = time.monotonic()
        answer = status_request(user, "POST", f"{job_id}/cancel")
        answered = time.monotonic()
        assert answer.status_code == 200, answer.text
        assert answer.json()["state"] == "cancelled"
        watch.join()
        assert watch.ended_at is not None, "ffmpeg still runs 30 s after the cancel"
        print(f"cancelled at {before['progress']['percent']} %: ffmpeg ended {watch.ended_at - asked:.2f} s after "
              f"the request was sent; the request (media deleted, event emitted) took {answered - asked:.2f} s")
        assert watch.ended_at - asked <= CANCEL_DEADLINE_SECONDS

        record = stack_database["jobs"].find_one({"_id": job_id})
        assert record["state"] == JobState.CANCELLED
        assert "pending_event" not in record, "the cancelled event was emitted and cleared from the outbox"
        # The converter's own clean-up: its work directory is gone (LOCAL/work is the stack's WORK_DIR).
        wait_for(lambda: not list((LOCAL / "work").glob(f"{job_id}.*")), 5, "the work directory to be removed")
        time.sleep(1.5)  # a converter that missed the cancel would have written its MP3 by now
        assert media_left(stack_database, record) == dict.fromkeys(media_left(stack_database, record), 0)
        wait_for(lambda: tap.events_for(job_id), 10, "the cancelled event on the broker")

        # A late (or redelivered) video-uploaded event for the cancelled job does nothing.
        late = VideoUploaded(job_id=job_id, owner_id=record["owner_id"], video_id=record["video_id"],
                             filename=record["filename"], size_bytes=record["size_bytes"], sha256=record["sha256"],
                             bitrate_kbps=record["bitrate_kbps"], uploaded_at=record["created_at"])
        headers, body = to_binary(to_cloud_event(late, source_function="upload"))
        delivered = requests.post(endpoints["CONVERT_FUNCTION_URL"], headers=headers, data=body, timeout=30)
        assert delivered.status_code < 300
        time.sleep(1)
        assert not ffmpeg_processes_for(job_id)
        assert stack_database["jobs"].find_one({"_id": job_id})["state"] == JobState.CANCELLED
        assert media_left(stack_database, record) == dict.fromkeys(media_left(stack_database, record), 0)
        assert len(tap.events_for(job_id)) == 1

    # The stream of a cancelled job ends at once; a second cancel repeats the answer; the MP3 is not there.
    assert [view["state"] for view in follow_stream(user, job_id)] == ["cancelled"]
    again = status_request(user, "POST", f"{job_id}/cancel")
    assert again.status_code == 200 and again.json()["state"] == "cancelled"
    with pytest.raises(ClientError, match="409"):
        user.download(job_id, Path("/nonexistent/never-written.mp3"))


@pytest.mark.stack
def test_cancel_of_a_finished_job_is_refused_and_owner_only(endpoints: dict[str, str], user: Vid2mp3,
                                                            clips: dict[str, Path], stack_database: Any) -> None:
    job = converted(user, clips["short"])
    assert job["state"] == "done"
    refused = status_request(user, "POST", f"{job['job_id']}/cancel")
    assert refused.status_code == 409
    assert refused.json() == {"error": "not_cancellable", "message": "the job is already done; only a job that is "
                                                                    "importing, uploaded or converting can be "
                                                                    "cancelled"}
    assert user.job(job["job_id"])["state"] == "done"

    stranger = new_user(endpoints)[0]
    missing = uuid.uuid4().hex
    for method, path in (("POST", "{}/cancel"), ("GET", "{}/events"), ("GET", "{}")):
        theirs = status_request(stranger, method, path.format(job["job_id"]))
        nobodys = status_request(stranger, method, path.format(missing))
        assert (theirs.status_code, theirs.json()) == (nobodys.status_code, nobodys.json()) == (
            404, {"error": "not_found", "message": "no such job"})
    assert status_request(user, "DELETE", f"{job['job_id']}/cancel").status_code == 405


@pytest.mark.stack
def test_an_expired_mp3_answers_410_and_its_chunks_are_gone(endpoints: dict[str, str], user: Vid2mp3,
                                                           clips: dict[str, Path], stack_database: Any,
                                                           tmp_path: Path) -> None:
    job = converted(user, clips["short"])
    assert job["state"] == "done"
    job_id = job["job_id"]
    record = stack_database["jobs"].find_one({"_id": job_id})
    expires_at = datetime.fromisoformat(job["audio"]["expires_at"])
    assert timedelta(hours=23, minutes=59) < expires_at - record["finished_at"] <= timedelta(hours=24)
    # The source and covers go as soon as the MP3 is stored (SOURCE_VIDEO_RETENTION_SECONDS is 0 by default).
    assert record["covers"], "the clip has a picture: its frame was kept until the MP3 was made"

    def source_gone() -> dict[str, int]:
        counts = media_left(stack_database, record)
        return counts if sum(value for key, value in counts.items() if not key.startswith("audio.")) == 0 else {}

    counts = wait_for(source_gone, 30, "the source and covers to be deleted")
    assert counts["audio.files"] == 1 and counts["audio.chunks"] >= 1
    user.download(job_id, tmp_path / "before.mp3")

    stack_database["jobs"].update_one({"_id": job_id}, {"$set": {"audio.expires_at": datetime.now(UTC) - timedelta(
        seconds=1)}})
    with pytest.raises(ClientError, match="HTTP 410"):  # expired, even before the sweep deletes its bytes
        user.download(job_id, tmp_path / "after.mp3")

    ping = CloudEvent({"type": "dev.knative.sources.ping", "source": "/tests/issue7", "id": uuid.uuid4().hex},
                      {"body": "reconcile"})
    headers, body = to_binary(ping)
    swept = requests.post(endpoints["RECONCILE_FUNCTION_URL"], headers=headers, data=body, timeout=120)
    assert swept.status_code < 300
    assert media_left(stack_database, record) == dict.fromkeys(media_left(stack_database, record), 0)
    assert stack_database["jobs"].find_one({"_id": job_id})["audio"]["deleted_at"]
    with pytest.raises(ClientError, match="HTTP 410"):
        user.download(job_id, tmp_path / "after.mp3")
    view = user.job(job_id)
    assert view["state"] == "done" and view["audio"]["expired"] is True
    assert "download_url" not in view["audio"]


