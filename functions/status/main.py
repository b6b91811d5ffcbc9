"""status (HTTP): the owner's jobs. `GET /<job id>` answers a job (state, timestamps, history, progress while
converting, the MP3 and when it expires once done, the reason when failed); `GET /<job id>/events` streams its
changes as Server-Sent Events until it ends; `POST /<job id>/cancel` cancels it; `DELETE /<job id>` deletes it
with its media at once (cancelling it first); `GET /` lists recent jobs and the user's usage against the quotas.
Someone else's job answers exactly like a missing one."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

import flask
import functions_framework

from events import EventEmitter
from events.catalog import is_job_id
from functions.download.links import DownloadLinks
from functions.shared import mongo
from functions.shared.http import (
    NOT_FOUND,
    STORE_ERRORS,
    HttpError,
    SetUpOnce,
    allow_cross_origin,
    also_under,
    answer_errors,
    authenticate,
    framework_errors_in_json,
    json_response,
    method_not_allowed,
)
from functions.shared.job_view import job_view, view_of
from functions.shared.jobs import Job, Jobs
from functions.shared.settings import StatusSettings, load_settings
from functions.shared.tokens import Identity, TokenVerifier
from functions.status.answers import JobList, Usage
from functions.status.cancellation import Cancellation, JobNotFound, NotCancellable
from functions.status.erasure import Erasure
from functions.status.live import JobStream
from functions.upload.quotas import QUOTA_BUSY, OverQuota, QuotaBusy, QuotaLimits, Quotas

log = logging.getLogger(__name__)
settings = load_settings(StatusSettings)
framework_errors_in_json()
database = mongo.database(settings)
jobs = Jobs(database)
indexes = SetUpOnce("the jobs indexes", jobs.ensure_indexes).at_start()
verifier = TokenVerifier(str(settings.jwks_url), issuer=settings.jwt_issuer, audience=settings.jwt_audience)
cancellation = Cancellation(database, jobs, EventEmitter(str(settings.k_sink), "status"))
erasure = Erasure(database, jobs, cancellation)
download_links = DownloadLinks(settings.download_link_keys.get_secret_value(), str(settings.public_download_url))
quotas = Quotas(database, QuotaLimits.from_settings(settings))
# Each open stream holds a server thread for its whole life: a bounded number, so plain requests always find one.
open_streams = threading.BoundedSemaphore(settings.events_max_streams)


@functions_framework.http
@also_under("status")
@allow_cross_origin(settings.allowed_origins())
@answer_errors
def status(request: flask.Request) -> flask.Response:
    identity = authenticate(request, verifier)
    indexes()
    parts = [part for part in request.path.split("/") if part]
    route = (request.method, len(parts), parts[1] if len(parts) == 2 else None)
    if len(parts) > 2 or (parts and not is_job_id(parts[0])):
        raise NOT_FOUND
    if route == ("GET", 0, None):
        listing = JobList(jobs=[view_of(job, download_links) for job in jobs.list_owned(identity.subject)],
                          usage=Usage.model_validate(quotas.report(identity.subject)))
        return json_response(listing.model_dump(mode="json", exclude_unset=True))
    if route == ("GET", 1, None):
        return json_response(job_view(owned(parts[0], identity), download_links))
    if route == ("DELETE", 1, None):
        if not erasure.erase(parts[0], identity.subject):
            raise NOT_FOUND
        return flask.Response(status=204)
    if route == ("GET", 2, "events"):
        return event_stream(parts[0], identity)
    if route == ("POST", 2, "cancel"):
        try:
            return json_response(job_view(cancellation.cancel(parts[0], identity.subject), download_links))
        except JobNotFound:
            raise NOT_FOUND from None
        except NotCancellable as refused:
            raise HttpError(409, "not_cancellable", str(refused)) from None
    allowed = {0: "GET", 1: "GET, DELETE"}.get(len(parts)) or {"events": "GET", "cancel": "POST"}.get(parts[1])
    if allowed is not None:
        raise method_not_allowed(allowed, f"{request.method} is not allowed on {request.path}")
    raise NOT_FOUND


def owned(job_id: str, identity: Identity) -> Job:
    job = jobs.get_owned(job_id, identity.subject)
    if job is None:
        raise NOT_FOUND
    return job


def event_stream(job_id: str, identity: Identity) -> flask.Response:
    owned(job_id, identity)
    try:
        # Slightly longer than the stream may last, so a slot whose close was never seen frees itself.
        stream_slot = quotas.open_stream(identity.subject, timedelta(seconds=settings.events_stream_max_seconds + 30))
    except OverQuota as over:
        raise over.http_error() from None
    except QuotaBusy:
        raise QUOTA_BUSY from None
    if not open_streams.acquire(blocking=False):
        quotas.close_stream(identity.subject, stream_slot)
        raise HttpError(503, "too_many_streams", f"too many live streams; poll GET /{job_id} instead",
                        {"Retry-After": "5"})
    released = threading.Event()

    def release() -> None:
        if not released.is_set():
            released.set()
            open_streams.release()
            try:
                quotas.close_stream(identity.subject, stream_slot)
            except (*STORE_ERRORS, QuotaBusy) as error:  # the slot lapses by itself
                log.warning("a live stream's quota slot stays until it lapses: %s", type(error).__name__)

    stream = JobStream(load=lambda: jobs.get_owned(job_id, identity.subject),
                       render=lambda job: job_view(job, download_links), max_seconds=settings.events_stream_max_seconds)
    response = flask.Response(iter(stream), mimetype="text/event-stream", headers={
        "Cache-Control": "no-store", "X-Accel-Buffering": "no",
    })
    response.call_on_close(release)
    return response
