"""A work-around, for tests that need a job converted, of a defect of the local stack's data store (not of the code
under test): FerretDB 1.x applies an update as read, modify, write back without isolation, so two concurrent
updates of one document can lose one. Upload clearing its outbox races convert's claim; a lost claim leaves the job
`uploaded` until the reconcile step re-drives it, 30 minutes later. `redrive_if_claim_lost` re-drives it after a
few seconds instead, as reconcile would, and says so on stdout."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from events import EventEmitter, VideoUploaded
from functions.shared.jobs import JobState


@contextmanager
def redrive_if_claim_lost(endpoints: dict[str, str], find_job: Callable[[], dict[str, Any] | None],
                          after_seconds: float = 8) -> Iterator[None]:
    stop = threading.Event()

    def watch() -> None:
        if stop.wait(after_seconds):
            return
        record = find_job()
        if record and record["state"] == JobState.UPLOADED and not record.get("attempts"):
            print(f"job {record['_id']}: its claim was lost (FerretDB lost update); re-driving it as reconcile would")
            EventEmitter(endpoints["BROKER_INGRESS_URL"], "reconcile").emit(VideoUploaded(
                job_id=record["_id"], owner_id=record["owner_id"], video_id=record["video_id"],
                filename=record["filename"], size_bytes=record["size_bytes"], sha256=record["sha256"],
                bitrate_kbps=record["bitrate_kbps"], uploaded_at=record["created_at"]))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()
