"""Decides how a job's audio is encoded, from its probe and the CPUs this process may use: one ffmpeg pass, time
segments encoded at once on this instance's CPUs, or segments fanned out to segment-encoding instances.

LAME is single-threaded, so one ffmpeg uses one core whatever the machine has; a long file only goes faster split
into segments that are encoded at once and joined frame by frame (functions/convert/mp3join.py). A split costs
about 0.3 s of fixed work, so short media stay one pass (docs/BENCHMARKS.md has the measurements).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from functions.convert.ffmpeg_tools import Probe
from functions.convert.mp3join import SAMPLES_PER_FRAME, SEGMENTABLE_SAMPLE_RATES, SegmentPlan, plan_segments

# Frames encoded before a segment's first kept frame and after its last, then dropped at the join: the encoder
# starts each kept frame with the same state a single pass would have (2-4 and 1-2 were as good as more;
# 0 clicks).
PREROLL_FRAMES = 3
POSTROLL_FRAMES = 2


class Mode(StrEnum):
    ONE_PASS = "one_pass"  # noqa: S105 - a mode, not a password
    SEGMENTS = "segments"
    FAN_OUT = "fan_out"


@dataclass(frozen=True)
class EncodingPlan:
    mode: Mode
    reason: str
    segments: tuple[SegmentPlan, ...] = ()
    sample_rate: int | None = None

    def as_record(self) -> dict[str, Any]:
        """What the job record keeps of the plan (the status view shows it)."""
        return {"mode": self.mode, "reason": self.reason, "sample_rate": self.sample_rate,
                "segments": [asdict(segment) for segment in self.segments]}


def usable_cpus(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """The CPUs this process may keep busy: its affinity, capped by its cgroup's CPU quota (a Knative pod's CPU
    limit), never the host's count."""
    cpus = len(os.sched_getaffinity(0))
    quota = cpu_quota(cgroup_root)
    return cpus if quota is None else max(1, min(cpus, math.floor(quota)))


def cpu_quota(cgroup_root: Path) -> float | None:
    """The cgroup's CPU limit in CPUs (cgroup v2's cpu.max, else v1's CFS quota); None when there is none."""
    try:
        quota, period = (cgroup_root / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        try:
            quota, period = ((cgroup_root / "cpu" / name).read_text().strip()
                             for name in ("cpu.cfs_quota_us", "cpu.cfs_period_us"))
        except OSError:
            return None
    if quota in ("max", "-1"):
        return None
    return int(quota) / int(period)


@dataclass(frozen=True)
class FanOutPolicy:
    """When a job is fanned out to segment-encoding instances, and into how many segments."""

    min_seconds: float
    segment_seconds: float
    max_segments: int

    def segments_for(self, duration: float) -> int:
        return max(2, min(self.max_segments, math.ceil(duration / self.segment_seconds)))


def choose(probe: Probe, *, copy: bool, cpus: int, segment_min_seconds: float,
           fan_out: FanOutPolicy | None) -> EncodingPlan:
    """The plan for one job. `fan_out` None: not for this job (its container, or no segment-encoding function)."""
    duration, rate = probe.audio_duration, probe.audio_sample_rate
    if copy:
        return EncodingPlan(Mode.ONE_PASS, "the audio is MP3 already: its stream is copied")
    if duration is None or rate is None:
        return EncodingPlan(Mode.ONE_PASS, "the probe gave no duration or sample rate to split by")
    if rate not in SEGMENTABLE_SAMPLE_RATES:
        return EncodingPlan(Mode.ONE_PASS, f"{rate} Hz audio is encoded as one pass (segments need "
                                           "MPEG-1 rates: 32, 44.1 or 48 kHz)")
    if fan_out is not None and duration >= fan_out.min_seconds:
        return fan_out_plan(duration, rate, probe.audio_seek_offset, fan_out)
    if cpus < 2:
        return EncodingPlan(Mode.ONE_PASS, "this instance may use one CPU")
    if duration < segment_min_seconds:
        return EncodingPlan(Mode.ONE_PASS, f"{duration:.0f} s of audio, under {segment_min_seconds:.0f} s: a "
                                           "split would cost more than it saves")
    segments = segments_of(duration, rate, probe.audio_seek_offset, cpus)
    return EncodingPlan(Mode.SEGMENTS, f"{duration:.0f} s of audio: {len(segments)} segments at once on the "
                                       f"{cpus} CPUs of this instance", segments, rate)


def segments_of(duration: float, rate: int, seek_offset: float, count: int) -> tuple[SegmentPlan, ...]:
    """`count` segments of the audio; their input seeks count from the container's start, as ffmpeg's do."""
    return tuple(replace(segment, start_seconds=segment.start_seconds + seek_offset)
                 if segment.start_seconds is not None else segment
                 for segment in plan_segments(round(duration * rate), rate, count, preroll_frames=PREROLL_FRAMES,
                                              postroll_frames=POSTROLL_FRAMES))


def fan_out_plan(duration: float, rate: int, seek_offset: float, fan_out: FanOutPolicy) -> EncodingPlan:
    segments = segments_of(duration, rate, seek_offset, fan_out.segments_for(duration))
    return EncodingPlan(Mode.FAN_OUT, f"{duration:.0f} s of audio, at least {fan_out.min_seconds:.0f} s: "
                                      f"{len(segments)} segments on segment-encoding instances",
                        segments, rate)


def kept_seconds(encoding_plan: EncodingPlan, duration: float | None) -> list[float]:
    """Seconds of audio each segment contributes (the last runs to the end): the weights of the summed progress."""
    rate = encoding_plan.sample_rate or 1
    kept = [segment.kept_frames * SAMPLES_PER_FRAME / rate for segment in encoding_plan.segments
            if segment.kept_frames is not None]
    return [*kept, max(1.0, (duration or 0.0) - sum(kept))][:len(encoding_plan.segments)]


def one_pass_instead(encoding_plan: EncodingPlan, why: str) -> EncodingPlan:
    return EncodingPlan(Mode.ONE_PASS, f"{encoding_plan.reason}; then {why}")
