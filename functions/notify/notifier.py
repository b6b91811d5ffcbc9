"""Emails the owner of a converted job the download link, through SendGrid: exactly one email per MP3.

The job record is the ledger: a notification is claimed on the job before sending (so a concurrent duplicate
waits), and marked sent with its event in one write after the API accepted the mail. A redelivery after that
only re-emits the event if it is still pending.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pymongo.errors
from python_http_client.exceptions import HTTPError

from events import AudioConverted, EventEmitter, NotificationSent, RetryLater
from jobs.links import DownloadLinks
from jobs.records import Jobs, JobState
from runtime.clock import now
from runtime.mail import Mailer
from storage import mysql

log = logging.getLogger(__name__)

# A send that has not finished within this long is assumed to have died with its process.
SENDING_LEASE = timedelta(seconds=60)
# How long a sent email's record is retried while the job store is away: well inside the Trigger's 30 s timeout.
SENT_RECORD_PATIENCE_SECONDS = 15


def subject_of(video: str) -> str:
    """The email's subject names the video, so several MP3s' emails tell apart in an inbox (a long name shortened)."""
    shown = video if len(video) <= 80 else video[:79] + "…"
    return f"Your MP3 of {shown} is ready"


@dataclass
class Notifier:
    jobs: Jobs
    mailer: Mailer
    emitter: EventEmitter
    mysql_url: str
    links: DownloadLinks
    public_web_url: str

    def handle(self, event: AudioConverted) -> None:
        job = self.jobs.get(event.job_id)
        if (job is None or job["owner_id"] != event.owner_id or job["state"] != JobState.DONE
                or job.get("audio", {}).get("audio_id") != event.audio_id):
            log.warning("ignoring audio converted for job %s: no such finished job of that owner", event.job_id)
            return
        claimed = self.jobs.update(event.job_id, {"$or": [
            {"notification": {"$exists": False}},
            {"notification.state": "retry"},
            {"notification.state": "sending", "notification.lease_until": {"$lt": now()}},
        ]}, {"notification": {"state": "sending", "lease_until": now() + SENDING_LEASE}})
        if claimed is None:
            current = self.jobs.get(event.job_id) or {}
            if current.get("notification", {}).get("state") == "sending":
                raise RetryLater(f"job {event.job_id}: another delivery is sending its email")
            self.jobs.flush_pending(current, self.emitter)  # sent or failed already: nothing more to send
            return
        self.send(claimed, event)

    def send(self, job: dict[str, Any], event: AudioConverted) -> None:
        recipient = mysql.owner_email(self.mysql_url, event.owner_id)
        if recipient is None:
            self.record(event.job_id, {"state": "failed", "reason": "the owner's account no longer exists"})
            return
        expires_at = job["audio"]["expires_at"]
        link = self.links.link(event.job_id, event.audio_id, expires_at, event.owner_id)
        if link is None:
            self.record(event.job_id, {"state": "failed", "reason": "the owner's account no longer exists"})
            return
        page = f"{self.public_web_url.rstrip('/')}/#job={event.job_id}"
        video = job.get("filename") or "your video"
        text = (f"Your MP3 of {video} is ready ({event.duration_seconds:.0f} s).\n\n"
                f"Download it:\n{link}\n\nThis link needs no login and works until {expires_at:%Y-%m-%d %H:%M} UTC,"
                f" when the MP3 is deleted: keep it to yourself.\n\nSee the job on vid2mp3 (log in):\n{page}\n")
        try:
            channel = self.mailer.send(recipient, subject_of(video), text)
        except HTTPError as error:
            status = int(getattr(error, "status_code", 0) or 0)
            if status == 429 or status >= 500:
                self.record(event.job_id, {"state": "retry", "last_error": f"mail API answered {status}"})
                raise RetryLater(f"mail API answered {status}") from None
            self.record(event.job_id, {"state": "failed", "reason": f"mail API refused the message ({status})"})
            return
        except OSError as error:  # connection refused, timeouts: the mail API is away
            self.record(event.job_id, {"state": "retry", "last_error": type(error).__name__})
            raise RetryLater(f"mail API unreachable: {error}") from None
        sent = NotificationSent(job_id=event.job_id, owner_id=event.owner_id, audio_id=event.audio_id,
                                channel="log" if channel == "log" else "email", sent_at=now())
        self.record_sent(sent)

    def record_sent(self, sent: NotificationSent) -> None:
        """Marks the email sent, with its event. The email is out: were this write given up while the store is
        restarting, the next delivery would find the claim lapsed and send a second one. So it is retried here,
        within the notify Trigger's 30 s timeout; what the broker could not redo, this process does."""
        deadline = time.monotonic() + SENT_RECORD_PATIENCE_SECONDS
        while True:
            try:
                # Recorded even over a claim that has gone (a store that loses concurrent updates, as FerretDB does
                # without the local stack's write serializer: docs/RELIABILITY.md).
                updated = self.jobs.update(
                    sent.job_id, {"$or": [{"notification.state": "sending"}, {"notification": {"$exists": False}}]},
                    {"notification": {"state": "sent", "channel": sent.channel, "at": sent.sent_at}}, sent)
                break
            except pymongo.errors.PyMongoError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        # None: an earlier try was applied though its answer was lost; its event may still be pending.
        self.jobs.flush_pending(updated or self.jobs.get(sent.job_id) or {}, self.emitter)

    def record(self, job_id: str, notification: dict[str, Any]) -> None:
        self.jobs.update(job_id, {}, {"notification": notification})
