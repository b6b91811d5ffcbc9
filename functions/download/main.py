"""download (HTTP): `GET /<job id>` streams the job's MP3 to its owner from GridFS, with Content-Length, an ETag,
`Range` requests (206, 416) and a safe file name; `GET /<job id>/chapters.json` its chapters (the Podcasting 2.0
JSON chapters document). Someone else's job answers exactly like a missing one. With a signed link's parameters
(`?expires=&key=&signature=`, jobs/links.py, made for the one path) no token is needed; a browser opening one that
no longer works (its job deleted, its MP3 expired, the link altered) is sent to the web page, which says why in words
(`#link=gone` or `#link=invalid`), rather than shown this function's JSON error. `GET /zip?jobs=…`: several of the
owner's MP3s as one ZIP, streamed as it is built (zipping.py). `GET /<job id>/chapters/<n>.mp3`: one of its chapter
files (`split=chapters`), as the MP3 is; `GET /<job id>/chapters.zip`: all of them as one ZIP.
`GET /<job id>/cover.jpg`: the cover in its MP3's tag. `GET /feed` shows the owner's private podcast feed address
(made on demand), `POST /feed/rotate` replaces it; `GET /feeds/<address>` is that feed, needing no token (feed.py,
accounts/feeds.py)."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

import flask
import functions_framework

from accounts.credentials import CredentialGenerations
from accounts.feeds import Feeds, FeedView
from api.limits import MAX_ZIP_JOBS
from endpoints.http import HttpFunction, SetUpOnce
from events.catalog import is_job_id
from functions.download.chapters import chapters_response
from functions.download.cover import cover_of, cover_response
from functions.download.feed import Episode, feed_document, feed_response
from functions.download.streaming import content_disposition, download_name, episode_title, mp3_response
from functions.download.zipping import ZipEntry, unique_names, zip_stream
from jobs.links import (
    TAMPERED,
    DownloadLinks,
    chapter_file_path,
    chapter_files_zip_path,
    chapters_path,
    cover_path,
)
from jobs.records import Job, Jobs, JobState
from jobs.view import is_expired
from runtime.answers import NOT_FOUND, HttpError, json_response
from runtime.clock import now
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
feeds = Feeds(database)
feed_indexes = SetUpOnce("the feeds index", feeds.ensure_indexes).at_start()
# A signed link and a feed need no token; anything else does, checked before the path is.
http = HttpFunction.public("download", settings, generations=generations, authenticate_first=lambda request: not (
    links.is_link(request.args.to_dict()) or request.path.startswith("/feeds/")))


@functions_framework.http
def download(request: flask.Request) -> flask.Response:
    return http(request)


@http.route("/zip", "GET", scope="read")
def mp3s_zip(request: flask.Request) -> flask.Response:
    """`?jobs=<id>,<id>…`: the caller's finished jobs' MP3s as one ZIP, streamed as it is built. All or nothing:
    a job that is not the caller's (answered as missing), not finished or expired is named in a 422 before a byte
    of the ZIP goes."""
    job_ids = list(dict.fromkeys(part.strip() for part in request.args.get("jobs", "").split(",") if part.strip()))
    if not job_ids or len(job_ids) > MAX_ZIP_JOBS:
        raise HttpError(422, "invalid_jobs", f"name 1 to {MAX_ZIP_JOBS} jobs: ?jobs=<job id>,<job id>…")
    owner_id = http.identity(request).subject
    found, problems = [], {}
    for job_id in job_ids:
        job = jobs.get_owned(job_id, owner_id) if is_job_id(job_id) else None
        if job is None:
            problems[job_id] = "not_found: no such job"
        elif job["state"] != JobState.DONE:
            problems[job_id] = f"not_ready: the job is {job['state']}"
        elif is_expired(job["audio"]):
            problems[job_id] = "gone: its MP3 has expired"
        else:
            found.append(job)
    if problems:
        raise HttpError(422, "unavailable_jobs", f"{len(problems)} of the jobs have no MP3 to zip",
                        extra={"jobs": problems})
    names = unique_names(download_name(job.get("filename") or "audio") for job in found)
    entries = [ZipEntry(name, job["audio"]["size_bytes"], job.get("finished_at") or now(),
                        functools.partial(audio.open, job["audio"]["audio_id"]))
               for name, job in zip(names, found, strict=True)]
    return zip_response(entries, f"vid2mp3-{len(entries)}-mp3s.zip")


def zip_response(entries: list[ZipEntry], name: str) -> flask.Response:
    return flask.Response(zip_stream(entries), mimetype="application/zip", direct_passthrough=True, headers={
        "Content-Disposition": content_disposition(name), "Cache-Control": "private, no-store",
        "X-Content-Type-Options": "nosniff"})


# Past its retention the MP3 is gone, whether or not the reconcile step has deleted its bytes yet; its chapters too.
GONE = HttpError(410, "gone", "the MP3 of this job has expired and was deleted")


def opened_in_a_browser(request: flask.Request) -> bool:
    """A person followed the link (the browser navigates to it and wants a page), not a program fetching it."""
    return request.headers.get("Sec-Fetch-Mode") == "navigate" or "text/html" in request.headers.get("Accept", "")


def dead_links_to_the_page(answer: Callable[..., flask.Response]) -> Callable[..., flask.Response]:
    """A signed link that no longer works, opened in a browser: a 303 to the web page that says why."""
    @functools.wraps(answer)
    def answered(request: flask.Request, job_id: str, **path: Any) -> flask.Response:
        try:
            return answer(request, job_id, **path)
        except HttpError as error:
            if not (links.is_link(request.args.to_dict()) and settings.public_web_url
                    and opened_in_a_browser(request)):
                raise
            # A job id that cannot be one, or a signature that does not match: altered; else the MP3 is no more.
            why = "invalid" if error is TAMPERED or not is_job_id(job_id) else "gone"
            page = f"{str(settings.public_web_url).rstrip('/')}/#link={why}"
            return json_response(error.body(), 303, {"Location": page})  # the JSON still says what went wrong
    return answered


@http.route("/<job_id>", "GET", scope="read")
@dead_links_to_the_page
def mp3(request: flask.Request, job_id: str) -> flask.Response:
    job = finished_job(request, job_id, job_id)
    stored = audio.open(job["audio"]["audio_id"])
    if stored is None:
        raise GONE
    return mp3_response(request, stored, job["audio"]["sha256"], job.get("filename") or "audio")


@http.route("/<job_id>/chapters.json", "GET", scope="read")
@dead_links_to_the_page
def chapters(request: flask.Request, job_id: str) -> flask.Response:
    job = finished_job(request, job_id, chapters_path(job_id))
    if not audio.exists(job["audio"]["audio_id"]):
        raise GONE
    if not job.get("chapters"):
        raise HttpError(404, "no_chapters", "this MP3 has no chapters (the video had none, a trim left none, or "
                                            "chapters=none)")
    return chapters_response(request, job["chapters"])


@http.route("/<job_id>/cover.jpg", "GET", scope="read")
@dead_links_to_the_page
def cover(request: flask.Request, job_id: str) -> flask.Response:
    job = finished_job(request, job_id, cover_path(job_id))
    stored = audio.open(job["audio"]["audio_id"])
    if stored is None:
        raise GONE
    with stored:
        picture = cover_of(stored)
    if picture is None:
        raise HttpError(404, "no_cover", "this MP3 has no cover (cover=none, or the video gave none)")
    return cover_response(request, *picture)


def has_cover(job: Job) -> bool:
    """Whether convert put a cover in the MP3 (what `applied.tags.cover` says it got)."""
    return ((job.get("applied") or {}).get("tags") or {}).get("cover") in ("frame", "attached")


@http.route("/<job_id>/chapters/<int:number>.mp3", "GET", scope="read")
@dead_links_to_the_page
def chapter_file(request: flask.Request, job_id: str, number: int) -> flask.Response:
    """One of the job's chapter files (`split=chapters`), numbered from 1, answered as its MP3 is."""
    job = finished_job(request, job_id, chapter_file_path(job_id, number))
    files = job["audio"].get("chapter_files") or []
    if not 1 <= number <= len(files):
        raise HttpError(404, "no_chapter_file", f"this job has {len(files)} chapter files (split=chapters makes "
                                                "them), numbered from 1")
    stored = audio.open(files[number - 1]["file_id"])
    if stored is None:
        raise GONE
    return mp3_response(request, stored, files[number - 1]["sha256"], chapter_file_name(job, files[number - 1]))


@http.route("/<job_id>/chapters.zip", "GET", scope="read")
@dead_links_to_the_page
def chapter_files_zip(request: flask.Request, job_id: str) -> flask.Response:
    """All of the job's chapter files as one ZIP, streamed as it is built (stored entries, in chapter order)."""
    job = finished_job(request, job_id, chapter_files_zip_path(job_id))
    files = job["audio"].get("chapter_files") or []
    if not files:
        raise HttpError(404, "no_chapter_files", "this job has no chapter files (ask for them with split=chapters)")
    if not audio.exists(files[0]["file_id"]):
        raise GONE
    made_at = job.get("finished_at") or now()
    entries = [ZipEntry(chapter_file_name(job, chapter), chapter["size_bytes"], made_at,
                        functools.partial(audio.open, chapter["file_id"])) for chapter in files]
    return zip_response(entries, f"{episode_title(job.get('filename'))} - chapters.zip")


def chapter_file_name(job: Job, chapter: dict[str, Any]) -> str:
    """`<video's name> - 01 <chapter title>.mp3`: sorts in chapter order; no path separator from a title."""
    title = re.sub(r"[/\\\x00-\x1f]", "-", chapter["title"])
    return f"{episode_title(job.get('filename'))} - {chapter['number']:02d} {title}.mp3"



def finished_job(request: flask.Request, job_id: str, path: str) -> Job:
    """The caller's finished job, its MP3 not past retention, or the answer why not. `path`: what a signed link
    must have been made for."""
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
        links.check(path, job["audio"]["audio_id"], job["owner_id"], arguments)
    elif job["state"] != JobState.DONE:
        raise HttpError(409, "not_ready", f"the job is {job['state']}; its MP3 is not available")
    if is_expired(job["audio"]):
        raise GONE
    return job


# The newest MP3s a feed lists: podcast apps poll it, so it stays small.
MAX_FEED_EPISODES = 100


@http.route("/feed", "GET")
def show_feed(request: flask.Request) -> flask.Response:
    """The caller's feed address (a login's token only: an API key cannot hand out a credential)."""
    identity = http.identity(request)
    feed_indexes()
    return feed_answer(*feeds.address_of(identity.subject, identity.generation))


@http.route("/feed/rotate", "POST")
def rotate_feed(request: flask.Request) -> flask.Response:
    identity = http.identity(request)
    feed_indexes()
    return feed_answer(*feeds.rotate(identity.subject, identity.generation))


def feed_answer(address: str, created_at: datetime) -> flask.Response:
    return json_response(FeedView(url=f"{links.base_url}/feeds/{address}", created_at=created_at).model_dump(
        mode="json"))


@http.route("/feeds/<address>", "GET")
def podcast_feed(request: flask.Request, address: str) -> flask.Response:
    """The feed: 404 alike for an address that never was, one rotated away, and one whose account has ended or
    changed its password."""
    feed = feeds.find(address)
    if feed is None or generations.current(feed.owner_id) != feed.generation:
        raise HttpError(404, "not_found", "no such feed")
    episodes, last_modified = [], feed.created_at
    for job in jobs.list_owned(feed.owner_id, limit=MAX_FEED_EPISODES):
        kept = job["state"] == JobState.DONE and job.get("audio") and not is_expired(job["audio"])
        if not kept or (job.get("options") or {}).get("feed") is False:
            continue
        episode = episode_of(job)
        if episode is not None:
            episodes.append(episode)
            last_modified = max(last_modified, episode.published)
    web_url = str(settings.public_web_url) if settings.public_web_url else None
    return feed_response(request, feed_document(episodes, last_modified, web_url), last_modified)


def episode_of(job: Job) -> Episode | None:
    """A finished job's MP3 as an episode, its links signed until the MP3 expires."""
    audio_record = job["audio"]
    owner_id, audio_id, expires_at = job["owner_id"], audio_record["audio_id"], audio_record["expires_at"]
    enclosure = links.link(job["_id"], audio_id, expires_at, owner_id)
    if enclosure is None:
        return None
    return Episode(
        guid=job["_id"], title=(job.get("options") or {}).get("title") or episode_title(job.get("filename")),
        published=job.get("finished_at") or job["created_at"], duration_seconds=audio_record["duration_seconds"],
        size_bytes=audio_record["size_bytes"], enclosure_url=enclosure,
        chapters_url=links.link(chapters_path(job["_id"]), audio_id, expires_at, owner_id)
        if job.get("chapters") else None,
        image_url=links.link(cover_path(job["_id"]), audio_id, expires_at, owner_id) if has_cover(job) else None)
