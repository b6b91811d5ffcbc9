"""EBU R 128 loudness normalisation, first pass: ffmpeg's `loudnorm` measures the audio as it will be encoded (its
track, range and channels), and the gain that brings it to the target is computed here. The second pass is the
encode itself, which applies that gain linearly (AudioShape.gain_db, ffmpeg's `volume` filter).

Linear, as `loudnorm`'s own `linear=true` second pass is: one gain for the whole file, so the dynamics are left
alone, and every segment of a segmented or fanned-out encode gets exactly the same gain. `loudnorm` itself is not
run again for that pass: it resamples to 192 kHz, and falls back to dynamic compression whenever the gain would
push the true peak over its limit; here the gain is bounded instead (the job says so), and the sample rate is
kept.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ffmpeg

from events import FailureReason
from transcoding import ffmpeg_tools
from transcoding.ffmpeg_tools import AudioShape, Progress, Rejected

# The true peak the gain may reach before encoding: -1 dBTP is promised in the MP3, and MP3 coding can raise true
# peaks by a few tenths of a dB, so half a dB is kept in hand.
TRUE_PEAK_LIMIT_DBTP = -1.5
# The loudness range loudnorm measures with (it only matters to its dynamic mode, which is not used).
LOUDNESS_RANGE_LU = 11


@dataclass(frozen=True)
class Loudness:
    """What the first pass measured, and the gain decided from it."""

    integrated_lufs: float
    true_peak_dbtp: float
    target_lufs: float
    gain_db: float
    # Why the gain falls short of the target (the true peak would go over the limit), or None.
    limited_by: str | None

    def as_record(self) -> dict[str, Any]:
        return {"measured_lufs": round(self.integrated_lufs, 2),
                "measured_true_peak_dbtp": round(self.true_peak_dbtp, 2),
                "target_lufs": self.target_lufs, "gain_db": round(self.gain_db, 2),
                **({"limited_by": self.limited_by} if self.limited_by else {})}


def measurement_command(source: Path, *, shape: AudioShape, target_lufs: float, start_seconds: float | None,
                        duration_seconds: float | None) -> list[str]:
    """Decodes the audio as the encode will (track, range, channels) into loudnorm's analysis, output discarded.
    loudnorm reports on stderr at level `info`, so the log level is `info` and -nostats keeps the rest quiet."""
    segment: dict[str, str] = {}
    if start_seconds is not None:
        segment["ss"] = f"{start_seconds:.6f}"
    if duration_seconds is not None:
        segment["t"] = f"{duration_seconds:.6f}"
    channels = {"ac": f"{shape.channels:d}"} if shape.channels is not None else {}
    stream = ffmpeg.input(str(source), **segment, **ffmpeg_tools.input_options()).output(
        "-", f="null", map=f"0:a:{shape.track:d}", vn=None, sn=None, **channels,
        af=f"loudnorm=I={target_lufs:.1f}:TP={TRUE_PEAK_LIMIT_DBTP:.1f}:LRA={LOUDNESS_RANGE_LU}:print_format=json")
    stream = stream.global_args("-nostdin", "-hide_banner", "-loglevel", "info", "-nostats", "-progress", "pipe:1")
    return list(stream.compile(cmd="ffmpeg"))


def gain_for(integrated_lufs: float, true_peak_dbtp: float, target_lufs: float) -> Loudness:
    if not math.isfinite(integrated_lufs):
        # Silence (below the gate): there is no loudness to bring anywhere.
        return Loudness(integrated_lufs, true_peak_dbtp, target_lufs, 0.0, "the audio is silent")
    wanted = target_lufs - integrated_lufs
    headroom = TRUE_PEAK_LIMIT_DBTP - true_peak_dbtp
    if wanted <= headroom:
        return Loudness(integrated_lufs, true_peak_dbtp, target_lufs, wanted, None)
    reached = integrated_lufs + headroom
    return Loudness(integrated_lufs, true_peak_dbtp, target_lufs, headroom,
                    f"the true peak: {reached:.1f} LUFS is as loud as it gets with peaks at "
                    f"{TRUE_PEAK_LIMIT_DBTP:g} dBTP")


def parse_report(lines: list[str]) -> tuple[float, float]:
    """The integrated loudness and true peak from loudnorm's JSON report (the last `{…}` block ffmpeg wrote)."""
    text = "\n".join(lines)
    start, end = text.rfind("{"), text.rfind("}")
    try:
        report = json.loads(text[start:end + 1]) if 0 <= start < end else {}
        return float(report["input_i"]), float(report["input_tp"])
    except (ValueError, KeyError, TypeError):
        raise Rejected(FailureReason.CONVERSION_ERROR, "the loudness of the audio could not be measured") from None


def measure(source: Path, *, shape: AudioShape, target_lufs: float, start_seconds: float | None,
            duration_seconds: float | None, expected_duration: float | None, timeout: float,
            heartbeat: Callable[[Progress], bool]) -> Loudness:
    """The first pass, supervised like an encode (the lease is renewed as it goes)."""
    command = measurement_command(source, shape=shape, target_lufs=target_lufs, start_seconds=start_seconds,
                                  duration_seconds=duration_seconds)
    # The report is about a dozen lines; ffmpeg's info-level chatter before it is dropped by the bounded buffer.
    with ffmpeg_tools.Encoding(command, timeout=timeout, stderr_lines=40) as run:
        run.wait(expected_duration=expected_duration, heartbeat=heartbeat)
        lines = list(run.errors)
    integrated, peak = parse_report(lines)
    return gain_for(integrated, peak, target_lufs)
