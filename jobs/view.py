"""What a job looks like to its owner: the JSON that the status endpoint answers and the client prints, built from
the models below (which the OpenAPI document, api/openapi.py, publishes as its schemas)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Protocol

from pydantic import BaseModel, Field, WithJsonSchema

from events.options import ConversionOptions
from jobs.links import chapter_file_path, chapter_files_zip_path, chapters_path
from jobs.records import Job, JobState
from runtime.clock import iso, now

# Times travel as Python's ISO 8601 (`2026-12-01T19:40:00.123000+00:00`), as they always have.
Timestamp = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]




def is_expired(audio: dict[str, Any]) -> bool:
    """The MP3 is past its retention (the reconcile step deletes it within a minute, if it has not yet)."""
    expires_at = audio.get("expires_at")
    return bool(audio.get("deleted_at")) or (expires_at is not None and expires_at <= now())


class DownloadLinkMaker(Protocol):
    """What a job's view needs to name its MP3: the download function's URL and signed links to it
    (jobs/links.py)."""

    base_url: str

    def link(self, job_id: str, audio_id: str, expires_at: datetime, owner_id: str) -> str | None: ...


class HistoryStep(BaseModel):
    state: JobState
    at: Timestamp | None


class Progress(BaseModel):
    percent: float = Field(ge=0, le=100)
    eta_seconds: float | None = Field(description="Seconds left, estimated; null until ffmpeg can tell.")


class ImportProgress(BaseModel):
    """How far the server has fetched an import's video (while the job is `importing`)."""

    fetched_bytes: int = Field(ge=0)
    total_bytes: int | None = Field(description="What the URL's server announced; null when it did not say.")


class Encoding(BaseModel):
    """How the MP3 is (or was) made: one pass, segments at once on one instance, or fanned out to many."""

    mode: str | None
    reason: str | None
    segments: int = Field(ge=0)
    segments_encoded_after_seconds: list[float | None] | None = Field(
        default=None, description="Per segment, when it was encoded (seconds after the encoding started).")


class ChapterFileView(BaseModel):
    """One MP3 per chapter (`split=chapters`), cut from the MP3: played back to back they are the whole."""

    number: int = Field(ge=1, description="Its track number, from 1.")
    title: str
    size_bytes: int
    sha256: str
    start_seconds: float = Field(ge=0, description="Where it starts in the whole MP3.")
    duration_seconds: float
    download_url: str | None = Field(default=None, description="GET it with the owner's token.")
    download_link: str | None = Field(default=None, description="A signed link that needs no token, until the "
                                                                "MP3's `expires_at`.")


class AudioView(BaseModel):
    audio_id: str
    size_bytes: int
    sha256: str
    duration_seconds: float
    stream_copied: bool
    expires_at: Timestamp | None
    expired: bool
    download_url: str | None = Field(default=None, description="GET it with the owner's token (absent once "
                                                               "expired).")
    download_link: str | None = Field(default=None, description="A signed link that needs no token, until "
                                                                "`expires_at`.")
    chapters_url: str | None = Field(default=None, description="The chapters as a Podcasting 2.0 JSON chapters "
                                     "document (`application/json+chapters`), with the owner's token; when the MP3 "
                                     "has chapters.")
    chapters_link: str | None = Field(default=None, description="The same with a signed link, until `expires_at`.")
    chapter_files: list[ChapterFileView] | None = Field(default=None, description="One MP3 per chapter, when "
                                                        "asked (`split=chapters`).")
    chapter_files_zip_url: str | None = Field(default=None, description="All the chapter files as one ZIP, with "
                                              "the owner's token.")
    chapter_files_zip_link: str | None = Field(default=None, description="The same with a signed link, until "
                                               "`expires_at`.")


class ChapterView(BaseModel):
    """A chapter of the MP3, on its own timeline (a trim moves and cuts the video's)."""

    title: str
    start_seconds: float = Field(ge=0)
    end_seconds: float = Field(gt=0)


class Notification(BaseModel):
    state: str | None


class JobView(BaseModel):
    """A job as its owner sees it. Fields after `history` appear only when they apply."""

    job_id: str
    state: JobState
    filename: str | None
    size_bytes: int | None = Field(description="The bytes the client sent (`received_bytes`).")
    bitrate_kbps: int | None
    created_at: Timestamp | None
    updated_at: Timestamp | None
    history: list[HistoryStep]
    received_bytes: int | None = Field(default=None, description="The bytes the client sent.")
    stored_bytes: int | None = Field(default=None, description="The bytes kept of them until the MP3 is made: the "
                                     "audio tracks (copied, with their metadata and chapters) and the covers.")
    options: Annotated[dict[str, Any], WithJsonSchema(ConversionOptions.model_json_schema(mode="serialization"))] \
        | None = Field(default=None, description="What the owner asked for (only the options given).")
    audio_tracks: list[dict[str, Any]] | None = Field(default=None, description="What the probe found, for "
                                                                                "choosing `track`.")
    applied: dict[str, Any] | None = Field(default=None, description="What the options made of this input, and "
                                           "what they forced (a re-encode, one pass, the cover found).")
    chapters: list[ChapterView] | None = Field(default=None, description="The MP3's chapter markers (none with "
                                               "`chapters=none`).")
    encoding: Encoding | None = None
    progress: Progress | None = None
    import_progress: ImportProgress | None = Field(default=None, description="While the job is `importing`: the "
                                                   "bytes fetched so far (`progress` gives the percentage when the "
                                                   "size is known).")
    audio: AudioView | None = Field(default=None, description="The MP3, once the job is done.")
    failure: dict[str, Any] | None = Field(default=None, description="Why the job failed.")
    notification: Notification | None = None

    def answer(self) -> dict[str, Any]:
        """The JSON: the fields that apply, and no others."""
        return self.model_dump(mode="json", exclude_unset=True)


def job_view(job: Job, links: DownloadLinkMaker | None = None) -> dict[str, Any]:
    return view_of(job, links).answer()


def view_of(job: Job, links: DownloadLinkMaker | None = None) -> JobView:
    view = JobView(
        job_id=job["_id"], state=job["state"], filename=job.get("filename"), size_bytes=job.get("size_bytes"),
        bitrate_kbps=job.get("bitrate_kbps"), created_at=iso(job.get("created_at")),
        updated_at=iso(job.get("updated_at")),
        history=[HistoryStep(state=step["state"], at=iso(step["at"])) for step in job.get("history", [])],
    )
    if job.get("received_bytes") is not None:
        view.received_bytes = job["received_bytes"]
    if job.get("stored_bytes") is not None:
        view.stored_bytes = job["stored_bytes"]
    if job.get("options"):
        view.options = job["options"]
    if job.get("audio_tracks"):
        view.audio_tracks = job["audio_tracks"]
    if job.get("applied"):
        view.applied = job["applied"]
    if job.get("chapters"):
        view.chapters = [ChapterView.model_validate(chapter) for chapter in job["chapters"]]
    if job.get("encoding"):
        encoding = job["encoding"]
        view.encoding = Encoding(mode=encoding.get("mode"), reason=encoding.get("reason"),
                                 segments=len(encoding.get("segments") or []))
        if encoding.get("encoded_after_seconds"):
            view.encoding.segments_encoded_after_seconds = encoding["encoded_after_seconds"]
    if job["state"] == JobState.CONVERTING and job.get("progress"):
        view.progress = Progress.model_validate(job["progress"])
    if job["state"] == JobState.IMPORTING and job.get("progress"):
        fetch = view.import_progress = ImportProgress.model_validate(job["progress"])
        if fetch.total_bytes:
            view.progress = Progress(percent=min(100.0, 100 * fetch.fetched_bytes / fetch.total_bytes),
                                     eta_seconds=None)
    if job["state"] == JobState.DONE:
        # ffmpeg's last progress report may come just short of the end; a finished job is all done.
        view.progress = Progress(percent=100.0, eta_seconds=0.0)
    if job["state"] == JobState.DONE and job.get("audio"):
        audio = job["audio"]
        view.audio = AudioView(
            audio_id=audio["audio_id"], size_bytes=audio["size_bytes"], sha256=audio["sha256"],
            duration_seconds=audio["duration_seconds"], stream_copied=audio["stream_copied"],
            expires_at=iso(audio.get("expires_at")), expired=is_expired(audio),
        )
        if audio.get("chapter_files"):
            view.audio.chapter_files = [ChapterFileView.model_validate(chapter_file)
                                        for chapter_file in audio["chapter_files"]]
        if links is not None and not view.audio.expired:
            # With the owner's token; and a signed link that needs none, to open in a browser or hand on.
            view.audio.download_url = f"{links.base_url}/{job['_id']}"
            if audio.get("expires_at") is not None:
                view.audio.download_link = links.link(job["_id"], audio["audio_id"], audio["expires_at"],
                                                      job["owner_id"])
            if audio.get("chapter_files"):
                add_chapter_links(view.audio, job, links)
            if job.get("chapters"):
                view.audio.chapters_url = f"{links.base_url}/{chapters_path(job['_id'])}"
                if audio.get("expires_at") is not None:
                    view.audio.chapters_link = links.link(chapters_path(job["_id"]), audio["audio_id"],
                                                          audio["expires_at"], job["owner_id"])
    if job["state"] == JobState.FAILED and job.get("failure"):
        view.failure = job["failure"]
    if job.get("notification"):
        view.notification = Notification(state=job["notification"].get("state"))
    return view


def add_chapter_links(audio_view: AudioView, job: Job, links: DownloadLinkMaker) -> None:
    """Each chapter file's URL and signed link, and the URL and link of their ZIP."""
    audio = job["audio"]

    def signed(path: str) -> str | None:
        if audio.get("expires_at") is None:
            return None
        return links.link(path, audio["audio_id"], audio["expires_at"], job["owner_id"])

    for chapter_file in audio_view.chapter_files or []:
        path = chapter_file_path(job["_id"], chapter_file.number)
        chapter_file.download_url, chapter_file.download_link = f"{links.base_url}/{path}", signed(path)
    audio_view.chapter_files_zip_url = f"{links.base_url}/{chapter_files_zip_path(job['_id'])}"
    audio_view.chapter_files_zip_link = signed(chapter_files_zip_path(job["_id"]))
