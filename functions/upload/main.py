"""upload (HTTP, the public upload function URL): `POST /` with a bearer token and a video (multipart form with one
file, or a raw body; optional conversion options as query parameters or form fields: `quality`/`bitrate`, `start`,
`end`, `normalize`, … README: Conversion options) answers 202 with the job id and its status URL, or 422 naming
every bad option. Under `/files/` it speaks tus 1.0.0, resumable uploads (resumable.py)."""

from __future__ import annotations

from datetime import timedelta

import flask
import functions_framework

from events import EventEmitter
from functions.shared import mongo
from functions.shared.http import (
    HttpError,
    allow_cross_origin,
    also_under,
    authenticate,
    framework_errors_in_json,
    method_not_allowed,
)
from functions.shared.jobs import Jobs
from functions.shared.media import VIDEOS, MediaStore
from functions.shared.settings import UploadSettings, load_settings
from functions.shared.tokens import TokenVerifier
from functions.upload.pending_events import PendingEventRetry
from functions.upload.quotas import QuotaLimits, Quotas
from functions.upload.resumable import TUS_VERSION, ResumableUploads
from functions.upload.uploads import Uploads

settings = load_settings(UploadSettings)
framework_errors_in_json()
database = mongo.database(settings)
verifier = TokenVerifier(str(settings.jwks_url), issuer=settings.jwt_issuer, audience=settings.jwt_audience)
jobs = Jobs(database)
uploads = Uploads(
    # Two quick tries while the client waits; past them the event waits in the job's outbox for the broker.
    videos=MediaStore(database, VIDEOS), jobs=jobs,
    emitter=EventEmitter(str(settings.k_sink), "upload", attempts=2, timeout_seconds=5),
    pending_events=PendingEventRetry(jobs, EventEmitter(str(settings.k_sink), "upload", attempts=1,
                                                        timeout_seconds=5)),
    quotas=Quotas(database, QuotaLimits.from_settings(settings)),
    max_upload_bytes=settings.max_upload_bytes, public_status_url=str(settings.public_status_url),
)
resumable_uploads = ResumableUploads(uploads, public_upload_url=str(settings.public_upload_url or ""),
                                     lifetime=timedelta(seconds=settings.resumable_upload_lifetime_seconds))


@functions_framework.http
@also_under("upload")
@allow_cross_origin(settings.allowed_origins())
def upload(request: flask.Request) -> flask.Response:
    resumable = request.path == "/files" or request.path.startswith("/files/")
    try:
        if resumable:
            return resumable_uploads.handle(request, lambda request: authenticate(request, verifier))
        if request.method != "POST":
            raise method_not_allowed("POST", "POST a video to this URL")
        return uploads.accept(request, authenticate(request, verifier))
    except HttpError as error:
        if resumable:
            error = HttpError(error.status, error.code, error.message, {"Tus-Resumable": TUS_VERSION, **error.headers},
                              error.extra)
        # The body may be partly unread: answer without letting the framework read the rest into memory.
        return error.response_leaving_body_unread()
