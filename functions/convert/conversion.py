"""Converts the video of a job to MP3: claim the job, probe, convert, check, store, finish, emit.

Idempotent on the job: a redelivered event for a finished job only re-emits what is still pending; a second
delivery while a live attempt holds the job's lease is answered "retry later"; an attempt that died (its lease ran
out) is taken over, and whatever it left in GridFS is removed before the MP3 is written again under the same id.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from events import AudioConverted, ConversionFailed, EventEmitter, FailureReason, VideoUploaded
from functions.convert import ffmpeg_tools
from functions.convert.ffmpeg_tools import Progress, Rejected, Stopped
from functions.shared.consumer import RetryLater
from functions.shared.jobs import FINAL_STATES, Job, Jobs, JobState, now
from functions.shared.media import MediaStore

log = logging.getLogger(__name__)

# A converter renews its lease every second while ffmpeg runs; a lease this old means the converter is gone.
LEASE = timedelta(seconds=10)


@dataclass
class Converter:
    jobs: Jobs
    videos: MediaStore
    audio: MediaStore
    emitter: EventEmitter
    work_dir: Path
    max_duration_seconds: float
    max_streams: int
    ffmpeg_timeout_seconds: float
    audio_retention: timedelta
    # How long the source video outlives its MP3 (zero: deleted as soon as the MP3 is stored).
    source_retention: timedelta = timedelta(0)

    def handle(self, event: VideoUploaded) -> None:
        job = self.jobs.get(event.job_id)
        # The broker ingress authenticates nobody: act only on a real job of the owner the event names.
        if job is None or job["owner_id"] != event.owner_id or job["video_id"] != event.video_id:
            log.warning("ignoring video uploaded for job %s: no such job for that owner and video", event.job_id)
            return
        if job["state"] in FINAL_STATES:
            self.jobs.flush_pending(job, self.emitter)
            return
        attempt_id = uuid.uuid4().hex
        claimed = self.jobs.claim_conversion(event.job_id, attempt_id, LEASE)
        if claimed is None:
            raise RetryLater(f"job {event.job_id} is being converted by another attempt")
        try:
            self.convert(claimed, attempt_id)
        except Exception:
            self.jobs.release(event.job_id, attempt_id)
            current = self.jobs.get(event.job_id)
            if current is not None and current["state"] == JobState.CANCELLED:
                # Cancelled under our feet (its video deleted mid-read, say): nothing left to retry.
                log.info("job %s was cancelled during its conversion", event.job_id)
                return
            raise

    def convert(self, job: Job, attempt_id: str) -> None:
        job_id = job["_id"]
        # What an attempt killed mid-conversion left behind (a copy of the video): this attempt holds the job now.
        for stale in self.work_dir.glob(f"{job_id}.*"):
            shutil.rmtree(stale, ignore_errors=True)
        workdir = Path(tempfile.mkdtemp(prefix=f"{job_id}.", dir=self.work_dir))
        try:
            source, target = workdir / "input", workdir / "audio.mp3"
            with source.open("wb") as file:
                found = self.videos.copy_to(job["video_id"], file)
            if not found:
                return self.fail(job, attempt_id, FailureReason.SOURCE_MISSING, "the uploaded video is gone")
            try:
                audio = self.transcode(job, attempt_id, source, target)
            except Rejected as rejected:
                return self.fail(job, attempt_id, rejected.reason, rejected.message)
            except Stopped:
                log.info("job %s: conversion stopped (cancelled or taken over)", job_id)
                return None
            self.store_and_finish(job, attempt_id, target, audio)
        except FileNotFoundError:
            if workdir.exists():
                raise
            # A newer attempt took the job over (this one's lease ran out) and cleared this folder: nothing to do.
            log.info("job %s: taken over by a newer attempt, which removed this attempt's work folder", job_id)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return None

    def transcode(self, job: Job, attempt_id: str, source: Path, target: Path) -> tuple[float, bool]:
        def heartbeat(progress: Progress) -> bool:
            return self.jobs.renew_lease(job["_id"], attempt_id, LEASE, progress.as_dict())

        def command(*, copy: bool) -> list[str]:
            return ffmpeg_tools.conversion_command(source, target, copy=copy, bitrate_kbps=job["bitrate_kbps"],
                                                   max_duration=self.max_duration_seconds)

        # The encode starts while ffprobe judges the input, on the other core: ffprobe takes ~60 ms, nearly all of
        # it loading ffmpeg's libraries, which would otherwise come before every encode (a 10 s clip's whole encode
        # takes 140 ms). It guesses from the container the upload recognised: an MP3 file is copied, anything else
        # re-encoded. Its output counts only once the probe has accepted the input and confirmed the guess; a
        # refusal or a wrong guess stops it on leaving the block.
        guessed_copy = job.get("container") == "mp3"
        with ffmpeg_tools.Encoding(command(copy=guessed_copy), timeout=self.ffmpeg_timeout_seconds) as encoding:
            probed = ffmpeg_tools.probe(source, max_streams=self.max_streams, max_duration=self.max_duration_seconds)
            copy = probed.audio_codec == "mp3"  # already MP3: copy the stream, do not re-encode it
            if copy == guessed_copy:
                encoding.wait(expected_duration=probed.audio_duration, heartbeat=heartbeat)
        if copy != guessed_copy:
            ffmpeg_tools.run(command(copy=copy), expected_duration=probed.audio_duration,
                             timeout=self.ffmpeg_timeout_seconds, heartbeat=heartbeat)
        duration = ffmpeg_tools.verify(target, expected_duration=probed.audio_duration,
                                       max_duration=self.max_duration_seconds)
        return duration, copy

    def store_and_finish(self, job: Job, attempt_id: str, target: Path, audio: tuple[float, bool]) -> None:
        job_id = job["_id"]
        duration, copied = audio
        if job["attempts"] > 1:  # the claim counted this attempt
            self.audio.remove(job_id)  # what an earlier attempt that died mid-write may have left behind
        with target.open("rb") as file:
            stored = self.audio.store_file(job_id, file, filename=f"{job_id}.mp3",
                                           metadata={"owner_id": job["owner_id"], "job_id": job_id})
        event = AudioConverted(
            job_id=job_id, owner_id=job["owner_id"], audio_id=stored.file_id, size_bytes=stored.size_bytes,
            sha256=stored.sha256, duration_seconds=duration, bitrate_kbps=None if copied else job["bitrate_kbps"],
            stream_copied=copied, converted_at=now(),
        )
        finished = self.jobs.finish(job_id, attempt_id, {
            "audio_id": stored.file_id, "size_bytes": stored.size_bytes, "sha256": stored.sha256,
            "duration_seconds": duration, "stream_copied": copied, "expires_at": now() + self.audio_retention,
        }, event, {"video_expires_at": now() + self.source_retention})
        if finished is None:
            current = self.jobs.get(job_id)
            if current is not None and current["state"] == JobState.CANCELLED:
                self.audio.remove(job_id)
            log.info("job %s changed hands before it finished; this attempt's result is dropped", job_id)
            return
        self.jobs.flush_pending(finished, self.emitter)
        # After the event, off its path: should this process die first, the expiry sweep deletes the video.
        if not self.source_retention:
            self.videos.remove(job["video_id"])
            self.jobs.update(job_id, {"state": JobState.DONE}, {"video_deleted_at": now()})

    def fail(self, job: Job, attempt_id: str, reason: FailureReason, message: str) -> None:
        log.info("job %s failed: %s: %s", job["_id"], reason, message)
        event = ConversionFailed(job_id=job["_id"], owner_id=job["owner_id"], reason=reason, message=message,
                                 failed_at=now())
        failed = self.jobs.fail(job["_id"], (JobState.CONVERTING,), {"reason": reason, "message": message}, event,
                                attempt_id=attempt_id)
        if failed is not None:
            self.jobs.flush_pending(failed, self.emitter)
