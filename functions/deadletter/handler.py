"""What a dead letter means for its job: the last word on a delivery the broker gave up on."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from events import AudioConverted, ConversionFailed, EventEmitter, FailureReason, SegmentRequested, VideoUploaded
from functions.shared.jobs import FINAL_STATES, Jobs, JobState, now

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
            # A live attempt holds the job (the dead letter was a duplicate delivery); it will finish it.
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
        """A segment the broker gave up on fails its fan-out's job, whatever the other segments' workers are doing
        (they renew the job's lease, and stop at their next heartbeat once it has failed)."""
        job = self.jobs.get(event.job_id)
        if job is None or job["owner_id"] != event.owner_id:
            log.warning("dead letter for unknown job %s ignored", event.job_id)
            return
        message = (f"segment {event.index + 1} of {event.count} could not be encoded: the segment encoder last "
                   f"answered HTTP {code}")
        failed = self.jobs.collection.find_one({"_id": event.job_id, "fanout.attempt_id": event.attempt_id,
                                                "fanout.done": {"$ne": event.index}})
        if failed is None:  # done after all, or the job moved on to another attempt: nothing is lost
            return
        ended = self.jobs.fail(
            event.job_id, (JobState.CONVERTING,),
            {"reason": FailureReason.DELIVERY_FAILED, "message": message, "error_code": code},
            ConversionFailed(job_id=event.job_id, owner_id=event.owner_id, reason=FailureReason.DELIVERY_FAILED,
                             message=message, failed_at=now()),
            attempt_id=event.attempt_id,
        )
        if ended is not None:
            self.jobs.flush_pending(ended, self.emitter)

    def notification_undelivered(self, event: AudioConverted, code: str) -> None:
        self.jobs.update(event.job_id, {"owner_id": event.owner_id, "notification.state": {"$ne": "sent"}},
                         {"notification": {"state": "failed", "reason": f"undeliverable (HTTP {code})",
                                           "error_code": code}})
