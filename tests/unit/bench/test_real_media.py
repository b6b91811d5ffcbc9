"""bench/real_media.py without a stack: its ratios against moviepy and the audio, its judgement of issue 23's
targets (a figure not measured never passes), its table, and the kept credentials of its users."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from bench import real_media
from bench.conversion import Report

MB = 1_000_000


def figures() -> dict[str, Any]:
    return {
        "clips": {"long": {"clip": "long", "seconds": 600.0, "video_bytes": 460 * MB, "video_mbit": 6,
                           "audio_track_bytes": 9_700_000, "cover_bytes": 300_000}},
        "moviepy_s": {"long": {"clip": "long", "runs": [6.0, 7.0, 5.0], "median": 6.0},
                      "mp3_audio": {"clip": "mp3", "runs": [0.9], "median": 0.9}},
        "command_loopback": {"long": {"seconds": 40.0, "sent_bytes": 460 * MB}},
        "command_uplink": {"long": {"seconds": 7.0, "sent_bytes": 10_500_000}},
        "web_page": {"long": {"seconds": 9.0, "sent_bytes": 11_000_001}},
        # Stored: the whole video and the MP3, held at once at the peak.
        "raw_post": {"long": {"seconds": 30.0, "gridfs_stored_bytes": 474 * MB, "gridfs_peak_bytes": 474 * MB,
                              "mp3_bytes": 14_000_000}},
        "small_job": {"ratio_median": 1.3, "ratio_max": 2.2},
        "mp3_audio": {"mp3_audio": {"seconds": 0.6}},
        "load_average_before": (1.0, 1.0, 1.0), "load_average_after": (2.0, 1.0, 1.0), "bench_seconds": 300.0,
    }


def test_each_figure_is_set_against_its_yardstick() -> None:
    found = real_media.ratios(figures())

    assert found["command_loopback_speed"] == pytest.approx(6.0 / 40.0)
    assert found["command_uplink_time"] == pytest.approx(7.0 / 6.0)
    assert found["command_uplink_sent"] == pytest.approx(10_500_000 / 10_000_000)
    assert found["web_page_time"] == pytest.approx(1.5)
    assert found["web_page_sent"] == pytest.approx(1.1000001)
    assert found["raw_post_speed"] == pytest.approx(0.2)
    assert found["raw_post_gridfs_stored"] == pytest.approx(474 / 24)
    assert found["raw_post_gridfs_peak"] == pytest.approx(474 / 24)
    assert found["small_job_beside"] == 1.3
    assert found["mp3_audio_speed"] == pytest.approx(1.5)
    assert found["command_loopback_hd_speed"] is None  # not measured


def test_the_targets_of_issue_23_pass_only_within_their_limits_and_never_unmeasured() -> None:
    report = Report(figures={"real_media": figures()})

    real_media.judge(report)

    status = {target["figure"].rsplit(".", 1)[-1]: target["status"] for target in report.targets}
    assert status == {
        "command_loopback_speed": "MISS", "command_uplink_time": "PASS", "command_uplink_sent": "PASS",
        "web_page_sent": "MISS", "web_page_time": "PASS", "raw_post_speed": "MISS", "raw_post_gridfs_stored": "MISS",
        "small_job_beside": "PASS", "mp3_audio_speed": "PASS"}
    unmeasured = Report(figures={"real_media": {"clips": {}}})
    real_media.judge(unmeasured)
    assert {target["status"] for target in unmeasured.targets} == {"MISS"}


def test_the_table_shows_every_figure_with_its_target(capsys: pytest.CaptureFixture[str]) -> None:
    report = Report(figures={"real_media": figures()})
    real_media.judge(report)

    real_media.print_table(report)

    table = capsys.readouterr().out
    assert "(a) command, 600 s, loopback: speed vs moviepy" in table and "40.00 s" in table and "460.0 MB" in table
    assert "≥ 1.2 MISS" in table and "(f) 60 s clip with MP3 audio" in table
    assert "moviepy 6.00 s (median of 3)" in table


def test_the_bench_users_passwords_are_made_once_and_kept_private(tmp_path: Path) -> None:
    path = tmp_path / "folder" / "credentials"

    first = real_media.kept_credentials(path, "someone")

    assert re.fullmatch(r"someone-[0-9a-f]{8}@vid2mp3\.local", first[0]) and len(first[1]) >= 20
    assert real_media.kept_credentials(path, "another") == first
    assert real_media.kept_credentials(tmp_path / "elsewhere", "someone")[0] != first[0]
    assert path.stat().st_mode & 0o777 == 0o600
