"""The wait for a piece of work's holder: a settled answer at once, a holder seen renewing left alone, a lapsed one's
work taken over, and a holder that neither renews nor ends given up on at the deadline; on a clock of the test's."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from events import RetryLater
from jobs import leases
from jobs.leases import Held, Settled, claim_unless_held

LEASE = timedelta(seconds=30)
UNTIL = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


class FakeTime:
    """Stands in for the `time` module inside jobs/leases.py: sleeping moves its clock on at once."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(leases, "time", fake)
    return fake


class Look:
    """A `look` that answers `found` in turn, then the last one for ever; counts its calls."""

    def __init__(self, *found: Any) -> None:
        self._answers: Iterator[Any] = iter(found)
        self._last: Any = None
        self.calls = 0

    def __call__(self) -> Any:
        self.calls += 1
        self._last = next(self._answers, self._last)
        return self._last


def never_claims() -> Any:
    raise AssertionError("claim() was called")


def test_a_settled_answer_is_returned_at_once(clock: FakeTime) -> None:
    look = Look(Settled("done"))
    assert claim_unless_held(look, never_claims, LEASE, "job j") == "done"
    assert look.calls == 1 and clock.sleeps == []
    assert claim_unless_held(Look(Settled(None)), never_claims, LEASE, "job j") is None


@pytest.mark.parametrize("renewed", [Held("holder-a", UNTIL + timedelta(seconds=1)),
                                     Held("holder-b", UNTIL)])  # another holder took it over meanwhile
def test_a_holder_seen_renewing_is_left_alone(clock: FakeTime, renewed: Held) -> None:
    look = Look(Held("holder-a", UNTIL), Held("holder-a", UNTIL), renewed)
    assert claim_unless_held(look, never_claims, LEASE, "job j") is None
    assert look.calls == 3 and clock.sleeps == [leases.HOLDER_POLL_SECONDS] * 2


def test_an_older_reading_of_the_lease_is_no_renewal(clock: FakeTime) -> None:
    """Only a lease that runs later than the first one seen proves the holder alive; then it lapses."""
    look = Look(Held("holder-a", UNTIL), Held("holder-a", UNTIL - timedelta(seconds=5)), None)
    assert claim_unless_held(look, lambda: "taken", LEASE, "job j") == "taken"


def test_a_lapsed_holder_is_taken_over_by_claim(clock: FakeTime) -> None:
    look = Look(Held("holder-a", UNTIL), Held("holder-a", UNTIL), None)
    claims: list[float] = []

    def claim() -> str:
        claims.append(clock.now)
        return "claimed job"

    assert claim_unless_held(look, claim, LEASE, "job j") == "claimed job"
    assert len(claims) == 1 and look.calls == 3


def test_free_work_is_claimed_without_waiting(clock: FakeTime) -> None:
    assert claim_unless_held(Look(None), lambda: 7, LEASE, "job j") == 7
    assert clock.sleeps == []


def test_a_claim_lost_to_another_delivery_waits_on_the_new_holder(clock: FakeTime) -> None:
    """claim() found the work taken between the look and the claim: the new holder renews, so this one leaves."""
    look = Look(None, Held("holder-b", UNTIL), Held("holder-b", UNTIL + timedelta(seconds=1)))
    attempts: list[int] = []

    def claim() -> None:
        attempts.append(1)
        return None

    assert claim_unless_held(look, claim, LEASE, "job j") is None
    assert attempts == [1]


def test_a_holder_that_neither_renews_nor_ends_is_given_up_at_the_deadline(clock: FakeTime) -> None:
    start = clock.now
    with pytest.raises(RetryLater, match="job j is held"):
        claim_unless_held(Look(Held("holder-a", UNTIL)), never_claims, LEASE, "job j")
    waited = clock.now - start
    # The lease and one second more, then at most one poll past it.
    assert LEASE.total_seconds() + 1 < waited <= LEASE.total_seconds() + 1 + 2 * leases.HOLDER_POLL_SECONDS
