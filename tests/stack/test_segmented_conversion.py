"""Long media encoded in time segments (issue 12): the plan per job, then on the real local stack a 600 s video
encoded in segments at once by the real Converter (its GridFS, job records and broker), and fanned out to the
running segment function through the broker. Each result is measured against the source and a single pass of
plain ffmpeg: the same sample count, aligned at lag 0, SNR around every join within 0.5 dB of the single pass's,
no click on a pure tone; one trace across the fan-out. Then the hard cases: a redelivered segment event, cancel
mid-encode (every segment's ffmpeg stopped within 2 s, nothing left), and a segment worker killed with SIGKILL
mid-encode."""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pymongo
import pytest
from vid2mp3_client.cli import describe

from events import AudioConverted, EventEmitter, SegmentRequested, VideoUploaded
from functions.convert.conversion import Converter
from functions.deadletter.handler import DeadLetters
from functions.reconcile.sweeps import Reconciler
from jobs.cancellation import Cancellation
from jobs.records import FINAL_STATES, Jobs, JobState
from jobs.view import job_view
from stack.config import LOCAL
from storage.media import AUDIO, COVERS, SEGMENTS, SOURCES, TRACKS, JobSources, MediaStore, remove_job_media
from tests.audio_quality import best_lag, click_ratio, decode, make_source, snr_db
from tests.reliability_support import kill_function
from tests.stack.test_tracing import a_trace_of_our_own, trace_holding
from tests.support import Sink, make_clip, processes_mentioning, stage_job, wait_for
from transcoding import plan
from transcoding.ffmpeg_tools import Probe
from transcoding.plan import FanOutPolicy, Mode

pytestmark = pytest.mark.stack

SECONDS = 600
TONE_HZ = 1000
BITRATE = 192
# Around a join: ±100 ms, where a join that clicks or shifts shows.
JOIN_WINDOW_SECONDS = 0.1
# A fan-out of the 600 s clip into 3 segments of 200 s (the threshold lowered from the deployment's 30 min).
FORCED_FAN_OUT = FanOutPolicy(min_seconds=300, segment_seconds=200, max_segments=3)


# --- The plan, without a stack -----------------------------------------------------------------------------------

def probe_of(seconds: float | None, rate: int | None = 44100, codec: str = "aac") -> Probe:
    return Probe(container="mov,mp4,m4a,3gp,3g2,mj2", audio_codec=codec, audio_duration=seconds, stream_count=2,
                 audio_sample_rate=rate)


@pytest.mark.parametrize(("probe", "copy", "cpus", "fan_out", "mode", "segments"), [
    (probe_of(600), False, 2, None, Mode.SEGMENTS, 2),
    (probe_of(600), False, 4, None, Mode.SEGMENTS, 4),
    (probe_of(600), False, 1, None, Mode.ONE_PASS, 0),  # one CPU: nothing to split across
    (probe_of(60), False, 2, None, Mode.ONE_PASS, 0),  # too short to pay for a split
    (probe_of(600, codec="mp3"), True, 2, None, Mode.ONE_PASS, 0),  # stream copy
    (probe_of(600, rate=22050), False, 2, None, Mode.ONE_PASS, 0),  # MPEG-2 rate: frames of 576 samples
    (probe_of(None), False, 2, None, Mode.ONE_PASS, 0),
    (probe_of(7200), False, 2, FanOutPolicy(1800, 300, 64), Mode.FAN_OUT, 24),
    (probe_of(7200), False, 2, FanOutPolicy(1800, 300, 16), Mode.FAN_OUT, 16),
    (probe_of(1000), False, 2, FanOutPolicy(1800, 300, 64), Mode.SEGMENTS, 2),  # under the fan-out threshold
])
def test_the_plan_per_job(probe: Probe, copy: bool, cpus: int, fan_out: FanOutPolicy | None, mode: Mode,
                          segments: int) -> None:
    chosen = plan.choose(probe, copy=copy, cpus=cpus, segment_min_seconds=150, fan_out=fan_out)
    assert (chosen.mode, len(chosen.segments)) == (mode, segments), chosen.reason
    assert chosen.reason


def test_segment_seeks_count_from_the_container_start() -> None:
    shifted = plan.choose(Probe("matroska,webm", "opus", 600, 2, 48000, audio_seek_offset=0.5), copy=False,
                          cpus=2, segment_min_seconds=150, fan_out=None)
    plain = plan.choose(probe_of(600, rate=48000), copy=False, cpus=2, segment_min_seconds=150, fan_out=None)
    assert shifted.segments[0].start_seconds is None  # the first segment is never seeked
    assert shifted.segments[1].start_seconds == pytest.approx(plain.segments[1].start_seconds + 0.5)


@pytest.mark.parametrize(("cpu_max", "cfs", "affinity", "expected"), [
    ("max 100000", None, 2, 2), ("200000 100000", None, 8, 2), ("150000 100000", None, 8, 1),
    ("50000 100000", None, 8, 1), (None, None, 2, 2),
    # cgroup v1
    (None, ("400000", "100000"), 8, 4), (None, ("-1", "100000"), 8, 8), (None, ("100000", "100000"), 2, 1),
])
def test_usable_cpus_follow_the_cgroup_quota_not_the_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           cpu_max: str | None, cfs: tuple[str, str] | None,
                                                           affinity: int, expected: int) -> None:
    if cpu_max is not None:
        (tmp_path / "cpu.max").write_text(cpu_max + "\n")
    if cfs is not None:
        (tmp_path / "cpu").mkdir()
        (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text(cfs[0] + "\n")
        (tmp_path / "cpu" / "cpu.cfs_period_us").write_text(cfs[1] + "\n")
    monkeypatch.setattr(plan.os, "sched_getaffinity", lambda _: set(range(affinity)))
    assert plan.usable_cpus(tmp_path) == expected


# --- On the local stack ------------------------------------------------------------------------------------------

@dataclass
class Reference:
    source: Path
    source_pcm: np.ndarray
    single_pcm: np.ndarray
    rate: int


def reference(directory: Path, *, tone: bool) -> Reference:
    source = make_source(directory / ("tone.mp4" if tone else "music.mp4"), rate=44100, channels=2, tone=tone,
                         seconds=SECONDS)
    single = directory / "single.mp3"
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-i", str(source), "-vn", "-c:a", "libmp3lame",
                    "-b:a", f"{BITRATE}k", str(single)], check=True)
    return Reference(source, decode(source), decode(single), 44100)


@pytest.fixture(scope="module")
def music(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    return reference(tmp_path_factory.mktemp("music"), tone=False)


@pytest.fixture(scope="module")
def tone(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    return reference(tmp_path_factory.mktemp("tone"), tone=True)


class OnStack:
    """The real Converter in this process on the stack's FerretDB and broker; the segment function is the stack's."""

    def __init__(self, endpoints: dict[str, str]) -> None:
        self.database = pymongo.MongoClient(endpoints["MONGO_URI"], tz_aware=True)["vid2mp3"]
        self.jobs = Jobs(self.database)
        self.emitter = EventEmitter(endpoints["BROKER_INGRESS_URL"], "convert")
        self.work_dir = LOCAL / "work" / "segment-tests"
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.owner_id = f"segments-{uuid.uuid4().hex[:8]}"

    def converter(self, *, cpus: int = 2, fan_out: FanOutPolicy | None = None) -> Converter:
        return Converter(jobs=self.jobs, sources=JobSources(self.database),
                         audio=MediaStore(self.database, AUDIO), emitter=self.emitter, work_dir=self.work_dir,
                         max_duration_seconds=3 * 3600, max_streams=32, ffmpeg_timeout_seconds=150,
                         audio_retention=timedelta(hours=1), cpus=cpus, segment_min_seconds=150, fan_out=fan_out,
                         tracks=MediaStore(self.database, TRACKS))

    def stage(self, source: Path) -> VideoUploaded:
        return stage_job(self.database, source, self.owner_id, BITRATE)

    def job(self, job_id: str) -> dict[str, Any]:
        return self.jobs.get(job_id) or {}

    def wait_final(self, job_id: str, timeout: float = 120) -> dict[str, Any]:
        return wait_for(lambda: (job := self.job(job_id)).get("state") in FINAL_STATES and job, timeout,
                        f"job {job_id} to end", interval=0.2)

    def mp3(self, job_id: str, target: Path) -> Path:
        """The job's MP3, found as the download function finds it: by the id on the job record."""
        with target.open("wb") as file:
            assert MediaStore(self.database, AUDIO).copy_to(self.job(job_id)["audio"]["audio_id"], file)
        return target

    def leftovers(self, job_id: str) -> dict[str, int]:
        """Files and chunks of the job's fan-out still stored, and chunks no files document owns."""
        counts = {bucket: self.database[f"{bucket}.files"].count_documents({"metadata.job_id": job_id})
                  for bucket in (TRACKS, SEGMENTS)}
        for bucket in (TRACKS, SEGMENTS, AUDIO):
            chunks = self.database[f"{bucket}.chunks"]
            owners = {owner for owner in chunks.distinct("files_id") if str(owner).startswith(job_id)}
            files = set(self.database[f"{bucket}.files"].distinct("_id"))
            counts[f"{bucket} orphan chunks"] = sum(chunks.count_documents({"files_id": owner})
                                                    for owner in owners - files)
        return counts


@pytest.fixture(scope="module")
def on_stack(endpoints: dict[str, str]) -> Iterator[OnStack]:
    stack = OnStack(endpoints)
    yield stack
    for job in stack.jobs.collection.find({"owner_id": stack.owner_id}):  # leave the store as it was found
        remove_job_media(stack.database, job)
        stack.jobs.delete(job["_id"])


def join_positions(job: dict[str, Any]) -> list[int]:
    """Where the segments meet, in samples of the decoded output (the first frame holds the encoder delay)."""
    return [segment["first_frame"] * 1152 - 576 for segment in job["encoding"]["segments"][1:]]


def assert_joined_like_a_single_pass(mp3: Path, expected: Reference, job: dict[str, Any]) -> list[float]:
    joined = decode(mp3)
    assert len(joined) == len(expected.source_pcm), "the MP3 decodes to the source's sample count"
    half = int(JOIN_WINDOW_SECONDS * expected.rate)
    for at in join_positions(job):  # aligned with the single pass on both sides of every join
        window = slice(at - expected.rate, at + expected.rate)
        assert best_lag(joined[window], expected.single_pcm[window], max_lag=1500) == 0
    deltas = [snr_db(joined, expected.source_pcm, at, half) - snr_db(expected.single_pcm, expected.source_pcm, at, half)
              for at in join_positions(job)]
    assert deltas and min(deltas) >= -0.5, f"SNR around the joins minus the single pass's (dB): {deltas}"
    return deltas


def test_a_long_video_is_encoded_in_segments_at_once_and_joins_like_a_single_pass(
        on_stack: OnStack, music: Reference, tmp_path: Path) -> None:
    event = on_stack.stage(music.source)
    on_stack.converter(cpus=2).handle(event)
    job = on_stack.job(event.job_id)
    assert job["state"] == JobState.DONE, job.get("failure")
    assert job["encoding"]["mode"] == Mode.SEGMENTS and len(job["encoding"]["segments"]) == 2
    assert len(job["encoding"]["encoded_after_seconds"]) == 2
    shown = job_view(job)["encoding"]  # what the owner sees of it
    assert shown["mode"] == Mode.SEGMENTS and shown["segments"] == 2 and shown["reason"]
    deltas = assert_joined_like_a_single_pass(on_stack.mp3(event.job_id, tmp_path / "joined.mp3"), music, job)
    print(f"segments in one instance: SNR at the join minus single pass: {deltas}")


def test_no_click_where_segments_meet_on_a_pure_tone(on_stack: OnStack, tone: Reference, tmp_path: Path) -> None:
    event = on_stack.stage(tone.source)
    on_stack.converter(cpus=2).handle(event)
    job = on_stack.job(event.job_id)
    joined = decode(on_stack.mp3(event.job_id, tmp_path / "joined.mp3"))
    assert len(joined) == len(tone.source_pcm)
    half = tone.rate // 10
    ratio = click_ratio(joined, tone.rate, TONE_HZ, join_positions(job), half)
    assert ratio <= 1.25, f"tone residual near the joins / elsewhere: {ratio:.2f}"


def test_cancel_stops_every_segment_ffmpeg_within_2_s(on_stack: OnStack, music: Reference) -> None:
    event = on_stack.stage(music.source)
    converter = on_stack.converter(cpus=2)
    worker = threading.Thread(target=converter.handle, args=(event,), daemon=True)
    worker.start()
    wait_for(lambda: len(processes_mentioning(f"{event.job_id}.")) >= 2, 30, "both segments' ffmpeg running")
    # Progress is summed over the segments while they encode.
    wait_for(lambda: (on_stack.job(event.job_id).get("progress") or {}).get("percent", 0) > 0, 10, "progress")
    Cancellation(on_stack.database, on_stack.jobs, on_stack.emitter).cancel(event.job_id, on_stack.owner_id)
    started = time.monotonic()
    wait_for(lambda: not processes_mentioning(f"{event.job_id}."), 2.0, "every segment's ffmpeg stopped")
    print(f"segment ffmpegs stopped {time.monotonic() - started:.2f} s after the cancel")
    worker.join(timeout=10)
    assert on_stack.job(event.job_id)["state"] == JobState.CANCELLED
    assert not MediaStore(on_stack.database, AUDIO).exists(event.job_id)


# --- The fan-out through the broker and the segment function --------------------------------------------------

@pytest.fixture
def fanned_out(on_stack: OnStack, music: Reference) -> Iterator[VideoUploaded]:
    """A 600 s video fanned out by convert (in this process) to the stack's segment function in 3 segments."""
    event = on_stack.stage(music.source)
    on_stack.converter(cpus=2, fan_out=FORCED_FAN_OUT).handle(event)
    job = on_stack.job(event.job_id)
    assert job["encoding"]["mode"] == Mode.FAN_OUT and job["fanout"]["count"] == 3
    yield event


def segment_events(job: dict[str, Any]) -> list[SegmentRequested]:
    specs = job["encoding"]["segments"]
    return [SegmentRequested(job_id=job["_id"], owner_id=job["owner_id"], attempt_id=job["fanout"]["attempt_id"],
                             index=index, count=len(specs), track_id=job["fanout"]["track_id"],
                             start_seconds=spec["start_seconds"], duration_seconds=spec["duration_seconds"],
                             skip_frames=spec["skip_frames"], keep_frames=spec["kept_frames"], bitrate_kbps=BITRATE)
            for index, spec in enumerate(specs)]


def test_a_fanned_out_video_is_encoded_by_segment_instances_and_joined(
        on_stack: OnStack, music: Reference, fanned_out: VideoUploaded, tmp_path: Path) -> None:
    job = on_stack.wait_final(fanned_out.job_id)
    assert job["state"] == JobState.DONE, job.get("failure")
    deltas = assert_joined_like_a_single_pass(on_stack.mp3(job["_id"], tmp_path / "joined.mp3"), music, job)
    print(f"fan-out: SNR at the joins minus single pass: {deltas}")
    assert sorted(job["fanout"]["done"]) == [0, 1, 2]
    assert on_stack.leftovers(job["_id"]) == {TRACKS: 0, SEGMENTS: 0, f"{TRACKS} orphan chunks": 0,
                                              f"{SEGMENTS} orphan chunks": 0, f"{AUDIO} orphan chunks": 0}
    assert not MediaStore(on_stack.database, SOURCES).exists(fanned_out.video_id), "the source is removed"
    assert on_stack.database[f"{COVERS}.files"].count_documents({"metadata.job_id": job["_id"]}) == 0


def test_a_redelivered_segment_event_makes_no_second_copy(
        on_stack: OnStack, endpoints: dict[str, str], fanned_out: VideoUploaded) -> None:
    job = on_stack.job(fanned_out.job_id)
    # Every segment delivered twice more while the fan-out runs (the broker delivers at least once).
    for _ in range(2):
        for duplicate in segment_events(job):
            on_stack.emitter.emit(duplicate)
    done = on_stack.wait_final(fanned_out.job_id)
    assert done["state"] == JobState.DONE, done.get("failure")
    sha256 = done["audio"]["sha256"]
    # Once more after the end: nothing happens to the finished job.
    for duplicate in segment_events(job):
        on_stack.emitter.emit(duplicate)
    time.sleep(3)
    after = on_stack.job(fanned_out.job_id)
    assert after["fanout"]["encodings"] == {"0": 1, "1": 1, "2": 1}, "each segment encoded once, delivered 4 times"
    assert after["audio"]["sha256"] == sha256
    assert on_stack.leftovers(fanned_out.job_id)[SEGMENTS] == 0


def test_cancel_mid_fan_out_stops_every_segment_and_leaves_nothing(
        on_stack: OnStack, fanned_out: VideoUploaded) -> None:
    wait_for(lambda: processes_mentioning(f"{fanned_out.job_id}."), 30, "a segment's ffmpeg running")
    # The segments' progress adds up on the job (it only rises).
    wait_for(lambda: (on_stack.job(fanned_out.job_id).get("progress") or {}).get("percent", 0) > 0, 10, "progress")
    Cancellation(on_stack.database, on_stack.jobs, on_stack.emitter).cancel(fanned_out.job_id, on_stack.owner_id)
    started = time.monotonic()
    wait_for(lambda: not processes_mentioning(f"{fanned_out.job_id}."), 2.0, "every segment's ffmpeg stopped")
    print(f"segment ffmpegs stopped {time.monotonic() - started:.2f} s after the cancel")
    assert on_stack.job(fanned_out.job_id)["state"] == JobState.CANCELLED
    # Segments still queued are delivered, find the job cancelled and do nothing.
    time.sleep(3)
    assert not processes_mentioning(f"{fanned_out.job_id}.")
    assert on_stack.leftovers(fanned_out.job_id) == {TRACKS: 0, SEGMENTS: 0, f"{TRACKS} orphan chunks": 0,
                                                     f"{SEGMENTS} orphan chunks": 0, f"{AUDIO} orphan chunks": 0}
    assert not MediaStore(on_stack.database, AUDIO).exists(fanned_out.job_id)


@pytest.mark.slow
def test_a_segment_worker_killed_mid_encode_is_retried_to_one_mp3(
        on_stack: OnStack, music: Reference, fanned_out: VideoUploaded, tmp_path: Path) -> None:
    wait_for(lambda: processes_mentioning(f"{fanned_out.job_id}."), 30, "a segment's ffmpeg running")
    kill_function("segment")
    job = on_stack.wait_final(fanned_out.job_id, timeout=180)
    assert job["state"] == JobState.DONE, job.get("failure")
    assert_joined_like_a_single_pass(on_stack.mp3(job["_id"], tmp_path / "joined.mp3"), music, job)
    assert on_stack.database["audio.files"].count_documents({"metadata.job_id": job["_id"]}) == 1
    wait_for(lambda: not any(on_stack.leftovers(job["_id"]).values()), 10, "no fan-out leftovers")


def test_reconcile_removes_the_tracks_and_segments_of_fan_outs_that_ended(on_stack: OnStack, tmp_path: Path) -> None:
    """What a segment worker that died before its clean-up left: removed once the job ended or moved to another
    attempt; a live fan-out's files stay."""
    clip = make_clip(tmp_path / "clip.mp4", seconds=1)
    live, ended = on_stack.stage(clip), on_stack.stage(clip)
    attempt = uuid.uuid4().hex
    on_stack.jobs.collection.update_one({"_id": live.job_id}, {"$set": {
        "state": JobState.CONVERTING, "attempt_id": attempt,
        "fanout": {"attempt_id": attempt, "join": {"worker_id": "joiner-now"}}}})
    on_stack.jobs.collection.update_one({"_id": ended.job_id}, {"$set": {
        "state": JobState.DONE, "attempt_id": attempt, "audio": {"audio_id": f"{ended.job_id}.joiner-now"}}})
    tracks, stored_segments = MediaStore(on_stack.database, TRACKS), MediaStore(on_stack.database, SEGMENTS)
    audio = MediaStore(on_stack.database, AUDIO)
    for job_id in (live.job_id, ended.job_id):  # the joiner whose MP3 counts, and one that lost its claim
        for joiner in ("joiner-now", "joiner-gone"):
            audio.store(f"{job_id}.{joiner}", [b"mp3"], filename="mp3",
                        metadata={"job_id": job_id, "attempt_id": attempt, "joined_by": joiner})
    for job_id in (live.job_id, ended.job_id):
        for owner_attempt in (attempt, uuid.uuid4().hex):  # the current attempt's files, and a superseded one's
            tracks.store(f"{job_id}.{owner_attempt[:16]}", [b"track"], filename="track",
                         metadata={"job_id": job_id, "attempt_id": owner_attempt})
            stored_segments.store(f"{job_id}.{owner_attempt}.0", [b"segment"], filename="segment",
                                  metadata={"job_id": job_id, "attempt_id": owner_attempt, "index": 0})
    reconciler = Reconciler(database=on_stack.database, jobs=on_stack.jobs, emitter=on_stack.emitter,
                            stuck_after=timedelta(minutes=30), max_redrives=3)
    try:
        assert reconciler.delete_fan_out_leftovers() == 8
        assert tracks.exists(f"{live.job_id}.{attempt[:16]}") and stored_segments.exists(f"{live.job_id}.{attempt}.0")
        assert [audio.exists(f"{job_id}.{joiner}") for job_id in (live.job_id, ended.job_id)
                for joiner in ("joiner-now", "joiner-gone")] == [True, False, True, False]
        assert on_stack.leftovers(live.job_id)[SEGMENTS] == on_stack.leftovers(live.job_id)[TRACKS] == 1
        assert on_stack.leftovers(ended.job_id)[TRACKS] == on_stack.leftovers(ended.job_id)[SEGMENTS] == 0
    finally:
        for job_id in (live.job_id, ended.job_id):
            remove_job_media(on_stack.database, {"_id": job_id, "video_id": job_id})
            on_stack.jobs.delete(job_id)


def test_a_camera_mov_with_pcm_audio_is_fanned_out_too(on_stack: OnStack, tmp_path: Path) -> None:
    """The track of a MOV keeps its container family (the MOV muxer takes PCM, which the MP4 one refuses)."""
    clip = tmp_path / "camera.mov"
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", "testsrc2=size=64x64:rate=5:d=30",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=30", "-c:v", "libx264",
                    "-preset", "ultrafast", "-c:a", "pcm_s16le", "-shortest", str(clip)], check=True)
    event = on_stack.stage(clip)
    on_stack.converter(fan_out=FanOutPolicy(min_seconds=10, segment_seconds=10, max_segments=3)).handle(event)
    job = on_stack.wait_final(event.job_id)
    assert job["state"] == JobState.DONE, job.get("failure")
    assert job["encoding"]["mode"] == Mode.FAN_OUT
    assert job["audio"]["duration_seconds"] == pytest.approx(30.0, abs=0.05)


def test_a_segment_dead_letter_fails_the_job_unless_a_live_worker_holds_the_segment(on_stack: OnStack,
                                                                                     tmp_path: Path) -> None:
    """A duplicate's dead letter while the segment's worker is alive changes nothing; a segment nobody holds, or a
    join that failed on every try, fails the job with the broker's code."""
    sink = Sink([202])
    dead_letters = DeadLetters(jobs=on_stack.jobs, emitter=EventEmitter(sink.url, "deadletter"))
    clip = make_clip(tmp_path / "clip.mp4", seconds=1)
    try:
        for case, fanout, failed in [
            ("held", {"done": [], "claims": {"0": {"until": datetime.now(UTC) + timedelta(seconds=10)}}}, False),
            ("lapsed", {"done": [], "claims": {"0": {"until": datetime.now(UTC) - timedelta(seconds=1)}}}, True),
            ("joining", {"done": [0, 1], "join": {"until": datetime.now(UTC) + timedelta(seconds=10)}}, False),
            ("join failed", {"done": [0, 1]}, True),
        ]:
            staged = on_stack.stage(clip)
            attempt = uuid.uuid4().hex
            on_stack.jobs.collection.update_one({"_id": staged.job_id}, {"$set": {
                "state": JobState.CONVERTING, "attempt_id": attempt,
                "fanout": {"attempt_id": attempt, "count": 2, "claims": {}, **fanout}}})
            letter = SegmentRequested(job_id=staged.job_id, owner_id=on_stack.owner_id, attempt_id=attempt, index=0,
                                      count=2, track_id="t", start_seconds=None, duration_seconds=1.0, skip_frames=0,
                                      keep_frames=10, bitrate_kbps=BITRATE)
            dead_letters.segment_undelivered(letter, "503")
            job = on_stack.job(staged.job_id)
            assert (job["state"] == JobState.FAILED) is failed, case
            if failed:
                assert job["failure"]["reason"] == "delivery_failed" and job["failure"]["error_code"] == "503", case
    finally:
        sink.close()


def test_the_cli_says_how_a_segmented_mp3_was_made() -> None:
    job = {"job_id": "j", "state": "done", "bitrate_kbps": 192, "history": [],
           "audio": {"duration_seconds": 600.0, "size_bytes": 1, "stream_copied": False},
           "encoding": {"mode": "segments", "reason": "600 s of audio: 2 segments at once on the 2 CPUs of this "
                                                      "instance", "segments": 2}}
    assert "2 segments at once" in describe(job)
    assert "segments" not in describe({**job, "encoding": {"mode": "one_pass", "reason": "short", "segments": 0}})


def test_a_fanned_out_job_is_one_trace_through_its_segments_and_the_join(
        on_stack: OnStack, endpoints: dict[str, str], tmp_path: Path) -> None:
    """The segment events carry the job's trace context: every segment's encode, its ffmpeg and the join's
    `audio converted` are spans of the one trace convert started."""
    event = on_stack.stage(make_clip(tmp_path / "clip.mp4", seconds=30))
    with a_trace_of_our_own() as (trace_id, convert_span_id):
        on_stack.converter(fan_out=FanOutPolicy(min_seconds=10, segment_seconds=10, max_segments=3)).handle(event)
    assert on_stack.wait_final(event.job_id)["state"] == JobState.DONE
    handled, joined = f"handle {SegmentRequested.event_type}", f"emit {AudioConverted.event_type}"
    trace = trace_holding(endpoints, trace_id, convert_span_id,
                          {("segment", handled), ("segment", "ffmpeg"), ("segment", joined)},
                          count=lambda trace: len(trace.named(handled, "segment")) >= 3)
    segments = trace.named(handled, "segment")
    assert sorted(span["tags"].get("vid2mp3.job_id") for span in segments) == [event.job_id] * len(segments)
    for ffmpeg in trace.named("ffmpeg", "segment"):
        assert any(ancestor in segments for ancestor in trace.ancestors(ffmpeg)), "each ffmpeg inside its segment"
