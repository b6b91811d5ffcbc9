"""Job records in MongoDB: the state machine of a conversion, and an outbox so that no state change loses its event.

Every transition is one atomic update guarded by the state it leaves, and stores the event it must emit as
`pending_event` in the same write. The event is emitted after the write and then cleared; if that fails (the broker
is away, the process dies), a redelivery or the reconcile step emits it again from the record. Events carry
deterministic ids, so a repeat is recognisable.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.collection import Collection
from pymongo.database import Database

from events import MODEL_BY_TYPE, EventEmitter, EventPayload

Job = dict[str, Any]


class JobState(StrEnum):
    UPLOADED = "uploaded"
    CONVERTING = "converting"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL_STATES = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED})


def now() -> datetime:
    return datetime.now(UTC)


def as_pending(payload: EventPayload) -> dict[str, Any]:
    return {"id": payload.event_id(), "type": payload.event_type, "data": payload.model_dump(mode="json")}


def from_pending(pending: dict[str, Any]) -> EventPayload:
    return MODEL_BY_TYPE[pending["type"]].model_validate(pending["data"])


WATCHED_JOBS = "watched_jobs"
OWNER_JOB_LISTS = "owner_job_lists"
# An entry of the watch list without its job is dropped only after this long: the job's record is written right after
# its entry, and an upload that died in between left nothing else.
ORPHAN_ENTRY_GRACE = timedelta(minutes=10)


class Jobs:
    def __init__(self, db: Database[Job]) -> None:
        self.collection: Collection[Job] = db["jobs"]
        self.watched: Collection[dict[str, Any]] = db[WATCHED_JOBS]
        self.owner_lists: Collection[dict[str, Any]] = db[OWNER_JOB_LISTS]

    def ensure_indexes(self) -> None:
        self.collection.create_index([("owner_id", ASCENDING), ("created_at", ASCENDING)])
        self.collection.create_index([("state", ASCENDING), ("updated_at", ASCENDING)])

    def create(self, job: Job, event: EventPayload) -> None:
        moment = now()
        self.owner_lists.update_one({"_id": job["owner_id"]}, {"$push": {"job_ids": job["_id"]}}, upsert=True)
        self.watch(job["_id"], job["owner_id"])
        self.collection.insert_one({
            **job, "state": JobState.UPLOADED, "created_at": moment, "updated_at": moment,
            "history": [{"state": JobState.UPLOADED, "at": moment}], "attempts": 0, "redrives": 0,
            "pending_event": as_pending(event),
        })

    def delete(self, job_id: str) -> bool:
        """Removes the job's record and every entry naming it (its media are `media.remove_job_media`'s). The
        owner's list goes first: should this stop midway, the record is still there to say whose job it was."""
        job = self.collection.find_one({"_id": job_id}, {"owner_id": 1})
        if job is not None:
            self.owner_lists.update_one({"_id": job["owner_id"]}, {"$pull": {"job_ids": job_id}})
        deleted = self.collection.delete_one({"_id": job_id}).deleted_count == 1
        self.watched.delete_one({"_id": job_id})
        return deleted

    def watch(self, job_id: str, owner_id: str | None = None) -> None:
        """Enters the job in the sweeps' watch list (again): before any write that leaves them work."""
        self.watched.update_one({"_id": job_id}, {"$set": {"touched_at": now(),
                                                           **({"owner_id": owner_id} if owner_id else {})}},
                                upsert=True)

    def watched_jobs(self) -> list[Job]:
        """The jobs the sweeps must look at, each fetched by `_id`; entries whose job is gone are dropped once
        `ORPHAN_ENTRY_GRACE` has passed."""
        found = []
        for entry in list(self.watched.find()):
            job = self.get(entry["_id"])
            if job is not None:
                found.append(job)
            elif entry["touched_at"] < now() - ORPHAN_ENTRY_GRACE:
                if entry.get("owner_id"):
                    self.owner_lists.update_one({"_id": entry["owner_id"]}, {"$pull": {"job_ids": entry["_id"]}})
                self.watched.delete_one({"_id": entry["_id"], "touched_at": entry["touched_at"]})
        return found

    def unwatch(self, job: Job) -> bool:
        """Takes a settled job off the watch list, unless a write entered it again after `job` was read (a writer
        enters the job before it writes the record, so its entry is then newer than the record read)."""
        return self.watched.delete_one({"_id": job["_id"], "touched_at": {"$lte": job["updated_at"]}}) \
            .deleted_count == 1

    def get(self, job_id: str) -> Job | None:
        return self.collection.find_one({"_id": job_id})

    def get_owned(self, job_id: str, owner_id: str) -> Job | None:
        """The job if `owner_id` owns it; None alike for a missing job and someone else's. Looked up by `_id` alone
        and the owner compared here: the local FerretDB answers only a filter of `_id` alone from an index."""
        job = self.get(job_id)
        return job if job is not None and job.get("owner_id") == owner_id else None

    def list_owned(self, owner_id: str, limit: int = 50) -> list[Job]:
        """The owner's newest jobs, newest first: their list, then each job by `_id`."""
        owned = self.owner_lists.find_one({"_id": owner_id}) or {}
        newest_first = reversed((owned.get("job_ids") or [])[-limit:])
        return [job for job in (self.get_owned(job_id, owner_id) for job_id in newest_first) if job is not None]

    def owned_ids(self, owner_id: str) -> list[str]:
        return list((self.owner_lists.find_one({"_id": owner_id}) or {}).get("job_ids") or [])

    def _transition(self, query: dict[str, Any], state: JobState, fields: dict[str, Any] | None = None,
                    event: EventPayload | None = None, unset: tuple[str, ...] = (),
                    increment: dict[str, int] | None = None) -> Job | None:
        moment = now()
        self.watch(query["_id"])
        update: dict[str, Any] = {
            "$set": {**(fields or {}), "state": state, "updated_at": moment,
                     **({"pending_event": as_pending(event)} if event else {})},
            "$push": {"history": {"state": state, "at": moment}},
        }
        if unset:
            update["$unset"] = dict.fromkeys(unset, "")
        if increment:
            update["$inc"] = increment
        return self.collection.find_one_and_update(query, update, return_document=ReturnDocument.AFTER)

    def claim_conversion(self, job_id: str, attempt_id: str, lease: timedelta) -> Job | None:
        """Moves an uploaded job (or one whose converter stopped renewing its lease) to `converting` for this
        attempt. None when another attempt holds a live lease or the job is not waiting for conversion."""
        moment = now()
        return self._transition(
            {"_id": job_id, "$or": [
                {"state": JobState.UPLOADED},
                {"state": JobState.CONVERTING, "lease_until": {"$lt": moment}},
            ]},
            JobState.CONVERTING,
            {"attempt_id": attempt_id, "lease_until": moment + lease, "started_at": moment,
             "progress": {"percent": 0.0, "eta_seconds": None}},
            # The claim proves the video-uploaded event went out, should the upload have died before clearing it.
            unset=("pending_event",),
            increment={"attempts": 1},
        )

    def renew_lease(self, job_id: str, attempt_id: str, lease: timedelta, progress: dict[str, Any]) -> bool:
        """False when the attempt no longer owns the job (cancelled, or taken over): the caller must stop."""
        result = self.collection.update_one(
            {"_id": job_id, "state": JobState.CONVERTING, "attempt_id": attempt_id},
            {"$set": {"lease_until": now() + lease, "progress": progress, "updated_at": now()}},
        )
        return result.matched_count == 1

    def release(self, job_id: str, attempt_id: str) -> None:
        """Lets the next delivery take over at once after a transient failure of this attempt."""
        self.collection.update_one({"_id": job_id, "state": JobState.CONVERTING, "attempt_id": attempt_id},
                                   {"$set": {"lease_until": now()}})

    def finish(self, job_id: str, attempt_id: str, audio: dict[str, Any], event: EventPayload,
               fields: dict[str, Any] | None = None, guard: dict[str, Any] | None = None) -> Job | None:
        return self._transition(
            {"_id": job_id, "state": JobState.CONVERTING, "attempt_id": attempt_id, **(guard or {})},
            JobState.DONE, {**(fields or {}), "audio": audio, "finished_at": now()}, event,
            unset=("progress", "lease_until"),
        )

    def fail(self, job_id: str, from_states: tuple[JobState, ...], failure: dict[str, str],
             event: EventPayload, attempt_id: str | None = None) -> Job | None:
        query: dict[str, Any] = {"_id": job_id, "state": {"$in": list(from_states)}}
        if attempt_id is not None:
            query["attempt_id"] = attempt_id
        return self._transition(query, JobState.FAILED, {"failure": failure, "finished_at": now()}, event,
                                unset=("progress", "lease_until"))

    def cancel(self, job_id: str, owner_id: str, event: EventPayload) -> Job | None:
        return self._transition(
            {"_id": job_id, "owner_id": owner_id, "state": {"$in": [JobState.UPLOADED, JobState.CONVERTING]}},
            JobState.CANCELLED, {"finished_at": now()}, event, unset=("progress", "lease_until"),
        )

    def update(self, job_id: str, query: dict[str, Any], fields: dict[str, Any],
               event: EventPayload | None = None) -> Job | None:
        """A change that is not a state transition (notification bookkeeping, redrives), guarded by `query`."""
        if event is not None:
            self.watch(job_id)
        update: dict[str, Any] = {"$set": {**fields, **({"pending_event": as_pending(event)} if event else {})}}
        return self.collection.find_one_and_update({"_id": job_id, **query}, update,
                                                   return_document=ReturnDocument.AFTER)

    def clear_pending(self, job_id: str, event_id: str) -> None:
        self.collection.update_one({"_id": job_id, "pending_event.id": event_id}, {"$unset": {"pending_event": ""}})

    def flush_pending(self, job: Job, emitter: EventEmitter) -> None:
        """Emits the job's pending event, if any, and clears it. Raises EmitError if the broker refuses it."""
        pending = job.get("pending_event")
        if pending:
            emitter.emit(from_pending(pending))
            self.clear_pending(job["_id"], pending["id"])

    def with_pending_older_than(self, age: timedelta, among: list[Job] | None = None) -> list[Job]:
        """Watched jobs (or those of `among`) whose pending event is older than `age`."""
        cutoff = now() - age
        return [job for job in (self.watched_jobs() if among is None else among)
                if job.get("pending_event") and job["updated_at"] < cutoff]

    def stalled(self, age: timedelta, among: list[Job] | None = None) -> list[Job]:
        """Jobs waiting for conversion, or converting without a live lease, that have not moved for `age`."""
        cutoff = now() - age
        return [job for job in (self.watched_jobs() if among is None else among)
                if (job["state"] == JobState.UPLOADED and job["updated_at"] < cutoff)
                or (job["state"] == JobState.CONVERTING and job.get("lease_until") is not None
                    and job["lease_until"] < cutoff)]
