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

from accounts.credentials import CredentialGenerations
from accounts.tokens import Identity
from api.answers import JobList, Usage
from endpoints.http import STORE_ERRORS, HttpFunction, SetUpOnce
from events import EventEmitter
from functions.status.live import JobStream
from jobs.cancellation import Cancellation, JobNotFound, NotCancellable
from jobs.erasure import Erasure
from jobs.links import DownloadLinks
from jobs.quotas import QUOTA_BUSY, OverQuota, QuotaBusy, QuotaLimits, Quotas
from jobs.records import Job, Jobs
from jobs.view import job_view, view_of
from runtime.answers import NOT_FOUND, HttpError, json_response
from runtime.settings import StatusSettings, load_settings
from storage import mongo

log = logging.getLogger(__name__)
settings = load_settings(StatusSettings)
database = mongo.database(settings)
jobs = Jobs(database)
indexes = SetUpOnce("the jobs indexes", jobs.ensure_indexes).at_start()
cancellation = Cancellation(database, jobs, EventEmitter(str(settings.k_sink), "status"))
erasure = Erasure(database, jobs, cancellation)
generations = CredentialGenerations.from_settings(settings)
download_links = DownloadLinks(settings.download_link_keys.get_secret_value(), str(settings.public_download_url),
                               generation_of=generations.current)
quotas = Quotas(database, QuotaLimits.from_settings(settings))
# Each open stream holds a server thread for its whole life: a bounded number, so plain requests always find one.
open_streams = threading.BoundedSemaphore(settings.events_max_streams)
http = HttpFunction.public("status", settings, generations=generations, authenticate_first=True, before=indexes)


@functions_framework.http
def status(request: flask.Request) -> flask.Response:
    return http(request)


@http.route("/", "GET", scope="read")
def list_jobs(request: flask.Request) -> flask.Response:
    owner = http.identity(request).subject
    listing = JobList(jobs=[view_of(job, download_links) for job in jobs.list_owned(owner)],
                      usage=Usage.model_validate(quotas.report(owner)))
    return json_response(listing.model_dump(mode="json", exclude_unset=True))


@http.route("/<job:job_id>", "GET", scope="read")
def show_job(request: flask.Request, job_id: str) -> flask.Response:
    return json_response(job_view(owned(job_id, http.identity(request)), download_links))


@http.route("/<job:job_id>", "DELETE", scope="delete")
def delete_job(request: flask.Request, job_id: str) -> flask.Response:
    if not erasure.erase(job_id, http.identity(request).subject):
        raise NOT_FOUND
    return flask.Response(status=204)


STREAM_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


@http.route("/<job:job_id>/events", "GET", scope="read")
def follow_job(request: flask.Request, job_id: str) -> flask.Response:
    if request.method == "HEAD":
        # What a GET would answer, without opening a stream or taking one of the user's slots.
        owned(job_id, http.identity(request))
        return flask.Response(status=200, mimetype="text/event-stream", headers=STREAM_HEADERS)
    return event_stream(job_id, http.identity(request))


@http.route("/<job:job_id>/cancel", "POST", scope="convert")
def cancel_job(request: flask.Request, job_id: str) -> flask.Response:
    try:
        return json_response(job_view(cancellation.cancel(job_id, http.identity(request).subject), download_links))
    except JobNotFound:
        raise NOT_FOUND from None
    except NotCancellable as refused:
        raise HttpError(409, "not_cancellable", str(refused)) from None


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
    response = flask.Response(iter(stream), mimetype="text/event-stream", headers=STREAM_HEADERS)
    response.call_on_close(release)
    return response
