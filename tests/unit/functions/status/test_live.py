"""The status function's live stream (functions/status/live.py): each change once, the final state last, keep-alives
while nothing changes, and an end when time is up or the job is gone."""

from __future__ import annotations

from typing import Any

from vid2mp3_client.api import server_sent_events

from functions.status.live import JobStream


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def stream_of(states: list[dict[str, Any] | None], max_seconds: float = 900) -> tuple[list[tuple[str, str]], str]:
    """Runs a JobStream over a scripted sequence of job records (the last one repeats); answers its events and its
    raw text."""
    clock = FakeClock()
    script = iter(states)
    last: list[dict[str, Any] | None] = [None]

    def load() -> dict[str, Any] | None:
        last[0] = next(script, last[0])
        return last[0]

    stream = JobStream(load=load, render=lambda job: {"state": job["state"], "progress": job.get("progress")},
                       max_seconds=max_seconds, clock=clock, sleep=clock.sleep)
    raw = b"".join(stream)
    return list(server_sent_events(iter([raw]))), raw.decode()


def job(state: str, percent: float | None = None) -> dict[str, Any]:
    return {"state": state, **({"progress": {"percent": percent}} if percent is not None else {})}


def test_stream_sends_each_change_once_and_ends_with_the_final_state() -> None:
    events, _ = stream_of([job("uploaded"), job("uploaded"), job("converting", 0), job("converting", 40),
                           job("converting", 40), job("converting", 90), job("done")])
    states = [(name, data) for name, data in events]
    assert [name for name, _ in states] == ["job"] * 5
    assert '"state":"done"' in states[-1][1]


def test_stream_of_a_finished_job_sends_one_event_and_ends() -> None:
    events, _ = stream_of([job("failed")])
    assert len(events) == 1


def test_stream_ends_when_its_time_is_up_with_keep_alives_on_the_way() -> None:
    events, raw = stream_of([job("converting", 10)], max_seconds=60)
    assert len(events) == 1
    assert raw.count(": keep-alive") == 5  # every 10 s of a 60 s life without a change
    assert raw.rstrip().endswith("connect again to follow the job")


def test_stream_ends_when_the_job_is_gone() -> None:
    events, raw = stream_of([job("converting", 10), None])
    assert len(events) == 1 and "the job is gone" in raw


