"""Cancels a job for its owner: `importing`, `uploaded` or `converting` becomes `cancelled` (with
io.vid2mp3.job.cancelled.v1 in the job's outbox), then the job's media are deleted and the event is emitted.

A converter working on the job finds its lease gone at its next heartbeat (within a second), ends ffmpeg and drops
its partial output; an import's fetch likewise closes its connection and keeps nothing; a video-uploaded event
that arrives later finds a final job and does nothing. Cancelling again repeats the clean-up and answers the same; a
job that ended otherwise cannot be cancelled.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pymongo.database import Database

from events import EmitError, EventEmitter, JobCancelled
from jobs.records import FINAL_STATES, Job, Jobs, JobState
from runtime.clock import now
from storage.media import remove_job_media

log = logging.getLogger(__name__)


class JobNotFound(Exception):
    """No such job for this owner (someone else's job is the same as none)."""


class NotCancellable(Exception):
    def __init__(self, state: str) -> None:
        super().__init__(f"the job is already {state}; only a job that is importing, uploaded or converting can be "
                         "cancelled")
        self.state = state


@dataclass
class Cancellation:
    database: Database[dict[str, Any]]
    jobs: Jobs
    emitter: EventEmitter

    def cancel(self, job_id: str, owner_id: str) -> Job:
        job = self.jobs.get_owned(job_id, owner_id)
        if job is None:
            raise JobNotFound(job_id)
        if job["state"] != JobState.CANCELLED:
            if job["state"] in FINAL_STATES:
                raise NotCancellable(job["state"])
            event = JobCancelled(job_id=job_id, owner_id=owner_id, cancelled_at=now())
            cancelled = self.jobs.cancel(job_id, owner_id, event)
            if cancelled is None:  # it moved on between the read and the write: look again
                return self.cancel(job_id, owner_id)
            job = cancelled
        log.info("job %s cancelled by its owner", job_id)
        self.delete_media(job)
        try:
            self.jobs.flush_pending(job, self.emitter)
        except EmitError as error:
            # The cancellation is recorded with its event: the reconcile step emits it from the job's outbox.
            log.warning("job %s: cancelled event not emitted yet: %s", job_id, error)
        return self.jobs.get(job_id) or job

    def delete_media(self, job: Job) -> None:
        remove_job_media(self.database, job)
        self.jobs.update(job["_id"], {"state": JobState.CANCELLED}, {"media_deleted_at": now()})
