"""Unfinished resumable uploads as stored (functions/upload/resumable.py): a GridFS video whose files document carries
`metadata.resumable`. Found and removed here for those who clean up after them: reconcile (the expired ones) and
erasure (a deleted job's or account's)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pymongo.database import Database

from functions.shared.jobs import now
from functions.shared.media import VIDEOS, MediaStore

# Where an unfinished upload keeps its tus state, in its files document.
STATE = "metadata.resumable"


def remove_unfinished(database: Database[dict[str, Any]], owner_id: str, upload_id: str | None = None) -> int:
    """Removes the owner's unfinished uploads (only `upload_id`, when given) with their bytes; how many."""
    videos = MediaStore(database, VIDEOS)
    query: dict[str, Any] = {"metadata.owner_id": owner_id, STATE: {"$exists": True}}
    if upload_id is not None:
        # By _id alone, the one query the local FerretDB answers from an index; the rest compared here.
        document = videos.files.find_one({"_id": upload_id}, {"metadata": 1}) or {}
        metadata = document.get("metadata") or {}
        if metadata.get("owner_id") != owner_id or "resumable" not in metadata:
            return 0
        query = {"_id": upload_id}
    removed = 0
    for document in list(videos.files.find(query, {"_id": 1})):
        videos.remove(document["_id"])
        removed += 1
    return removed


def remove_expired(database: Database[dict[str, Any]],
                   each: Callable[[list[dict[str, Any]]], Iterable[dict[str, Any]]] = iter,
                   pace: Callable[[], None] = lambda: None) -> int:
    """Removes the unfinished uploads past their expiry, with their bytes; how many. One whose job exists had
    finished but for its last write (clearing its state): that write is done instead. Their quota reservations
    have long lapsed by then (quotas.RESERVATION_LIFETIME is shorter than any upload's lifetime). `each` and `pace`
    are the caller's pacing (reconcile's: functions/reconcile/pacing.py): the uploads one by one for as long as it
    allows, and a rest between a file's chunk deletions."""
    videos = MediaStore(database, VIDEOS)
    removed = 0
    for document in each(list(videos.files.find({f"{STATE}.expires_at": {"$lt": now()}}, {"_id": 1}))):
        if database["jobs"].find_one({"_id": document["_id"]}, {"_id": 1}) is not None:
            videos.files.update_one({"_id": document["_id"]}, {"$unset": {STATE: ""}})
            continue
        videos.remove(document["_id"], pace=pace)
        removed += 1
    return removed
