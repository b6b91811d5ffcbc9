"""The one clock: aware UTC moments, and moments written in JSON answers as ISO 8601 with their offset."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from runtime.clock import iso, now


def test_now_is_the_current_moment_in_utc() -> None:
    before = datetime.now(UTC)
    moment = now()
    after = datetime.now(UTC)
    assert moment.tzinfo is UTC and moment.utcoffset() == timedelta(0)
    assert before <= moment <= after


def test_a_moment_is_written_with_its_offset_and_none_as_none() -> None:
    assert iso(datetime(2026, 5, 1, 12, 30, 5, 250000, tzinfo=UTC)) == "2026-05-01T12:30:05.250000+00:00"
    assert iso(datetime(2026, 5, 1, 14, 30, tzinfo=timezone(timedelta(hours=2)))) == "2026-05-01T14:30:00+02:00"
    assert iso(None) is None
