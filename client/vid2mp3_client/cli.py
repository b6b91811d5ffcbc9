"""The `vid2mp3` command, for any vid2mp3 deployment: `vid2mp3 login --server URL` (the web page's URL; the login is
kept, client/session.py), then `vid2mp3 convert VIDEO... [options] [-o OUT]` extracts each video's audio tracks and
cover frame (extract.py; `--whole` sends the video itself), uploads them (with tus from 64 MiB, or with --resumable:
a rerun resumes), follows and downloads several videos at once, one progress line each; `jobs`, `download JOB`,
`cancel JOB`, `delete JOB`, `logout`. Without a login, on a checkout whose local stack is up, it signs in a local user
by itself (`make run`); `--sample` makes a test clip to convert.

Each command imports what it uses when it uses it (PyAV, tqdm, tuspy): a command's start is part of every run."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from vid2mp3_client import session
from vid2mp3_client.api import ClientError, FilePart, Unauthorized, Vid2mp3, read_endpoints

# A checkout's local stack (`make up` writes its URLs there); `make run` names it, else the working folder's.
LOCAL = Path(os.environ.get("VID2MP3_LOCAL_DIR", ".local")).absolute()
SAMPLE_SECONDS = 10


def make_sample(seconds: int = SAMPLE_SECONDS) -> Path:
    """A short H.264 + AAC clip made with ffmpeg: a test picture and a 440 Hz tone."""
    import subprocess

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


def client_factory(arguments: argparse.Namespace) -> Callable[[], Vid2mp3]:
    """Makes clients (one per concurrent conversion: each has its own HTTP session) signed in as the saved
    login, or else as the local stack's user (its token kept while it lasts: what `make run` relies on)."""
    login = None if arguments.local else session.saved()
    if login is not None:
        return login.client
    endpoints_file = Path(arguments.endpoints)
    if not endpoints_file.exists():
        raise session.NotLoggedIn("not logged in: run `vid2mp3 login --server <your vid2mp3 web page's URL>`")
    return session.LocalUser(LOCAL, endpoints_file).client


def log_in(arguments: argparse.Namespace) -> int:
    server = arguments.server
    if server is None:
        endpoints_file = Path(arguments.endpoints)
        if not endpoints_file.exists():
            raise ClientError("name the server: `vid2mp3 login --server <your vid2mp3 web page's URL>`")
        server = read_endpoints(endpoints_file)["WEB_URL"]
    import getpass

    if arguments.key:
        # From standard input, never the command line (which other users and the shell's history see).
        key = getpass.getpass("API key: ") if sys.stdin.isatty() else sys.stdin.readline()
        login = session.log_in_with_key(server, key.strip())
        print(f"logged in to {login.server} with an API key (kept in {session.config_dir() / session.LOGIN_FILE})")
        return 0
    email = arguments.email or input("email: ").strip()
    password = os.environ.get("VID2MP3_PASSWORD") or getpass.getpass("password: ")
    login = session.log_in(server, email, password, sign_up=arguments.sign_up)
    print(f"logged in to {login.server} as {login.email} (kept in {session.config_dir() / session.LOGIN_FILE})")
    return 0


def keys(arguments: argparse.Namespace) -> int:
    client = client_factory(arguments)()
    if arguments.action == "create":
        made = client.create_key(arguments.name, arguments.scope or ["convert", "read"],
                                 None if arguments.no_expiry else arguments.expires_in_days)
        print(made["key"])
        until = f"until {made['expires_at']}" if made.get("expires_at") else "with no expiry"
        print(f"API key {made['id']} ({', '.join(made['scopes'])}) made, valid {until}; it is shown only this "
              f"once: keep it like a password", file=sys.stderr)
    elif arguments.action == "list":
        listed = client.keys()
        if not listed:
            print("no API keys")
        for key in listed:
            print(f"{key['id']}  {','.join(key['scopes']):<28} used {key.get('last_used_at') or 'never':<32} "
                  f"expires {key.get('expires_at') or 'never':<26} {key['name']}")
    else:
        client.revoke_key(arguments.key_id)
        print(f"API key {arguments.key_id} revoked: every function refuses it within a minute")
    return 0


def feed(arguments: argparse.Namespace) -> int:
    """The private podcast feed's address on standard output (for a podcast app); `rotate`: a new one."""
    shown = client_factory(arguments)().feed(rotate=arguments.action == "rotate")
    print(shown["url"])
    if arguments.action == "rotate":
        print("the old feed address no longer works: give this one to your podcast apps", file=sys.stderr)
    else:
        print("whoever has this address can listen to your MP3s: keep it like a password (`vid2mp3 feed rotate` "
              "replaces it)", file=sys.stderr)
    return 0


def log_out(arguments: argparse.Namespace) -> int:
    print("logged out" if session.log_out() else "not logged in")
    return 0


def list_jobs(arguments: argparse.Namespace) -> int:
    jobs = client_factory(arguments)().jobs()
    if not jobs:
        print("no jobs")
    for job in jobs:
        audio = job.get("audio") or {}
        until = f"MP3 until {audio['expires_at']}" if audio.get("expires_at") and not audio.get("expired") else ""
        print(f"{job['job_id']}  {job['state']:<10} {job.get('created_at') or '':<32} {until}  {job.get('filename')}")
    return 0


def chapters_zip_beside(mp3: Path) -> Path:
    return mp3.with_name(f"{mp3.stem} - chapters.zip")


def download(arguments: argparse.Namespace) -> int:
    client = client_factory(arguments)()
    if arguments.chapters:
        if len(arguments.job_ids) > 1:
            print("vid2mp3: --chapters takes one job", file=sys.stderr)
            return 2
        job = client.job(arguments.job_ids[0])
        target = Path(arguments.output or chapters_zip_beside(Path(f"{Path(job.get('filename') or 'audio').stem}.mp3")))
        size = client.download_chapters_zip(arguments.job_ids[0], target)
        print(f"ZIP of {len((job.get('audio') or {}).get('chapter_files') or [])} chapter files written to {target} "
              f"({size} bytes)")
        return 0
    if arguments.zip:
        target = Path(arguments.output or f"vid2mp3-{len(arguments.job_ids)}-mp3s.zip")
        size = client.download_zip(arguments.job_ids, target)
        print(f"ZIP of {len(arguments.job_ids)} MP3s written to {target} ({size} bytes)")
        return 0
    if len(arguments.job_ids) > 1:
        print("vid2mp3: several jobs download as one ZIP: add --zip", file=sys.stderr)
        return 2
    job_id = arguments.job_ids[0]
    job = client.job(job_id)
    target = Path(arguments.output or f"{Path(job.get('filename') or job_id).stem}.mp3")
    size = client.download(job_id, target)
    print(f"MP3 written to {target} ({size} bytes)")
    return 0


def cancel(arguments: argparse.Namespace) -> int:
    print(describe(client_factory(arguments)().cancel(arguments.job_id)))
    return 0


def delete(arguments: argparse.Namespace) -> int:
    client_factory(arguments)().delete(arguments.job_id)
    print(f"job {arguments.job_id} and its media are deleted")
    return 0


# The conversion options `convert` takes, as the upload function names its fields (events/options.py).
OPTION_FLAGS = ("start", "end", "quality", "normalize", "loudness", "track", "channels", "title", "artist", "album",
                "date", "cover", "chapters", "split", "trim_silence", "silence_threshold_db", "silence_min_seconds",
                "feed")


def conversion_fields(arguments: argparse.Namespace) -> dict[str, str]:
    """The options given on the command line, as the upload function names its fields. The server checks them (all
    at once, before any byte of the video is read; tus uploads at creation): its 422 is told in the flags' words."""
    given = {name: str(value) for name in OPTION_FLAGS if (value := getattr(arguments, name)) is not None}
    if arguments.bitrate is not None:
        given["bitrate"] = str(arguments.bitrate)
    return given


# Uploads (an extract, or a whole video) from this size on go resumably (tus): a dropped connection costs one chunk,
# not the upload, and a rerun resumes. Smaller ones go in one request: one round trip, nothing to remember, and little
# to lose.
RESUMABLE_FROM_BYTES = 64 * 1024 * 1024
# Where the URLs of resumable uploads not finished yet are kept (in the login's folder), by file.
RESUME_FILE = "resumable-uploads.json"

# Conversions under way at once when several videos are given: each waits on the network and the server, not on
# this machine, and the server runs each user's jobs side by side up to its quota.
CONCURRENT_CONVERSIONS = 3


def is_url(argument: str) -> bool:
    return argument.startswith(("http://", "https://"))


def source_path(source: Path | str) -> Path:
    """A video file, or the path of a URL's (what its MP3 and progress line are named after)."""
    return source if isinstance(source, Path) else Path(urllib.parse.unquote(urllib.parse.urlsplit(source).path))


def targets_for(videos: list[Path | str], output: str | None) -> list[Path]:
    """Where each MP3 goes: `-o FILE` for one video, `-o FOLDER` for any number, else the working folder."""
    folder = Path(output) if output else Path.cwd()
    if folder.is_dir():
        return [folder / f"{source_path(video).stem or 'video'}.mp3" for video in videos]
    if len(videos) > 1:
        raise ClientError(f"-o {output}: with several videos, name an existing folder")
    return [folder]


def megabytes(count: int) -> str:
    if count >= 10**7:
        return f"{count / 10**6:.0f} MB"
    return f"{count / 10**6:.1f} MB" if count >= 10**6 else f"{count / 10**3:.0f} kB"


@dataclass(frozen=True)
class Sending:
    """What goes up for one video: the audio extract and its cover frame, or the video itself; and why, in words."""

    file: Path
    content_type: str
    cover: Path | None
    words: str
    extracted: bool


def what_to_send(video: Path, scratch: Path, whole: bool) -> Sending:
    """The video's audio tracks and cover frame, extracted into `scratch`; the whole video if asked, or where PyAV
    cannot make an extract (the reason is told)."""
    size = video.stat().st_size
    if whole:
        return Sending(video, "application/octet-stream", None, f"the whole file: {megabytes(size)} (--whole)", False)
    from vid2mp3_client.extract import NotExtracted, extract

    try:
        made = extract(video, scratch)
    except NotExtracted as why:
        return Sending(video, "application/octet-stream", None, f"the whole file: {megabytes(size)} ({why})", False)
    words = f"extracted the audio: {megabytes(made.audio.stat().st_size)} of {megabytes(size)}"
    if made.frame_problem:
        words += f"; no cover frame: {made.frame_problem}"
    return Sending(made.audio, made.content_type, made.frame, words, True)


def upload(client: Vid2mp3, video: Path, sending: Sending, fields: dict[str, str], resumable: bool,
           on_bytes: Callable[[int], object]) -> tuple[str, str]:
    """Uploads what `sending` names under the video's name (the job's label, and the MP3's title when the video has
    none); answers the job id and what was sent, in words."""
    size = sending.file.stat().st_size
    if not resumable and size < RESUMABLE_FROM_BYTES:
        if not sending.extracted:
            return client.upload(video, on_bytes=on_bytes, options=fields)["job_id"], sending.words
        parts = [FilePart("file", sending.file, video.name, sending.content_type)]
        if sending.cover is not None:
            parts.append(FilePart("cover", sending.cover, "frame.jpg", "image/jpeg"))
        return client.upload_form(parts, on_bytes=on_bytes, options=fields)["job_id"], sending.words
    key = None
    words = sending.words
    if sending.extracted:
        import av

        stat = video.stat()
        # The same video gives the same extract with the same PyAV (it writes bitexact): a rerun resumes it.
        key = f"the audio of {video.resolve()} {stat.st_size} {stat.st_mtime_ns}, {size} B by PyAV {av.__version__}"
        if sending.cover is not None:
            words += "; resumable, so without the cover frame (tus carries one file)"
    accepted = client.upload_resumable(sending.file, session.config_dir() / RESUME_FILE, on_bytes=on_bytes,
                                       options=fields, filename=video.name, key=key)
    return accepted["job_id"], words


def convert_one(new_client: Callable[[], Vid2mp3], video: Path | str, target: Path, fields: dict[str, str],
                line: int, resumable: bool = False, whole: bool = False) -> tuple[dict[str, Any], str]:
    """Extracts, uploads, follows and downloads one video (or has the server import a URL's), on one progress line
    of its own; answers the final job view and what was sent, in words. The extract is removed once it is sent,
    whatever happens."""
    from tqdm import tqdm

    client = new_client()
    name = source_path(video).name or str(video)
    with tqdm(total=100, position=line, desc=name[:30], bar_format="{desc}: {bar} {n:.0f}% {postfix}",
              leave=True) as bar:
        def at(percent: float, what: str) -> None:
            """Redraws when the words change, else at most every tenth of a second (tqdm's own pace): an upload
            reports every few kB."""
            changed = what != bar.postfix
            if changed:
                bar.set_postfix_str(what, refresh=False)
            bar.update(min(percent, 100) - bar.n)
            if changed:
                bar.refresh()

        if isinstance(video, str):
            at(0, "the server fetches it")
            job_id, words = client.import_url(video, fields)["job_id"], "fetched by the server from the URL"
        else:
            job_id, words = extract_and_upload(client, video, fields, resumable, whole, at)
        job = client.follow(job_id, lambda view: at(100.0 if view["state"] == "done" else
                                                    view.get("progress", {}).get("percent", 0.0), view["state"]))
        if job["state"] == "done":
            at(0, "downloading")
            total = max(job["audio"]["size_bytes"], 1)
            received = [0]

            def downloaded(count: int) -> None:
                received[0] += count
                at(100 * received[0] / total, "downloading")

            client.download(job_id, target, downloaded)
            if job["audio"].get("chapter_files"):
                client.download_chapters_zip(job_id, chapters_zip_beside(target))
            at(100, f"-> {target}")
        else:
            at(bar.n, job["state"])
    return job, words


def extract_and_upload(client: Vid2mp3, video: Path, fields: dict[str, str], resumable: bool, whole: bool,
                       at: Callable[[float, str], None]) -> tuple[str, str]:
    """Sends what the MP3 needs of `video` (or all of it); answers the job id and what was sent, in words."""
    with tempfile.TemporaryDirectory(prefix="vid2mp3-") as scratch:
        if not whole:
            at(0, "extracting the audio")
        sending = what_to_send(video, Path(scratch), whole)
        at(0, sending.words)
        size = max(sum(path.stat().st_size for path in (sending.file, sending.cover) if path is not None), 1)
        sent = [0]

        def uploaded(count: int) -> None:
            sent[0] += count
            at(100 * sent[0] / size, f"{sending.words}; uploading")

        try:
            return upload(client, video, sending, fields, resumable, uploaded)
        except Unauthorized:
            raise
        except ClientError as refused:  # what was sent tells why, say, a non-video was refused
            raise ClientError(f"{refused}; upload: {sending.words}") from None


def convert(arguments: argparse.Namespace) -> int:
    from concurrent.futures import ThreadPoolExecutor

    videos: list[Path | str] = [make_sample()] if arguments.sample else \
        [video if is_url(video) else Path(video) for video in arguments.videos]
    missing = [str(video) for video in videos if isinstance(video, Path) and not video.is_file()]
    if missing:
        print(f"vid2mp3: not a file: {', '.join(missing)}", file=sys.stderr)
        return 2
    fields = conversion_fields(arguments)
    targets = targets_for(videos, arguments.output)
    new_client = client_factory(arguments)
    with ThreadPoolExecutor(max_workers=min(len(videos), CONCURRENT_CONVERSIONS)) as pool:
        futures = [pool.submit(convert_one, new_client, video, target, fields, line, arguments.resumable,
                               arguments.whole)
                   for line, (video, target) in enumerate(zip(videos, targets, strict=True))]
        outcomes = [future.exception() or future.result() for future in futures]
    failures = 0
    for video, target, outcome in zip(videos, targets, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            if isinstance(outcome, Unauthorized | session.LocalUserRefused):  # not the video's: said once
                raise outcome
            print(f"{video}: {outcome}")
            failures += 1
            continue
        job, words = outcome
        print(describe(job))
        print(f"  upload: {words}")
        if job["state"] == "done":
            print(f"  MP3 written to {target}")
        else:
            failures += 1
    return 1 if failures else 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "login": log_in, "logout": log_out, "convert": convert, "jobs": list_jobs, "download": download,
    "cancel": cancel, "delete": delete, "keys": keys, "feed": feed,
}


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="vid2mp3", description="Convert videos to MP3 with vid2mp3.")
    commands = top.add_subparsers(dest="command", required=True)
    login_parser = commands.add_parser("login", help="log in to a vid2mp3 server (and keep the login)")
    login_parser.add_argument("--server", help="the web page's URL (default: the local stack's)")
    login_parser.add_argument("--email", help="your email address (asked if not given)")
    login_parser.add_argument("--sign-up", action="store_true", help="create the account first")
    login_parser.add_argument("--key", action="store_true",
                              help="log in with an API key read from standard input (`vid2mp3 keys create`)")
    commands.add_parser("logout", help="forget the kept login")
    convert_parser = commands.add_parser("convert", help="convert videos end to end, several at once")
    convert_parser.add_argument("videos", nargs="*", metavar="VIDEO",
                                help="the video files, or http(s) URLs the server fetches the videos from")
    convert_parser.add_argument("--sample", action="store_true", help=f"make and convert a {SAMPLE_SECONDS} s clip")
    convert_parser.add_argument("-o", "--output", help="the MP3 for one video, or a folder for several "
                                                       "(default: ./<video name>.mp3)")
    convert_parser.add_argument("--resumable", action="store_true",
                                help=f"upload resumably (tus) whatever the size (default: from "
                                     f"{RESUMABLE_FROM_BYTES // 1024**2} MiB); rerun to resume")
    convert_parser.add_argument("--whole", action="store_true",
                                help="upload the whole video, not the audio tracks and cover frame extracted from it")
    convert_parser.add_argument("--bitrate", type=int, choices=(128, 192, 256, 320), help="kbit/s (default 192)")
    options = convert_parser.add_argument_group("conversion options (README: Conversion options)")
    options.add_argument("--start", help="trim: start at, in seconds (12.5) or [HH:]MM:SS[.mmm]")
    options.add_argument("--end", help="trim: end at, in seconds or [HH:]MM:SS[.mmm]")
    options.add_argument("--quality", help="128, 192, 256, 320 (CBR kbit/s) or V0 (best) … V9 (smallest) LAME VBR")
    options.add_argument("--normalize", choices=("ebu-r128",), help="normalise the loudness (EBU R 128, -16 LUFS)")
    options.add_argument("--loudness", help="with --normalize: the target, -23 … -10 LUFS")
    options.add_argument("--track", help="the audio track, 0-based among the video's audio tracks")
    options.add_argument("--channels", choices=("1", "2"), help="1 (mono) or 2 (stereo)")
    options.add_argument("--title", help="ID3 title (default: the video's title, else its file name)")
    options.add_argument("--artist", help="ID3 artist (default: the video's)")
    options.add_argument("--album", help="ID3 album (default: the video's)")
    options.add_argument("--date", help="ID3 date: YYYY, YYYY-MM or YYYY-MM-DD")
    options.add_argument("--cover", help="cover art: frame (a frame at 10 %%, the default), attached (the video's "
                                          "attached picture) or none")
    options.add_argument("--chapters", help="the video's chapters: markers (ID3 chapter markers in the MP3, the "
                                             "default) or none")
    options.add_argument("--split-chapters", dest="split", action="store_const", const="chapters",
                         help="also one MP3 per chapter, cut from the same encode (gapless back to back), written "
                              "beside the MP3 as '<name> - chapters.zip'")
    options.add_argument("--trim-silence", dest="trim_silence", action="store_const", const="true",
                         help="trim the leading and trailing silence (not with --start/--end)")
    options.add_argument("--silence-threshold-db", dest="silence_threshold_db",
                         help="with --trim-silence: quieter than this is silence, in dBFS (-90 … -20; -50)")
    options.add_argument("--silence-min-seconds", dest="silence_min_seconds",
                         help="with --trim-silence: the shortest silence trimmed, in seconds (0.05 … 60; 0.5)")
    options.add_argument("--no-feed", dest="feed", action="store_const", const="false",
                         help="keep this MP3 out of your private podcast feed (`vid2mp3 feed`)")
    commands.add_parser("jobs", help="list your jobs")
    keys_parser = commands.add_parser("keys", help="API keys for scripts: create, list, revoke")
    key_actions = keys_parser.add_subparsers(dest="action", required=True)
    create_parser = key_actions.add_parser("create", help="make a key (printed once, on standard output)")
    create_parser.add_argument("name", help="what the key is for, as `keys list` shows it")
    create_parser.add_argument("--scope", action="append", choices=("convert", "read", "delete", "webhooks"),
                               help="what the key may do; repeat for several (default: convert and read)")
    create_parser.add_argument("--expires-in-days", type=int, default=90, help="1 to 366 (default 90)")
    create_parser.add_argument("--no-expiry", action="store_true", help="a key that never expires")
    key_actions.add_parser("list", help="your keys: scopes, last use, expiry (never the secrets)")
    revoke_parser = key_actions.add_parser("revoke", help="revoke a key")
    revoke_parser.add_argument("key_id", help="the key's id (`vid2mp3 keys list`)")
    feed_parser = commands.add_parser("feed", help="your private podcast feed's address, for a podcast app")
    feed_parser.add_argument("action", nargs="?", choices=("show", "rotate"), default="show",
                             help="show it (the default), or rotate: a new address, the old one ends at once")
    for name, what in (("download", "download a job's MP3"),
                       ("cancel", "cancel a job still importing, uploaded or converting"),
                       ("delete", "delete a job and its media")):
        job_parser = commands.add_parser(name, help=what)
        if name == "download":
            job_parser.add_argument("job_ids", nargs="+", metavar="job_id",
                                    help="the job id (`vid2mp3 jobs` lists them); several with --zip")
            job_parser.add_argument("--zip", action="store_true",
                                    help="the jobs' MP3s as one ZIP, streamed by the server as it builds it")
            job_parser.add_argument("--chapters", action="store_true",
                                    help="the job's chapter files (converted with --split-chapters) as one ZIP "
                                         "(default: ./<video name> - chapters.zip)")
            job_parser.add_argument("-o", "--output", help="where to write the MP3 (default: ./<video name>.mp3) "
                                                           "or the ZIP (default: ./vid2mp3-<count>-mp3s.zip)")
        else:
            job_parser.add_argument("job_id", help="the job id (`vid2mp3 jobs` lists them)")
    for command_parser in (*commands.choices.values(), *key_actions.choices.values()):
        command_parser.add_argument("--endpoints", default=str(LOCAL / "endpoints.env"),
                                    help="the local stack's KEY=VALUE file of URLs (written by `make up`), used "
                                         "when not logged in")
        command_parser.add_argument("--local", action="store_true",
                                    help="use the local stack's own user even when logged in elsewhere")
    return top


def main(argv: list[str] | None = None) -> None:
    arguments = parser().parse_args(argv)
    if arguments.command == "convert" and not arguments.sample and not arguments.videos:
        parser().parse_args(["convert", "--help"])
    try:
        raise SystemExit(COMMANDS[arguments.command](arguments))
    except Unauthorized:
        print("vid2mp3: your login has expired or is no longer valid: log in again with `vid2mp3 login`",
              file=sys.stderr)
        raise SystemExit(1) from None
    except session.NotLoggedIn as error:
        print(f"vid2mp3: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except requests.ConnectionError as error:
        print(f"vid2mp3: cannot reach the server ({type(error).__name__}): is it up, and the URL right?",
              file=sys.stderr)
        raise SystemExit(1) from None
    except ClientError as error:
        print(f"vid2mp3: {error}", file=sys.stderr)
        raise SystemExit(1) from None
