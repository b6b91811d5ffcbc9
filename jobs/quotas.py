"""Per-user quotas: jobs in flight, uploads per hour, bytes of media held, open live streams. Reads and changes
one usage document per user (`quotas` collection) and the user's jobs and media; refuses with `OverQuota`.

Every change to a usage document is a compare-and-set on its `version`: two concurrent uploads read the same
version, only one write matches it, the other reads again and sees the slot taken. Entries are not released when a
job ends (the job's own update does not know quotas): each reservation checks the list against the job records
and the jobs that ended leave it, so the records stay the truth and a lost release costs nothing.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pymongo.errors
from pymongo.database import Database

from jobs.records import FINAL_STATES
from runtime.answers import HttpError
from runtime.clock import now
from runtime.settings import QuotaSettings
from storage.media import AUDIO, COVERS, SOURCES, VIDEOS, MediaStore

HOUR = timedelta(hours=1)
# A reservation whose job record never appeared (the upload process died mid-stream) stops counting after this.
RESERVATION_LIFETIME = timedelta(hours=1)
# How long a full jobs-in-flight slot is likely to stay taken: a short clip converts in seconds.
JOBS_IN_FLIGHT_RETRY_AFTER_SECONDS = 30
COMPARE_AND_SET_TRIES = 20

Usage = dict[str, Any]


# One document per user: its reservations, uploads of the hour and open streams.
USAGE_COLLECTION = "quotas"


@dataclass(frozen=True)
class QuotaLimits:
    jobs_in_flight: int
    uploads_per_hour: int
    media_bytes: int
    live_streams: int

    @classmethod
    def from_settings(cls, settings: QuotaSettings) -> QuotaLimits:
        return cls(jobs_in_flight=settings.quota_jobs_in_flight, uploads_per_hour=settings.quota_uploads_per_hour,
                   media_bytes=settings.quota_media_bytes, live_streams=settings.quota_live_streams)


class OverQuota(Exception):
    """A limit is reached: `limit` names it, the message says it in words, `retry_after_seconds` when to retry."""

    def __init__(self, limit: str, message: str, retry_after_seconds: int) -> None:
        super().__init__(message)
        self.limit, self.message, self.retry_after_seconds = limit, message, max(1, retry_after_seconds)

    def http_error(self) -> HttpError:
        return HttpError(429, "over_quota", f"{self.limit}: {self.message}",
                         {"Retry-After": str(self.retry_after_seconds), "X-Quota-Limit": self.limit})


class QuotaBusy(Exception):
    """The usage document kept changing under us (many concurrent requests of one user): retry shortly."""


QUOTA_BUSY = HttpError(503, "quota_busy", "too many of your requests at once; try again", {"Retry-After": "1"})


class Quotas:
    def __init__(self, database: Database[dict[str, Any]], limits: QuotaLimits) -> None:
        self.database = database
        self.usage = database[USAGE_COLLECTION]
        self.limits = limits

    # --- uploads ---------------------------------------------------------------------------------------------

    def reserve_upload(self, owner_id: str, job_id: str, declared_bytes: int) -> int:
        """Takes a jobs-in-flight slot and an upload of the hour for `job_id`, counting `declared_bytes` against
        the media bytes. Answers how many more bytes the user may store (the upload stops there)."""
        room = 0

        def change(usage: Usage) -> Usage:
            nonlocal room
            moment = now()
            in_flight, streaming_bytes = self._live_in_flight(usage.get("in_flight", []), moment)
            if len(in_flight) >= self.limits.jobs_in_flight:
                raise OverQuota("jobs_in_flight", f"you have {len(in_flight)} jobs in flight, the limit is "
                                f"{self.limits.jobs_in_flight}; wait for one to end",
                                JOBS_IN_FLIGHT_RETRY_AFTER_SECONDS)
            uploads = [at for at in usage.get("uploads", []) if at > moment - HOUR]
            if len(uploads) >= self.limits.uploads_per_hour:
                retry = (min(uploads) + HOUR - moment).total_seconds()
                raise OverQuota("uploads_per_hour", f"you uploaded {len(uploads)} videos in the last hour, the "
                                f"limit is {self.limits.uploads_per_hour}", math.ceil(retry))
            held = self.media_bytes_held(owner_id) + streaming_bytes
            room = self.limits.media_bytes - held
            if room <= 0 or declared_bytes > room:
                raise OverQuota("media_bytes", f"you hold {held} bytes of media, the limit is "
                                f"{self.limits.media_bytes}; this upload needs {declared_bytes}; wait "
                                "for an MP3 to expire", 3600)
            entry = {"job_id": job_id, "at": moment, "bytes": declared_bytes}
            return {"in_flight": [*in_flight, entry], "uploads": [*uploads, moment]}

        self._compare_and_set(owner_id, change)
        return room

    def release_upload(self, owner_id: str, job_id: str) -> None:
        """The upload was refused or failed: its slot and its upload of the hour are given back."""
        def change(usage: Usage) -> Usage:
            entries = usage.get("in_flight", [])
            mine = [entry for entry in entries if entry["job_id"] == job_id]
            uploads = list(usage.get("uploads", []))
            for entry in mine:
                if entry["at"] in uploads:
                    uploads.remove(entry["at"])
            return {"in_flight": [entry for entry in entries if entry["job_id"] != job_id], "uploads": uploads}

        self._compare_and_set(owner_id, change)

    def media_bytes_held(self, owner_id: str) -> int:
        """Stored media: the sources and covers the uploads kept, the MP3s, and unfinished resumable uploads, each
        counting all it declared (Upload-Length). A finished upload's video, on its way out, no longer counts."""
        held = sum(MediaStore(self.database, bucket).bytes_held_by(owner_id) for bucket in (SOURCES, COVERS, AUDIO))
        return held + MediaStore(self.database, VIDEOS).bytes_held_by(owner_id, unfinished_only=True)

    def _live_in_flight(self, entries: list[dict[str, Any]], moment: datetime) -> tuple[list[dict[str, Any]], int]:
        """The entries whose job has not ended (a job not in a final state, or a reservation whose upload is still
        streaming), and the bytes declared by those reservations (not yet in GridFS). Each job is read by `_id`,
        which every MongoDB, FerretDB included, answers from an index."""
        live, streaming_bytes = [], 0
        for entry in entries:
            job = self.database["jobs"].find_one({"_id": entry["job_id"]}, {"state": 1})
            if job is None and entry["at"] > moment - RESERVATION_LIFETIME:
                live.append(entry)
                # A resumable upload's video is counted already, by media_bytes_held.
                if not MediaStore(self.database, VIDEOS).exists(entry["job_id"]):
                    streaming_bytes += entry["bytes"]
            elif job is not None and job["state"] not in FINAL_STATES:
                live.append(entry)
        return live, streaming_bytes

    # --- live streams ----------------------------------------------------------------------------------------

    def open_stream(self, owner_id: str, lasts: timedelta) -> str:
        """Takes one of the user's live-stream slots until `lasts` has passed (or `close_stream`)."""
        stream_id = uuid.uuid4().hex

        def change(usage: Usage) -> Usage:
            moment = now()
            streams = [entry for entry in usage.get("streams", []) if entry["until"] > moment]
            if len(streams) >= self.limits.live_streams:
                retry = (min(entry["until"] for entry in streams) - moment).total_seconds()
                raise OverQuota("live_streams", f"you have {len(streams)} live streams open, the limit is "
                                f"{self.limits.live_streams}; close one or poll the job instead", math.ceil(retry))
            return {"streams": [*streams, {"id": stream_id, "until": moment + lasts}]}

        self._compare_and_set(owner_id, change)
        return stream_id

    def close_stream(self, owner_id: str, stream_id: str) -> None:
        self._compare_and_set(owner_id, lambda usage: {
            "streams": [entry for entry in usage.get("streams", []) if entry["id"] != stream_id]})

    # --- what the status view shows --------------------------------------------------------------------------

    def report(self, owner_id: str) -> dict[str, dict[str, int]]:
        """The user's usage against each limit."""
        moment = now()
        usage = self.usage.find_one({"_id": owner_id}) or {}
        in_flight, _ = self._live_in_flight(usage.get("in_flight", []), moment)
        return {
            "jobs_in_flight": {"used": len(in_flight), "limit": self.limits.jobs_in_flight},
            "uploads_per_hour": {"used": sum(at > moment - HOUR for at in usage.get("uploads", [])),
                                 "limit": self.limits.uploads_per_hour},
            "media_bytes": {"used": self.media_bytes_held(owner_id), "limit": self.limits.media_bytes},
            "live_streams": {"used": sum(entry["until"] > moment for entry in usage.get("streams", [])),
                             "limit": self.limits.live_streams},
        }

    # --- the one way a usage document changes ----------------------------------------------------------------

    def _compare_and_set(self, owner_id: str, change: Callable[[Usage], Usage]) -> None:
        for _ in range(COMPARE_AND_SET_TRIES):
            usage = self.usage.find_one({"_id": owner_id})
            if usage is None:
                try:
                    self.usage.insert_one({"_id": owner_id, "version": 1, **change({})})
                    return
                except pymongo.errors.DuplicateKeyError:
                    continue  # a concurrent request made it first: read it
            written = self.usage.update_one({"_id": owner_id, "version": usage["version"]},
                                            {"$set": {**change(usage), "version": usage["version"] + 1}})
            if written.matched_count == 1:
                return
        raise QuotaBusy(f"the usage of {owner_id} kept changing")


def forget_usage(database: Database[dict[str, Any]], owner_id: str) -> None:
    """Deletes the usage document of an account that is deleted."""
    database[USAGE_COLLECTION].delete_one({"_id": owner_id})
