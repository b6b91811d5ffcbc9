"""Takes an upload: spools the file to the instance's scratch disk, extracts what the MP3 needs (the audio tracks,
their metadata and chapters, the covers: transcoding/extraction.py), stores only that in GridFS, records the job and
emits video uploaded. The whole file is never written to GridFS, and its spool is removed whatever happens.

The upload is accepted once the source, the covers and the job (with its event in the job's outbox) are in
MongoDB; if the broker does not take the event then, it leaves in the background as soon as the broker is back
(`pending_events.py`), or with the reconcile sweep. When MongoDB cannot keep them, what was stored is removed
before the request fails. A file the extraction refuses is answered 422 with the conversion's reason as `error`
(not_media, no_audio, too_long, ...), and nothing is kept.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flask
import pymongo.errors

from accounts.tokens import Identity
from api.answers import UploadAccepted
from events import EmitError, EventEmitter, VideoUploaded
from events.options import ConversionOptions, InvalidOptions, parse_options
from functions.upload.intake import BadUpload, Readable, open_upload
from functions.upload.pending_events import PendingEventRetry
from functions.upload.url_import import STOPPED
from jobs.quotas import QUOTA_BUSY, OverQuota, QuotaBusy, Quotas
from jobs.records import Jobs, JobState
from runtime.answers import HttpError, json_response
from runtime.clock import now
from storage.media import JobSources, TooLarge
from storage.scratch import ScratchBudget, ScratchFull, ScratchHolding, work_folder
from transcoding import chapter_files, extraction
from transcoding.extraction import Chapter, Extracted, InvalidPart
from transcoding.ffmpeg_tools import Rejected
from transcoding.media_formats import NOT_MEDIA_MESSAGE

log = logging.getLogger(__name__)

# Room for multipart boundaries and headers around a file of the maximum size (and a client's cover and chapters).
MULTIPART_OVERHEAD_BYTES = 64 * 1024 + extraction.MAX_CHAPTERS_BYTES + extraction.MAX_COVER_BYTES
DEFAULT_BITRATE_KBPS = 192
# The upload function's folders on the scratch disk: `upload.<job id>.<random>`. No other process uses them, so
# the function clears them all when it starts (a kill -9 mid-extraction leaves nothing once it restarts).
SCRATCH_PREFIX = "upload."
# An upload holds twice its size on the scratch disk: its spool, and a source that may be as large (an upload of
# audio alone).
SCRATCH_PER_BYTE = 2


def options_of(fields: dict[str, str]) -> ConversionOptions:
    """The conversion options in the request's fields, or a 422 naming every bad one (`fields`: each bad field,
    an unknown name too, and what is wrong with it). A bad `bitrate` alone keeps its older error code."""
    try:
        return parse_options(fields)
    except InvalidOptions as invalid:
        code = "unsupported_bitrate" if list(invalid.errors) == ["bitrate"] else "invalid_options"
        raise HttpError(422, code, f"invalid conversion options: {invalid}", extra={"fields": invalid.errors}) from None


def side_parts(parts: dict[str, bytes]) -> tuple[bytes | None, list[Chapter] | None]:
    """A client's `cover` and `chapters` parts, checked; a 422 naming each bad one."""
    cover = chapters = None
    problems: dict[str, str] = {}
    if "cover" in parts:
        try:
            cover = extraction.check_cover(parts["cover"])
        except InvalidPart as invalid:
            problems["cover"] = str(invalid)
    if "chapters" in parts:
        try:
            chapters = extraction.parse_chapters(parts["chapters"])
        except InvalidPart as invalid:
            problems["chapters"] = str(invalid)
    if problems:
        raise HttpError(422, "invalid_options", "invalid parts: " + "; ".join(f"{name}: {problem}"
                                                                              for name, problem in problems.items()),
                        extra={"fields": problems})
    return cover, chapters


def check_split(options: ConversionOptions, extracted: Extracted) -> None:
    """A 422 naming `split` when the file has no chapter to split at (within the trim); known once it is probed."""
    refusal = chapter_files.split_refusal(options, extracted.probe.chapters)
    if refusal is not None:
        raise HttpError(422, "invalid_options", f"invalid conversion options: {refusal}",
                        extra={"fields": {"split": refusal}})


def refusal(rejected: Rejected) -> HttpError:
    """The extraction refused the file: 422 with the conversion's reason as the error code."""
    return HttpError(422, str(rejected.reason), rejected.message)


@dataclass(frozen=True)
class Received:
    """What the client sent: its size and SHA-256 (the job's `size_bytes`, `received_bytes` and `sha256`)."""

    size_bytes: int
    sha256: str


@dataclass(frozen=True)
class Kept:
    """What the job keeps: its source (`video_id`: the job's id in bucket `sources`) and its covers."""

    video_id: str
    source_format: str
    stored_bytes: int
    covers: dict[str, str]  # kind -> file id in bucket `covers`


@dataclass
class Uploads:
    sources: JobSources
    jobs: Jobs
    emitter: EventEmitter
    pending_events: PendingEventRetry
    quotas: Quotas
    max_upload_bytes: int
    public_status_url: str
    work_dir: Path
    scratch: ScratchBudget
    max_streams: int
    max_duration_seconds: float

    def accept(self, request: flask.Request, identity: Identity) -> flask.Response:
        query_fields = request.args.to_dict()
        filename = query_fields.pop("filename", None)  # the raw body's name; every other parameter is an option
        return self.accept_body(request.stream, request.content_type or "", filename, request.content_length,
                                query_fields, identity)

    def accept_body(self, body: Readable, content_type: str, filename: str | None, declared_bytes: int | None,
                    query_fields: dict[str, str], identity: Identity) -> flask.Response:
        if declared_bytes is not None and declared_bytes > self.max_upload_bytes + MULTIPART_OVERHEAD_BYTES:
            raise too_large(self.max_upload_bytes)
        # Checked before the body is read: a bad query option costs the client no upload.
        options_of(query_fields)
        job_id = uuid.uuid4().hex
        # Before a byte of the body is read: a refused upload costs the user nothing and stores nothing.
        room = self.reserve(identity, job_id, declared_bytes or 0)
        try:
            return self.take(body, content_type, filename, declared_bytes or 0, identity, job_id, query_fields,
                             room)
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

    def take(self, body: Readable, content_type: str, filename: str | None, declared_bytes: int,
             identity: Identity, job_id: str, query_fields: dict[str, str], room: int,
             import_attempt: str | None = None) -> flask.Response:
        """The body spooled, extracted and kept, and its job recorded; `import_attempt`: the import (imports.py)
        whose `importing` job it completes."""
        try:
            upload = open_upload(body, content_type, filename)
        except BadUpload as error:
            raise HttpError(400, "bad_upload", str(error)) from None
        if upload.container is None:
            raise HttpError(415, "not_media", NOT_MEDIA_MESSAGE)
        with self.scratch.held() as holding, self.work_folder(job_id) as folder:
            self.hold(holding, declared_bytes)
            try:
                received = self.spool(upload.chunks, folder / "upload", holding,
                                      max_bytes=min(self.max_upload_bytes, room))
            except TooLarge:
                if room < self.max_upload_bytes:
                    raise OverQuota("media_bytes", f"this upload would take your media past the limit of "
                                    f"{self.quotas.limits.media_bytes} bytes; wait for an MP3 to expire",
                                    3600).http_error() from None
                raise too_large(self.max_upload_bytes) from None
            except BadUpload as error:
                raise HttpError(400, "bad_upload", str(error)) from None
            # Form fields and parts, read as the body streamed past, override the query's.
            options = options_of({**query_fields, **upload.fields})
            cover, chapters = side_parts(upload.parts)
            extracted = self.extract(folder / "upload", folder, cover=cover, chapters=chapters)
            check_split(options, extracted)
            accepted = self.keep(identity.subject, job_id, extracted, received, upload.filename, upload.container,
                                 options, undo=self.undo, import_attempt=import_attempt)
        return json_response(accepted.model_dump(mode="json"), 202, {"Location": accepted.status_url})

    def work_folder(self, job_id: str) -> Any:
        return work_folder(self.work_dir, f"{SCRATCH_PREFIX}{job_id}.")

    def hold(self, holding: ScratchHolding, size: int) -> None:
        """Holds room on the scratch disk for an upload of `size` bytes so far; 503 when it has none now."""
        try:
            holding.at_least(SCRATCH_PER_BYTE * size)
        except ScratchFull as full:
            log.warning("an upload waits for scratch room: %s", full)
            raise HttpError(503, "busy", "the server has no room for this upload just now; try again",
                            {"Retry-After": "10"}) from None

    def spool(self, chunks: Iterable[bytes], target: Path, holding: ScratchHolding, *,
              max_bytes: int | None = None) -> Received:
        """Writes the upload to `target`, hashing it as it goes; TooLarge past `max_bytes`."""
        digest, size = hashlib.sha256(), 0
        with target.open("wb") as file:
            for chunk in chunks:
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise TooLarge(f"more than {max_bytes} bytes")
                self.hold(holding, size)
                digest.update(chunk)
                file.write(chunk)
        return Received(size, digest.hexdigest())

    def extract(self, upload: Path, folder: Path, *, cover: bytes | None = None, chapters: list[Chapter] | None = None,
                heartbeat: Callable[[], bool] = lambda: True) -> Extracted:
        try:
            return extraction.extract(upload, folder, max_streams=self.max_streams,
                                      max_duration=self.max_duration_seconds, client_cover=cover, chapters=chapters,
                                      heartbeat=heartbeat)
        except Rejected as rejected:
            log.info("upload refused by the extraction: %s: %s", rejected.reason, rejected.message)
            raise refusal(rejected) from None

    def keep(self, owner_id: str, job_id: str, extracted: Extracted, received: Received, filename: str,
             container: str, options: ConversionOptions, undo: Callable[[str], None],
             import_attempt: str | None = None) -> UploadAccepted:
        """Stores the source and the covers, then records the job and emits its event (`accept_stored`)."""
        try:
            kept = self.store(owner_id, job_id, extracted, received, filename, container)
        except pymongo.errors.PyMongoError as error:
            log.error("storing the source of job %s failed: %s", job_id, error)
            self.remove_kept(job_id)
            raise HttpError(503, "storage_unavailable", "the upload could not be stored; try again",
                            {"Retry-After": "5"}) from None
        return self.accept_stored(owner_id, job_id, received, kept, filename, container, options, undo,
                                  import_attempt)

    def store(self, owner_id: str, job_id: str, extracted: Extracted, received: Received, filename: str,
              container: str) -> Kept:
        kept = self.sources.keep(
            job_id, owner_id, source=extracted.source, source_format=extracted.source_format,
            name=f"{Path(filename).stem or 'audio'}.{extraction.SOURCE_FORMATS[extracted.source_format][1]}",
            covers={kind: (cover.path, cover.content_type) for kind, cover in extracted.covers.items()},
            received_bytes=received.size_bytes, container=container)
        return Kept(video_id=job_id, source_format=extracted.source_format, stored_bytes=kept.stored_bytes,
                    covers=kept.covers)

    def remove_kept(self, job_id: str) -> None:
        """The source and covers of the job, as far as they were stored (safe to repeat)."""
        try:
            self.sources.remove_kept(job_id)
        except pymongo.errors.PyMongoError as error:  # the reconcile sweeps remove what is left
            log.error("could not remove the source of job %s: %s", job_id, error)

    def accept_stored(self, owner_id: str, job_id: str, received: Received, kept: Kept, filename: str,
                      container: str, options: ConversionOptions, undo: Callable[[str], None],
                      import_attempt: str | None = None) -> UploadAccepted:
        """The one way a stored source becomes a job, for the one-shot and the resumable upload alike: records the
        job with its event in the outbox, emits it, and answers what the client is told (the 202's body).
        `undo(job_id)` clears what is left should the job not be recorded."""
        bitrate = options.cbr_kbps or DEFAULT_BITRATE_KBPS
        event = VideoUploaded(
            job_id=job_id, owner_id=owner_id, video_id=kept.video_id, filename=filename,
            size_bytes=received.size_bytes, sha256=received.sha256, bitrate_kbps=bitrate,  # type: ignore[arg-type]
            uploaded_at=now(), options=options.for_event(), stored_bytes=kept.stored_bytes,
        )
        self.record_and_emit(event, container, kept, undo, import_attempt)
        return UploadAccepted(job_id=event.job_id, state=JobState.UPLOADED, status_url=self.status_url(event.job_id),
                              filename=filename, size_bytes=received.size_bytes, received_bytes=received.size_bytes,
                              stored_bytes=kept.stored_bytes, sha256=received.sha256, bitrate_kbps=bitrate,
                              options=options.given())

    def status_url(self, job_id: str) -> str:
        return f"{self.public_status_url.rstrip('/')}/{job_id}"

    def record_and_emit(self, event: VideoUploaded, container: str, kept: Kept, undo: Callable[[str], None],
                        import_attempt: str | None = None) -> None:
        job: dict[str, Any] = {
            "_id": event.job_id, "owner_id": event.owner_id, "video_id": event.video_id,
            "filename": event.filename, "size_bytes": event.size_bytes, "sha256": event.sha256,
            "bitrate_kbps": event.bitrate_kbps, "container": container,
            "received_bytes": event.size_bytes, "stored_bytes": kept.stored_bytes,
            "source_format": kept.source_format, "covers": kept.covers,
            **({"options": event.options.given()} if event.options else {}),
        }
        try:
            # With the event pending: the reconcile sweep emits it should we die.
            if import_attempt is None:
                self.jobs.create(job, event)
            elif self.jobs.imported(event.job_id, import_attempt, job, event) is None:
                self.remove_kept(event.job_id)  # the import was cancelled meanwhile: its job keeps nothing
                raise STOPPED
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
        except pymongo.errors.PyMongoError as error:  # the reconcile sweep removes what is left
            log.error("could not remove the record of job %s: %s", job_id, error)
        self.remove_kept(job_id)


def url_and_options(body: Any) -> tuple[str, dict[str, str]]:
    """The URL of an import's JSON body, and the conversion options beside it (as the form's fields: strings)."""
    if not isinstance(body, dict) or not isinstance(body.get("url"), str):
        raise HttpError(422, "url_required", 'import a video by URL with {"url": "https://...", <options>}, or '
                                             "send the video itself")
    fields = {name: value for name, value in body.items() if name != "url"}
    not_plain = sorted(name for name, value in fields.items() if not isinstance(value, str | int | float))
    if not_plain:
        raise HttpError(422, "invalid_options", f"options are strings or numbers: {', '.join(not_plain)}",
                        extra={"fields": {name: "a string or a number" for name in not_plain}})
    return body["url"], {name: str(value) for name, value in fields.items()}


def too_large(limit: int) -> HttpError:
    return HttpError(413, "too_large", f"uploads are limited to {limit} bytes")
