"""What a dead letter means for its job: the last word on a delivery the broker gave up on."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from events import AudioConverted, ConversionFailed, EventEmitter, FailureReason, SegmentRequested, VideoUploaded
from jobs.records import FINAL_STATES, Jobs, JobState
from runtime.clock import now

log = logging.getLogger(__name__)


@dataclass
class DeadLetters:
    jobs: Jobs
    emitter: EventEmitter

    def conversion_undelivered(self, event: VideoUploaded, code: str) -> None:
        job = self.jobs.get(event.job_id)
        if job is None or job["owner_id"] != event.owner_id:
            log.warning("dead letter for unknown job %s ignored", event.job_id)
            return
        if job["state"] in FINAL_STATES:
            self.jobs.flush_pending(job, self.emitter)
            return
        if job["state"] == JobState.CONVERTING and job.get("lease_until") and job["lease_until"] > now():
            # A live attempt holds the job; it will finish it. Convert acknowledges a duplicate that finds a live
            # holder, so such a dead letter is one whose every try failed otherwise (the store away, say) while
            # another attempt converted, or the holder's own delivery that timed out while it kept converting.
            return
        message = f"the conversion could not be delivered: the converter last answered HTTP {code}"
        failed = self.jobs.fail(
            event.job_id, (JobState.UPLOADED, JobState.CONVERTING),
            {"reason": FailureReason.DELIVERY_FAILED, "message": message, "error_code": code},
            ConversionFailed(job_id=event.job_id, owner_id=event.owner_id, reason=FailureReason.DELIVERY_FAILED,
                             message=message, failed_at=now()),
        )
        if failed is not None:
            self.jobs.flush_pending(failed, self.emitter)

    def segment_undelivered(self, event: SegmentRequested, code: str) -> None:
        """A segment event the broker gave up on fails its fan-out's job unless a live worker still holds that
        segment (the dead letter was a duplicate's); once every segment is done it can only mean the join failed on
        every try, which fails the job too, unless a live joiner is at it."""
        job = self.jobs.get(event.job_id)
        if job is None or job["owner_id"] != event.owner_id:
            log.warning("dead letter for unknown job %s ignored", event.job_id)
            return
        fan = job.get("fanout") or {}
        if job["state"] != JobState.CONVERTING or fan.get("attempt_id") != event.attempt_id:
            return  # ended, or superseded by another attempt: nothing of this fan-out is waited for
        held_until = (fan.get("claims", {}).get(str(event.index)) or {}).get("until")
        join_until = (fan.get("join") or {}).get("until")
        if event.index not in fan.get("done", []):
            if held_until is not None and held_until > now():
                return
            message = (f"segment {event.index + 1} of {event.count} could not be encoded: the segment encoder last "
                       f"answered HTTP {code}")
        elif len(fan["done"]) == fan.get("count") and not (join_until is not None and join_until > now()):
            message = f"the segments could not be joined: the segment encoder last answered HTTP {code}"
        else:
            return
        failed = self.jobs.fail(
            event.job_id, (JobState.CONVERTING,),
            {"reason": FailureReason.DELIVERY_FAILED, "message": message, "error_code": code},
            ConversionFailed(job_id=event.job_id, owner_id=event.owner_id, reason=FailureReason.DELIVERY_FAILED,
                             message=message, failed_at=now()),
            attempt_id=event.attempt_id,
        )
        if failed is not None:
            self.jobs.flush_pending(failed, self.emitter)

    def notification_undelivered(self, event: AudioConverted, code: str) -> None:
        self.jobs.update(event.job_id, {"owner_id": event.owner_id, "notification.state": {"$ne": "sent"}},
                         {"notification": {"state": "failed", "reason": f"undeliverable (HTTP {code})",
                                           "error_code": code}})
