"""`make bench`, long media (issue 12): segments alone against one plain ffmpeg, the fan-out path forced through the
local stack's segment function with its breakdown, a model of the fan-out on a cluster fed by those figures, and the
whole pipeline through the CLI beside the seed's moviepy method. Each ratio is measured side by side in one run."""

from __future__ import annotations

import math
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.seed_method import moviepy_seconds
from jobs.records import FINAL_STATES, Jobs
from storage.media import remove_job_media
from tests.support import stage_job
from transcoding import ffmpeg_tools, plan, segments
from transcoding.plan import FanOutPolicy

# The fan-out forced on the local stack: segments of 5 minutes, as the deployment's default.
FORCED_FAN_OUT = FanOutPolicy(min_seconds=300, segment_seconds=300, max_segments=64)
MODEL_SECONDS = 7200
MODEL_INSTANCES = (1, 4, 16, 64)
FAN_OUT_TIMEOUT_SECONDS = 600


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - started


def plain_ffmpeg_seconds(source: Path, target: Path) -> float:
    return timed(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(source), "-vn", "-c:a", "libmp3lame",
                  "-b:a", "192k", str(target)])


def segments_alone_seconds(source: Path, scratch: Path, cpus: int) -> tuple[float, int]:
    """The convert step's own probe, segments and join on a local file, without GridFS or job records."""
    started = time.perf_counter()
    probed = ffmpeg_tools.probe(source, max_streams=32, max_duration=3 * 3600)
    chosen = plan.choose(probed, copy=False, cpus=cpus, segment_min_seconds=0, fan_out=None)
    outputs = [scratch / f"segment-{index}.mp3" for index in range(len(chosen.segments))]
    commands = segments.segment_commands(source, outputs, chosen.segments, bitrate_kbps=192,
                                         max_duration=3 * 3600)
    with segments.SegmentEncodings(commands, plan.kept_seconds(chosen, probed.audio_duration),
                                   timeout=600) as encodings:
        parts = segments.finished_segments(encodings, outputs, chosen.segments, heartbeat=lambda _: True)
        for _ in segments.joined_mp3(parts, scratch / "joined.mp3"):
            pass
    return time.perf_counter() - started, len(chosen.segments)


def segments_alone(report: Any, clips: list[Path], scratch: Path) -> None:
    rows: dict[str, Any] = {}
    for clip in clips:
        plain = plain_ffmpeg_seconds(clip, scratch / "plain.mp3")
        alone, count = segments_alone_seconds(clip, scratch, plan.usable_cpus())
        rows[clip.stem] = {"plain_ffmpeg_s": plain, "segments_s": alone, "segments": count,
                           "speedup": plain / alone}
        print(f"  {clip.stem:<16} plain {plain:.3f} s   {count} segments + join {alone:.3f} s "
              f"({plain / alone:.2f}x)", flush=True)
    report.figures["segments_alone"] = rows


def fan_out_path(report: Any, bench: Any, clips: list[Path], policy: FanOutPolicy = FORCED_FAN_OUT) -> None:
    """The real Converter (in this process) fans each clip out to the stack's segment function; the job record
    says where the time went."""
    converter = bench.converter_with(fan_out=policy)
    rows: dict[str, Any] = {}
    for clip in clips:
        event = stage_job(bench.database, clip, bench.owner_id, 192)
        try:
            started = time.monotonic()
            converter.handle(event)
            handed_over = time.monotonic() - started
            job = wait_final(bench.jobs, event.job_id)
            elapsed = time.monotonic() - started
            rows[clip.stem] = fan_out_breakdown(job, elapsed, handed_over, clip)
        except Exception as error:
            report.errors.append(f"fan-out, {clip.stem}: {type(error).__name__}: {str(error)[:300]}")
        finally:
            # Everything of the job, the MP3 its joiner wrote under an id of its own included.
            remove_job_media(bench.database, {"_id": event.job_id, "video_id": event.video_id})
            bench.discard(event.job_id)
        if clip.stem in rows:
            row = rows[clip.stem]
            print(f"  {clip.stem:<16} fan-out {row['total_s']:.3f} s in {row['segments']} segments "
                  f"(convert {row['convert_s']:.3f}, join {row['join_s']:.3f})", flush=True)
    report.figures["fan_out"] = rows


def wait_final(jobs: Jobs, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + FAN_OUT_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        job = jobs.get(job_id) or {}
        if job.get("state") in FINAL_STATES:
            if job["state"] != "done":
                raise RuntimeError(f"job {job_id} ended {job['state']}: {job.get('failure')}")
            return job
        time.sleep(0.02)
    raise TimeoutError(f"job {job_id} not done after {FAN_OUT_TIMEOUT_SECONDS} s")


def fan_out_breakdown(job: dict[str, Any], elapsed: float, handed_over: float, clip: Path) -> dict[str, Any]:
    fan, encoding = job["fanout"], job["encoding"]
    per_segment = [fan["timings"][str(index)] for index in range(fan["count"])]
    started, finished = job["fanout"]["started_at"], job["finished_at"]
    return {
        "total_s": elapsed, "segments": fan["count"], "audio_s": fan["expected_duration"],
        "video_bytes": clip.stat().st_size,
        # convert: the video out of GridFS, the track copied out and stored, the events emitted.
        "convert_s": handed_over, "convert_timings_s": fan["timings"]["convert"],
        "segments_wall_s": (finished - started).total_seconds() - encoding.get("join_seconds", 0.0),
        "segment_track_read_s": [row["track_read"] for row in per_segment],
        "segment_encode_s": [row["encode"] for row in per_segment],
        "segment_store_s": [row["store"] for row in per_segment],
        "join_s": encoding.get("join_seconds"), "mp3_bytes": job["audio"]["size_bytes"],
    }


def fan_out_model(report: Any) -> None:
    """Convert time of a 2-hour video fanned out over n instances, from the per-hop costs the local fan-out
    measured (GridFS on the local FerretDB, one core per segment). Each instance encodes segments of 5 minutes one
    after another; the join streams every segment into the MP3."""
    measured = report.figures.get("fan_out", {})
    longest = max(measured.values(), key=lambda row: row["audio_s"], default=None)
    if longest is None:
        return
    audio_s = longest["audio_s"]
    encode_per_audio_s = sum(longest["segment_encode_s"]) / audio_s
    track_read_s = statistics.median(longest["segment_track_read_s"]) / audio_s  # the whole track, per audio second
    store_per_audio_s = sum(longest["segment_store_s"]) / audio_s
    convert_per_audio_s = longest["convert_s"] / audio_s
    join_per_audio_s = longest["join_s"] / audio_s
    segment_seconds = FORCED_FAN_OUT.segment_seconds
    count = FORCED_FAN_OUT.segments_for(MODEL_SECONDS)
    # One segment's work: the whole track read, its own audio encoded and stored; the dispatch hop (~10 ms) is in
    # the measured segment wall time and neglected here.
    per_segment = (track_read_s * MODEL_SECONDS + (encode_per_audio_s + store_per_audio_s) * segment_seconds)
    rows = {}
    for instances in MODEL_INSTANCES:
        waves = math.ceil(count / instances)
        total = (convert_per_audio_s + join_per_audio_s) * MODEL_SECONDS + waves * per_segment
        rows[str(instances)] = {"waves": waves, "convert_s": total}
    # In one 2-CPU convert pod (segments here): the measured convert step per audio second of the longest clip.
    in_pod = report.figures.get("convert_step", {}).get(longest_clip_name(report), {}).get("convert_step_s")
    per_audio_in_pod = in_pod / longest["audio_s"] if in_pod else None
    report.figures["fan_out_model"] = {
        "audio_s": MODEL_SECONDS, "segments": count, "segment_s": segment_seconds, "by_instances": rows,
        "inputs_per_audio_s": {"convert": convert_per_audio_s, "track_read_whole": track_read_s,
                               "encode": encode_per_audio_s, "store": store_per_audio_s, "join": join_per_audio_s},
        "in_one_2_cpu_pod_s": per_audio_in_pod * MODEL_SECONDS if per_audio_in_pod else None,
        "threshold_s": threshold(per_audio_in_pod, convert_per_audio_s + join_per_audio_s, track_read_s,
                                 (encode_per_audio_s + store_per_audio_s) * segment_seconds, 16),
    }


def threshold(in_pod_per_audio_s: float | None, fixed_per_audio_s: float, track_read_per_audio_s: float,
              segment_work_s: float, instances: int) -> float | None:
    """The shortest audio (in minutes' steps) that 16 instances convert faster than one 2-CPU convert pod."""
    if in_pod_per_audio_s is None:
        return None
    for seconds in range(300, 4 * 3600 + 1, 60):
        count = FORCED_FAN_OUT.segments_for(seconds)
        fanned = (fixed_per_audio_s + math.ceil(count / instances) * track_read_per_audio_s) * seconds \
            + math.ceil(count / instances) * segment_work_s
        if fanned < in_pod_per_audio_s * seconds:
            return float(seconds)
    return None


def longest_clip_name(report: Any) -> str:
    measured = report.figures.get("fan_out", {})
    return max(measured, key=lambda name: measured[name]["audio_s"])


def pipeline_vs_moviepy(report: Any, clip: Path, scratch: Path) -> None:
    """The whole pipeline through the CLI (upload, convert on the stack, download) against the seed project's
    method, moviepy's VideoFileClip(...).audio.write_audiofile(...), on the same file."""
    cli = Path(sys.executable).with_name("vid2mp3")
    pipeline = timed([str(cli), "convert", str(clip), "-o", str(scratch / "cli.mp3")])
    moviepy = moviepy_seconds(clip, scratch / "moviepy.mp3")
    report.figures["pipeline_vs_moviepy"] = {"clip": clip.stem, "cli_s": pipeline, "moviepy_s": moviepy,
                                            "ratio": pipeline / moviepy}
    print(f"  {clip.stem:<16} vid2mp3 CLI {pipeline:.3f} s, moviepy {moviepy:.3f} s", flush=True)


def judge(report: Any) -> None:
    steps, alone = report.figures.get("convert_step", {}), report.figures.get("segments_alone", {})
    for name, limit in (("360p-600s", 0.80), ("360p-3600s", 0.70)):
        report.target(f"convert step / plain ffmpeg, {name} (segments)", f"convert_step.{name}.ratio",
                      steps.get(name, {}).get("ratio"), limit, "lower")
        report.target(f"segments alone, speed-up vs plain ffmpeg, {name}", f"segments_alone.{name}.speedup",
                      alone.get(name, {}).get("speedup"), 1.7, "higher")


def print_table(report: Any) -> None:
    figures = report.figures
    if figures.get("segments_alone"):
        print("\nSegments alone (probe, one ffmpeg per CPU, join; no GridFS) vs one plain ffmpeg:")
        for name, row in figures["segments_alone"].items():
            print(f"  {name:<16} plain {row['plain_ffmpeg_s']:.3f} s, {row['segments']} segments "
                  f"{row['segments_s']:.3f} s: {row['speedup']:.2f}x")
    if figures.get("fan_out"):
        print("\nFan-out through the segment function (threshold lowered; 5-minute segments; 2 local workers):")
        for name, row in figures["fan_out"].items():
            print(f"  {name:<16} total {row['total_s']:.3f} s, {row['segments']} segments: convert "
                  f"{row['convert_s']:.3f} s {row['convert_timings_s']}, segments {row['segments_wall_s']:.3f} s "
                  f"(per segment: track read {statistics.median(row['segment_track_read_s']):.3f}, encode "
                  f"{statistics.median(row['segment_encode_s']):.3f}, store "
                  f"{statistics.median(row['segment_store_s']):.3f}), join {row['join_s']:.3f} s")
    model = figures.get("fan_out_model")
    if model:
        inputs = ", ".join(f"{key} {value:.5f}" for key, value in model["inputs_per_audio_s"].items())
        print(f"\nModel: a {model['audio_s'] // 60} min video in {model['segments']} segments "
              f"(inputs, s per audio second: {inputs}):")
        for instances, row in model["by_instances"].items():
            print(f"  {instances:>3} instances: {row['waves']} waves, {row['convert_s']:.1f} s")
        if model.get("in_one_2_cpu_pod_s"):
            print(f"  one 2-CPU convert pod (segments there): {model['in_one_2_cpu_pod_s']:.1f} s; "
                  f"16 instances win from {model['threshold_s']} s of audio")
    row = figures.get("pipeline_vs_moviepy")
    if row:
        print(f"\nWhole pipeline through the CLI, {row['clip']}: {row['cli_s']:.3f} s vs moviepy "
              f"{row['moviepy_s']:.3f} s ({row['ratio']:.2f})")
