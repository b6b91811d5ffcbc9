"""Takes an import (`POST /` with `{"url": ..., options}`): checks the URL and the options, fetches up to the answer's
headers (url_import.py: every refusal is a 422 by then, and nothing recorded), records the job as `importing` and
answers 202 with it; the body is then read in the background and taken as an upload's (uploads.py), the job moving
on to `uploaded` once its audio is kept.

While it fetches, a heartbeat writes the bytes fetched to the job (the job view's `import_progress`) and renews its
lease every second; it is also how a cancel is learnt: the connection is closed at once and nothing is kept. An
import that goes wrong later (too large, too slow, the server gone, not media) ends its job `failed` with the reason.
Should the process die (scale-to-zero ends an idle instance: requests keep it, a background fetch does not), its
lease lapses and the reconcile sweep fails the job as interrupted (functions/reconcile/sweeps.py); the process that
starts next clears its scratch folders.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import flask
import pymongo.errors

from accounts.tokens import Identity
from api.answers import ImportAccepted
from events import ConversionFailed, EmitError, FailureReason
from functions.upload.uploads import Uploads, options_of, too_large, url_and_options
from functions.upload.url_import import STOPPED, Fetched, UrlImports
from jobs.records import JobState
from runtime.answers import HttpError, json_response
from runtime.clock import now

log = logging.getLogger(__name__)

# Renewed every HEARTBEAT_SECONDS; the reconcile sweep fails an import whose lease lapsed a while ago.
IMPORT_LEASE = timedelta(seconds=30)
HEARTBEAT_SECONDS = 1.0


def failure_reason(code: str) -> FailureReason:
    """The job's failure reason for an import's refusal: the conversion's own when it is one (not_media, ...)."""
    return FailureReason(code) if code in {reason.value for reason in FailureReason} else FailureReason.IMPORT_FAILED


@dataclass
class Heartbeat:
    """Renews the import's lease with the bytes fetched so far, until `end`; stops the fetch once the job is no
    longer this import's (cancelled, or failed as interrupted)."""

    uploads: Uploads
    job_id: str
    attempt_id: str
    fetched: Fetched

    def __post_init__(self) -> None:
        self.ended = threading.Event()
        self.thread = threading.Thread(target=self.run, name=f"import {self.job_id}", daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.ended.wait(HEARTBEAT_SECONDS):
            try:
                held = self.uploads.jobs.renew_lease(self.job_id, self.attempt_id, IMPORT_LEASE, self.progress(),
                                                     state=JobState.IMPORTING)
            except pymongo.errors.PyMongoError as error:  # the lease has time left: try again next beat
                log.warning("job %s: the import's lease was not renewed: %s", self.job_id, error)
                continue
            if not held:
                log.info("job %s: the import was cancelled, closing its connection", self.job_id)
                self.fetched.stop()
                return

    def progress(self) -> dict[str, Any]:
        return {"fetched_bytes": self.fetched.fetched_bytes, "total_bytes": self.fetched.length}

    def end(self) -> None:
        self.ended.set()
        self.thread.join()


@dataclass
class Imports:
    uploads: Uploads
    fetcher: UrlImports

    def accept(self, body: Any, identity: Identity) -> flask.Response:
        """The import's 202, its job recorded as `importing` and its fetch under way; or the refusal."""
        url, fields = url_and_options(body)
        options = options_of(fields)  # before anything is fetched
        fetched = self.fetcher.connect(url)
        job_id, attempt_id = uuid.uuid4().hex, uuid.uuid4().hex
        try:
            if fetched.length is not None and fetched.length > self.uploads.max_upload_bytes:
                raise too_large(self.uploads.max_upload_bytes)
            room = self.uploads.reserve(identity, job_id, fetched.length or 0)
            try:
                self.uploads.jobs.create_importing(
                    {"_id": job_id, "owner_id": identity.subject, "video_id": job_id, "filename": fetched.filename,
                     "progress": {"fetched_bytes": 0, "total_bytes": fetched.length},
                     **({"options": options.given()} if options.given() else {})}, attempt_id, IMPORT_LEASE)
            except pymongo.errors.PyMongoError as error:
                log.error("job %s: the import could not be recorded: %s", job_id, error)
                self.uploads.release(identity.subject, job_id)
                raise HttpError(503, "storage_unavailable", "the import could not be recorded; try again",
                                {"Retry-After": "5"}) from None
        except BaseException:
            fetched.close()
            raise
        threading.Thread(target=self.fetch, args=(fetched, identity, job_id, attempt_id, fields, room),
                         name=f"import {job_id}", daemon=True).start()
        accepted = ImportAccepted(job_id=job_id, state=JobState.IMPORTING,
                                  status_url=self.uploads.status_url(job_id), filename=fetched.filename,
                                  total_bytes=fetched.length, options=options.given())
        return json_response(accepted.model_dump(mode="json"), 202, {"Location": accepted.status_url})

    def fetch(self, fetched: Fetched, identity: Identity, job_id: str, attempt_id: str, fields: dict[str, str],
              room: int) -> None:
        """The background half: the body taken as an upload's, or the job failed with why."""
        heartbeat = Heartbeat(self.uploads, job_id, attempt_id, fetched)
        try:
            self.uploads.take(fetched, "application/octet-stream", fetched.filename, fetched.length or 0, identity,
                              job_id, fields, room, import_attempt=attempt_id)
        except HttpError as refused:
            if refused is STOPPED or fetched.stopped:
                return  # cancelled: the cancel ended the job (and its upload of the hour counts, as an upload's)
            self.uploads.release(identity.subject, job_id)  # a refusal costs no upload of the hour
            self.fail(job_id, attempt_id, identity.subject, refused.code, refused.message)
        except Exception:
            log.exception("job %s: the import failed", job_id)
            self.uploads.release(identity.subject, job_id)
            self.fail(job_id, attempt_id, identity.subject, "import_failed",
                      "the import failed on the server's side; import it again")
        finally:
            heartbeat.end()
            fetched.close()

    def fail(self, job_id: str, attempt_id: str, owner_id: str, code: str, message: str) -> None:
        reason = failure_reason(code)
        log.info("job %s: import failed: %s: %s", job_id, code, message)
        try:
            failed = self.uploads.jobs.fail(
                job_id, (JobState.IMPORTING,), {"reason": reason, "message": message, "error": code},
                ConversionFailed(job_id=job_id, owner_id=owner_id, reason=reason, message=message, failed_at=now()),
                attempt_id=attempt_id)
            if failed is not None:
                self.uploads.jobs.flush_pending(failed, self.uploads.emitter)
        except (pymongo.errors.PyMongoError, EmitError) as error:  # the reconcile sweep ends or emits it
            log.warning("job %s: the import's failure is not recorded or sent yet: %s", job_id, error)
