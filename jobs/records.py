"""Job records in MongoDB: the state machine of a conversion, and an outbox so that no state change loses its event.

Every transition is one atomic update guarded by the state it leaves, and stores the event it must emit as
`pending_event` in the same write. The event is emitted after the write and then cleared; if that fails (the broker
is away, the process dies), a redelivery or the reconcile step emits it again from the record. Events carry
deterministic ids, so a repeat is recognisable.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.collection import Collection
from pymongo.database import Database

from events import MODEL_BY_TYPE, EventEmitter, EventPayload
from runtime import telemetry
from runtime.clock import now

Job = dict[str, Any]


class JobState(StrEnum):
    # The server fetches the video from a URL (functions/upload/url_import.py); `uploaded` once it is kept.
    IMPORTING = "importing"
    UPLOADED = "uploaded"
    CONVERTING = "converting"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL_STATES = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED})
CANCELLABLE_STATES = frozenset({JobState.IMPORTING, JobState.UPLOADED, JobState.CONVERTING})




def as_pending(payload: EventPayload) -> dict[str, Any]:
    # With the trace it belongs to: whoever sends it later (the reconcile sweep) sends it in the job's trace.
    return {"id": payload.event_id(), "type": payload.event_type, "data": payload.model_dump(mode="json"),
            **({"trace": kept} if (kept := telemetry.trace_context()) else {})}


def from_pending(pending: dict[str, Any]) -> EventPayload:
    return MODEL_BY_TYPE[pending["type"]].model_validate(pending["data"])


# A holder asks for its lease more often than it is written: asking is how it learns of a cancel.
RENEWAL_SECONDS = 1.0
FINISHED_JOBS = "finished_jobs"
OWNER_JOB_LISTS = "owner_job_lists"


class Jobs:
    def __init__(self, db: Database[Job]) -> None:
        self.collection: Collection[Job] = db["jobs"]
        self.finished: Collection[Job] = db[FINISHED_JOBS]
        self.owner_lists: Collection[dict[str, Any]] = db[OWNER_JOB_LISTS]

    def ensure_indexes(self) -> None:
        self.collection.create_index([("owner_id", ASCENDING), ("created_at", ASCENDING)])
        self.collection.create_index([("state", ASCENDING), ("updated_at", ASCENDING)])

    def create(self, job: Job, event: EventPayload) -> None:
        moment = now()
        self.collection.insert_one({
            **job, "state": JobState.UPLOADED, "created_at": moment, "updated_at": moment,
            "history": [{"state": JobState.UPLOADED, "at": moment}], "attempts": 0, "redrives": 0,
            "pending_event": as_pending(event),
            # The upload's trace: what reconcile does for the job later (sending it round again) joins it.
            **({"trace": kept} if (kept := telemetry.trace_context()) else {}),
        })

    def create_importing(self, job: Job, attempt_id: str, lease: timedelta) -> None:
        """A job whose video the server is fetching: held by `attempt_id` while it renews its lease."""
        moment = now()
        self.collection.insert_one({
            **job, "state": JobState.IMPORTING, "created_at": moment, "updated_at": moment,
            "history": [{"state": JobState.IMPORTING, "at": moment}], "attempts": 0, "redrives": 0,
            "attempt_id": attempt_id, "lease_until": moment + lease,
            **({"trace": kept} if (kept := telemetry.trace_context()) else {}),
        })

    def imported(self, job_id: str, attempt_id: str, job: Job, event: EventPayload) -> Job | None:
        """The import's video is kept: its job waits for conversion as an upload's does. None when the import no
        longer holds the job (cancelled, or failed as interrupted)."""
        return self._transition({"_id": job_id, "state": JobState.IMPORTING, "attempt_id": attempt_id},
                                JobState.UPLOADED, {name: value for name, value in job.items() if name != "_id"},
                                event, unset=("progress", "lease_until", "attempt_id"))

    def interrupted_imports(self, age: timedelta, limit: int = 200) -> list[Job]:
        """Imports whose fetch stopped renewing its lease `age` ago: the process that fetched them is gone."""
        return list(self.collection.find({"state": JobState.IMPORTING,
                                          "lease_until": {"$lt": now() - age}}).limit(limit))

    def delete(self, job_id: str) -> bool:
        """Removes the job's record, live or finished, and its place in its owner's list (its media are
        `media.remove_job_media`'s). The list goes first: should this stop midway, the record still says whose
        job it was. False when there was no record."""
        job = self.get(job_id)
        if job is not None:
            self.owner_lists.update_one({"_id": job["owner_id"]}, {"$pull": {"job_ids": job_id}})
        deleted = self.collection.delete_one({"_id": job_id}).deleted_count
        return deleted + self.finished.delete_one({"_id": job_id}).deleted_count > 0

    def get(self, job_id: str) -> Job | None:
        return self.collection.find_one({"_id": job_id}) or self.finished.find_one({"_id": job_id})

    def get_owned(self, job_id: str, owner_id: str) -> Job | None:
        """The job if `owner_id` owns it; None alike for a missing job and someone else's. Looked up by `_id` alone
        and the owner compared here: the local FerretDB answers only a filter of `_id` alone from an index."""
        job = self.get(job_id)
        return job if job is not None and job.get("owner_id") == owner_id else None

    def list_owned(self, owner_id: str, limit: int = 50) -> list[Job]:
        """The owner's newest jobs, newest first: the live ones, and the newest finished ones by `_id`."""
        live = list(self.collection.find({"owner_id": owner_id}))
        finished_ids = self.finished_ids(owner_id)[-limit:]
        finished = [job for job in map(self.finished.find_one, ({"_id": job_id} for job_id in finished_ids))
                    if job is not None]
        return sorted(live + finished, key=lambda job: job["created_at"], reverse=True)[:limit]

    def owned_ids(self, owner_id: str) -> list[str]:
        """Every job of the owner, live or finished."""
        live = [job["_id"] for job in self.collection.find({"owner_id": owner_id}, {"_id": 1})]
        return live + [job_id for job_id in self.finished_ids(owner_id) if job_id not in live]

    def finished_ids(self, owner_id: str) -> list[str]:
        return list((self.owner_lists.find_one({"_id": owner_id}) or {}).get("job_ids") or [])

    def move_to_finished(self, job: Job) -> bool:
        """Moves a settled job from the live jobs to the finished history, unless it changed since `job` was read
        or was deleted meanwhile (then the copy is dropped). Copied before it is deleted, so a stop in between
        leaves it in both (readers take the live one; the next move repeats)."""
        self.owner_lists.update_one({"_id": job["owner_id"]}, {"$addToSet": {"job_ids": job["_id"]}}, upsert=True)
        self.finished.replace_one({"_id": job["_id"]}, job, upsert=True)
        if self.collection.delete_one({"_id": job["_id"], "updated_at": job["updated_at"]}).deleted_count == 1:
            return True
        self.finished.delete_one({"_id": job["_id"]})
        return False

    def _transition(self, query: dict[str, Any], state: JobState, fields: dict[str, Any] | None = None,
                    event: EventPayload | None = None, unset: tuple[str, ...] = (),
                    increment: dict[str, int] | None = None) -> Job | None:
        moment = now()
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

    def renew_lease(self, job_id: str, attempt_id: str, lease: timedelta, progress: dict[str, Any],
                    state: JobState = JobState.CONVERTING) -> bool:
        """False when the attempt no longer owns the job in `state` (cancelled, or taken over): the caller must
        stop.

        A read comes first, by `_id` alone: a cancel is learnt at once, not after a turn among the writes queued
        behind the cancel's own deletions (the local FerretDB lets one write command through at a time). The lease
        and the progress are written at most once per RENEWAL_SECONDS, however often the holder asks."""
        current = self.collection.find_one({"_id": job_id}, {"state": 1, "attempt_id": 1, "lease_until": 1}) or {}
        if current.get("state") != state or current.get("attempt_id") != attempt_id:
            return False
        if current.get("lease_until") is not None \
                and current["lease_until"] > now() + lease - timedelta(seconds=RENEWAL_SECONDS):
            return True
        result = self.collection.update_one(
            {"_id": job_id, "state": state, "attempt_id": attempt_id},
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
            {"_id": job_id, "owner_id": owner_id, "state": {"$in": list(CANCELLABLE_STATES)}},
            JobState.CANCELLED, {"finished_at": now()}, event, unset=("progress", "lease_until"),
        )

    def update(self, job_id: str, query: dict[str, Any], fields: dict[str, Any],
               event: EventPayload | None = None) -> Job | None:
        """A change that is not a state transition (notification bookkeeping, redrives), guarded by `query`."""
        update: dict[str, Any] = {"$set": {**fields, **({"pending_event": as_pending(event)} if event else {})}}
        return self.collection.find_one_and_update({"_id": job_id, **query}, update,
                                                   return_document=ReturnDocument.AFTER)

    def clear_pending(self, job_id: str, event_id: str) -> None:
        self.collection.update_one({"_id": job_id, "pending_event.id": event_id}, {"$unset": {"pending_event": ""}})

    def flush_pending(self, job: Job, emitter: EventEmitter) -> None:
        """Emits the job's pending event, if any, and clears it. Raises EmitError if the broker refuses it."""
        pending = job.get("pending_event")
        if pending:
            with telemetry.resumed(pending.get("trace"), f"send pending {pending['type']}",
                                   **{telemetry.JOB_ID: job["_id"]}):
                emitter.emit(from_pending(pending))
            self.clear_pending(job["_id"], pending["id"])

    def with_pending_older_than(self, age: timedelta, limit: int = 200) -> list[Job]:
        return list(self.collection.find({"pending_event": {"$exists": True},
                                          "updated_at": {"$lt": now() - age}}).limit(limit))

    def stalled(self, age: timedelta, limit: int = 200) -> list[Job]:
        """Jobs waiting for conversion, or converting without a live lease, that have not moved for `age`."""
        cutoff = now() - age
        return list(self.collection.find({"$or": [
            {"state": JobState.UPLOADED, "updated_at": {"$lt": cutoff}},
            {"state": JobState.CONVERTING, "lease_until": {"$lt": cutoff}},
        ]}).limit(limit))
