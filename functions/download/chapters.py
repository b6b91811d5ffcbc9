"""Turns a job's chapters (as convert recorded them, on the MP3's timeline) into the Podcasting 2.0 JSON chapters
document (https://github.com/Podcastindex-org/podcast-namespace, `chapters/jsonChapters.md`), answered as
`application/json+chapters` and conditional on its ETag, as the MP3 is."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import flask
from werkzeug.http import quote_etag

from endpoints.conditional import Validators, precondition, precondition_failed

MEDIA_TYPE = "application/json+chapters"
SPEC_VERSION = "1.2.0"


def chapters_document(chapters: list[dict[str, Any]]) -> dict[str, Any]:
    return {"version": SPEC_VERSION, "chapters": [
        {"startTime": chapter["start_seconds"], "endTime": chapter["end_seconds"], "title": chapter["title"]}
        for chapter in chapters]}


def chapters_response(request: flask.Request, chapters: list[dict[str, Any]]) -> flask.Response:
    body = json.dumps(chapters_document(chapters), ensure_ascii=False, separators=(",", ":")).encode()
    validators = Validators(hashlib.sha256(body).hexdigest())
    headers = {"Cache-Control": "private, no-cache", "X-Content-Type-Options": "nosniff",
               "ETag": quote_etag(validators.etag)}
    decided = precondition(request, validators)
    if decided == 412:
        raise precondition_failed(validators)
    if decided == 304:
        return flask.Response(status=304, headers=headers)
    return flask.Response(body, mimetype=MEDIA_TYPE, headers=headers)
