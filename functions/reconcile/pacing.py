"""Pacing: lets a sweep's deletions share the database with the service's own writes. Work goes in bursts of a few
items (job records, files), and after each burst a rest in proportion to the time the burst took, so that the sweep
works for at most `duty_cycle` of the time.

Why: the local FerretDB lets one write command through at a time (stack/ferretdb/writelock.go) and commits each
deletion on its own, so a purge writing back to back put one of its writes in front of nearly every write of a
concurrent upload (docs/BENCHMARKS.md, "Lifetimes"). A MongoDB server has no such lock; there the rests only
stretch a sweep whose work per tick is bounded anyway (PURGE_BATCH_SIZE).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Pacing:
    # Items per burst: a burst's writes take a fraction of an upload's round trip.
    burst: int = 5
    # The share of the time spent working: 1 is unpaced.
    duty_cycle: float = 0.2
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    # The burst under way: when it started (None between bursts) and the items done in it. Between bursts, the rest
    # the last one earned and when it ended: time spent elsewhere since (another step, an idle minute) counts as rest.
    _started: float | None = field(default=None, init=False)
    _items: int = field(default=0, init=False)
    _rest: float = field(default=0.0, init=False)
    _ended: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        if self.burst < 1 or not 0 < self.duty_cycle <= 1:
            raise ValueError(f"pacing needs a burst of 1 or more and a duty cycle in (0, 1], not {self}")

    def room(self) -> int:
        """How many items the caller may do now (1 to `burst`), after resting if the last burst is over."""
        if self._started is not None and self._items >= self.burst:
            self.pause()
        if self._started is None:
            owed = self._rest - (self.clock() - self._ended)
            if owed > 0:
                self.sleep(owed)
            self._started, self._items = self.clock(), 0
        return self.burst - self._items

    def did(self, items: int) -> None:
        self._items += items

    def pause(self) -> None:
        """Ends the burst under way (the caller stops working for now): the next one starts after its rest."""
        if self._started is not None:
            self._ended = self.clock()
            self._rest = (self._ended - self._started) * (1 - self.duty_cycle) / self.duty_cycle
            self._started = None
