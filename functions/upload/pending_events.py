"""Sends, in the background and for a bounded time, the video-uploaded events the broker did not take at upload time.

An accepted upload's job keeps its event in its outbox (`pending_event`) until the broker has it, so the upload
is answered 202 once the video and the job are in MongoDB, whether or not the broker is there. This retry sends
the event as soon as the broker is back. It lives in the upload process only: a pod scaled to zero (or killed)
with events still waiting loses the retry, never the events, because the reconcile sweep emits every outbox entry
older than its grace (every minute on Knative), and gives up on nothing.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from dataclasses import dataclass, field

import pymongo.errors

from events import EmitError, EventEmitter
from jobs.records import Jobs

log = logging.getLogger(__name__)


@dataclass
class PendingEventRetry:
    jobs: Jobs
    # Its own emitter, tried once per round: the rounds are the backoff.
    emitter: EventEmitter
    first_delay_seconds: float = 0.5
    max_delay_seconds: float = 5.0
    # Past this the reconcile sweep has long been due; the retry lets the job go to it.
    give_up_after_seconds: float = 300.0
    # More jobs than this waiting means a long outage: the rest wait for the reconcile sweep, memory stays bounded.
    max_waiting: int = 1000
    _due: list[tuple[float, str, float, float]] = field(default_factory=list)  # (when, job, delay, deadline)
    _wake: threading.Condition = field(default_factory=threading.Condition)
    _thread: threading.Thread | None = None

    def add(self, job_id: str) -> bool:
        """Retries the job's pending event in the background; False when full (the reconcile sweep sends it)."""
        moment = time.monotonic()
        with self._wake:
            if len(self._due) >= self.max_waiting:
                log.warning("job %s: %d events already waiting; the reconcile sweep will send it", job_id,
                            len(self._due))
                return False
            heapq.heappush(self._due, (moment + self.first_delay_seconds, job_id, self.first_delay_seconds,
                                       moment + self.give_up_after_seconds))
            if self._thread is None or not self._thread.is_alive():  # started here: after any worker fork
                self._thread = threading.Thread(target=self._run, name="pending-event-retry", daemon=True)
                self._thread.start()
            self._wake.notify()
        return True

    def waiting(self) -> int:
        with self._wake:
            return len(self._due)

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._due or self._due[0][0] > time.monotonic():
                    self._wake.wait(timeout=self._due[0][0] - time.monotonic() if self._due else None)
                _, job_id, delay, deadline = heapq.heappop(self._due)
            if self._send(job_id):
                continue
            retry_at = time.monotonic() + delay
            if retry_at > deadline:
                log.warning("job %s: its event is still pending; the reconcile sweep will send it", job_id)
                continue
            with self._wake:
                heapq.heappush(self._due, (retry_at, job_id, min(delay * 2, self.max_delay_seconds), deadline))

    def _send(self, job_id: str) -> bool:
        """True once nothing is left to send for the job (sent now, or already: a claim clears it too)."""
        try:
            job = self.jobs.get(job_id)
            if job is None or not job.get("pending_event"):
                return True
            self.jobs.flush_pending(job, self.emitter)
        except (EmitError, pymongo.errors.PyMongoError) as error:
            log.info("job %s: its event is not out yet: %s", job_id, error)
            return False
        log.info("job %s: its pending event was sent", job_id)
        return True
