"""Lifetimes: nothing is kept for ever. A job moves from the live jobs to the finished history once nothing more
can happen to it (settled), entered in the ledger of the minute it ended, and is purged with its leftovers once
JOB_RECORD_RETENTION_SECONDS have passed since that minute; login-throttle rows past their lifetime are deleted.

A job's media and every leftover (tracks, segments, joiners' MP3s, a failed job's video) are removed as it settles,
so the purge deletes records only. Every step works in bounded batches and can stop anywhere: a job leaves the
ledger only after its record and its place in its owner's list are gone, and each of those deletions is safe to
repeat, so the next sweep resumes where an interrupted one stopped, with nothing lost and nothing deleted twice.
Settling and the purge are paced (storage/pacing.py): short bursts and a rest after each, so that the
service's own writes are not held behind them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pymongo.database import Database

from accounts.login_throttle import KNOWN_ADDRESS_DAYS
from accounts.signup_limits import WINDOW_SECONDS as SIGNUP_WINDOW_SECONDS
from jobs.records import FINAL_STATES, Job, Jobs, JobState
from runtime.clock import now
from storage import mysql
from storage.media import remove_job_media
from storage.pacing import Pacing

log = logging.getLogger(__name__)

# Per minute in which jobs ended, the ids of those settled: `{"_id": "2026-12-01T17:05", "job_ids": [...]}`. A minute,
# so that each document stays small (an update rewrites it whole) and is fetched by `_id`.
JOB_ENDINGS = "job_endings"
# The purge's place in the ledger, `{"_id": "purge", "next_slot": <the oldest minute not yet purged>}`.
RECONCILE_STATE = "reconcile_state"
PURGE_CURSOR = "purge"
SLOT = timedelta(minutes=1)
# Minutes walked per ledger entry a purge step may take: most minutes of a quiet service hold no job.
EMPTY_SLOTS_PER_ENTRY = 10
# Purged jobs taken out of their minute's ledger document per update: the purge's unit of work, paced (about 45 ms
# on the local stack, within a burst of the default pacing).
LEDGER_PULL_BATCH = 5
# A job that ended stays live this much longer: the broker's retries of its last events (about 22 min for convert)
# and a converter still writing after a cancel (until its ffmpeg deadline) all fall within it.
SETTLE_AFTER = timedelta(hours=1)


def slot_of(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def ledger_key(slot: datetime) -> str:
    return slot.strftime("%Y-%m-%dT%H:%M")


def is_settled(job: Job, moment: datetime) -> bool:
    """Nothing more can happen to the job but the end of its lifetime: it ended over `SETTLE_AFTER` ago, has no
    event pending, its MP3 has expired and been deleted, and a kept source video's time is up (whatever media are
    left, a failed job's video for one, are removed as it settles)."""
    ended = job.get("finished_at") or job["updated_at"]
    if job["state"] not in FINAL_STATES or job.get("pending_event") or max(ended, job["updated_at"]) > \
            moment - SETTLE_AFTER:
        return False
    if job["state"] == JobState.DONE:
        return bool((job.get("audio") or {}).get("deleted_at")) and (job.get("video_expires_at") or ended) <= moment
    if job["state"] == JobState.CANCELLED:
        return "media_deleted_at" in job
    return True


@dataclass
class Purged:
    entries: int = 0  # ledger entries taken
    records: int = 0  # job records deleted (an entry whose job was deleted already deletes none)


@dataclass
class PurgeReport:
    settled: int = 0
    jobs_purged: int = 0
    throttle_rows_purged: int = 0


@dataclass
class Lifetimes:
    database: Database[dict[str, Any]]
    jobs: Jobs
    job_lifetime: timedelta
    batch_size: int = 500
    mysql_url: str | None = None
    login_failure_lifetime: timedelta = field(default=timedelta(days=1))
    # How settling and the purge share the database with uploads, and their time per sweep
    # (storage/pacing.py; the Reconciler's, whose sweep begins it).
    pacing: Pacing = field(default_factory=Pacing)

    def __post_init__(self) -> None:
        self.endings = self.database[JOB_ENDINGS]
        self.state = self.database[RECONCILE_STATE]

    def run(self) -> PurgeReport:
        return PurgeReport(settled=self.settle(), jobs_purged=self.purge_jobs().records,
                           throttle_rows_purged=self.purge_throttle_rows())

    def settle(self) -> int:
        """Moves at most `batch_size` settled jobs to the finished history (paced: each removes what media are
        left), each entered first in the ledger of the minute it ended: a stop in between leaves it in both, which
        the next sweep repeats harmlessly."""
        settled = 0
        moment = now()
        ended = self.jobs.collection.find({"state": {"$in": list(FINAL_STATES)}})
        for job in self.pacing.each([job for job in ended if is_settled(job, moment)][:self.batch_size]):
            remove_job_media(self.database, job)
            slot = slot_of(job.get("finished_at") or job["updated_at"])
            self.endings.update_one({"_id": ledger_key(slot)}, {"$addToSet": {"job_ids": job["_id"]}}, upsert=True)
            # A minute behind the purge's place (a lifetime shorter than the settling time) moves it back.
            self.state.update_one({"_id": PURGE_CURSOR}, {"$min": {"next_slot": slot}}, upsert=True)
            settled += self.jobs.move_to_finished(job)
        return settled

    def purge_jobs(self) -> Purged:
        """Deletes, at most `batch_size` ledger entries at a time, the jobs whose minute of ending is a whole lifetime
        ago, with every entry naming them; walks the ledger minute by minute, each fetched by `_id` (at most
        `EMPTY_SLOTS_PER_ENTRY` times `batch_size` minutes per call, each one lookup: a purge that fell behind
        catches up over a few sweeps). Paced, and stopped when the sweep's time is up."""
        result = Purged()
        cursor = self.state.find_one({"_id": PURGE_CURSOR})
        if cursor is None:
            return result
        slot: datetime = cursor["next_slot"]
        recorded = slot
        slots_walked = 0
        try:
            while slot + SLOT <= now() - self.job_lifetime and result.entries < self.batch_size \
                    and slots_walked < EMPTY_SLOTS_PER_ENTRY * self.batch_size:
                slots_walked += 1
                key = ledger_key(slot)
                ending = self.endings.find_one({"_id": key})
                job_ids = (ending or {}).get("job_ids") or []
                taken = job_ids[:self.batch_size - result.entries]
                # A few at a time (the pacing's unit of work), taken out of the ledger once purged.
                remaining = taken
                while remaining and self.pacing.go_on():
                    done, remaining = remaining[:LEDGER_PULL_BATCH], remaining[LEDGER_PULL_BATCH:]
                    result.records += sum(self.purge_job(job_id) for job_id in done)
                    self.endings.update_one({"_id": key}, {"$pullAll": {"job_ids": done}})
                    result.entries += len(done)
                if remaining or len(taken) < len(job_ids):
                    break  # out of time, or the batch is full: the rest of the minute is the next sweep's
                if ending is not None:
                    # The minute is done: its document goes, then the purge moves past it.
                    self.endings.delete_one({"_id": key, "job_ids": {"$size": 0}})
                    recorded = self.move_cursor(recorded, slot + SLOT)
                slot += SLOT
            # Past the empty minutes walked (a minute without a document has nothing to delete: no write for it).
            self.move_cursor(recorded, slot)
        finally:
            self.pacing.pause()
        return result

    def move_cursor(self, recorded: datetime, to: datetime) -> datetime:
        """Moves the purge's place from `recorded` to `to`, guarded: a settle that entered a job in a minute behind
        it has moved it back meanwhile, and then it stays there."""
        if to != recorded:
            self.state.update_one({"_id": PURGE_CURSOR, "next_slot": recorded}, {"$set": {"next_slot": to}})
        return to

    def purge_job(self, job_id: str) -> bool:
        """False when there was no record left to delete (a sweep that stopped before taking it out of the ledger
        had deleted it, or its owner had). Its media and leftovers went when it settled, so only records remain."""
        return self.jobs.delete(job_id)

    def purge_throttle_rows(self) -> int:
        """Throttle rows whose window started over their lifetime ago (they throttle nothing any more): failed logins
        after LOGIN_FAILURE_RETENTION_SECONDS, the addresses an account logged in from after KNOWN_ADDRESS_DAYS,
        sign-up notices and sign-ups per address once their hour is over."""
        if not self.mysql_url:
            return 0
        purged = 0
        with mysql.connect(self.mysql_url) as connection, connection.cursor() as cursor:
            for table, column, lifetime in (
                    ("failed_logins", "window_start", int(self.login_failure_lifetime.total_seconds())),
                    ("login_addresses", "last_login", KNOWN_ADDRESS_DAYS * 86400),
                    ("signup_notices", "sent_at", 3600),
                    ("signups_by_address", "window_start", SIGNUP_WINDOW_SECONDS)):
                statement = f"DELETE FROM {table} WHERE {column} < NOW(3) - INTERVAL %s SECOND LIMIT %s"  # noqa: S608
                while True:
                    deleted = cursor.execute(statement, (lifetime, self.batch_size))
                    purged += deleted
                    if deleted < self.batch_size:
                        break
        return purged
