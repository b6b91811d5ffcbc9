"""Erasing a job at its owner's request (jobs/erasure.py), in a database of the test's own on the stack's FerretDB:
a job that ends while it is being erased is erased all the same, with the MP3 it ended with."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from events import EventEmitter
from jobs.cancellation import Cancellation
from jobs.erasure import Erasure
from jobs.records import Job, Jobs
from storage.media import AUDIO, MediaStore
from tests.support import make_clip, stage_job

pytestmark = pytest.mark.stack


class FinishingFirst(Cancellation):
    """The converter finishing the job at the moment its owner's cancel arrives: done, with an MP3 stored."""

    def cancel(self, job_id: str, owner_id: str) -> Job:
        MediaStore(self.database, AUDIO).store(job_id, [b"\xff\xfb" * 1000], filename="clip.mp3",
                                               metadata={"job_id": job_id, "owner_id": owner_id})
        self.jobs.collection.update_one({"_id": job_id}, {"$set": {"state": "done"}})
        return super().cancel(job_id, owner_id)


def test_a_job_that_ends_while_it_is_erased_goes_with_its_mp3(endpoints: dict[str, str], database: Any,
                                                              tmp_path: Path) -> None:
    """Deleting an account erased its converting job, which was done by the time its cancel came: NotCancellable
    was a 500 and the account stayed (seen in a CI run of 7 December 2026)."""
    owner_id = f"erasure-{uuid.uuid4().hex[:8]}"
    job_id = stage_job(database, make_clip(tmp_path / "clip.mp4", seconds=2), owner_id, 128).job_id
    jobs = Jobs(database)
    erasure = Erasure(database, jobs, FinishingFirst(database, jobs, EventEmitter(endpoints["BROKER_INGRESS_URL"],
                                                                                   "auth")))

    assert erasure.erase_owner(owner_id) == 1

    assert jobs.get(job_id) is None
    assert MediaStore(database, AUDIO).open(job_id) is None
