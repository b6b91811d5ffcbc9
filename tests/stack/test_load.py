"""A short version of `make load` (bench/load.py), so the load run cannot rot: 20 uploads by 5 users at once,
then a 30-second soak at 0.5 uploads/s, on the running stack. Every verdict of the long run must hold: nothing
refused, lost or duplicated, each function's RSS within 10 % of its warm size, queues and outboxes empty, no
tracebacks in any log. About a minute; the figures go to .local/figures/load.json (`test_load`)."""

from __future__ import annotations

import json

import pytest

from bench.load import LoadPlan, publish, run
from tests.reliability_support import Stack

pytestmark = [pytest.mark.slow, pytest.mark.stack, pytest.mark.timeout(900)]


def test_short_load_run_loses_duplicates_and_leaks_nothing(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    report = run(stack, LoadPlan(uploads=20, users=5, soak_seconds=30, soak_rate_per_second=0.5,
                                 settle_seconds=300))
    publish(report, "test_load")
    with capsys.disabled():
        print("\nshort load run: " + json.dumps({key: report[key] for key in (
            "uploads", "done", "lost", "duplicated_mp3", "duplicated_emails", "upload_accepted_seconds",
            "upload_to_done_seconds", "rss_end_over_warm", "queued_messages_at_end", "crashes_in_logs")},
            sort_keys=True))
    assert report["uploads"] == 20 + 15
    failed = [name for name, passed in report["verdicts"].items() if not passed]
    assert failed == [], {key: value for key, value in report.items() if key != "rss_mib"}
