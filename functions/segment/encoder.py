"""Encodes one segment of a fanned-out job (transcoding/fanout.py): claim it on the job record, copy the job's
audio track out of GridFS, encode the segment's time range with the same locked-down ffmpeg as convert, store the
MP3 segment, mark it done; the worker that completes the set joins the segments into the job's MP3 and finishes
the job as convert would.

A redelivered event for a segment already done makes no second copy; one for a segment a live worker holds is
acknowledged as soon as that worker renews its claim (it leaves the dispatcher's worker at once, instead of
waiting through the Trigger's backoff); a worker killed mid-encode loses its claim within seconds and the broker's
retry of its own delivery takes it over. A segment that cannot be encoded fails the job with the reason; the
dead-letter sink fails it when the broker gives up. A cancel ends every segment's ffmpeg at its next heartbeat.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pymongo.database import Database

from events import FailureReason, RetryLater, SegmentRequested
from jobs.leases import Held, Settled, claim_unless_held
from jobs.records import FINAL_STATES, Job, JobState
from runtime.clock import now
from storage.media import SEGMENTS, TRACKS, MediaStore, remove_fan_out_media
from storage.scratch import work_folder
from transcoding import ffmpeg_tools
from transcoding.fanout import (
    SEGMENT_LEASE,
    FanOutRecord,
    Stopwatch,
    joined_file_id,
    segment_file_id,
    segment_shape,
    tag_file_id,
)
from transcoding.ffmpeg_tools import Progress, Rejected, Stopped
from transcoding.mp3join import JoinError, SegmentPlan
from transcoding.outcome import Outcome

log = logging.getLogger(__name__)


@dataclass
class SegmentEncoder:
    database: Database[dict[str, Any]]
    outcome: Outcome
    work_dir: Path
    max_duration_seconds: float
    ffmpeg_timeout_seconds: float

    def __post_init__(self) -> None:
        self.record = FanOutRecord(self.outcome.jobs)
        self.tracks = MediaStore(self.database, TRACKS)
        self.segments = MediaStore(self.database, SEGMENTS)

    def handle(self, event: SegmentRequested) -> None:
        job = self.outcome.jobs.get(event.job_id)
        # The broker ingress authenticates nobody: act only on a live fan-out of this attempt of the owner's job.
        if job is None or job["owner_id"] != event.owner_id:
            log.warning("ignoring segment %d of job %s: no such job for that owner", event.index, event.job_id)
            return
        fan = job.get("fanout") or {}
        if job["state"] in FINAL_STATES:
            self.outcome.jobs.flush_pending(job, self.outcome.emitter)  # what a joiner that died after it left
            return
        if job["state"] != JobState.CONVERTING or fan.get("attempt_id") != event.attempt_id:
            log.info("segment %d of job %s: the job is %s and attempt %s is not its fan-out; nothing to do",
                     event.index, event.job_id, job["state"], event.attempt_id)
            return
        worker_id = uuid.uuid4().hex
        if event.index not in fan["done"]:
            claimed = self.record.claim_segment(event.job_id, event.attempt_id, event.index, worker_id) \
                or self.claim_unless_held(event, worker_id)
            if claimed is None:
                return
            job = claimed
            if event.index not in claimed["fanout"]["done"]:
                try:
                    done = self.encode_and_store(claimed, event, worker_id)
                except Exception:
                    self.record.release_segment(event.job_id, event.attempt_id, event.index, worker_id)
                    raise
                if done is None:
                    return
                job = done
        if len(job["fanout"]["done"]) == event.count:
            self.join(job, event, worker_id)

    def claim_unless_held(self, event: SegmentRequested, worker_id: str) -> Job | None:
        """The record once this worker claimed the segment (its holder stopped renewing) or once the segment is done
        (for the join that may follow); None when this delivery has nothing to do: the fan-out ended, or a live
        worker holds the segment (jobs/leases.py)."""
        def look() -> Held | Settled[Job] | None:
            job = self.outcome.jobs.get(event.job_id)
            fan = (job or {}).get("fanout") or {}
            if job is None or job["state"] != JobState.CONVERTING or fan.get("attempt_id") != event.attempt_id:
                if job is not None and job["state"] in FINAL_STATES:
                    self.outcome.jobs.flush_pending(job, self.outcome.emitter)
                return Settled(None)
            if event.index in fan["done"]:
                return Settled(job)
            claim = fan.get("claims", {}).get(str(event.index))
            return Held(claim["worker_id"], claim["until"]) if claim is not None and claim["until"] > now() else None

        return claim_unless_held(
            look, lambda: self.record.claim_segment(event.job_id, event.attempt_id, event.index, worker_id),
            SEGMENT_LEASE, f"segment {event.index} of job {event.job_id}")

    def encode_and_store(self, job: Job, event: SegmentRequested, worker_id: str) -> Job | None:
        """The record after this segment is marked done; None when the attempt ended meanwhile (nothing left)."""
        file_id = segment_file_id(event.job_id, event.attempt_id, event.index, worker_id)

        def heartbeat(progress: Progress) -> bool:
            return self.record.renew_segment(event.job_id, event.attempt_id, event.index, worker_id, progress.percent)

        timings = Stopwatch()
        # What a worker killed on this segment before left in this pod's scratch volume (it outlives the container)
        # goes: this worker holds the segment now.
        with work_folder(self.work_dir, f"{event.job_id}.{event.index}.", clear_stale=True) as folder:
            track, output = folder / "track", folder / "segment.mp3"
            with track.open("wb") as track_file, timings.lap("track_read"):
                found = self.tracks.copy_to(event.track_id, track_file)
            if not found:
                self.outcome.fail(job, event.attempt_id, FailureReason.SOURCE_MISSING,
                                  "the audio track of the fanned-out job is gone")
                return None
            command = ffmpeg_tools.conversion_command(
                track, output, copy=False, bitrate_kbps=event.bitrate_kbps, max_duration=self.max_duration_seconds,
                start_seconds=event.start_seconds, duration_seconds=event.duration_seconds,
                shape=segment_shape(job.get("fanout") or {}))
            try:
                with timings.lap("encode"):
                    # Each heartbeat writes the claim: once a second, not at the converter's pace.
                    ffmpeg_tools.run(command, expected_duration=event.duration_seconds or self.rest_of(job, event),
                                     timeout=self.ffmpeg_timeout_seconds, heartbeat=heartbeat, heartbeat_seconds=1.0)
            except Stopped:
                log.info("segment %d of job %s stopped (cancelled or taken over)", event.index, event.job_id)
                return None
            except Rejected as rejected:
                self.fail(job, event, rejected.reason, f"segment {event.index + 1} of {event.count}: "
                                                       f"{rejected.message}")
                return None
            if not heartbeat(Progress(percent=100.0)):  # still this worker's segment, for the store that follows
                return None
            with output.open("rb") as segment_file, timings.lap("store"):
                self.segments.store_file(file_id, segment_file, filename=f"{file_id}.mp3",
                                         metadata={"job_id": event.job_id, "attempt_id": event.attempt_id,
                                                   "index": event.index})
        done = self.record.segment_done(event.job_id, event.attempt_id, event.index, worker_id, file_id,
                                        timings.seconds)
        if done is None:
            # Cancelled, failed or superseded while it encoded: its segment is of no use to anyone.
            self.segments.remove(file_id)
        return done

    def join(self, job: Job, event: SegmentRequested, worker_id: str) -> None:
        joining = self.record.claim_join(event.job_id, event.attempt_id, event.count, worker_id)
        if joining is None:
            current = self.outcome.jobs.get(event.job_id) or {}
            if current.get("state") != JobState.CONVERTING:
                return  # joined and finished (or ended otherwise) meanwhile
            # Another worker joins now; should it die, a later try of this event takes the join over.
            raise RetryLater(f"job {event.job_id}: another worker is joining its segments")
        fan, encoding_plan = joining["fanout"], dict(joining.get("encoding") or {})
        specs = [SegmentPlan(**segment) for segment in encoding_plan.get("segments", [])]
        with work_folder(self.work_dir, f"{event.job_id}.join.") as folder:
            target = folder / "audio.mp3"
            started = time.monotonic()
            try:
                encoded = self.outcome.store_joined(
                    joining, self.stored_segments(event, fan, specs, worker_id), target,
                    expected_duration=fan.get("expected_duration"), max_duration=self.max_duration_seconds,
                    plan=encoding_plan, file_id=joined_file_id(event.job_id, worker_id),
                    metadata={"attempt_id": event.attempt_id, "joined_by": worker_id},
                    head=self.stored_tag(fan["track_id"]))
            except (Rejected, JoinError) as problem:
                reason = problem.reason if isinstance(problem, Rejected) else FailureReason.INVALID_OUTPUT
                self.fail(joining, event, reason, f"the segments could not be joined: {problem}")
                return
            except Stopped:
                log.info("job %s: the join was stopped (cancelled, failed or taken over)", event.job_id)
                return
            except Exception:
                self.record.release_join(event.job_id, event.attempt_id, worker_id)
                raise
            # Reading the segments, joining them and writing the MP3 overlap: one figure.
            encoding_plan["join_seconds"] = round(time.monotonic() - started, 3)
            finished = self.outcome.finish(joining, event.attempt_id, target, encoded,
                                           guard={"fanout.join.worker_id": worker_id})
        if finished:
            remove_fan_out_media(self.database, event.job_id)

    def stored_segments(self, event: SegmentRequested, fan_out: dict[str, Any], specs: list[SegmentPlan],
                        worker_id: str) -> Iterator[tuple[bytes, SegmentPlan]]:
        """Each stored segment in order, the join's claim renewed before each."""
        for index, spec in enumerate(specs):
            if not self.record.renew_join(event.job_id, event.attempt_id, worker_id):
                raise Stopped()
            source = self.segments.open(fan_out["files"][str(index)])
            if source is None:
                raise RetryLater(f"segment {index} of job {event.job_id} is marked done but not stored")
            with source:
                yield source.read(), spec

    def stored_tag(self, track_id: str) -> bytes:
        """The MP3's ID3 tag, which convert stored beside the track (none for a fan-out started before tags)."""
        stored = self.tracks.open(tag_file_id(track_id))
        if stored is None:
            return b""
        with stored:
            return stored.read()

    @staticmethod
    def rest_of(job: Job, event: SegmentRequested) -> float | None:
        """The last segment's length: from its start to the end of the audio."""
        total = (job.get("fanout") or {}).get("expected_duration")
        return None if total is None else max(1.0, total - (event.start_seconds or 0.0))

    def fail(self, job: Job, event: SegmentRequested, reason: FailureReason, message: str) -> None:
        if self.outcome.fail(job, event.attempt_id, reason, message):
            remove_fan_out_media(self.database, event.job_id)
