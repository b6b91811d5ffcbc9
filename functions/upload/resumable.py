"""tus 1.0.0 resumable uploads at `UPLOAD_URL/files/` (README: Resumable uploads): creation (with upload), HEAD,
PATCH, termination, expiration and sha1 checksums. Bytes go into GridFS as they arrive, at the upload's offset under
its lease (storage/unfinished_uploads.py): between requests, possibly to other instances, they must be kept there.
When the last one lands, the video is spooled to the scratch disk and extracted once, and the upload becomes a job
by the one-shot upload's own path (`Uploads.keep`), the job's id the upload's; the video is then removed in the
background, paced (`VideoRemoval`), after the answer. An instance that dies while finishing leaves the upload whole
and unfinished: the client's next HEAD (which tus clients send when they resume) or PATCH finishes it. Reconcile
removes the unfinished uploads past their expiry, and finished ones' videos an instance left.

A PATCH without a checksum moves the offset on after every few chunks it writes, and a client that drops keeps what
it sent (the rest is written then; within the limits below); with one, only once the sha1 matches. Memory per
PATCH: a few chunks and one read.

Every PATCH but the one that ends the upload (and a creation's body alike) brings at least `min_patch_bytes`
(`RESUMABLE_MIN_PATCH_BYTES`, 256 KiB): a smaller one is refused (400 `patch_too_small`) before a byte of it is
read when its `Content-Length` says so, or once read (its bytes given back). Each PATCH costs a claim, a rewrite of
the upload's part-filled last GridFS chunk and an update of its files document, whatever it brings: without a floor,
1 kB at a time was accepted, a round of writes per kilobyte. tus clients send far larger pieces (the web page's
tus-js-client and the command's tuspy: 8 MiB), and a 400 is final to both (neither retries a 4xx but 409 and
423).

A PATCH cut short (its body ended before its `Content-Length` or its last chunk) keeps its bytes only when at
least `min_patch_bytes` arrived and they do not end the upload: an incomplete request never finishes an upload (a
resuming client sends that last piece again, whole).
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import hashlib
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import flask
import pymongo.errors
import werkzeug.exceptions

from accounts.tokens import Identity
from api.limits import TUS_EXTENSIONS, TUS_VERSION
from functions.upload.intake import read_stream, safe_filename
from functions.upload.uploads import Uploads, check_split, options_of, too_large
from runtime.answers import HttpError, method_not_allowed
from runtime.clock import now
from storage.media import MediaStore
from storage.pacing import Pacing
from storage.unfinished_uploads import WRITER_LEASE, LostLease, OffsetMoved, UnfinishedUploads, WriterBusy
from transcoding.ffmpeg_tools import Stopped
from transcoding.media_formats import NOT_MEDIA_MESSAGE, SNIFF_BYTES, sniff_container

log = logging.getLogger(__name__)

OFFSET_CONTENT_TYPE = "application/offset+octet-stream"
UPLOAD_ID = re.compile(r"[0-9a-f]{32}")
# The request finishing an upload (spooling, extracting, storing) holds it this long past its last sign of life,
# renewed every FINISH_RENEW_SECONDS: should its instance die, the client's next HEAD finishes it soon after.
FINISH_LEASE = timedelta(seconds=10)
FINISH_RENEW_SECONDS = 2.0
# A HEAD that finds the upload being finished by a live request waits (polling) this long for it to end.
HEAD_WAITS_SECONDS = 15.0
HEAD_POLL_SECONDS = 0.25


def http_date(moment: datetime) -> str:
    return email.utils.format_datetime(moment.astimezone(UTC), usegmt=True)


def header_integer(request: flask.Request, name: str) -> int:
    value = request.headers.get(name, "")
    if not (value.isascii() and value.isdigit()):
        raise HttpError(400, "bad_header", f"{name} must be a non-negative integer")
    return int(value)


def parse_metadata(header: str) -> dict[str, str]:
    """tus `Upload-Metadata`: `key base64value,key2 base64value2` (a key may come alone)."""
    metadata: dict[str, str] = {}
    for pair in filter(None, (part.strip() for part in header.split(","))):
        key, _, value = pair.partition(" ")
        try:
            metadata[key] = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise HttpError(400, "bad_header", f"Upload-Metadata: the value of {key!r} is not base64 of UTF-8 "
                                               "text") from None
    return metadata


def parse_checksum(header: str | None) -> bytes | None:
    if header is None or not header.strip():  # an empty header vouches for nothing: as if absent
        return None
    algorithm, _, digest = header.strip().partition(" ")
    if algorithm != "sha1":
        raise HttpError(400, "bad_header", "Upload-Checksum: the one algorithm supported is sha1")
    try:
        return base64.b64decode(digest, validate=True)
    except binascii.Error:
        raise HttpError(400, "bad_header", "Upload-Checksum: the digest is not base64") from None


@dataclass
class VideoRemoval:
    """Removes finished uploads' videos in the background, one at a time and paced (storage/pacing.py): a 460 MB
    video is about 60 delete commands, each holding the local FerretDB's one write lock, which deleted back to back
    held other users' writes for 9 s. Chunks first, the files document last (`MediaStore.clear`); should the
    instance die first, the reconcile sweep removes what is left."""

    videos: MediaStore
    pacing: Callable[[], Pacing]
    _worker: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=1, thread_name_prefix="video-removal"))

    def later(self, upload_id: str) -> None:
        self._worker.submit(self._remove, upload_id)

    def _remove(self, upload_id: str) -> None:
        pacing = self.pacing()
        pacing.begin()
        try:
            self.videos.clear(upload_id, pace=pacing.breathe)
            log.info("upload %s: its video is removed", upload_id)
        except Exception as error:  # the reconcile sweep removes what is left
            log.warning("upload %s: its video stays for the reconcile sweep: %s", upload_id, error)
        finally:
            pacing.pause()


@dataclass
class ResumableUploads:
    uploads: Uploads
    videos: MediaStore
    public_upload_url: str  # empty: the URL the request came to
    lifetime: timedelta
    removal: VideoRemoval
    # The least a request's body may bring, but for the one that ends the upload (RESUMABLE_MIN_PATCH_BYTES).
    min_patch_bytes: int

    def __post_init__(self) -> None:
        self.stored = UnfinishedUploads(self.videos, self.lifetime)

    def handle(self, request: flask.Request, authenticate: Callable[[flask.Request], Identity]) -> flask.Response:
        """Answers a request under /files/. `authenticate(request)` is the caller's token check."""
        try:
            return self.route(request, authenticate)
        except pymongo.errors.PyMongoError as error:
            log.error("a resumable upload request failed on the store: %s", error)
            raise STORE_UNAVAILABLE from None

    def route(self, request: flask.Request, authenticate: Callable[[flask.Request], Identity]) -> flask.Response:
        upload_id = request.path.removeprefix("/files").strip("/")
        if request.method == "OPTIONS":
            return self.answer(204, {"Tus-Version": TUS_VERSION, "Tus-Extension": TUS_EXTENSIONS,
                                     "Tus-Max-Size": str(self.uploads.max_upload_bytes),
                                     "Tus-Checksum-Algorithm": "sha1"})
        if request.headers.get("Tus-Resumable") != TUS_VERSION:
            raise HttpError(412, "unsupported_version", f"send Tus-Resumable: {TUS_VERSION}",
                            {"Tus-Version": TUS_VERSION})
        identity = authenticate(request)
        if not upload_id:
            if request.method != "POST":
                raise method_not_allowed("OPTIONS, POST", "POST creates an upload here")
            return self.create(request, identity)
        if not UPLOAD_ID.fullmatch(upload_id):
            raise NO_SUCH_UPLOAD
        if request.method == "HEAD":
            return self.head(upload_id, identity)
        if request.method == "PATCH":
            return self.patch(request, upload_id, identity)
        if request.method == "DELETE":
            return self.terminate(upload_id, identity)
        raise method_not_allowed("OPTIONS, HEAD, PATCH, DELETE", "HEAD, PATCH or DELETE an upload")

    def answer(self, status: int, headers: dict[str, str]) -> flask.Response:
        response = flask.Response(status=status, headers={"Tus-Resumable": TUS_VERSION, "Cache-Control": "no-store",
                                                          **headers})
        del response.headers["Content-Type"]  # no body
        return response

    def progress_headers(self, document: dict[str, Any]) -> dict[str, str]:
        state = document["metadata"].get("resumable")
        headers = {"Upload-Offset": str(document["length"]),
                   "Upload-Length": str(state["length"] if state else document["length"])}
        if state:
            headers["Upload-Expires"] = http_date(state["expires_at"])
        return headers

    # --- creation --------------------------------------------------------------------------------------------

    def create(self, request: flask.Request, identity: Identity) -> flask.Response:
        if "Upload-Defer-Length" in request.headers:
            raise HttpError(400, "bad_header", "deferred lengths are not supported: send Upload-Length")
        length = header_integer(request, "Upload-Length")
        if length == 0:
            raise HttpError(400, "bad_header", "Upload-Length must be positive: an empty file is no video")
        if length > self.uploads.max_upload_bytes:
            raise too_large(self.uploads.max_upload_bytes)
        with_body = (request.content_length or 0) > 0
        if with_body and request.mimetype != OFFSET_CONTENT_TYPE:
            raise HttpError(415, "bad_content_type", f"an upload's bytes come as {OFFSET_CONTENT_TYPE}")
        metadata = parse_metadata(request.headers.get("Upload-Metadata", ""))
        filename = safe_filename(metadata.pop("filename", None))
        # tus-js-client's examples (and Uppy) send the file's type too: the container is sniffed instead.
        metadata.pop("filetype", None)
        options_of(metadata)  # 422 now, not once the whole video is in
        upload_id = uuid.uuid4().hex
        self.uploads.reserve(identity, upload_id, length)
        try:
            self.stored.create(upload_id, owner_id=identity.subject, filename=filename, length=length,
                               fields=metadata)
        except pymongo.errors.PyMongoError as error:
            self.uploads.release(identity.subject, upload_id)
            log.error("upload %s could not be created: %s", upload_id, error)
            raise STORE_UNAVAILABLE from None
        base = self.public_upload_url or request.url_root
        headers = {"Location": f"{base.rstrip('/')}/files/{upload_id}"}
        if with_body:
            try:
                document = self.write(request, self.owned(upload_id, identity), identity, checksum=parse_checksum(
                    request.headers.get("Upload-Checksum")))
            except HttpError:
                # The client learns no URL from a failed creation: nothing of it may stay.
                self.remove({"_id": upload_id, "metadata": {"owner_id": identity.subject}})
                raise
        else:
            document = self.owned(upload_id, identity)
        headers.update(self.progress_headers(document))
        if not with_body:
            del headers["Upload-Offset"]
        return self.answer(201, headers)

    # --- the state of an upload ------------------------------------------------------------------------------

    def owned(self, upload_id: str, identity: Identity) -> dict[str, Any]:
        """The upload's files document; 404 alike for none and someone else's, 410 once expired. A finished upload
        whose video is gone answers as its files document did: complete (a client whose last PATCH's answer was
        lost asks its offset again)."""
        try:
            document = self.stored.get(upload_id)
            if document is None:
                job = self.uploads.jobs.get_owned(upload_id, identity.subject)
                if job is not None:
                    return {"_id": upload_id, "length": job["size_bytes"], "filename": job.get("filename"),
                            "metadata": {"owner_id": identity.subject}}
        except pymongo.errors.PyMongoError:
            raise STORE_UNAVAILABLE from None
        if document is None or (document.get("metadata") or {}).get("owner_id") != identity.subject:
            raise NO_SUCH_UPLOAD
        state = document["metadata"].get("resumable")
        if state and state["expires_at"] < now():
            raise HttpError(410, "upload_expired", "this upload expired unfinished; start a new one")
        return document

    def head(self, upload_id: str, identity: Identity) -> flask.Response:
        document = self.owned(upload_id, identity)
        state = document["metadata"].get("resumable")
        if state and document["length"] == state["length"]:
            # Every byte landed but the job is not recorded (yet: another request is finishing it; or not: the store
            # failed, or the instance finishing it died). A client resuming asks here first, and would take the full
            # offset for done: the job is recorded before the answer.
            document = self.after_finisher(document, identity)
            state = document["metadata"].get("resumable")
            if state and self.free(state):
                document = self.finish(document, identity)
        return self.answer(200, self.progress_headers(document))

    def after_finisher(self, document: dict[str, Any], identity: Identity) -> dict[str, Any]:
        """The upload once no live request holds it (its finisher ended, or died and its lease lapsed), or as it is
        after HEAD_WAITS_SECONDS."""
        deadline = time.monotonic() + HEAD_WAITS_SECONDS
        while (state := document["metadata"].get("resumable")) and not self.free(state) \
                and time.monotonic() < deadline:
            time.sleep(HEAD_POLL_SECONDS)
            document = self.owned(document["_id"], identity)
        return document

    @staticmethod
    def free(state: dict[str, Any]) -> bool:
        return state["writer"] is None or state["writer"]["until"] < now()

    # --- PATCH -----------------------------------------------------------------------------------------------

    def patch(self, request: flask.Request, upload_id: str, identity: Identity) -> flask.Response:
        if request.mimetype != OFFSET_CONTENT_TYPE:
            raise HttpError(415, "bad_content_type", f"PATCH the bytes as {OFFSET_CONTENT_TYPE}")
        offset = header_integer(request, "Upload-Offset")
        checksum = parse_checksum(request.headers.get("Upload-Checksum"))
        document = self.owned(upload_id, identity)
        if document["length"] != offset:
            raise offset_mismatch(document["length"])
        if "resumable" not in document["metadata"]:
            raise HttpError(409, "upload_finished", "this upload is complete; its job is at "
                                                    f"{self.uploads.status_url(upload_id)}")
        document = self.write(request, document, identity, checksum)
        return self.answer(204, {key: value for key, value in self.progress_headers(document).items()
                                 if key != "Upload-Length"})

    def write(self, request: flask.Request, document: dict[str, Any], identity: Identity,
              checksum: bytes | None) -> dict[str, Any]:
        """Takes the request's body at the upload's offset, holding the upload's lease meanwhile; finishes the
        upload when its last byte lands. The upload's files document as it is after."""
        state, offset = document["metadata"]["resumable"], document["length"]
        if request.content_length is not None and offset + request.content_length > state["length"]:
            raise HttpError(413, "too_large", f"this upload is {state['length']} bytes; {offset} are in")
        if request.content_length is not None and self.too_small(request.content_length, offset, state):
            raise self.patch_too_small(request.content_length, offset, state)
        writer = self.claim(document)
        try:
            self.append(request, document, writer, checksum)
        except LostLease:
            raise HttpError(409, "conflict", "another request took this upload over; ask its offset (HEAD) and "
                                             "go on from there") from None
        except pymongo.errors.PyMongoError as error:
            log.error("upload %s: writing failed: %s", document["_id"], error)
            raise STORE_UNAVAILABLE from None
        finally:
            self.release(document["_id"], writer)
        document = self.owned(document["_id"], identity)
        if document["length"] == state["length"]:
            document = self.finish(document, identity)
        return document

    def too_small(self, size: int, offset: int, state: dict[str, Any]) -> bool:
        """`size` bytes at `offset` are fewer than a PATCH must bring, and do not end the upload."""
        return size < self.min_patch_bytes and offset + size < state["length"]

    def patch_too_small(self, size: int, offset: int, state: dict[str, Any]) -> HttpError:
        return HttpError(400, "patch_too_small", f"send at least {self.min_patch_bytes} bytes per PATCH (this one "
                                                 f"brings {size}), or the rest of the upload: "
                                                 f"{state['length'] - offset} bytes from offset {offset}")

    def claim(self, document: dict[str, Any], lease: timedelta = WRITER_LEASE) -> str:
        try:
            return self.stored.claim(document, lease)
        except OffsetMoved as moved:
            raise offset_mismatch(moved.offset) from None
        except WriterBusy:
            raise HttpError(409, "conflict", "another request is writing to this upload; ask its offset (HEAD) "
                                             "and go on from there") from None

    def release(self, upload_id: str, writer: str) -> None:
        try:
            self.stored.release(upload_id, writer)
        except pymongo.errors.PyMongoError as error:  # the lease lapses by itself
            log.warning("upload %s: its lease stays until it lapses: %s", upload_id, error)

    def append(self, request: flask.Request, document: dict[str, Any], writer: str, checksum: bytes | None) -> None:
        upload_id, state, offset = document["_id"], document["metadata"]["resumable"], document["length"]
        container = state["container"]
        sha1 = hashlib.sha1()  # noqa: S324 - tus's checksum extension names sha1; it guards against damage only
        received = 0

        def after_batch(new_offset: int) -> None:
            # Without a checksum the offset moves on per batch; with one, only the lease is renewed until it matches.
            self.stored.advance(upload_id, writer, new_offset if checksum is None else None, container)

        with self.stored.appending(document, after_batch) as appending:
            # The file's first bytes, while they are still to be recognised as a media container.
            head = bytearray(appending.kept) if container is None and appending.first_chunk == 0 else None

            def take_back(error: HttpError) -> HttpError:
                appending.take_back()
                if checksum is None and received:
                    self.stored.advance(upload_id, writer, offset)
                return error

            try:
                for piece in read_stream(request.stream):
                    received += len(piece)
                    if offset + received > state["length"]:
                        raise take_back(HttpError(413, "too_large", f"this upload is {state['length']} bytes"))
                    sha1.update(piece)
                    if head is not None:
                        head += piece[:SNIFF_BYTES]
                        if len(head) >= min(SNIFF_BYTES, state["length"]):
                            container = sniff_container(bytes(head[:SNIFF_BYTES]))
                            head = None
                            if container is None:
                                appending.writer.settle()
                                self.remove(document)
                                raise NOT_MEDIA
                    appending.writer.add(piece)
            except (werkzeug.exceptions.ClientDisconnected, OSError) as error:
                # The client is gone: what it sent counts, so it resumes there; unless a checksum was to vouch for
                # it, or it is less than a PATCH must bring, or it would end the upload: an upload is finished by a
                # whole request only (RFC 9112 §6.3), and a resuming client sends that last piece again.
                log.info("upload %s: the client dropped after %d bytes: %s", upload_id, received, error)
                if checksum is not None or received < self.min_patch_bytes or offset + received >= state["length"]:
                    raise take_back(HttpError(400, "incomplete", "the body ended early; its bytes were discarded, "
                                                                 "send them again")) from None
                appending.writer.flush()
                self.stored.advance(upload_id, writer, offset + received, container)
                raise HttpError(400, "incomplete", "the body ended early; ask the offset (HEAD) and go on") from None
            appending.writer.flush()
            if request.content_length is None and self.too_small(received, offset, state):  # a chunked body
                raise take_back(self.patch_too_small(received, offset, state))
            if checksum is not None and sha1.digest() != checksum:
                raise take_back(HttpError(460, "checksum_mismatch", "the body's sha1 is not Upload-Checksum's; its "
                                                                    "bytes were discarded, send them again"))
            self.stored.advance(upload_id, writer, offset + received, container)

    # --- the end of an upload --------------------------------------------------------------------------------

    def finish(self, document: dict[str, Any], identity: Identity) -> dict[str, Any]:
        """The last byte is in: the video is spooled to the scratch disk and extracted once, the source and covers
        stored, the job recorded and its event emitted, as for a one-shot upload, under the upload's lease (one
        request does it), renewed as it goes. Then the video is removed in the background. An extraction's refusal
        terminates the upload (422 with the reason)."""
        upload_id, state = document["_id"], document["metadata"]["resumable"]
        if self.uploads.jobs.get(upload_id) is not None:  # finished but for clearing its state: never a second job
            self.finished(upload_id)
            return self.owned(upload_id, identity)
        # Shorter than a sniff's bytes, and sent in pieces: no PATCH saw its head whole.
        container = state["container"] or sniff_container(self.videos.chunk_data(upload_id, 0)[:SNIFF_BYTES])
        if container is None:
            self.remove(document)
            raise NOT_MEDIA
        options = options_of(state["fields"])
        writer = self.claim(document, lease=FINISH_LEASE)
        try:
            self.extract_and_keep(document, identity, container, options, writer)
        except LostLease:
            raise HttpError(409, "conflict", "another request took this upload over; ask its offset (HEAD) and "
                                             "go on from there") from None
        except pymongo.errors.PyMongoError as error:
            log.error("upload %s: could not be finished: %s", upload_id, error)
            raise STORE_UNAVAILABLE from None
        finally:
            self.release(upload_id, writer)
        self.finished(upload_id)
        log.info("upload %s finished: job recorded", upload_id)
        return self.owned(upload_id, identity)

    def extract_and_keep(self, document: dict[str, Any], identity: Identity, container: str, options: Any,
                         writer: str) -> None:
        upload_id = document["_id"]
        heartbeat = LeaseHeartbeat(self.stored, upload_id, writer)
        uploads = self.uploads
        with uploads.scratch.held() as holding, uploads.work_folder(upload_id) as folder:
            uploads.hold(holding, document["length"])
            video = self.videos.open(upload_id)
            if video is None:  # terminated meanwhile
                raise NO_SUCH_UPLOAD
            with video:
                received = uploads.spool(heartbeat.along(video.prefetched(2)), folder / "upload", holding)
            try:
                extracted = uploads.extract(folder / "upload", folder, heartbeat=heartbeat)
                check_split(options, extracted)
            except Stopped:
                raise LostLease(upload_id) from None
            except HttpError as refused:
                if refused.status == 422:  # the file cannot be converted: the upload ends here, its video paced out
                    self.uploads.release(document["metadata"]["owner_id"], upload_id)
                    self.finished(upload_id)
                raise
            if not heartbeat():
                raise LostLease(upload_id)
            uploads.remove_kept(upload_id)  # an earlier attempt's, killed while it stored them
            uploads.keep(identity.subject, upload_id, extracted, received, document["filename"], container, options,
                         undo=self.forget_job)

    def finished(self, upload_id: str) -> None:
        """The job is recorded: the upload's state is cleared and its video removed, in the background."""
        try:
            self.stored.finished(upload_id)
        except pymongo.errors.PyMongoError as error:  # the job is recorded: reconcile clears the state once expired
            log.warning("upload %s: its job is recorded, its tus state stays for now: %s", upload_id, error)
            return
        self.removal.later(upload_id)

    def forget_job(self, job_id: str) -> None:
        """The job could not be recorded: the upload stays, whole and unfinished, and its next HEAD tries again."""
        try:
            self.uploads.jobs.delete(job_id)
        except pymongo.errors.PyMongoError as error:
            log.error("upload %s: a half-recorded job stays: %s", job_id, error)
        self.uploads.remove_kept(job_id)

    def terminate(self, upload_id: str, identity: Identity) -> flask.Response:
        document = self.owned(upload_id, identity)
        if "resumable" not in document["metadata"]:
            raise HttpError(409, "upload_finished", "this upload is complete; delete its job at "
                                                    f"{self.uploads.status_url(upload_id)}")
        self.remove(document)
        return self.answer(204, {})

    def remove(self, document: dict[str, Any]) -> None:
        """The upload's bytes and its quota reservation go."""
        try:
            self.videos.remove(document["_id"])
        except pymongo.errors.PyMongoError:
            raise STORE_UNAVAILABLE from None
        self.uploads.release(document["metadata"]["owner_id"], document["_id"])


class LeaseHeartbeat:
    """Renews the finishing request's lease on its upload every FINISH_RENEW_SECONDS while it works; False once the
    lease is no longer its (another request took the upload over after this one stalled)."""

    def __init__(self, stored: UnfinishedUploads, upload_id: str, writer: str) -> None:
        self.stored, self.upload_id, self.writer = stored, upload_id, writer
        self.renewed = time.monotonic()

    def __call__(self) -> bool:
        if time.monotonic() - self.renewed < FINISH_RENEW_SECONDS:
            return True
        self.renewed = time.monotonic()
        return self.stored.renew(self.upload_id, self.writer, FINISH_LEASE)

    def along(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            if not self():
                raise LostLease(self.upload_id)
            yield chunk


NO_SUCH_UPLOAD = HttpError(404, "not_found", "no such upload")
NOT_MEDIA = HttpError(415, "not_media", f"{NOT_MEDIA_MESSAGE}; the upload was terminated")
STORE_UNAVAILABLE = HttpError(503, "storage_unavailable", "the upload could not be stored; try again",
                              {"Retry-After": "5"})


def offset_mismatch(stored: int | None) -> HttpError:
    return HttpError(409, "offset_mismatch", f"the upload's offset is {stored}: ask it (HEAD) and go on from there")
