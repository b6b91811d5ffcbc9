"""status (HTTP): `GET /<job id>` answers the owner's job (state, timestamps, history, progress, the MP3 when done,
the reason when failed); `GET /` lists the owner's recent jobs. Someone else's job answers exactly like a missing
one."""

from __future__ import annotations

import flask
import functions_framework

from events.catalog import is_job_id
from functions.shared import mongo
from functions.shared.http import NOT_FOUND, HttpError, answer_errors, authenticate, json_response
from functions.shared.job_view import job_view
from functions.shared.jobs import Jobs
from functions.shared.settings import StatusSettings, load_settings
from functions.shared.tokens import TokenVerifier

settings = load_settings(StatusSettings)
jobs = Jobs(mongo.database(settings))
jobs.ensure_indexes()
verifier = TokenVerifier(str(settings.jwks_url), issuer=settings.jwt_issuer, audience=settings.jwt_audience)


@functions_framework.http
@answer_errors
def status(request: flask.Request) -> flask.Response:
    identity = authenticate(request, verifier)
    parts = [part for part in request.path.split("/") if part]
    if request.method != "GET":
        raise HttpError(405, "method_not_allowed", f"{request.method} is not allowed here")
    if not parts:
        return json_response({"jobs": [job_view(job, str(settings.public_download_url))
                                        for job in jobs.list_owned(identity.subject)]})
    if len(parts) != 1 or not is_job_id(parts[0]):
        raise NOT_FOUND
    job = jobs.get_owned(parts[0], identity.subject)
    if job is None:
        raise NOT_FOUND
    return json_response(job_view(job, str(settings.public_download_url)))
