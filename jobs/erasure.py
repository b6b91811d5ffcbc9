"""Deleting for good, at the owner's request: a job (cancelled first while it is still running) with its media and
every record naming it; or all of an owner's jobs. Used by status (`DELETE /<job>`) and auth (`DELETE /account`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pymongo.database import Database

from jobs.cancellation import Cancellation, NotCancellable
from jobs.records import FINAL_STATES, Jobs
from storage.media import remove_job_media
from storage.unfinished_uploads import remove_unfinished

log = logging.getLogger(__name__)


@dataclass
class Erasure:
    database: Database[dict[str, Any]]
    jobs: Jobs
    cancellation: Cancellation

    def erase(self, job_id: str, owner_id: str) -> bool:
        """False when the owner has no such job (someone else's is the same as none). The media go before the
        record: should this stop midway, the record still leads a repeat (or the purge) to what is left. A
        resumable upload not finished yet is the job to be: its bytes go."""
        job = self.jobs.get_owned(job_id, owner_id)
        if job is None:
            return remove_unfinished(self.database, owner_id, job_id) > 0
        if job["state"] not in FINAL_STATES:
            # Through the cancel path: its event goes out, and the converter stops at its next lease renewal.
            try:
                job = self.cancellation.cancel(job_id, owner_id)
            except NotCancellable:
                # It ended between the read and the cancel: erased as it ended, its MP3 with it.
                job = self.jobs.get_owned(job_id, owner_id) or job
        remove_job_media(self.database, job)
        self.jobs.delete(job_id)
        log.info("job %s deleted by its owner", job_id)
        return True

    def erase_owner(self, owner_id: str) -> int:
        """Every job of the owner, however many, and unfinished upload, then their (empty) list; the number of jobs
        deleted."""
        remove_unfinished(self.database, owner_id)
        deleted = sum(self.erase(job_id, owner_id) for job_id in self.jobs.owned_ids(owner_id))
        self.jobs.owner_lists.delete_one({"_id": owner_id, "job_ids": {"$size": 0}})
        return deleted
