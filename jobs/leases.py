"""One attempt at a time on a piece of work (a job's conversion, a fanned-out segment): its holder renews a lease
on the job record while it works, and a delivery that finds the work held waits to see whether the holder is alive.

A duplicate delivery and the broker's retry of a holder that died carry the same event: only the lease tells them
apart. A live holder renews it every second, so a renewal seen after this delivery arrived proves it alive (this
delivery is acknowledged and leaves the dispatcher's worker at once); a dead holder's lease lapses, and the retried
delivery takes the work over as soon as it does."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from events import RetryLater

log = logging.getLogger(__name__)
T = TypeVar("T")
HOLDER_POLL_SECONDS = 0.2


@dataclass(frozen=True)
class Held:
    """The work is held: by whom, and until when its lease runs."""

    holder: str
    until: datetime


@dataclass(frozen=True)
class Settled(Generic[T]):
    """No waiting: the delivery's answer is `value` (None: nothing for it to do)."""

    value: T | None


def claim_unless_held(look: Callable[[], Held | Settled[T] | None], claim: Callable[[], T | None], lease: timedelta,
                      what: str) -> T | None:
    """What `claim()` took once the holder's lease lapsed, or the `Settled` value `look()` found; None once a live
    holder is seen renewing. `look()` reads the record: `Held`, `Settled`, or None when the work is free to claim."""
    seen: Held | None = None
    deadline = time.monotonic() + lease.total_seconds() + 1
    while True:
        found = look()
        if isinstance(found, Settled):
            return found.value
        if isinstance(found, Held):
            if seen is not None and (found.holder != seen.holder or found.until > seen.until):
                log.info("%s is held by a live holder: this delivery leaves it to that one", what)
                return None
            seen = seen or found
        else:
            claimed = claim()
            if claimed is not None:
                log.info("%s taken over: its holder stopped renewing its lease", what)
                return claimed
        if time.monotonic() > deadline:
            # Not reached with the holders' own leases; a safety net should a lease be longer.
            raise RetryLater(f"{what} is held by a holder that neither renews its lease nor ends")
        time.sleep(HOLDER_POLL_SECONDS)
