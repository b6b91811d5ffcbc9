"""Pacing: lets large deletions (the reconcile step's sweeps; the upload's removal of a finished tus upload's video)
share the database with the service's own writes. The work goes in
short bursts (a burst ends after the first unit of work, or command of a file's chunk deletions, that takes it past
`burst_seconds`), each followed by a rest in proportion to the burst's time, so that the sweep works at most
`duty_cycle` of the time; and it stops for this sweep once `seconds_per_sweep` have passed since `begin`.

Why: the local FerretDB lets one write command through at a time (stack/ferretdb/writelock.go) and commits each
deletion on its own, so deleting back to back put one of its writes in front of nearly every write of a concurrent
upload (docs/PERFORMANCE.md, "Lifetimes and deletion pacing": uploads 1.4x slower at p50 beside an unpaced purge,
1.6x beside a sweep of expired MP3s). A MongoDB server has no such lock; there the rests only stretch a sweep whose
work is bounded anyway.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

Item = TypeVar("Item")


@dataclass
class Pacing:
    # A fraction of an upload's round trip (about 60-300 ms on the local stack).
    burst_seconds: float = 0.05
    # The share of the time spent working: 1 is unpaced.
    duty_cycle: float = 0.2
    # The most a sweep's deletions take, rests included: the sweep must end before the next tick.
    seconds_per_sweep: float = math.inf
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    # When the burst under way started (None between bursts); between bursts, the rest the last one earned and when
    # it ended (time spent elsewhere since, such as in a step that is not paced, counts as rest).
    _started: float | None = field(default=None, init=False)
    _rest: float = field(default=0.0, init=False)
    _ended: float = field(default=0.0, init=False)
    _deadline: float = field(default=math.inf, init=False)

    def __post_init__(self) -> None:
        if self.burst_seconds < 0 or not 0 < self.duty_cycle <= 1 or self.seconds_per_sweep <= 0:
            raise ValueError(f"pacing needs burst_seconds >= 0, a duty cycle in (0, 1] and seconds_per_sweep > 0, "
                             f"not {self}")

    def begin(self) -> None:
        """A sweep starts: its deletions may take `seconds_per_sweep` from now."""
        self._deadline = self.clock() + self.seconds_per_sweep

    def go_on(self) -> bool:
        """Called before each unit of work: False once the sweep's time is up (the rest is the next sweep's);
        otherwise True, after resting if the burst under way has had its time."""
        if self._started is not None and self.clock() - self._started >= self.burst_seconds:
            self.pause()
        if self._started is None:
            if self.clock() + max(self._owed(), 0) >= self._deadline:
                return False
            self._rest_and_start()
        return True

    def breathe(self) -> None:
        """Called between the commands of a unit of work that must not stop midway (a file's chunk deletions):
        rests there if the burst under way has had its time."""
        if self._started is not None and self.clock() - self._started >= self.burst_seconds:
            self.pause()
            self._rest_and_start()

    def _owed(self) -> float:
        return self._rest - (self.clock() - self._ended)

    def _rest_and_start(self) -> None:
        if (owed := self._owed()) > 0:
            self.sleep(owed)
        self._started = self.clock()

    def pause(self) -> None:
        """Ends the burst under way (the caller stops working for now): the next one starts after its rest."""
        if self._started is not None:
            self._ended = self.clock()
            self._rest = (self._ended - self._started) * (1 - self.duty_cycle) / self.duty_cycle
            self._started = None

    def each(self, items: Iterable[Item]) -> Iterator[Item]:
        """`items`, each a unit of work, for as long as the sweep has time."""
        try:
            for item in items:
                if not self.go_on():
                    return
                yield item
        finally:
            self.pause()
