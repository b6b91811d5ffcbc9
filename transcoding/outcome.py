"""How a conversion attempt ends, whichever function made the MP3 (convert in one pass or in segments, or the
segment-encoding function that joins a fan-out): the MP3 stored in GridFS, the job finished or failed with its
event in the outbox, the event emitted, the job's source and covers removed."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from events import AudioConverted, ChapterFile, ConversionFailed, EventEmitter, FailureReason
from jobs.records import Job, Jobs, JobState
from runtime.clock import now
from storage.media import JobSources, MediaStore, StoredFile
from transcoding import chapter_files, ffmpeg_tools, segments
from transcoding.mp3join import JoinError, SegmentPlan

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Encoded:
    """The MP3 an attempt made: its length, whether the stream was copied, the plan it followed (with timings),
    and where it is stored, when it was stored as it was made."""

    duration_seconds: float
    stream_copied: bool
    plan: dict[str, Any] = field(default_factory=dict)
    stored: StoredFile | None = None
    # A VBR MP3's average bitrate (a CBR one has the job's).
    average_kbps: int | None = None


@dataclass
class Outcome:
    jobs: Jobs
    sources: JobSources
    audio: MediaStore
    emitter: EventEmitter
    audio_retention: timedelta
    # How long the job's source and covers outlive its MP3 (zero: deleted as soon as the MP3 is stored).
    source_retention: timedelta = timedelta(0)

    def clear_earlier_attempts_audio(self, job: Job) -> None:
        if job["attempts"] > 1:  # the claim counted this attempt
            self.audio.remove(job["_id"])  # what an earlier attempt that died mid-write may have left behind

    def store_joined(self, job: Job, parts: Iterable[tuple[bytes, SegmentPlan]], target: Path, *,
                     expected_duration: float | None, max_duration: float, plan: dict[str, Any],
                     file_id: str | None = None, metadata: dict[str, Any] | None = None, head: bytes = b"") -> Encoded:
        """Joins the segments' MP3s as they come and streams the result into GridFS meanwhile, under `file_id`
        (the job's id unless given); the stored file is removed again unless the joined MP3 passes the output
        check."""
        job_id = job["_id"]
        file_id = file_id or job_id
        if file_id == job_id:
            # Whatever an earlier attempt left half-written under the same id.
            self.clear_earlier_attempts_audio(job)
        self.audio.store(file_id, segments.joined_mp3(parts, target, head), filename=f"{job_id}.mp3",
                         metadata={"owner_id": job["owner_id"], "job_id": job_id, **(metadata or {})})
        try:
            with target.open("rb") as file:
                stored = self.audio.rewrite_head(file_id, file)
            duration = ffmpeg_tools.verify(target, expected_duration=expected_duration, max_duration=max_duration)
        except BaseException:
            self.audio.remove(file_id)
            raise
        return Encoded(duration, False, plan, stored)

    def finish(self, job: Job, attempt_id: str, target: Path, encoded: Encoded,
               guard: dict[str, Any] | None = None) -> bool:
        """True when this attempt finished the job (False: it changed hands, or ended, meanwhile). `guard`: what
        else the job record must still say (a joiner's claim)."""
        job_id = job["_id"]
        stored = encoded.stored
        if stored is None:
            self.clear_earlier_attempts_audio(job)
            with target.open("rb") as file:
                stored = self.audio.store_file(job_id, file, filename=f"{job_id}.mp3",
                                               metadata={"owner_id": job["owner_id"], "job_id": job_id})
        try:
            chapters = self.chapter_files(job, target)
        except JoinError as error:
            failed = self.fail(job, attempt_id, FailureReason.INVALID_OUTPUT,
                               f"the chapter files could not be cut: {error}")
            if failed or stored.file_id != job_id:  # the job's id may be a newer attempt's MP3 by now
                self.audio.remove(stored.file_id)
            return False
        copied = encoded.stream_copied
        event = AudioConverted(
            job_id=job_id, owner_id=job["owner_id"], audio_id=stored.file_id, size_bytes=stored.size_bytes,
            sha256=stored.sha256, duration_seconds=encoded.duration_seconds,
            bitrate_kbps=None if copied else encoded.average_kbps or job["bitrate_kbps"], stream_copied=copied,
            converted_at=now(), chapters=job.get("chapters"),
            chapter_files=[ChapterFile.model_validate(chapter) for chapter in chapters] if chapters else None,
        )
        finished = self.jobs.finish(job_id, attempt_id, {
            "audio_id": stored.file_id, "size_bytes": stored.size_bytes, "sha256": stored.sha256,
            "duration_seconds": encoded.duration_seconds, "stream_copied": copied,
            "expires_at": now() + self.audio_retention, **({"chapter_files": chapters} if chapters else {}),
        }, event, {"video_expires_at": now() + self.source_retention, "encoding": encoded.plan}, guard=guard)
        if finished is None:
            current = self.jobs.get(job_id)
            # A file of this attempt's own is no one else's; the job's id may be another attempt's write by now,
            # unless the job has ended without an MP3 or was deleted by its owner.
            if stored.file_id != job_id or current is None \
                    or current["state"] in (JobState.CANCELLED, JobState.FAILED):
                self.audio.remove(stored.file_id)
            chapter_files.remove_chapter_files(self.audio, chapters)  # this attempt's own ids, whoever won
            log.info("job %s changed hands before it finished; this attempt's result is dropped", job_id)
            return False
        self.jobs.flush_pending(finished, self.emitter)
        # After the event, off its path: should this process die first, the expiry sweep deletes the source.
        if not self.source_retention:
            self.sources.remove(job)
            self.jobs.update(job_id, {"state": JobState.DONE}, {"video_deleted_at": now()})
        return True

    def chapter_files(self, job: Job, target: Path) -> list[dict[str, Any]]:
        """One MP3 per chapter, cut from the finished MP3 and stored, when the job asked (`split=chapters`)."""
        if (job.get("options") or {}).get("split") != "chapters" or not job.get("chapters"):
            return []
        return chapter_files.store_chapter_files(target, job["chapters"], self.audio, job_id=job["_id"],
                                                 owner_id=job["owner_id"])

    def fail(self, job: Job, attempt_id: str, reason: FailureReason, message: str) -> bool:
        """True when this attempt failed the job (False: it had changed hands or ended)."""
        log.info("job %s failed: %s: %s", job["_id"], reason, message)
        event = ConversionFailed(job_id=job["_id"], owner_id=job["owner_id"], reason=reason, message=message,
                                 failed_at=now())
        failed = self.jobs.fail(job["_id"], (JobState.CONVERTING,), {"reason": reason, "message": message}, event,
                                attempt_id=attempt_id)
        if failed is not None:
            self.jobs.flush_pending(failed, self.emitter)
        return failed is not None
