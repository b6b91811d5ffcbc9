"""Answers of the public HTTP functions that no domain package builds: what an accepted upload answers (202: the
job it became and where to follow it; the one-shot `POST /` and the last byte of a resumable upload answer the same)
and what `GET /` of the status function answers (the owner's recent jobs and their usage against each quota)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, WithJsonSchema

from events.options import ConversionOptions
from jobs.records import JobState
from jobs.view import JobView


class UploadAccepted(BaseModel):
    job_id: str = Field(description="The job's id; the status function's `/<job_id>` follows it.")
    state: Literal[JobState.UPLOADED]
    status_url: str = Field(description="Where to follow the job (also the answer's `Location`).")
    filename: str = Field(description="The original file name, kept only as a label.")
    size_bytes: int = Field(ge=1, description="The bytes received (the same as `received_bytes`).")
    received_bytes: int = Field(ge=1, description="The bytes the client sent.")
    stored_bytes: int = Field(ge=1, description="The bytes kept of them: the audio tracks (every one, copied, "
                                                "with their metadata and chapters) and the covers.")
    sha256: str = Field(pattern="^[0-9a-f]{64}$", description="SHA-256 of the bytes received.")
    bitrate_kbps: int = Field(description="The MP3's constant bitrate (a VBR `quality` leaves it unused).")
    options: Annotated[dict[str, Any], WithJsonSchema(ConversionOptions.model_json_schema(mode="serialization"))] \
        = Field(description="The conversion options given (none: `{}`).")


class ImportAccepted(BaseModel):
    """An import by URL, accepted: its job fetches the video in the background (`importing`, the bytes fetched in
    its view's `import_progress`), then converts as an upload's."""

    job_id: str = Field(description="The job's id; the status function's `/<job_id>` follows it.")
    state: Literal[JobState.IMPORTING]
    status_url: str = Field(description="Where to follow the job (also the answer's `Location`).")
    filename: str = Field(description="The name in the URL's path, kept only as a label.")
    total_bytes: int | None = Field(description="The size the URL's server announced (`Content-Length`), if any.")
    options: Annotated[dict[str, Any], WithJsonSchema(ConversionOptions.model_json_schema(mode="serialization"))] \
        = Field(description="The conversion options given (none: `{}`).")


class UsageOfLimit(BaseModel):
    used: int = Field(ge=0)
    limit: int = Field(ge=0)


class Usage(BaseModel):
    """Each per-user quota (jobs/quotas.py); over one, requests answer 429 naming it."""

    jobs_in_flight: UsageOfLimit
    uploads_per_hour: UsageOfLimit
    media_bytes: UsageOfLimit
    live_streams: UsageOfLimit


class JobList(BaseModel):
    jobs: list[JobView] = Field(description="The most recent jobs, newest first.")
    usage: Usage
