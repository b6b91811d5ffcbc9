"""Takes an upload: stores the video in GridFS as it streams in, records the job and emits video uploaded.

The upload is accepted once the video and the job (with its event in the job's outbox) are in MongoDB; if the
broker does not take the event then, it leaves in the background as soon as the broker is back
(`pending_events.py`), or with the reconcile sweep. When MongoDB cannot keep the video or the job, what was
stored is removed before the request fails.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import flask
import pymongo.errors

from accounts.tokens import Identity
from api.answers import UploadAccepted
from events import EmitError, EventEmitter, VideoUploaded
from events.options import ConversionOptions, InvalidOptions, parse_options
from functions.upload.intake import BadUpload, open_upload
from functions.upload.pending_events import PendingEventRetry
from jobs.quotas import QUOTA_BUSY, OverQuota, QuotaBusy, Quotas
from jobs.records import Jobs, JobState
from runtime.answers import HttpError, json_response
from runtime.clock import now
from storage.media import MediaStore, StoredFile, TooLarge
from transcoding.media_formats import DEMUXERS

log = logging.getLogger(__name__)

# Room for multipart boundaries and headers around a file of the maximum size.
MULTIPART_OVERHEAD_BYTES = 64 * 1024
DEFAULT_BITRATE_KBPS = 192


def options_of(fields: dict[str, str]) -> ConversionOptions:
    """The conversion options among the request's fields, or a 422 naming every bad one (`fields`: each bad
    field and what is wrong with it). A bad `bitrate` alone keeps its older error code."""
    try:
        return parse_options(fields)
    except InvalidOptions as invalid:
        code = "unsupported_bitrate" if list(invalid.errors) == ["bitrate"] else "invalid_options"
        raise HttpError(422, code, f"invalid conversion options: {invalid}", extra={"fields": invalid.errors}) from None


@dataclass
class Uploads:
    videos: MediaStore
    jobs: Jobs
    emitter: EventEmitter
    pending_events: PendingEventRetry
    quotas: Quotas
    max_upload_bytes: int
    public_status_url: str

    def accept(self, request: flask.Request, identity: Identity) -> flask.Response:
        if request.content_length is not None and \
                request.content_length > self.max_upload_bytes + MULTIPART_OVERHEAD_BYTES:
            raise too_large(self.max_upload_bytes)
        # Checked before the body is read: a bad query option costs the client no upload.
        query_fields = dict(request.args.items())
        options_of(query_fields)
        job_id = uuid.uuid4().hex
        # Before a byte of the body is read: a refused upload costs the user nothing and stores nothing.
        room = self.reserve(identity, job_id, request.content_length or 0)
        try:
            return self.take(request, identity, job_id, query_fields, room)
        except BaseException:
            self.release(identity.subject, job_id)
            raise

    def reserve(self, identity: Identity, job_id: str, declared_bytes: int) -> int:
        try:
            return self.quotas.reserve_upload(identity.subject, job_id, declared_bytes)
        except OverQuota as over:
            raise over.http_error() from None
        except QuotaBusy:
            raise QUOTA_BUSY from None
        except pymongo.errors.PyMongoError as error:
            log.error("the quota of %s could not be read: %s", identity.subject, error)
            raise HttpError(503, "storage_unavailable", "the upload could not be taken; try again",
                            {"Retry-After": "5"}) from None

    def release(self, owner_id: str, job_id: str) -> None:
        try:
            self.quotas.release_upload(owner_id, job_id)
        except (QuotaBusy, pymongo.errors.PyMongoError) as error:  # the slot frees itself: no job record follows
            log.warning("job %s: its quota reservation stays until it lapses: %s", job_id, error)

    def take(self, request: flask.Request, identity: Identity, job_id: str, query_fields: dict[str, str],
             room: int) -> flask.Response:
        try:
            upload = open_upload(request.stream, request.content_type or "", request.args.get("filename"))
        except BadUpload as error:
            raise HttpError(400, "bad_upload", str(error)) from None
        if upload.container is None:
            raise HttpError(415, "not_media", "the file is not a video or audio container vid2mp3 reads "
                                              f"({', '.join(DEMUXERS)})")
        try:
            stored = self.videos.store(
                job_id, upload.chunks, filename=upload.filename, max_bytes=min(self.max_upload_bytes, room),
                metadata={"owner_id": identity.subject, "job_id": job_id, "container": upload.container},
            )
        except TooLarge:
            if room < self.max_upload_bytes:
                raise OverQuota("media_bytes", f"this upload would take your media past the limit of "
                                f"{self.quotas.limits.media_bytes} bytes; wait for an MP3 to expire",
                                3600).http_error() from None
            raise too_large(self.max_upload_bytes) from None
        except BadUpload as error:
            raise HttpError(400, "bad_upload", str(error)) from None
        except pymongo.errors.PyMongoError as error:
            log.error("storing the upload of job %s failed: %s", job_id, error)
            raise HttpError(503, "storage_unavailable", "the video could not be stored; try again",
                            {"Retry-After": "5"}) from None
        try:
            # Form fields, read as the body streamed past, override the query's.
            options = options_of({**query_fields, **upload.fields})
        except HttpError:
            self.videos.remove(job_id)
            raise
        accepted = self.accept_stored(identity.subject, stored, upload.filename, upload.container, options,
                                      undo=self.undo)
        return json_response(accepted.model_dump(mode="json"), 202, {"Location": accepted.status_url})

    def accept_stored(self, owner_id: str, stored: StoredFile, filename: str, container: str,
                      options: ConversionOptions, undo: Callable[[str], None]) -> UploadAccepted:
        """The one way a stored video becomes a job, for the one-shot and the resumable upload alike: records the
        job with its event in the outbox, emits it, and answers what the client is told (the 202's body).
        `undo(job_id)` clears what is left should the job not be recorded."""
        bitrate = options.cbr_kbps or DEFAULT_BITRATE_KBPS
        event = VideoUploaded(
            job_id=stored.file_id, owner_id=owner_id, video_id=stored.file_id, filename=filename,
            size_bytes=stored.size_bytes, sha256=stored.sha256, bitrate_kbps=bitrate,  # type: ignore[arg-type]
            uploaded_at=now(), options=options.for_event(),
        )
        self.record_and_emit(event, container, undo)
        return UploadAccepted(job_id=event.job_id, state=JobState.UPLOADED, status_url=self.status_url(event.job_id),
                              filename=filename, size_bytes=stored.size_bytes, sha256=stored.sha256,
                              bitrate_kbps=bitrate, options=options.given())

    def status_url(self, job_id: str) -> str:
        return f"{self.public_status_url.rstrip('/')}/{job_id}"

    def record_and_emit(self, event: VideoUploaded, container: str, undo: Callable[[str], None]) -> None:
        job: dict[str, Any] = {
            "_id": event.job_id, "owner_id": event.owner_id, "video_id": event.video_id,
            "filename": event.filename, "size_bytes": event.size_bytes, "sha256": event.sha256,
            "bitrate_kbps": event.bitrate_kbps, "container": container,
            **({"options": event.options.given()} if event.options else {}),
        }
        try:
            self.jobs.create(job, event)  # with the event pending: the reconcile sweep emits it should we die
        except pymongo.errors.PyMongoError as error:
            log.error("job %s could not be recorded, removing it: %s", event.job_id, error)
            undo(event.job_id)
            raise HttpError(503, "storage_unavailable", "the job could not be recorded and nothing was kept; "
                                                        "try again", {"Retry-After": "5"}) from None
        try:
            self.emitter.emit(event)
        except EmitError as error:  # kept: it leaves when the broker is back
            log.warning("job %s: the broker did not take its event yet, retrying in the background: %s",
                        event.job_id, error)
            self.pending_events.add(event.job_id)
            return
        try:
            # The broker has it. Left pending, the sweep would send it again while it waits in a long queue.
            self.jobs.clear_pending(event.job_id, event.event_id())
        except pymongo.errors.PyMongoError as error:  # then the sweep sends a duplicate, which convert ignores
            log.warning("job %s: its sent event is still marked pending: %s", event.job_id, error)

    def undo(self, job_id: str) -> None:
        try:
            self.jobs.delete(job_id)
            self.videos.remove(job_id)
        except pymongo.errors.PyMongoError as error:  # the reconcile sweep removes what is left
            log.error("could not remove the remains of job %s: %s", job_id, error)


def too_large(limit: int) -> HttpError:
    return HttpError(413, "too_large", f"uploads are limited to {limit} bytes")
