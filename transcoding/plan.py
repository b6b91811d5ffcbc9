"""Decides how a job's audio is encoded, from its probe, its conversion options and the CPUs this process may use:
what the options force (a re-encode or a copy, the range, the track, the shape of the audio; `recipe`), then one
ffmpeg pass, time segments encoded at once on this instance's CPUs, or segments fanned out to segment-encoding
instances (`choose`). Both are recorded on the job, with their reasons.

LAME is single-threaded, so one ffmpeg uses one core whatever the machine has; a long file only goes faster split
into segments that are encoded at once and joined frame by frame (transcoding/mp3join.py). A split costs
about 0.3 s of fixed work, so short media stay one pass (docs/PERFORMANCE.md has the measurements).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from events import FailureReason
from events.options import ConversionOptions
from transcoding.ffmpeg_tools import AudioShape, Probe, Rejected
from transcoding.mp3join import SAMPLES_PER_FRAME, SEGMENTABLE_SAMPLE_RATES, SegmentPlan, plan_segments

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


# A trim may end this far past the probed end of the audio (a container's durations are rounded) and still count
# as "to the end".
TRIM_END_TOLERANCE_SECONDS = 0.05


@dataclass(frozen=True)
class AudioRecipe:
    """What the conversion options make of a job's audio, decided here once from the options and the probe: copy
    or re-encode, the range (`-ss`/`-t` of the one-pass command, counted from the container's start), the shape
    (track, VBR, channels, and the loudness gain once measured), what rules segments or a fan-out out, and every
    one of these stated in words for the job."""

    copy: bool
    shape: AudioShape
    start_seconds: float | None = None
    duration_seconds: float | None = None
    # How long the MP3 should last (the trimmed range, or the audio's length).
    expected_duration: float | None = None
    normalize_to_lufs: float | None = None
    one_pass_because: str | None = None
    no_fan_out_because: str | None = None
    forced: tuple[str, ...] = ()

    @property
    def end_seconds(self) -> float | None:
        if self.duration_seconds is None:
            return None
        return (self.start_seconds or 0.0) + self.duration_seconds

    def as_record(self) -> dict[str, Any]:
        """What the job record says of it (`applied` in the status view)."""
        return {"stream_copied": self.copy, "track": self.shape.track,
                "quality": "copy" if self.copy else (f"V{self.shape.vbr_level}" if self.shape.vbr_level is not None
                                                     else "cbr"),
                **({"channels": self.shape.channels} if self.shape.channels is not None else {}),
                **({"start_seconds": self.start_seconds} if self.start_seconds is not None else {}),
                **({"end_seconds": round(self.end_seconds, 6)} if self.end_seconds is not None else {}),
                "forced": list(self.forced)}


def recipe(probed: Probe, options: ConversionOptions) -> AudioRecipe:
    """What the options force for this input; Rejected (INVALID_OPTIONS) when its range lies outside the audio."""
    forced: list[str] = []
    vbr = int(options.quality[1]) if options.quality is not None and options.is_vbr else None
    channels = options.channels
    if channels is not None and channels == probed.audio_channels:
        channels = None  # already so: nothing to change, and an MP3 stays copied
    resampled = [reason for reason, wanted in (("normalize", options.normalize), ("channels", channels)) if wanted]
    # Chapter files are cut from frames whose encoder delay the cutter knows: its own encode's, not a copied MP3's.
    copy = probed.audio_codec == "mp3" and not resampled and options.split is None
    if probed.audio_codec == "mp3":
        if copy:
            forced.append("the audio is MP3 already: its frames are copied, not re-encoded"
                          + (" (a quality applies to re-encodes only)" if options.quality else ""))
        elif resampled:
            forced.append(f"the MP3 audio is re-encoded: {' and '.join(resampled)} change its samples")
        else:
            forced.append("the MP3 audio is re-encoded: split=chapters cuts the frames of its own encode")
    if options.split is not None and probed.audio_sample_rate not in SEGMENTABLE_SAMPLE_RATES:
        raise Rejected(FailureReason.INVALID_OPTIONS, f"split=chapters cuts MPEG-1 MP3s (32, 44.1 or 48 kHz audio); "
                                                      f"this audio is {probed.audio_sample_rate} Hz")
    start, end = options.start_seconds or None, options.end_seconds
    duration = probed.audio_duration
    audio_end = None if duration is None else probed.audio_seek_offset + duration
    if audio_end is not None and start is not None and start >= audio_end:
        raise Rejected(FailureReason.INVALID_OPTIONS, f"start {start:g} s is past the end of the audio "
                                                      f"({audio_end:.3f} s)")
    if audio_end is not None and end is not None and end > audio_end + TRIM_END_TOLERANCE_SECONDS:
        raise Rejected(FailureReason.INVALID_OPTIONS, f"end {end:g} s is past the end of the audio "
                                                      f"({audio_end:.3f} s)")
    if audio_end is not None and end is not None and end >= audio_end:
        end = None  # to the end: no -t, which would only round the last frame
    expected = duration
    if start is not None or end is not None:
        stop = end if end is not None else audio_end
        expected = None if stop is None else stop - (start or 0.0)
        forced.append(f"trimmed to {start or 0.0:g} s - {stop:g} s" if stop is not None
                      else f"trimmed from {start:g} s")
        if copy:
            forced.append("the trim of a copied MP3 falls on its frames (26 ms)")
    one_pass = None
    if vbr is not None and not copy:
        # The frame joiner repacks the bit reservoir and writes one Info tag for the joined frames; both are
        # verified on CBR streams only (tests/unit/transcoding/test_mp3join.py), so a VBR job is never split.
        one_pass = f"VBR V{vbr}: encoded in one pass (segment joins are verified for CBR only)"
    no_fan_out = None
    if start is not None or end is not None:
        # A fan-out's segment positions count in the copied track's own time, which a copy may shift against the
        # video's (fanout.TRACK_FORMATS); a trim is placed sample-exactly only in the video itself. The channels
        # and the loudness gain travel with the fan-out (its record's `shape`).
        no_fan_out = "a trim asked: segments on this instance rather than fanned out"
    return AudioRecipe(copy=copy, shape=AudioShape(track=probed.track, vbr_level=vbr, channels=channels),
                       start_seconds=start, duration_seconds=None if end is None else end - (start or 0.0),
                       expected_duration=expected,
                       normalize_to_lufs=options.target_loudness if options.normalize else None,
                       one_pass_because=one_pass, no_fan_out_because=no_fan_out, forced=tuple(forced))


def guess(options: ConversionOptions, *, mp3_container: bool) -> AudioRecipe | None:
    """The recipe `recipe` will most likely decide, from the options and the container alone, for the encode that
    starts before the probe answers; None when none can be guessed (the loudness gain, and the range of a silence
    trim, need a measurement)."""
    if options.normalize or options.trim_silence:
        return None
    vbr = int(options.quality[1]) if options.quality is not None and options.is_vbr else None
    start, end = options.start_seconds or None, options.end_seconds
    return AudioRecipe(copy=mp3_container and options.channels is None and options.split is None,
                       shape=AudioShape(track=options.track or 0, vbr_level=vbr, channels=options.channels),
                       start_seconds=start, duration_seconds=None if end is None else end - (start or 0.0))


def choose(probe: Probe, *, copy: bool, cpus: int, segment_min_seconds: float,
           fan_out: FanOutPolicy | None, audio: AudioRecipe | None = None) -> EncodingPlan:
    """The plan for one job. `fan_out` None: not for this job (its container, or no segment-encoding function).
    `audio`: what the job's options force (a trimmed range is what is split)."""
    duration, rate = probe.audio_duration, probe.audio_sample_rate
    trim_start = trim_end = None
    if copy:
        return EncodingPlan(Mode.ONE_PASS, "the audio is MP3 already: its stream is copied")
    if audio is not None:
        if audio.one_pass_because:
            return EncodingPlan(Mode.ONE_PASS, audio.one_pass_because)
        if audio.no_fan_out_because:
            fan_out = None
        trim_start, trim_end = audio.start_seconds, audio.end_seconds
        if trim_start is not None or trim_end is not None:
            duration = audio.expected_duration
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
    segments = segments_of(duration, rate, probe.audio_seek_offset, cpus, trim_start=trim_start, trim_end=trim_end)
    why_not_fanned_out = f"; {audio.no_fan_out_because}" if audio is not None and audio.no_fan_out_because else ""
    return EncodingPlan(Mode.SEGMENTS, f"{duration:.0f} s of audio: {len(segments)} segments at once on the "
                                       f"{cpus} CPUs of this instance{why_not_fanned_out}", segments, rate)


def segments_of(duration: float, rate: int, seek_offset: float, count: int, *, trim_start: float | None = None,
                trim_end: float | None = None) -> tuple[SegmentPlan, ...]:
    """`count` segments of the audio (or of its trimmed range: from `trim_start`, to `trim_end`); their input seeks
    count from the container's start, as ffmpeg's do. The first segment is seeked only when the range starts later
    than the audio; the last runs to the range's end."""
    planned = plan_segments(round(duration * rate), rate, count, preroll_frames=PREROLL_FRAMES,
                            postroll_frames=POSTROLL_FRAMES)
    if trim_start is None:
        shifted = [replace(segment, start_seconds=segment.start_seconds + seek_offset)
                   if segment.start_seconds is not None else segment for segment in planned]
    else:
        shifted = [replace(segment, start_seconds=trim_start + (segment.start_seconds or 0.0)) for segment in planned]
    if trim_end is not None:
        last = shifted[-1]
        shifted[-1] = replace(last, duration_seconds=trim_end - (last.start_seconds or 0.0))
    return tuple(shifted)


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
