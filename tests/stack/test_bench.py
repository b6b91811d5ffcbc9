"""The benchmark's own machinery (bench/__main__.py) on the running stack. `make bench` is not part of `make test`, so
these keep its timing and its judgement from breaking unseen; they assert what it measures, never how fast."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymongo
import pytest

from bench import segments as bench_segments
from bench.conversion import ConvertBench, Report, judge, token_subject
from storage.media import AUDIO, SOURCES, MediaStore
from tests.support import make_clip, new_user
from transcoding.plan import FanOutPolicy

pytestmark = pytest.mark.stack


@pytest.fixture
def database(endpoints: dict[str, str]) -> Iterator[Any]:
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(endpoints["MONGO_URI"], tz_aware=True)
    yield client["vid2mp3"]
    client.close()


def test_the_convert_step_bench_times_every_phase_of_a_real_conversion(endpoints: dict[str, str], database: Any,
                                                                       tmp_path: Path) -> None:
    client, _ = new_user(endpoints)
    bench = ConvertBench(database, endpoints["BROKER_INGRESS_URL"], token_subject(client.token))

    elapsed, phases, job = bench.run(make_clip(tmp_path / "clip.mp4", seconds=3))

    assert job["state"] == "done" and job["audio"]["duration_seconds"] == pytest.approx(3.0, abs=0.1)
    assert {"job records", "GridFS read", "ffprobe and ffmpeg, side by side", "MP3 check (output)", "GridFS write",
            "event emit", "GridFS remove", "other (temp files, Python)"} == phases.keys()
    assert all(seconds >= 0 for seconds in phases.values()), phases
    assert sum(phases.values()) == pytest.approx(elapsed)
    # Each measurement starts from the same stored media: nothing of the job is left.
    assert not MediaStore(database, SOURCES).exists(job["video_id"])
    assert not MediaStore(database, AUDIO).exists(job["_id"])


def test_a_target_passes_only_within_its_limit_and_never_unmeasured() -> None:
    report = Report(figures={
        "convert_step": {"360p-60s": {"ratio": 1.10}, "720p-60s": {"ratio": 1.11}, "360p-10s": {"added_s": 0.1}},
        "throughput": {"ratio": 1.79},
        "upload": {"256 MiB": {"worker_peak_rss_mib": 90.0, "mib_per_s": 40.0},
                   "1 GiB": {"worker_peak_rss_mib": 100.0, "mib_per_s": 40.0}},
        "bare_gridfs_upload": {"default 255 KiB chunks": {"mib_per_s": 50.0}},
    })

    judge(report)

    status = {target["target"]: target["status"] for target in report.targets}
    assert status["convert step / plain ffmpeg, 360p-60s"] == "PASS"
    assert status["convert step / plain ffmpeg, 720p-60s"] == "MISS"
    assert status["convert step / plain ffmpeg, 360p-600s (segments)"] == "MISS"  # not measured
    assert status["convert step added time, 360p-10s (s)"] == "PASS"
    assert status["throughput vs one plain ffmpeg at a time"] == "MISS"
    assert status["upload worker peak RSS, 1 GiB body (MiB)"] == "PASS"
    assert status["upload peak RSS growth, 256 MiB → 1 GiB (MiB)"] == "MISS"  # 10 MiB of growth
    assert status["upload into GridFS / bare GridFSBucket, 256 MiB"] == "PASS"  # 0.8


def test_the_long_media_bench_measures_segments_the_fan_out_its_model_and_moviepy(
        endpoints: dict[str, str], database: Any, tmp_path: Path) -> None:
    """bench_segments on a 20 s clip: segments alone, the fan-out through the stack's segment function (threshold
    lowered to the clip), the model fed by it, and the CLI beside moviepy."""
    client, _ = new_user(endpoints)
    bench = ConvertBench(database, endpoints["BROKER_INGRESS_URL"], token_subject(client.token))
    clip = make_clip(tmp_path / "clip.mp4", seconds=20)
    report = Report(figures={"convert_step": {"clip": {"convert_step_s": 1.0}}})

    bench_segments.segments_alone(report, [clip], tmp_path)
    bench_segments.fan_out_path(report, bench, [clip], FanOutPolicy(min_seconds=10, segment_seconds=10,
                                                                    max_segments=4))
    bench_segments.fan_out_model(report)
    bench_segments.pipeline_vs_moviepy(report, clip, tmp_path)

    assert report.errors == []
    alone = report.figures["segments_alone"]["clip"]
    assert alone["segments"] >= 2 and alone["speedup"] > 0
    fanned = report.figures["fan_out"]["clip"]
    assert fanned["segments"] == 2 and len(fanned["segment_encode_s"]) == 2 and fanned["join_s"] > 0
    assert fanned["total_s"] >= fanned["convert_s"] > 0
    model = report.figures["fan_out_model"]["by_instances"]
    assert [model[n]["waves"] for n in ("1", "4", "16", "64")] == [24, 6, 2, 1]
    assert model["1"]["convert_s"] > model["64"]["convert_s"] > 0
    assert report.figures["pipeline_vs_moviepy"]["cli_s"] > 0 and report.figures["pipeline_vs_moviepy"]["moviepy_s"] > 0
