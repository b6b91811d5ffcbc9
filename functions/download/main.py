"""download (HTTP): `GET /<job id>` streams the job's MP3 to its owner from GridFS, with Content-Length, an ETag,
`Range` requests (206, 416) and a safe file name. Someone else's job answers exactly like a missing one. With a
signed link's parameters (`?expires=&key=&signature=`, jobs/links.py) no token is needed."""

from __future__ import annotations

import flask
import functions_framework

from accounts.credentials import CredentialGenerations
from endpoints.http import HttpFunction
from events.catalog import is_job_id
from functions.download.streaming import mp3_response
from jobs.links import DownloadLinks
from jobs.records import Jobs, JobState
from jobs.view import is_expired
from runtime.answers import NOT_FOUND, HttpError
from runtime.settings import DownloadSettings, load_settings
from storage import mongo
from storage.media import AUDIO, MediaStore

settings = load_settings(DownloadSettings)
database = mongo.database(settings)
jobs = Jobs(database)
audio = MediaStore(database, AUDIO)
generations = CredentialGenerations.from_settings(settings)
links = DownloadLinks(settings.download_link_keys.get_secret_value(), str(settings.public_download_url),
                      generation_of=generations.current)
# A signed link needs no token; anything else does, checked before the path is.
http = HttpFunction.public("download", settings, generations=generations,
                           authenticate_first=lambda request: not links.is_link(request.args.to_dict()))


@functions_framework.http
def download(request: flask.Request) -> flask.Response:
    return http(request)


@http.route("/<job_id>", "GET", scope="read")
def mp3(request: flask.Request, job_id: str) -> flask.Response:
    arguments = request.args.to_dict()
    signed = links.is_link(arguments)
    if not is_job_id(job_id):
        raise NOT_FOUND
    job = jobs.get(job_id) if signed else jobs.get_owned(job_id, http.identity(request).subject)
    if job is None:
        raise NOT_FOUND
    if signed:
        # A link was made for a finished job's MP3: a job deleted, cancelled or re-made since has no MP3 it opens.
        if job["state"] != JobState.DONE or not job.get("audio"):
            raise NOT_FOUND
        links.check(job_id, job["audio"]["audio_id"], job["owner_id"], arguments)
    elif job["state"] != JobState.DONE:
        raise HttpError(409, "not_ready", f"the job is {job['state']}; its MP3 is not available")
    # Past its retention the MP3 is gone, whether or not the reconcile step has deleted its bytes yet.
    stored = None if is_expired(job["audio"]) else audio.open(job["audio"]["audio_id"])
    if stored is None:
        raise HttpError(410, "gone", "the MP3 of this job has expired and was deleted")
    return mp3_response(request, stored, job["audio"]["sha256"], job.get("filename") or "audio")
