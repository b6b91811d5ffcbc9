"""What `GET /` of the status function answers: the owner's recent jobs and their usage against each quota."""

from __future__ import annotations

from pydantic import BaseModel, Field

from functions.shared.job_view import JobView


class UsageOfLimit(BaseModel):
    used: int = Field(ge=0)
    limit: int = Field(ge=0)


class Usage(BaseModel):
    """Each per-user quota (functions/upload/quotas.py); over one, requests answer 429 naming it."""

    jobs_in_flight: UsageOfLimit
    uploads_per_hour: UsageOfLimit
    media_bytes: UsageOfLimit
    live_streams: UsageOfLimit


class JobList(BaseModel):
    jobs: list[JobView] = Field(description="The most recent jobs, newest first.")
    usage: Usage
