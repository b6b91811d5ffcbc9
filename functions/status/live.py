"""A job's changes as Server-Sent Events: polls the job record and sends its owner's view each time it changes,
with keep-alive comments in between, until the job is final or the stream's time is up.

Wire format (text/event-stream): every change is an `event: job` whose `data` is the same JSON `GET /<job id>`
answers; the stream ends right after the event that shows a final state (`done`, `failed`, `cancelled`). A stream
that ends before that ran out of time (each one holds a server thread): the client connects again and receives
the current view first.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pymongo.errors

from jobs.records import FINAL_STATES, Job

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
KEEP_ALIVE_SECONDS = 10.0
# How long an EventSource waits before it connects again after the stream ended.
RECONNECT_MILLISECONDS = 2000


def sse_event(name: str, data: str, event_id: int) -> bytes:
    # `data` is one line of JSON (json.dumps escapes newlines), so one `data:` field carries it.
    return f"id: {event_id}\nevent: {name}\ndata: {data}\n\n".encode()


def sse_comment(text: str) -> bytes:
    return f": {text}\n\n".encode()


@dataclass
class JobStream:
    """Iterating yields the bytes of the stream; `load` answers the job (None once it is gone), `render` its view."""

    load: Callable[[], Job | None]
    render: Callable[[Job], dict[str, Any]]
    max_seconds: float
    poll_seconds: float = POLL_SECONDS
    keep_alive_seconds: float = KEEP_ALIVE_SECONDS
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep

    def __iter__(self) -> Iterator[bytes]:
        started = last_write = self.clock()
        previous: str | None = None
        sequence = 0
        yield f"retry: {RECONNECT_MILLISECONDS}\n\n".encode()
        while True:
            try:
                job = self.load()
            except pymongo.errors.PyMongoError as error:
                # The database is away for a moment: say nothing now, look again at the next tick.
                log.warning("job stream: could not read the job: %s", type(error).__name__)
            else:
                if job is None:
                    yield sse_comment("the job is gone")
                    return
                view = self.render(job)
                text = json.dumps(view, sort_keys=True, separators=(",", ":"))
                if text != previous:
                    previous, sequence = text, sequence + 1
                    yield sse_event("job", text, sequence)
                    last_write = self.clock()
                if job["state"] in FINAL_STATES:
                    return
            moment = self.clock()
            if moment - started >= self.max_seconds:
                yield sse_comment("time is up for this stream; connect again to follow the job")
                return
            if moment - last_write >= self.keep_alive_seconds:
                yield sse_comment("keep-alive")
                last_write = moment
            self.sleep(self.poll_seconds)
