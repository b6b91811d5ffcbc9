"""What a webhook delivery sends and when it tries again: the Standard Webhooks body, compact and byte-exact, and the
retry schedule, each delay within its jitter, ending once the schedule is spent."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from events.catalog import AudioConverted, JobCancelled
from functions.delivery.deliverer import JITTER, next_attempt_time, webhook_body

JOB = "0123456789abcdef" * 2
MOMENT = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
DELAYS = (5.0, 300.0, 1800.0)


def test_the_body_is_the_events_type_time_and_payload_in_compact_json() -> None:
    payload = JobCancelled(job_id=JOB, owner_id="user-1", cancelled_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert webhook_body(payload, "2026-01-02T03:04:05.123Z") == (
        '{"type":"io.vid2mp3.job.cancelled.v1","timestamp":"2026-01-02T03:04:05.123Z",'
        f'"data":{{"job_id":"{JOB}","owner_id":"user-1","cancelled_at":"2026-01-02T03:04:05Z"}}}}')


def test_the_body_carries_every_field_of_the_payload_as_json() -> None:
    payload = AudioConverted(job_id=JOB, owner_id="user-1", audio_id="a" * 24, size_bytes=1234, sha256="f" * 64,
                             duration_seconds=61.5, bitrate_kbps=None, stream_copied=True, converted_at=MOMENT)
    body = json.loads(webhook_body(payload, "2026-05-01T12:00:00Z"))
    assert body == {"type": AudioConverted.event_type, "timestamp": "2026-05-01T12:00:00Z",
                    "data": payload.model_dump(mode="json")}
    assert body["data"]["bitrate_kbps"] is None and body["data"]["stream_copied"] is True


@pytest.mark.parametrize(("attempts_made", "delay"), list(enumerate(DELAYS, start=1)))
def test_each_retry_waits_its_delay_within_the_jitter(attempts_made: int, delay: float) -> None:
    waits = {(next_attempt_time(attempts_made, DELAYS, MOMENT) or MOMENT) - MOMENT for _ in range(200)}
    low, high = timedelta(seconds=delay * (1 - JITTER)), timedelta(seconds=delay * (1 + JITTER))
    assert all(low <= wait <= high for wait in waits)
    # Spread over the band, not one value: receivers that failed together are not retried together.
    assert len(waits) > 100 and max(waits) - min(waits) > (high - low) / 2


def test_the_schedule_ends_once_spent() -> None:
    assert next_attempt_time(len(DELAYS), DELAYS, MOMENT) is not None
    assert next_attempt_time(len(DELAYS) + 1, DELAYS, MOMENT) is None
    assert next_attempt_time(1, (), MOMENT) is None


def test_the_retry_is_counted_from_the_moment_given() -> None:
    later = MOMENT + timedelta(days=3)
    first = next_attempt_time(2, DELAYS, later)
    assert first is not None and later + timedelta(seconds=270) <= first <= later + timedelta(seconds=330)
