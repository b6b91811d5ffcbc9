"""What a job looks like to its owner: the JSON that the status endpoint answers and the client prints."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from functions.shared.jobs import Job, JobState, now


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def is_expired(audio: dict[str, Any]) -> bool:
    """The MP3 is past its retention (the reconcile step deletes it within a minute, if it has not yet)."""
    expires_at = audio.get("expires_at")
    return bool(audio.get("deleted_at")) or (expires_at is not None and expires_at <= now())


class DownloadLinkMaker(Protocol):
    """What a job's view needs to name its MP3: the download function's URL and signed links to it
    (functions/download/links.py)."""

    base_url: str

    def link(self, job_id: str, audio_id: str, expires_at: datetime) -> str: ...


def job_view(job: Job, links: DownloadLinkMaker | None = None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "job_id": job["_id"],
        "state": job["state"],
        "filename": job.get("filename"),
        "size_bytes": job.get("size_bytes"),
        "bitrate_kbps": job.get("bitrate_kbps"),
        "created_at": iso(job.get("created_at")),
        "updated_at": iso(job.get("updated_at")),
        "history": [{"state": step["state"], "at": iso(step["at"])} for step in job.get("history", [])],
    }
    if job.get("options"):
        view["options"] = job["options"]  # what the owner asked for (only the options given)
    if job.get("audio_tracks"):
        view["audio_tracks"] = job["audio_tracks"]  # what the probe found, for choosing `track`
    if job.get("applied"):
        # What the options made of this input, and what they forced (a re-encode, one pass, the cover found).
        view["applied"] = job["applied"]
    if job.get("encoding"):
        # How the MP3 is (or was) made: one pass, segments at once on one instance, or fanned out to many.
        encoding = job["encoding"]
        view["encoding"] = {"mode": encoding.get("mode"), "reason": encoding.get("reason"),
                            "segments": len(encoding.get("segments") or []),
                            **({"segments_encoded_after_seconds": encoding["encoded_after_seconds"]}
                               if encoding.get("encoded_after_seconds") else {})}
    if job["state"] == JobState.CONVERTING and job.get("progress"):
        view["progress"] = job["progress"]
    if job["state"] == JobState.DONE:
        # ffmpeg's last progress report may come just short of the end; a finished job is all done.
        view["progress"] = {"percent": 100.0, "eta_seconds": 0.0}
    if job["state"] == JobState.DONE and job.get("audio"):
        audio = job["audio"]
        view["audio"] = {
            "audio_id": audio["audio_id"], "size_bytes": audio["size_bytes"], "sha256": audio["sha256"],
            "duration_seconds": audio["duration_seconds"], "stream_copied": audio["stream_copied"],
            "expires_at": iso(audio.get("expires_at")),
            "expired": is_expired(audio),
        }
        if links is not None and not view["audio"]["expired"]:
            # With the owner's token; and a signed link that needs none, to open in a browser or hand on.
            view["audio"]["download_url"] = f"{links.base_url}/{job['_id']}"
            if audio.get("expires_at") is not None:
                view["audio"]["download_link"] = links.link(job["_id"], audio["audio_id"], audio["expires_at"])
    if job["state"] == JobState.FAILED and job.get("failure"):
        view["failure"] = job["failure"]
    if job.get("notification"):
        view["notification"] = {"state": job["notification"].get("state")}
    return view
