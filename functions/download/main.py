"""download (HTTP): `GET /<job id>` streams the job's MP3 to its owner from GridFS, with Content-Length, an ETag,
`Range` requests (206, 416) and a safe file name. Someone else's job answers exactly like a missing one. With a
signed link's parameters (`?expires=&key=&signature=`, functions/download/links.py) no token is needed."""

from __future__ import annotations

import flask
import functions_framework

from events.catalog import is_job_id
from functions.download.links import DownloadLinks
from functions.download.streaming import mp3_response
from functions.shared import mongo
from functions.shared.http import (
    NOT_FOUND,
    HttpError,
    allow_cross_origin,
    also_under,
    answer_errors,
    authenticate,
    framework_errors_in_json,
    method_not_allowed,
)
from functions.shared.job_view import is_expired
from functions.shared.jobs import Jobs, JobState
from functions.shared.media import AUDIO, MediaStore
from functions.shared.settings import DownloadSettings, load_settings
from functions.shared.tokens import TokenVerifier

settings = load_settings(DownloadSettings)
framework_errors_in_json()
database = mongo.database(settings)
jobs = Jobs(database)
audio = MediaStore(database, AUDIO)
links = DownloadLinks(settings.download_link_keys.get_secret_value(), str(settings.public_download_url))
verifier = TokenVerifier(str(settings.jwks_url), issuer=settings.jwt_issuer, audience=settings.jwt_audience)


@functions_framework.http
@also_under("download")
@allow_cross_origin(settings.allowed_origins())
@answer_errors
def download(request: flask.Request) -> flask.Response:
    arguments = request.args.to_dict()
    signed = links.is_link(arguments)
    identity = None if signed else authenticate(request, verifier)
    if request.method not in ("GET", "HEAD"):
        raise method_not_allowed("GET, HEAD", "GET the MP3 of a job")
    job_id = request.path.strip("/")
    if not is_job_id(job_id):
        raise NOT_FOUND
    job = jobs.get(job_id) if identity is None else jobs.get_owned(job_id, identity.subject)
    if job is None:
        raise NOT_FOUND
    if signed:
        # A link was made for a finished job's MP3: a job deleted, cancelled or re-made since has no MP3 it opens.
        if job["state"] != JobState.DONE or not job.get("audio"):
            raise NOT_FOUND
        links.check(job_id, job["audio"]["audio_id"], arguments)
    elif job["state"] != JobState.DONE:
        raise HttpError(409, "not_ready", f"the job is {job['state']}; its MP3 is not available")
    # Past its retention the MP3 is gone, whether or not the reconcile step has deleted its bytes yet.
    stored = None if is_expired(job["audio"]) else audio.open(job["audio"]["audio_id"])
    if stored is None:
        raise HttpError(410, "gone", "the MP3 of this job has expired and was deleted")
    return mp3_response(request, stored, job["audio"]["sha256"], job.get("filename") or "audio")
