"""upload (HTTP, the public upload function URL): `POST /` with a bearer token and a video (multipart form with one
file, or a raw body; optional conversion options as query parameters or form fields: `quality`/`bitrate`, `start`,
`end`, `normalize`, … README: Conversion options; and a client's `cover` and `chapters` parts) answers 202 with the
job id and its status URL, 422 naming every bad option, or 422 with the reason the file cannot be converted. Only the
audio tracks and covers are kept (uploads.py). Under `/files/` it speaks tus 1.0.0, resumable uploads
(resumable.py). `POST /` with JSON `{"url": ..., options}` fetches the video from the URL instead (url_import.py: the
address rules against SSRF, every redirect checked) and takes it the same way: answered 202 once the URL's answer
has begun, its job `importing` while the body is fetched in the background (imports.py)."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import flask
import functions_framework

from api.limits import TUS_VERSION
from endpoints.http import HttpFunction, read_json
from events import EventEmitter
from functions.upload.imports import Imports
from functions.upload.pending_events import PendingEventRetry
from functions.upload.resumable import ResumableUploads, VideoRemoval
from functions.upload.uploads import SCRATCH_PREFIX, Uploads
from functions.upload.url_import import UrlImports
from jobs.quotas import QuotaLimits, Quotas
from jobs.records import Jobs
from runtime.addresses import networks
from runtime.answers import HttpError
from runtime.settings import UploadSettings, load_settings
from storage import mongo
from storage.media import VIDEOS, JobSources, MediaStore
from storage.pacing import Pacing
from storage.scratch import ScratchBudget, clear_left_behind

settings = load_settings(UploadSettings)
database = mongo.database(settings)
jobs = Jobs(database)
work_dir = Path(settings.work_dir)
work_dir.mkdir(parents=True, exist_ok=True)
# What a process killed mid-upload left on the scratch disk (its spools and extractions): no other process uses
# these folders.
if cleared := clear_left_behind(work_dir, SCRATCH_PREFIX):
    logging.getLogger(__name__).info("removed %d scratch folders an earlier process left", cleared)
uploads = Uploads(
    sources=JobSources(database), jobs=jobs,
    # Two quick tries while the client waits; past them the event waits in the job's outbox for the broker.
    emitter=EventEmitter(str(settings.k_sink), "upload", attempts=2, timeout_seconds=5),
    pending_events=PendingEventRetry(jobs, EventEmitter(str(settings.k_sink), "upload", attempts=1,
                                                        timeout_seconds=5)),
    quotas=Quotas(database, QuotaLimits.from_settings(settings)),
    max_upload_bytes=settings.max_upload_bytes, public_status_url=str(settings.public_status_url),
    work_dir=work_dir, scratch=ScratchBudget(settings.scratch_limit_bytes), max_streams=settings.max_streams,
    max_duration_seconds=settings.max_duration_seconds,
)
imports = Imports(uploads, UrlImports(allow_loopback=settings.url_import_allow_loopback,
                                     timeout_seconds=settings.url_import_timeout_seconds,
                                     allowed_networks=networks(settings.url_import_allow_networks)))
resumable_uploads = ResumableUploads(
    uploads, MediaStore(database, VIDEOS), public_upload_url=str(settings.public_upload_url or ""),
    lifetime=timedelta(seconds=settings.resumable_upload_lifetime_seconds),
    min_patch_bytes=settings.resumable_min_patch_bytes,
    removal=VideoRemoval(MediaStore(database, VIDEOS),
                         lambda: Pacing(burst_seconds=settings.deletion_burst_seconds,
                                        duty_cycle=settings.deletion_duty_cycle)),
)


def is_resumable(request: flask.Request) -> bool:
    return request.path == "/files" or request.path.startswith("/files/")


def refusal(request: flask.Request, error: HttpError) -> flask.Response:
    """The body may be partly unread: the answer does not let the framework read the rest into memory. tus answers
    carry the protocol's version."""
    if is_resumable(request):
        error = HttpError(error.status, error.code, error.message, {"Tus-Resumable": TUS_VERSION, **error.headers},
                          error.extra)
    return error.response_leaving_body_unread()


http = HttpFunction.public("upload", settings, answer_error=refusal)


@functions_framework.http
def upload(request: flask.Request) -> flask.Response:
    return http(request)


@http.route("/", "POST", scope="convert")
def one_shot(request: flask.Request) -> flask.Response:
    if request.is_json:
        return imports.accept(read_json(request), http.identity(request))
    return uploads.accept(request, http.identity(request))


# tus orders its own checks (the protocol's version before the token, OPTIONS open to all): resumable.py routes them.
@http.route("/files", scope="convert")
@http.route("/files/<path:upload_path>", scope="convert")
def resumable(request: flask.Request, upload_path: str = "") -> flask.Response:
    return resumable_uploads.handle(request, http.identity)
