"""The seed project's way to make an MP3, which the bench sets beside vid2mp3 on the same file: moviepy's
`VideoFileClip(video).audio.write_audiofile(mp3)` on the local disk, in a Python process of its own (its imports
included, as a user running it would pay them); answers its wall time in seconds."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

# moviepy runs the ffmpeg build its imageio-ffmpeg wheel ships: one ffmpeg reads the audio as PCM, another encodes.
MOVIEPY_METHOD = ("import sys; from moviepy import VideoFileClip; "
                  "VideoFileClip(sys.argv[1]).audio.write_audiofile(sys.argv[2], bitrate='192k', logger=None)")


def moviepy_seconds(source: Path, target: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", MOVIEPY_METHOD, str(source), str(target)], check=True,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - started
