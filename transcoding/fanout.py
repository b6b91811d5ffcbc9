"""A fan-out across instances: convert copies a long job's audio track out of the video once, stores it, records the
fan-out on the job and emits one io.vid2mp3.segment.requested.v1 per segment; segment-encoding instances claim,
encode and store a segment each, and the one that completes the set (decided atomically on the job record) joins
them. The job record is the one source of truth: `fanout` on it holds the attempt, the segments done, each
segment's claim and progress, and the join's claim.

Idempotent: a segment already done, or claimed by a live worker, is not encoded again. Every update is guarded by
the attempt, and the track and segments are stored under ids naming the attempt (segments also the worker), so a
superseded attempt's or a displaced worker's late write or clean-up never touches the current one's.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from pymongo import ReturnDocument

from events import SegmentRequested
from jobs.records import Job, Jobs, JobState
from runtime.clock import now
from transcoding import ffmpeg_tools
from transcoding.ffmpeg_tools import AudioShape
from transcoding.plan import EncodingPlan

# The track keeps the container family of the video, so that its decoder behaves exactly as on the video (an MP4's
# AAC priming survives a copy into MOV, not into Matroska: 1024 samples more). The MOV muxer, not the MP4 one: it
# also takes the PCM of camera files. Other containers are not fanned out.
TRACK_FORMATS = {"mov,mp4,m4a,3gp,3g2,mj2": ("mov", "mov"), "matroska,webm": ("matroska", "mka")}
# How long a fan-out may go without a sign of life before the job counts as stalled: segment events can wait in
# the queue behind others, and a worker renews it every second while it encodes or joins.
FAN_OUT_LEASE = timedelta(minutes=5)
SEGMENT_LEASE = timedelta(seconds=10)
# The joiner renews its claim before each segment it joins; a joiner silent this long has died, and the broker's
# next try of a segment event (its retries span 31.5 s) takes the join over.
JOIN_LEASE = timedelta(seconds=20)


class Stopwatch:
    """Seconds per named step of a fan-out, recorded on the job for operators (and the bench's breakdown)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def lap(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.monotonic() - started, 3)


def can_fan_out(container: str) -> bool:
    return container in TRACK_FORMATS


def track_command(source: Path, track: Path, container: str, audio_track: int = 0) -> list[str]:
    """Copies the job's audio stream (`audio_track`, 0-based among the audio streams), untouched, into a file of
    its own: each segment worker then reads a few MB of audio instead of the whole video."""
    muxer, _ = TRACK_FORMATS[container]
    command = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-nostats", "-progress", "pipe:1"]
    for option, value in ffmpeg_tools.input_options().items():
        command += [f"-{option}", value]
    return [*command, "-i", str(source), "-map", f"0:a:{audio_track:d}", "-c", "copy", "-map_metadata", "-1",
            "-f", muxer, "-y", str(track)]


def segment_shape(fan_out: dict[str, Any]) -> AudioShape:
    """What a segment's encode applies, from the fan-out's record: the track file holds one stream, the job's."""
    recorded = fan_out.get("shape") or {}
    return AudioShape(track=0, channels=recorded.get("channels"), gain_db=recorded.get("gain_db"))


def track_file_id(job_id: str, attempt_id: str) -> str:
    # 64 bits of the attempt's id tell the attempts of one job apart, and keep the id a MediaId (≤ 64 characters).
    return f"{job_id}.{attempt_id[:16]}"


def tag_file_id(track_id: str) -> str:
    """The MP3's ID3 tag (with its cover), made by convert from the video and stored beside the track for the
    joiner, which has only the track."""
    return f"{track_id}.id3"


def joined_file_id(job_id: str, worker_id: str) -> str:
    """The MP3 a joiner writes: its own id, so a joiner that lost its claim can only ever remove its own write
    (the job record names the one that counts)."""
    return f"{job_id}.{worker_id[:12]}"


def segment_file_id(job_id: str, attempt_id: str, index: int, worker_id: str) -> str:
    """One per worker: a worker that lost its claim can only ever remove its own copy, never the one that counts."""
    return f"{job_id}.{attempt_id}.{index}.{worker_id[:12]}"


def segment_events(job: Job, attempt_id: str, track_id: str, encoding_plan: EncodingPlan) -> list[SegmentRequested]:
    count = len(encoding_plan.segments)
    return [SegmentRequested(job_id=job["_id"], owner_id=job["owner_id"], attempt_id=attempt_id, index=index,
                             count=count, track_id=track_id, start_seconds=segment.start_seconds,
                             duration_seconds=segment.duration_seconds, skip_frames=segment.skip_frames,
                             keep_frames=segment.kept_frames, bitrate_kbps=job["bitrate_kbps"])
            for index, segment in enumerate(encoding_plan.segments)]


@dataclass
class FanOutRecord:
    """The fan-out's state on the job record; every change is one atomic update guarded by the attempt."""

    jobs: Jobs

    def _of_attempt(self, job_id: str, attempt_id: str) -> dict[str, Any]:
        # The job's own attempt too: a newer claim of the job supersedes this fan-out at once.
        return {"_id": job_id, "state": JobState.CONVERTING, "attempt_id": attempt_id,
                "fanout.attempt_id": attempt_id}

    def _update(self, query: dict[str, Any], update: dict[str, Any]) -> Job | None:
        return self.jobs.collection.find_one_and_update(query, update, return_document=ReturnDocument.AFTER)

    def start(self, job_id: str, attempt_id: str, track_id: str, encoding_plan: EncodingPlan,
              expected_duration: float | None, timings: dict[str, float],
              shape: AudioShape | None = None) -> Job | None:
        """Records the fan-out for the attempt that holds the job (with what every segment's encode applies besides
        the event's range and bitrate: channels, the loudness gain); None when the attempt no longer holds it."""
        fanout = {"attempt_id": attempt_id, "count": len(encoding_plan.segments), "track_id": track_id,
                  "shape": {"channels": shape.channels, "gain_db": shape.gain_db} if shape else {},
                  "expected_duration": expected_duration, "done": [], "claims": {}, "progress": {}, "encodings": {},
                  "files": {}, "timings": {"convert": timings}, "started_at": now(), "emitted": False}
        # The job keeps convert's short lease until every segment event is out (`emitted`): should convert die
        # half way, the lease lapses within seconds and a retry of its event starts the fan-out over.
        return self._update({"_id": job_id, "state": JobState.CONVERTING, "attempt_id": attempt_id},
                            {"$set": {"fanout": fanout, "encoding": encoding_plan.as_record(), "updated_at": now(),
                                      "progress": {"percent": 0.0, "eta_seconds": None}}})

    def emitted(self, job_id: str, attempt_id: str) -> Job | None:
        """Every segment event is out: workers may claim segments, and the job lives on their lease."""
        return self._update({"_id": job_id, "state": JobState.CONVERTING, "attempt_id": attempt_id,
                             "fanout.attempt_id": attempt_id},
                            {"$set": {"fanout.emitted": True, "lease_until": now() + FAN_OUT_LEASE,
                                      "updated_at": now()}})

    def claim_segment(self, job_id: str, attempt_id: str, index: int, worker_id: str) -> Job | None:
        """This worker's claim on a segment not done yet and not claimed by a live worker; None otherwise."""
        claim = f"fanout.claims.{index}"
        return self._update(
            {**self._of_attempt(job_id, attempt_id), "fanout.emitted": True, "fanout.done": {"$ne": index},
             "$or": [{claim: {"$exists": False}}, {f"{claim}.until": {"$lt": now()}}]},
            {"$set": {claim: {"worker_id": worker_id, "until": now() + SEGMENT_LEASE, "started_at": now()},
                      "lease_until": now() + FAN_OUT_LEASE, "updated_at": now()},
             # How often each segment was taken up: 1 unless a worker died or gave up on it.
             "$inc": {f"fanout.encodings.{index}": 1}})

    def renew_segment(self, job_id: str, attempt_id: str, index: int, worker_id: str, percent: float) -> bool:
        """Keeps the claim and the job's lease alive and records the segment's progress; False when the claim is
        gone (the job was cancelled, failed or taken over): the worker must stop."""
        claimed = self._update(
            {**self._of_attempt(job_id, attempt_id), f"fanout.claims.{index}.worker_id": worker_id},
            {"$set": {f"fanout.claims.{index}.until": now() + SEGMENT_LEASE, f"fanout.progress.{index}": percent,
                      "lease_until": now() + FAN_OUT_LEASE, "updated_at": now()}})
        if claimed is None:
            return False
        fanout = claimed["fanout"]
        # The job's progress is the mean over the segments (done ones count whole); it only ever rises.
        shares = [100.0 if n in fanout["done"] else float(fanout["progress"].get(str(n), 0.0))
                  for n in range(fanout["count"])]
        self.jobs.collection.update_one(self._of_attempt(job_id, attempt_id),
                                        {"$max": {"progress.percent": round(sum(shares) / len(shares), 1)}})
        return True

    def segment_done(self, job_id: str, attempt_id: str, index: int, worker_id: str, file_id: str,
                     timings: dict[str, float]) -> Job | None:
        """Marks the segment done for its claimant, with the file that holds it; the record after, or None when
        the claim was lost."""
        return self._update(
            {**self._of_attempt(job_id, attempt_id), f"fanout.claims.{index}.worker_id": worker_id,
             "fanout.done": {"$ne": index}},
            {"$push": {"fanout.done": index}, "$unset": {f"fanout.claims.{index}": ""},
             "$set": {f"fanout.progress.{index}": 100.0, f"fanout.files.{index}": file_id,
                      f"fanout.timings.{index}": {**timings, "done_at": now()},
                      "updated_at": now(), "lease_until": now() + FAN_OUT_LEASE}})

    def claim_join(self, job_id: str, attempt_id: str, count: int, worker_id: str) -> Job | None:
        """The join, for one worker at a time once every segment is done; None while another live worker has it."""
        return self._update(
            {**self._of_attempt(job_id, attempt_id), "fanout.done": {"$size": count},
             "$or": [{"fanout.join": {"$exists": False}}, {"fanout.join.until": {"$lt": now()}}]},
            {"$set": {"fanout.join": {"worker_id": worker_id, "until": now() + JOIN_LEASE},
                      "lease_until": now() + FAN_OUT_LEASE, "updated_at": now()}})

    def renew_join(self, job_id: str, attempt_id: str, worker_id: str) -> bool:
        """False when the join is no longer this worker's (cancelled, failed, or taken over): it must stop."""
        renewed = self.jobs.collection.update_one(
            {**self._of_attempt(job_id, attempt_id), "fanout.join.worker_id": worker_id},
            {"$set": {"fanout.join.until": now() + JOIN_LEASE, "lease_until": now() + FAN_OUT_LEASE}})
        return renewed.matched_count == 1

    def release_segment(self, job_id: str, attempt_id: str, index: int, worker_id: str) -> None:
        """Lets the broker's next try take the segment over at once, after this worker failed on it."""
        self.jobs.collection.update_one(
            {**self._of_attempt(job_id, attempt_id), f"fanout.claims.{index}.worker_id": worker_id},
            {"$set": {f"fanout.claims.{index}.until": now()}})

    def release_join(self, job_id: str, attempt_id: str, worker_id: str) -> None:
        """Lets the broker's next try of a segment event take the join over at once, after this one failed."""
        self.jobs.collection.update_one({**self._of_attempt(job_id, attempt_id), "fanout.join.worker_id": worker_id},
                                        {"$set": {"fanout.join.until": now()}})
