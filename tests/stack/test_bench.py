"""The benchmark's own machinery (bench/__main__.py) on the running stack. `make bench` is not part of `make test`, so
these keep its timing and its judgement from breaking unseen; they assert what it measures, never how fast."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymongo
import pytest

from bench import real_media, split_chapters, zip_download
from bench import segments as bench_segments
from bench.conversion import ConvertBench, Report, judge, token_subject
from bench.real_media import RealClip
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


def test_the_real_media_bench_measures_every_part_beside_moviepy(endpoints: dict[str, str], database: Any,
                                                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """bench.real_media on clips of a few seconds at the real bitrates, each part once: the command on the loopback
    and through the shaped uplink, the web page in Chromium, the raw POST with GridFS sampled, a small job alone and
    beside another user's whole-video POST, the clip with MP3 audio; every figure and ratio there, every target
    judged, the stack's GridFS as it was before."""
    monkeypatch.setattr(real_media, "SMALL_ALONE_RUNS", 1)
    monkeypatch.setattr(real_media, "MP3_AUDIO_ROUNDS", 1)
    other_user, _ = new_user(endpoints)
    report = Report()
    before = real_media.gridfs_files(database)

    real_media.measure(report, endpoints, database, other_user, tmp_path / "scratch", home=tmp_path / "home",
                       inputs=tmp_path / "inputs", long=RealClip("720p-8s-6M", "1280x720", 8, 6, real_media.AAC),
                       hd=RealClip("1080p-4s-12M", "1920x1080", 4, 12, real_media.AAC),
                       mp3_audio=RealClip("720p-4s-6M-mp3", "1280x720", 4, 6, real_media.MP3))
    real_media.judge(report)
    real_media.print_table(report)

    assert report.errors == []
    figures = report.figures["real_media"]
    clip = figures["clips"]["long"]
    assert 5_500_000 < clip["video_bytes"] < 7_000_000  # 6 Mbit/s for 8 s, and the audio
    assert 0 < clip["audio_track_bytes"] < clip["video_bytes"] / 10 and clip["cover_bytes"] > 0
    for part in ("command_loopback", "command_uplink", "web_page"):
        row = figures[part]["long"]
        # Whatever the client moves, at least the audio and at most the whole file (with the requests' heads).
        assert clip["audio_track_bytes"] <= row["sent_bytes"] <= clip["video_bytes"] + 200_000, (part, row)
    # The browser's processes were found under Playwright's driver: headless Chromium alone holds over 50 MB.
    assert figures["web_page"]["long"]["browser_peak_pss_mb"] > 50
    uplink = figures["command_uplink"]["long"]
    assert uplink["seconds"] >= 0.9 * uplink["sent_bytes"] / (real_media.UPLINK_MBIT * 1e6 / 8)  # shaped
    raw = figures["raw_post"]["long"]
    # At least the MP3 and the audio it came from; at most the whole video beside the MP3.
    assert raw["mp3_bytes"] + 0.9 * clip["audio_track_bytes"] <= raw["gridfs_stored_bytes"]
    assert 0 < raw["gridfs_peak_bytes"] <= raw["gridfs_stored_bytes"] <= clip["video_bytes"] + 2 * raw["mp3_bytes"]
    assert len(figures["small_job"]["beside"]) >= 1
    assert set(figures["moviepy_s"]) == {"long", "hd", "mp3_audio"}
    assert all(value is not None for value in figures["ratios"].values()), figures["ratios"]
    judged = [target for target in report.targets if target["figure"].startswith("real_media.")]
    assert len(judged) == len(real_media.TARGETS) and all(target["value"] is not None for target in judged)
    assert "(c) web page: time to the download / moviepy" in capsys.readouterr().out
    # Every job it made is deleted, and its media with it.
    assert set(real_media.gridfs_files(database)) <= set(before)


def test_the_zip_bench_fetches_the_same_mp3s_as_one_zip_and_one_by_one(endpoints: dict[str, str], tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """bench.zip_download on 2 jobs of a 3 s clip, one round: both ways measured, judged, and the jobs deleted."""
    client, _ = new_user(endpoints)
    report = Report()

    zip_download.measure(report, client, make_clip(tmp_path / "clip.mp4", seconds=3), tmp_path, jobs=2, rounds=1)
    zip_download.judge(report)
    zip_download.print_table(report)

    assert report.errors == []
    row = report.figures["zip_download"]
    # Stored entries: the ZIP is the MP3s' bytes and, per entry, its headers and name (well under 1 kB).
    assert row["mp3_bytes"] < row["zip_bytes"] < row["mp3_bytes"] + 2 * 1000
    assert row["single_mb_per_s"] > 0 and row["zip_mb_per_s"] > 0 and row["worker_idle_rss_mib"] > 0
    judged = [target for target in report.targets if target["figure"].startswith("zip_download.")]
    assert len(judged) == 2 and all(target["value"] is not None for target in judged)
    assert "A ZIP of many" in capsys.readouterr().out
    assert client.jobs() == []


def test_the_split_bench_times_the_whole_alone_and_with_its_chapter_files(endpoints: dict[str, str], database: Any,
                                                                          tmp_path: Path) -> None:
    """bench.split_chapters on a 20 s video of 3 chapters, one round each way: both timed, judged, nothing left."""
    client, _ = new_user(endpoints)
    owner_id = token_subject(client.token)
    bench = ConvertBench(database, endpoints["BROKER_INGRESS_URL"], owner_id)
    report = Report()

    split_chapters.measure(report, bench, split_chapters.chaptered_video(tmp_path / "chapters.mp4", 20, 3), rounds=1)
    split_chapters.judge(report)

    assert report.errors == []
    row = report.figures["split_chapters"]
    assert row["chapter_files"] == 3 and row["whole_alone_s"] > 0 and row["split_and_whole_s"] > 0
    (judged,) = [target for target in report.targets if target["figure"] == "split_chapters.ratio"]
    assert judged["value"] == pytest.approx(row["split_and_whole_s"] / row["whole_alone_s"])
    assert database[f"{AUDIO}.files"].count_documents({"metadata.owner_id": owner_id}) == 0
