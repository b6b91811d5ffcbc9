"""The reconcile sweeps. The broker can lose an event in narrow windows (it acks before a dead-letter publish is
confirmed) and a converter or an upload can die with its pod; the job records say what should have happened next.

The sweeps query only the live jobs (`jobs`: open ones, and those ended within about a day); settled ones are moved
to the finished history and purged when their lifetime ends (functions/reconcile/lifetimes.py), so a sweep costs
the same however many finished jobs are kept. The steps that delete are paced (storage/pacing.py), one
file or job per unit of work, resting between a file's commands too, and leave what their time per sweep does not
reach to the next sweep."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pymongo.database import Database

from events import ConversionFailed, EmitError, EventEmitter, FailureReason, VideoUploaded
from events.options import ConversionOptions
from functions.reconcile.lifetimes import SETTLE_AFTER, Lifetimes, PurgeReport
from jobs.records import Job, Jobs, JobState
from runtime import telemetry
from runtime.clock import now
from storage.media import (
    AUDIO,
    COVERS,
    SEGMENTS,
    SOURCES,
    TRACKS,
    VIDEOS,
    JobSources,
    MediaStore,
    abandoned_writes,
    remove_job_media,
)
from storage.pacing import Pacing
from storage.unfinished_uploads import remove_expired, remove_finished

log = logging.getLogger(__name__)

# An event still pending this long after its write was not emitted by the function that wrote it.
PENDING_GRACE = timedelta(seconds=30)
# A converter may still be writing for this long after its job was cancelled (until its ffmpeg deadline passes),
# so a recently cancelled job's media are deleted again at every sweep; the job stays live that long.
CANCELLED_RECHECK = SETTLE_AFTER
# A source or cover is stored a moment before its job is recorded: one this old without a job was left by an upload
# that died in between (or failed to record it).
UNOWNED_GRACE = timedelta(hours=1)
# An import's fetch renews its lease every second (functions/upload/imports.py): one lapsed this long ended with its
# process (scale-to-zero, a restart), and its bytes went with it.
IMPORT_INTERRUPTED_AFTER = timedelta(minutes=2)
IMPORT_INTERRUPTED = "the import stopped before the video was fetched (the server restarted); import it again"
# A write of a stored file takes seconds; one still recorded under way after this long was killed.
ABANDONED_AFTER = timedelta(hours=1)


@dataclass
class SweepReport:
    reemitted: int = 0
    redriven: int = 0
    failed: int = 0
    imports_interrupted: int = 0
    expired: int = 0
    sources_deleted: int = 0
    cancelled_cleaned: int = 0
    finished_upload_videos_removed: int = 0
    unowned_sources_removed: int = 0
    fan_out_leftovers_removed: int = 0
    orphans_removed: int = 0
    unfinished_uploads_expired: int = 0
    lifetimes: PurgeReport = field(default_factory=PurgeReport)


@dataclass
class Reconciler:
    database: Database[dict[str, Any]]
    jobs: Jobs
    emitter: EventEmitter
    stuck_after: timedelta
    max_redrives: int
    pending_grace: timedelta = PENDING_GRACE
    # Settles ended jobs and purges them (and login-throttle rows) when their lifetime ends; None: kept for ever.
    lifetimes: Lifetimes | None = None
    # How the deleting steps share the database with uploads, and their time per sweep (shared with `lifetimes`).
    pacing: Pacing = field(default_factory=Pacing)
    abandoned_after: timedelta = ABANDONED_AFTER

    def run(self) -> SweepReport:
        report = SweepReport()
        self.pacing.begin()
        for job in self.jobs.with_pending_older_than(self.pending_grace):
            try:
                self.jobs.flush_pending(job, self.emitter)
                report.reemitted += 1
            except EmitError as error:
                log.warning("job %s: pending event still not emitted: %s", job["_id"], error)
        for job in self.jobs.stalled(self.stuck_after):
            if self.redrive_or_fail(job):
                report.redriven += 1
            else:
                report.failed += 1
        report.imports_interrupted = self.fail_interrupted_imports()
        report.expired = self.delete_expired_audio()
        report.sources_deleted = self.delete_expired_sources()
        report.cancelled_cleaned = self.delete_cancelled_media()
        report.fan_out_leftovers_removed = self.delete_fan_out_leftovers()
        report.unfinished_uploads_expired = remove_expired(
            self.database, lambda job_id: self.jobs.get(job_id) is not None, each=self.pacing.each,
            pace=self.pacing.breathe)
        report.finished_upload_videos_removed = remove_finished(
            self.database, self.is_legacy_source, each=self.pacing.each, pace=self.pacing.breathe)
        report.unowned_sources_removed = self.delete_unowned_sources()
        report.orphans_removed = self.remove_abandoned_writes()
        if self.lifetimes is not None:
            report.lifetimes = self.lifetimes.run()
        log.info("reconcile: %s", report)
        return report

    def redrive_or_fail(self, job: Job) -> bool:
        """True when the job was sent round again, False when it ran out of redrives and was failed."""
        if job.get("redrives", 0) < self.max_redrives:
            claimed = self.jobs.update(job["_id"], {"state": job["state"], "updated_at": job["updated_at"]},
                                       {"updated_at": now(), "redrives": job.get("redrives", 0) + 1})
            if claimed is not None:
                with telemetry.resumed(job.get("trace"), "send round again", **{telemetry.JOB_ID: job["_id"]}):
                    self.emit_uploaded_again(job)
            return True
        message = f"the job made no progress for {self.stuck_after.total_seconds():.0f} s, " \
                  f"{self.max_redrives} times over"
        failed = self.jobs.fail(
            job["_id"], (JobState.UPLOADED, JobState.CONVERTING),
            {"reason": FailureReason.STUCK, "message": message},
            ConversionFailed(job_id=job["_id"], owner_id=job["owner_id"], reason=FailureReason.STUCK,
                             message=message, failed_at=now()),
        )
        if failed is not None:
            self.jobs.flush_pending(failed, self.emitter)
        return False

    def fail_interrupted_imports(self) -> int:
        """Imports whose process died mid-fetch: failed with why, and what they had stored removed."""
        count = 0
        for job in self.jobs.interrupted_imports(IMPORT_INTERRUPTED_AFTER):
            failed = self.jobs.fail(
                job["_id"], (JobState.IMPORTING,),
                {"reason": FailureReason.IMPORT_FAILED, "message": IMPORT_INTERRUPTED, "error": "import_interrupted"},
                ConversionFailed(job_id=job["_id"], owner_id=job["owner_id"], reason=FailureReason.IMPORT_FAILED,
                                 message=IMPORT_INTERRUPTED, failed_at=now()),
                attempt_id=job.get("attempt_id"))
            if failed is not None:
                remove_job_media(self.database, failed)
                self.jobs.flush_pending(failed, self.emitter)
                count += 1
        return count

    def emit_uploaded_again(self, job: Job) -> None:
        self.emitter.emit(VideoUploaded(
            job_id=job["_id"], owner_id=job["owner_id"], video_id=job["video_id"], filename=job["filename"],
            size_bytes=job["size_bytes"], sha256=job["sha256"], bitrate_kbps=job["bitrate_kbps"],
            uploaded_at=job["created_at"], options=ConversionOptions.model_validate(job["options"])
            if job.get("options") else None, stored_bytes=job.get("stored_bytes"),
        ))

    def delete_expired_audio(self) -> int:
        audio = MediaStore(self.database, AUDIO)
        expired = self.jobs.collection.find({"state": JobState.DONE, "audio.expires_at": {"$lt": now()},
                                             "audio.deleted_at": {"$exists": False}})
        count = 0
        for job in self.pacing.each(list(expired)):
            audio.remove(job["audio"]["audio_id"], pace=self.pacing.breathe)
            for chapter_file in job["audio"].get("chapter_files") or []:  # split=chapters: they expire with it
                audio.remove(chapter_file["file_id"], pace=self.pacing.breathe)
            self.jobs.collection.update_one({"_id": job["_id"]}, {"$set": {"audio.deleted_at": now()}})
            count += 1
        return count

    def delete_expired_sources(self) -> int:
        """Sources and covers kept past their MP3 (`source_video_retention_seconds`) whose time is up."""
        sources = JobSources(self.database)
        expired = self.jobs.collection.find({"state": JobState.DONE, "video_expires_at": {"$lt": now()},
                                             "video_deleted_at": {"$exists": False}})
        count = 0
        for job in self.pacing.each(list(expired)):
            sources.remove(job, pace=self.pacing.breathe)
            self.jobs.collection.update_one({"_id": job["_id"]}, {"$set": {"video_deleted_at": now()}})
            count += 1
        return count

    def is_legacy_source(self, video_id: str) -> bool:
        """The video is the source of a job recorded before sources existed, not yet converted."""
        job = self.jobs.get(video_id)
        return job is not None and not job.get("source_format") and "video_deleted_at" not in job

    def delete_unowned_sources(self) -> int:
        """Sources and covers whose job was never recorded (an upload that died between storing them and recording
        it) or is gone, UNOWNED_GRACE after they were stored."""
        removed = 0
        for bucket in (SOURCES, COVERS):
            store = MediaStore(self.database, bucket)
            for document in self.pacing.each(store.documents(fields=("metadata", "uploadDate"))):
                job_id = (document.get("metadata") or {}).get("job_id", "")
                if document.get("uploadDate", now()) < now() - UNOWNED_GRACE and self.jobs.get(job_id) is None:
                    store.remove(document["_id"], pace=self.pacing.breathe)
                    removed += 1
        return removed

    def delete_cancelled_media(self) -> int:
        """Media of cancelled jobs: what a cancel request that died before deleting them left, and what a
        converter still at work when its job was cancelled wrote afterwards."""
        cancelled = self.jobs.collection.find({"state": JobState.CANCELLED, "$or": [
            {"media_deleted_at": {"$exists": False}}, {"finished_at": {"$gt": now() - CANCELLED_RECHECK}},
        ]})
        sources, videos = JobSources(self.database), MediaStore(self.database, VIDEOS)
        audio = MediaStore(self.database, AUDIO)
        count = 0
        for job in self.pacing.each(list(cancelled)):
            # Chunks left without their files document are the orphan sweep's; a file still listed is ours.
            if "media_deleted_at" in job and not sources.exists(job) and not videos.exists(job["video_id"]) \
                    and not audio.exists(job["_id"]):
                continue
            remove_job_media(self.database, job)
            self.jobs.collection.update_one({"_id": job["_id"]}, {"$set": {"media_deleted_at": now()}})
            count += 1
        return count

    def delete_fan_out_leftovers(self) -> int:
        """Audio tracks, segments and joined MP3s of fan-outs that ended (done, failed, cancelled) or were
        superseded by a newer attempt or joiner: what a segment worker that died before its clean-up left. Only live
        fan-outs keep files in the two buckets of their own, so they stay small."""
        removed = 0
        for bucket in (TRACKS, SEGMENTS):
            store = MediaStore(self.database, bucket)
            for document in self.pacing.each(store.documents()):
                metadata = document.get("metadata") or {}
                job = self.jobs.get(metadata.get("job_id", ""))
                live = job is not None and job["state"] == JobState.CONVERTING \
                    and metadata.get("attempt_id") == job.get("attempt_id")
                if not live:
                    store.remove(document["_id"], pace=self.pacing.breathe)
                    removed += 1
        # MP3s joiners wrote under their own ids: kept while their job may still finish with them, or did.
        audio = MediaStore(self.database, AUDIO)
        for document in self.pacing.each(audio.documents({"metadata.joined_by": {"$exists": True}})):
            metadata = document["metadata"]
            job = self.jobs.get(metadata.get("job_id", "")) or {}
            kept = ((job.get("audio") or {}).get("audio_id") == document["_id"]
                    or (job.get("state") == JobState.CONVERTING
                        and ((job.get("fanout") or {}).get("join") or {}).get("worker_id") == metadata["joined_by"]))
            if not kept:
                audio.remove(document["_id"], pace=self.pacing.breathe)
                removed += 1
        return removed

    def remove_abandoned_writes(self) -> int:
        """Removes the chunks of writes killed before their files document was in, found from the writes' own
        records (storage/media.py), so a sweep never reads every chunk stored (FerretDB decodes each one to answer a
        query on `files_id`: 13 s a sweep at 500 MP3 chunks, measured 7 December 2026)."""
        removed = 0
        for write in abandoned_writes(self.database, now() - self.abandoned_after):
            store = MediaStore(self.database, write["bucket"])
            removed += store.settle_abandoned(write["file_id"], write["started_at"], pace=self.pacing.breathe)
        return removed
