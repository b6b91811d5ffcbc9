"""`vid2mp3 convert VIDEO [-o OUT.mp3]`: signs up or logs in a local user, uploads with a progress bar, follows the
job live, downloads the MP3 and prints where it is and what the job went through. `--sample` makes a test clip
first. `vid2mp3 cancel JOB_ID` cancels one of the local user's jobs."""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from client.api import ClientError, Vid2mp3, read_endpoints
from events.options import COVERS, InvalidOptions, as_fields, parse_options

ROOT = Path(__file__).resolve().parents[1]
LOCAL = Path(os.environ.get("VID2MP3_LOCAL_DIR", ROOT / ".local"))
SAMPLE_SECONDS = 10


def local_credentials() -> tuple[str, str]:
    """The local user's email and a password made on first use (kept under .local/, which git ignores)."""
    path = LOCAL / "client-credentials"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"you@vid2mp3.local\n{secrets.token_urlsafe(18)}\n")
        path.chmod(0o600)
    email, password = path.read_text().split()[:2]
    return email, password


def make_sample(seconds: int = SAMPLE_SECONDS) -> Path:
    """A short H.264 + AAC clip made with ffmpeg: a test picture and a 440 Hz tone."""
    target = LOCAL / "samples" / f"sample-{seconds}s.mp4"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([
            "ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size=640x360:rate=30:duration={seconds}",
            "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={seconds}", "-c:v", "libx264",
            "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", "-shortest", str(target),
        ], check=True)
    return target


def describe(job: dict[str, Any]) -> str:
    lines = [f"job {job['job_id']}: {job['state']}"]
    start = job["history"][0]["at"] if job.get("history") else None
    for step in job.get("history", []):
        lines.append(f"  {step['at']}  {step['state']}")
    if job.get("failure"):
        lines.append(f"  reason: {job['failure']['reason']}: {job['failure']['message']}")
    if job.get("options"):
        lines.append("  options: " + ", ".join(f"{name}={value}" for name, value in job["options"].items()))
    for forced in (job.get("applied") or {}).get("forced", []):
        lines.append(f"  {forced}")
    if job.get("audio"):
        audio = job["audio"]
        how = "stream copied" if audio["stream_copied"] else f"encoded at {job['bitrate_kbps']} kbit/s"
        if not audio["stream_copied"] and (job.get("applied") or {}).get("quality", "").startswith("V"):
            how = f"encoded as VBR {job['applied']['quality']}"
        lines.append(f"  MP3: {audio['duration_seconds']:.2f} s, {audio['size_bytes']} bytes, {how}")
        if (job.get("encoding") or {}).get("segments"):
            lines.append(f"  {job['encoding']['reason']}")
        if audio.get("expires_at"):
            until = "expired at" if audio.get("expired") else "downloadable until"
            lines.append(f"  MP3 {until} {audio['expires_at']}")
    if job.get("notification"):
        lines.append(f"  email: {job['notification']['state']}")
    if start:
        lines.append(f"  (times are UTC; the job started {start})")
    return "\n".join(lines)


def signed_in_client(arguments: argparse.Namespace) -> Vid2mp3:
    endpoints = read_endpoints(Path(arguments.endpoints))
    client = Vid2mp3(endpoints["AUTH_URL"], endpoints["UPLOAD_URL"], endpoints["STATUS_URL"],
                     endpoints["DOWNLOAD_URL"])
    client.sign_up_or_log_in(*local_credentials())
    return client


def cancel(arguments: argparse.Namespace) -> int:
    print(describe(signed_in_client(arguments).cancel(arguments.job_id)))
    return 0


# The conversion options `convert` takes, as the upload function names its fields (events/options.py).
OPTION_FLAGS = ("start", "end", "quality", "normalize", "loudness", "track", "channels", "title", "artist", "album",
                "date", "cover")


def conversion_fields(arguments: argparse.Namespace) -> dict[str, str]:
    """The options given on the command line, checked as the upload function checks them (so a typo is reported
    before the upload, every bad one at once), in the fields' own words."""
    given = {name: str(value) for name in OPTION_FLAGS if (value := getattr(arguments, name)) is not None}
    if arguments.bitrate is not None:
        given["bitrate"] = str(arguments.bitrate)
    try:
        return as_fields(parse_options(given)) if given else {}
    except InvalidOptions as invalid:
        raise SystemExit("vid2mp3: invalid options: " + "; ".join(f"--{name}: {problem}" for name, problem
                                                                    in invalid.errors.items())) from None


def convert(arguments: argparse.Namespace) -> int:
    video = make_sample() if arguments.sample else Path(arguments.video)
    if not video.is_file():
        print(f"vid2mp3: {video} is not a file", file=sys.stderr)
        return 2
    fields = conversion_fields(arguments)
    target = Path(arguments.output) if arguments.output else Path.cwd() / f"{video.stem}.mp3"
    client = signed_in_client(arguments)
    with tqdm(total=video.stat().st_size, unit="B", unit_scale=True, desc="upload") as bar:
        accepted = client.upload(video, on_bytes=bar.update, options=fields)
    job_id = accepted["job_id"]
    print(f"job {job_id} (to stop it: vid2mp3 cancel {job_id})")
    with tqdm(total=100, unit="%", desc="convert", bar_format="{l_bar}{bar}| {n:.0f}%") as bar:
        def show(job: dict[str, Any]) -> None:
            percent = 100.0 if job["state"] == "done" else job.get("progress", {}).get("percent", 0.0)
            bar.update(max(0.0, percent - bar.n))
            bar.set_postfix_str(job["state"])

        job = client.follow(job_id, show)
    if job["state"] != "done":
        print(describe(job))
        return 1
    with tqdm(total=job["audio"]["size_bytes"], unit="B", unit_scale=True, desc="download") as bar:
        client.download(job_id, target, bar.update)
    print(describe(job))
    print(f"MP3 written to {target}")
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="vid2mp3", description="Convert videos to MP3 with vid2mp3.")
    commands = parser.add_subparsers(dest="command", required=True)
    convert_parser = commands.add_parser("convert", help="convert one video end to end")
    convert_parser.add_argument("video", nargs="?", help="the video file")
    convert_parser.add_argument("--sample", action="store_true", help=f"make and convert a {SAMPLE_SECONDS} s clip")
    convert_parser.add_argument("-o", "--output", help="where to write the MP3 (default: ./<video name>.mp3)")
    convert_parser.add_argument("--bitrate", type=int, choices=(128, 192, 256, 320), help="kbit/s (default 192)")
    trim = convert_parser.add_argument_group("conversion options (README: Conversion options)")
    trim.add_argument("--start", help="trim: start at, in seconds (12.5) or [HH:]MM:SS[.mmm]")
    trim.add_argument("--end", help="trim: end at, in seconds or [HH:]MM:SS[.mmm]")
    trim.add_argument("--quality", help="128, 192, 256, 320 (CBR kbit/s) or V0 (best) … V9 (smallest) LAME VBR")
    trim.add_argument("--normalize", choices=("ebu-r128",), help="normalise the loudness (EBU R 128, -16 LUFS)")
    trim.add_argument("--loudness", help="with --normalize: the target, -23 … -10 LUFS")
    trim.add_argument("--track", help="the audio track, 0-based among the video's audio tracks")
    trim.add_argument("--channels", choices=("1", "2"), help="1 (mono) or 2 (stereo)")
    trim.add_argument("--title", help="ID3 title (default: the video's title, else its file name)")
    trim.add_argument("--artist", help="ID3 artist (default: the video's)")
    trim.add_argument("--album", help="ID3 album (default: the video's)")
    trim.add_argument("--date", help="ID3 date: YYYY, YYYY-MM or YYYY-MM-DD")
    trim.add_argument("--cover", choices=COVERS, help="cover art: a frame at 10 %% (default), the attached picture, "
                                                      "or none")
    cancel_parser = commands.add_parser("cancel", help="cancel a job that is still uploaded or converting")
    cancel_parser.add_argument("job_id", help="the job id `convert` printed")
    for command_parser in (convert_parser, cancel_parser):
        command_parser.add_argument("--endpoints", default=str(LOCAL / "endpoints.env"),
                                    help="KEY=VALUE file of the public URLs (written by `make up`)")
    arguments = parser.parse_args(argv)
    if arguments.command == "convert" and not arguments.sample and not arguments.video:
        parser.error("name a VIDEO, or give --sample")
    try:
        raise SystemExit(convert(arguments) if arguments.command == "convert" else cancel(arguments))
    except ClientError as error:
        print(f"vid2mp3: {error}", file=sys.stderr)
        raise SystemExit(1) from None
