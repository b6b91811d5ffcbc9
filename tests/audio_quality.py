"""Audio files in, measurements out: PCM decoded by ffmpeg, sample counts, SNR against a reference around a sample
position, the lag between two signals, and clicks in a pure tone."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np


def channel_count(path: Path) -> int:
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries", "stream=channels", "-of", "json",
         str(path)], check=True, capture_output=True, text=True)
    return int(json.loads(probe.stdout)["streams"][0]["channels"])


def decode(path: Path) -> np.ndarray:
    """The first audio stream as ffmpeg decodes it (gapless trimming applied): float32, shape (samples, channels)."""
    channels = channel_count(path)
    decoded = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:a:0", "-f", "f32le", "-c:a", "pcm_f32le", "-"],
        check=True, capture_output=True)
    return np.frombuffer(decoded.stdout, dtype="<f4").reshape(-1, channels)


def sample_count(path: Path) -> int:
    return len(decode(path))


def snr_db(signal: np.ndarray, reference: np.ndarray, center: int, half_width: int) -> float:
    """Signal-to-noise ratio of `signal` against `reference` over [center - half_width, center + half_width),
    the noise being their difference at lag 0."""
    start, stop = max(0, center - half_width), min(len(reference), center + half_width)
    wanted = reference[start:stop].astype(np.float64)
    got = signal[start:stop].astype(np.float64)
    if len(got) < len(wanted):
        # A signal that ends early has lost that audio: count it as noise.
        got = np.concatenate([got, np.zeros((len(wanted) - len(got), *got.shape[1:]))])
    noise = float(np.sum((got - wanted) ** 2))
    return 10 * np.log10(float(np.sum(wanted**2)) / max(noise, 1e-20))


def best_lag(signal: np.ndarray, reference: np.ndarray, max_lag: int) -> int:
    """The shift (in samples, within ±max_lag) that best lines `signal` up with `reference`: `signal[n + lag]`
    matches `reference[n]`."""
    mono_signal, mono_reference = signal.mean(axis=1), reference.mean(axis=1)
    length = min(len(mono_signal), len(mono_reference)) - 2 * max_lag
    core = mono_reference[max_lag:max_lag + length]
    scores = [float(np.dot(mono_signal[max_lag + lag:max_lag + lag + length], core))
              for lag in range(-max_lag, max_lag + 1)]
    return int(np.argmax(scores)) - max_lag


def tone_residual(signal: np.ndarray, rate: int, frequency: float) -> np.ndarray:
    """|x[n-1] - 2cos(w)x[n] + x[n+1]| (largest over channels): exactly 0 for any sine of frequency w, whatever its
    amplitude and phase, so what is left is coding noise, and a spike where the waveform jumps."""
    factor = 2 * np.cos(2 * np.pi * frequency / rate)
    data = signal.astype(np.float64)
    residual = np.abs(data[:-2] - factor * data[1:-1] + data[2:]).max(axis=1)
    return np.concatenate([[0.0], residual, [0.0]])


def click_ratio(signal: np.ndarray, rate: int, frequency: float, positions: list[int], half_width: int) -> float:
    """The largest tone residual within half_width of any of `positions`, over the largest elsewhere (leaving out
    the first and last 100 ms, where the tone starts and stops). About 1 or below: nothing at the positions stands
    out; a click makes it several times larger."""
    residual = tone_residual(signal, rate, frequency)
    edge = rate // 10
    near = np.zeros(len(residual), dtype=bool)
    for position in positions:
        near[max(0, position - half_width):position + half_width] = True
    elsewhere = ~near
    elsewhere[:edge] = elsewhere[-edge:] = False
    return float(residual[near].max() / residual[elsewhere].max())


# Music-like for any length: a vibrato tone and a tremolo tone, one per channel (their frequencies stay in range,
# unlike a chirp's), over pink noise.
MUSIC_LIKE = ("0.25*sin(2*PI*(330*t+15*sin(2*PI*0.5*t)))",
              "0.2*sin(2*PI*(2500*t+40*sin(2*PI*0.2*t)))*(0.6+0.4*sin(2*PI*3*t))")


def make_source(path: Path, *, rate: int, channels: int, tone: bool, seconds: float, tone_hz: int = 1000) -> Path:
    """A video like a user's: AAC in MP4 with a tiny H.264 track, its audio music-like or a pure tone.

    Without PNS: ffmpeg's AAC decoder fills PNS bands from a noise generator whose state restarts at a seek, so a
    segment's input would differ from the continuous decode by other, equally valid noise (measured: -0.8 dB SNR
    against the source for 50 ms after a join), which is no fault of the join."""
    layout = "mono" if channels == 1 else "stereo"
    if tone:
        expressions = "|".join([f"0.5*sin(2*PI*{tone_hz}*t)"] * channels)
        audio = f"[0]aformat=sample_rates={rate}[a]"
    else:
        expressions = "|".join(MUSIC_LIKE[:channels])
        audio = f"[0][1]amix=inputs=2:normalize=0,aformat=sample_rates={rate}[a]"
    subprocess.run([
        "ffmpeg", "-v", "error", "-nostdin", "-y",
        "-f", "lavfi", "-i", f"aevalsrc=exprs={expressions}:s={rate}:d={seconds}:c={layout}",
        "-f", "lavfi", "-i", f"anoisesrc=color=pink:amplitude=0.15:r={rate}:d={seconds}:seed=1,"
                             f"aformat=channel_layouts={layout}",
        "-f", "lavfi", "-i", f"color=c=black:s=64x64:r=5:d={seconds}",
        "-filter_complex", audio, "-map", "[a]", "-map", "2:v", "-c:v", "libx264", "-preset", "ultrafast",
        "-c:a", "aac", "-aac_pns", "0", "-b:a", "160k", "-ac", str(channels), str(path)], check=True)
    return path
