"""The pace of a sweep's deletions, on a clock of the test's: bursts that end past their time, each followed by a rest
in proportion, time spent elsewhere counted as rest, rests inside a unit that must not stop, and the sweep's bound."""

from __future__ import annotations

import math
from typing import Any

import pytest

from storage.pacing import Pacing


class Clock:
    """Time that moves only when work is done (`work`) or the pacing sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.rests: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.rests.append(seconds)
        self.now += seconds

    def work(self, seconds: float) -> None:
        self.now += seconds


def paced(clock: Clock, **options: float) -> Pacing:
    return Pacing(sleep=clock.sleep, clock=clock, **options)


def test_bursts_end_past_their_time_and_rest_in_proportion() -> None:
    clock = Clock()
    pacing = paced(clock, burst_seconds=0.05, duty_cycle=0.2)
    done = []
    for item in pacing.each(range(10)):
        clock.work(0.02)
        done.append(item)
    assert done == list(range(10))
    # A burst ends after the unit that takes it to 0.05 s or more: three units, 0.06 s; its rest is four times
    # as long (a duty cycle of 0.2). Ten units: three bursts of three, and one of the last unit (no rest after it).
    assert clock.rests == pytest.approx([0.24, 0.24, 0.24])
    assert clock.now - 100 == pytest.approx(10 * 0.02 + 3 * 0.24)


def test_a_duty_cycle_of_one_never_rests() -> None:
    clock = Clock()
    for _ in paced(clock, burst_seconds=0.01, duty_cycle=1.0).each(range(50)):
        clock.work(0.02)
    assert clock.rests == []


def test_time_spent_elsewhere_counts_as_rest() -> None:
    clock = Clock()
    pacing = paced(clock, burst_seconds=0.05, duty_cycle=0.2)
    for _ in pacing.each(range(3)):
        clock.work(0.02)  # one burst of 0.06 s: a rest of 0.24 s is owed
    clock.work(0.1)  # a step that is not paced
    for _ in pacing.each(range(1)):
        clock.work(0.02)
    assert clock.rests == pytest.approx([0.14])  # what was left of the rest


def test_a_consumer_that_stops_early_ends_the_burst_there() -> None:
    clock = Clock()
    pacing = paced(clock, burst_seconds=0.05, duty_cycle=0.2)
    for _ in pacing.each(range(100)):
        clock.work(0.01)
        break
    clock.work(10)  # long after: had the burst gone on, it would owe a rest of 40 s
    assert pacing.go_on()
    assert clock.rests == []


def test_breathe_rests_inside_a_unit_once_the_burst_has_had_its_time() -> None:
    clock = Clock()
    pacing = paced(clock, burst_seconds=0.05, duty_cycle=0.5)
    assert pacing.go_on()
    for _ in range(6):  # one file's chunk deletions, 0.02 s each, with a breath between them
        clock.work(0.02)
        pacing.breathe()
    # At 0.06 s and again 0.06 s later, each rest as long as its burst (a duty cycle of 0.5).
    assert clock.rests == pytest.approx([0.06, 0.06])


def test_breathe_outside_a_burst_does_nothing() -> None:
    clock = Clock()
    pacing = paced(clock, burst_seconds=0.0, duty_cycle=0.1)
    pacing.breathe()
    assert clock.rests == []


def test_the_sweep_stops_once_its_time_is_up_rests_included() -> None:
    clock = Clock()
    pacing = paced(clock, burst_seconds=0.05, duty_cycle=0.2, seconds_per_sweep=1.0)
    pacing.begin()
    started = clock.now
    done = []
    for item in pacing.each(range(1000)):
        clock.work(0.02)
        done.append(item)
    # Each burst and its rest take 0.3 s: the fourth burst starts at 0.9 s; the fifth would start, once its rest
    # is over, at 1.2 s, past the bound, so the sweep stops after the fourth, not resting.
    assert len(done) == 12
    assert clock.now - started == pytest.approx(0.96)
    assert clock.rests == pytest.approx([0.24, 0.24, 0.24])
    assert not pacing.go_on()  # still out of time
    pacing.begin()  # the next sweep
    assert pacing.go_on()


def test_without_a_bound_the_sweep_takes_what_it_needs() -> None:
    clock = Clock()
    pacing = paced(clock, burst_seconds=0.05, duty_cycle=0.2)
    pacing.begin()
    done = 0
    for _ in pacing.each(range(500)):
        clock.work(0.02)
        done += 1
    assert done == 500


@pytest.mark.parametrize("options", [
    {"burst_seconds": -0.1}, {"duty_cycle": 0.0}, {"duty_cycle": 1.5}, {"duty_cycle": -0.2},
    {"seconds_per_sweep": 0.0}, {"seconds_per_sweep": -1.0},
])
def test_a_pace_that_makes_no_sense_is_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="pacing needs"):
        Pacing(**options)


def test_the_defaults_are_unbounded() -> None:
    assert Pacing().seconds_per_sweep == math.inf
