"""`make bench`, real-bitrate media (issue 23): clips at the bitrates of phones and cameras, made once into
.local/bench/inputs (a 600 s 720p H.264 at 6 Mbit/s CBR with 128 kbit/s AAC, a 60 s 1080p at 12 Mbit/s, a 60 s 720p
whose audio is MP3 already), and vid2mp3 on them beside the seed's moviepy method on the same files, in one run:
(a) the `vid2mp3` command, video to MP3 on disk, over the loopback; (b) the same through a 50 Mbit/s uplink (the
shaping proxy, bench/shaping_proxy.py); (c) the web page in headless Chromium; (d) one raw POST of the whole video,
then polling to done, with the most GridFS held meanwhile; (e) a small job alone and beside another user's raw POST
of the whole video; (f) the 60 s clip with MP3 audio through the command. Each figure comes with the bytes the client
sent, its ratio to moviepy and issue 23's target.

Nothing here knows how the clients or the upload move the audio: the command and the page are driven as a user
drives them, and the figures are what they send, what the server holds and how long until the MP3 is on disk. So
the same bench measures vid2mp3 before the clients extract the audio and after. Alone: `python -m bench.real_media
[--parts loopback,uplink,web,raw_post,beside,mp3_audio] [--web-video FILE]` with the stack up."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import secrets
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pymongo
import requests
from vid2mp3_client.api import FINAL_STATES, Vid2mp3

from bench.seed_method import moviepy_seconds
from bench.shaping_proxy import Counts, ShapingProxy
from stack.config import ENDPOINTS_FILE, ROOT

if TYPE_CHECKING:
    from bench.conversion import PeakSampler

BENCH_DIR = ROOT / ".local" / "bench"  # as bench/conversion.py: inputs and results stay in the work tree
INPUTS_DIR = BENCH_DIR / "inputs"
WORK_DIR = BENCH_DIR / "real-media"  # the command's home, the bench users' passwords, endpoints files
RESULTS_FILE = BENCH_DIR / "real-media.json"
MB = 1_000_000
UPLINK_MBIT = 50
PUBLIC_URLS = ("AUTH_URL", "UPLOAD_URL", "STATUS_URL", "DOWNLOAD_URL", "WEB_URL")
PARTS = ("loopback", "uplink", "web", "raw_post", "beside", "mp3_audio")
JOB_TIMEOUT_SECONDS = 1200
# The browser as tests/stack/test_web.py launches it (Debian's Chromium, driven by Playwright).
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


# --- The clips -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RealClip:
    """A clip at a real bitrate: H.264 CBR (filler data keeps it at the bitrate whatever the picture), music-like
    audio (notes stepping every quarter second, a slow vibrato, pink noise): what the audio encoders see matters."""

    name: str
    size: str
    seconds: int
    video_mbit: int
    audio: tuple[str, ...]
    frame_rate: int = 25

    def path(self, folder: Path = INPUTS_DIR) -> Path:
        return folder / f"{self.name}.mp4"


AAC = ("-c:a", "aac", "-b:a", "128k")
MP3 = ("-c:a", "libmp3lame", "-b:a", "192k")
LONG = RealClip("720p-600s-6M", "1280x720", 600, 6, AAC)
HD = RealClip("1080p-60s-12M", "1920x1080", 60, 12, AAC)
MP3_AUDIO = RealClip("720p-60s-6M-mp3", "1280x720", 60, 6, MP3)
CLIPS = (LONG, HD, MP3_AUDIO)
NOTES = "220*pow(2\\,floor(mod(t*4\\,12))/12)"  # a scale, one note a quarter second
MUSIC = (f"aevalsrc=exprs='0.2*sin(2*PI*t*{NOTES})+0.1*sin(2*PI*t*330*(1+0.005*sin(2*PI*t)))"
         f"|0.2*sin(2*PI*t*{NOTES})+0.1*sin(2*PI*t*495*(1+0.005*sin(2*PI*t*0.7)))':s=44100")
# The made file's video bitrate may differ from the asked one by this much.
BITRATE_TOLERANCE = 0.05


def make_clip(clip: RealClip, folder: Path = INPUTS_DIR) -> Path:
    """Makes the clip once (kept in `folder`) and checks its video bitrate and length with ffprobe every time."""
    target = clip.path(folder)
    if not target.exists():
        folder.mkdir(parents=True, exist_ok=True)
        print(f"  making {target.name} (once) ...", flush=True)
        partial = target.with_name(f"partial-{target.name}")
        rate = f"{clip.video_mbit}M"
        subprocess.run([
            "ffmpeg", "-nostdin", "-v", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size={clip.size}:rate={clip.frame_rate}:duration={clip.seconds}",
            "-f", "lavfi", "-i", f"{MUSIC}:d={clip.seconds}",
            "-f", "lavfi", "-i", f"anoisesrc=color=pink:amplitude=0.08:sample_rate=44100:duration={clip.seconds}",
            "-filter_complex", "[1][2]amix=inputs=2:normalize=0[a]", "-map", "0:v", "-map", "[a]",
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-b:v", rate, "-minrate", rate,
            "-maxrate", rate, "-bufsize", f"{2 * clip.video_mbit}M", "-x264-params", "nal-hrd=cbr",
            *clip.audio, "-shortest", str(partial),
        ], check=True)
        check_clip(clip, partial)
        partial.replace(target)
    return check_clip(clip, target)


def check_clip(clip: RealClip, path: Path) -> Path:
    info = probe(path)
    video = next(stream for stream in info["streams"] if stream["codec_type"] == "video")
    measured = int(video["bit_rate"]) / 1e6
    duration = float(info["format"]["duration"])
    # The encoder may also fill its buffer (two seconds of the bitrate) once on top: a short clip's share is large.
    if abs(measured / clip.video_mbit - 1) > BITRATE_TOLERANCE + 2 / clip.seconds or abs(duration - clip.seconds) > 0.5:
        path.unlink()
        raise RuntimeError(f"{path.name}: {measured:.2f} Mbit/s over {duration:.1f} s, not {clip.video_mbit} Mbit/s "
                           f"over {clip.seconds} s: removed, to be made again")
    return path


def probe(path: Path) -> dict[str, Any]:
    result = subprocess.run(["ffprobe", "-v", "error", "-show_entries",
                             "stream=codec_type,codec_name,bit_rate:format=duration,size", "-of", "json", str(path)],
                            check=True, capture_output=True, text=True)
    return dict(json.loads(result.stdout))


def duration_of(path: Path) -> float:
    return float(probe(path)["format"]["duration"])


@dataclass(frozen=True)
class Shares:
    """What of a clip an MP3 needs: its audio tracks copied out as they are (what `ffmpeg -vn -c:a copy` writes
    into an MP4 container) and the default cover (the frame at 10 %, a JPEG at most 600 px on its longer side)."""

    video_bytes: int
    audio_file: Path
    audio_bytes: int
    cover_bytes: int
    seconds: float

    @property
    def needed_bytes(self) -> int:
        return self.audio_bytes + self.cover_bytes


def shares_of(video: Path, scratch: Path) -> Shares:
    audio = scratch / f"{video.stem}-audio.m4a"
    cover = scratch / f"{video.stem}-cover.jpg"
    seconds = duration_of(video)
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(video), "-map", "0:a", "-c", "copy",
                    "-map_metadata", "0", "-map_chapters", "0", "-f", "mp4", str(audio)], check=True)
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-ss", f"{seconds / 10:.3f}", "-i", str(video),
                    "-frames:v", "1", "-vf", "scale=600:600:force_original_aspect_ratio=decrease", "-q:v", "3",
                    str(cover)], check=True)
    return Shares(video.stat().st_size, audio, audio.stat().st_size, cover.stat().st_size, seconds)


# --- What GridFS holds ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class HeldFile:
    bucket: str
    file_id: Any
    owner_id: str | None
    length: int
    chunk_bytes: int

    @property
    def chunk_ids(self) -> tuple[str, str]:
        """The first and last chunks' ids as storage/media.py names them (`<file id>/<n>`): deletions go in order."""
        last = max(0, math.ceil(self.length / self.chunk_bytes) - 1) if self.chunk_bytes else 0
        return f"{self.file_id}/0", f"{self.file_id}/{last}"


def gridfs_files(database: Any) -> dict[tuple[str, str], HeldFile]:
    """Every file of every GridFS bucket (each `<bucket>.files` collection, whatever buckets the server uses), from
    the files documents alone: a lookup of a chunks collection on the local FerretDB decodes every chunk (a count of
    460 chunks took a minute on the loaded machine), one of the files documents takes milliseconds. A file counts
    once its files document is written: a tus upload's from its creation, growing with each PATCH; a one-shot write's
    when its last chunk is in (storage/media.py writes the document last)."""
    files = {}
    for name in database.list_collection_names():
        if not name.endswith(".files"):
            continue
        bucket = name.removesuffix(".files")
        for document in database[name].find({}, {"length": 1, "chunkSize": 1, "metadata.owner_id": 1}):
            owner = (document.get("metadata") or {}).get("owner_id")
            files[(bucket, str(document["_id"]))] = HeldFile(bucket, document["_id"], owner,
                                                             int(document.get("length") or 0),
                                                             int(document.get("chunkSize") or 0))
    return files


def chunks_left(database: Any, held: HeldFile) -> bool:
    """Whether a file's first or last chunk is still there (found by _id, as cheap as any lookup on FerretDB)."""
    chunks = database[f"{held.bucket}.chunks"]
    return any(chunks.find_one({"_id": chunk}, {"_id": 1}) is not None for chunk in held.chunk_ids)


class GridFSWatch:
    """Watches GridFS from a thread of its own (every files document, four times a second): the files that were not
    there when it started, the most bytes they held at once (and each bucket's part of that moment), and, once
    asked, whether all of them are gone, chunks included."""

    def __init__(self, database: Any, interval: float = 0.25) -> None:
        self.database, self.interval = database, interval
        self.before = set(gridfs_files(database))
        self.seen: dict[tuple[str, str], HeldFile] = {}
        self.present: set[tuple[str, str]] = set()
        self.peak_bytes, self.peak_by_bucket = 0, dict[str, int]()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="gridfs-watch", daemon=True)

    def sample(self) -> None:
        files = {key: held for key, held in gridfs_files(self.database).items() if key not in self.before}
        with self.lock:
            for key, file in files.items():
                if key not in self.seen or file.length > self.seen[key].length:
                    self.seen[key] = file
            self.present = set(files)
            held = sum(file.length for file in files.values())
            if held > self.peak_bytes:
                self.peak_bytes = held
                by_bucket: dict[str, int] = {}
                for file in files.values():
                    by_bucket[file.bucket] = by_bucket.get(file.bucket, 0) + file.length
                self.peak_by_bucket = by_bucket

    def _watch(self) -> None:
        while not self.stopping.is_set():
            with contextlib.suppress(pymongo.errors.PyMongoError):
                self.sample()
            self.stopping.wait(self.interval)

    def stored_by_bucket(self) -> dict[str, int]:
        """Every file seen, at the largest it was seen, by bucket: all the job stored, at once or not."""
        by_bucket: dict[str, int] = {}
        with self.lock:
            for file in self.seen.values():
                by_bucket[file.bucket] = by_bucket.get(file.bucket, 0) + file.length
        return by_bucket

    def lingering(self, keep: Callable[[HeldFile], bool] = lambda _: False) -> list[HeldFile]:
        """The files seen that are not gone yet, chunks included (but those `keep` says may stay)."""
        self.sample()
        with self.lock:
            seen, present = list(self.seen.values()), set(self.present)
        return [held for held in seen if not keep(held)
                and ((held.bucket, str(held.file_id)) in present or chunks_left(self.database, held))]

    def wait_gone(self, timeout: float = 120.0, keep: Callable[[HeldFile], bool] = lambda _: False) -> float | None:
        """Waits until every file seen (but those `keep` says may stay) is gone, chunks included; answers the
        seconds waited, or None when the time was up first."""
        started = time.monotonic()
        while self.lingering(keep):
            if time.monotonic() - started > timeout:
                return None
            time.sleep(0.25)
        return time.monotonic() - started

    def __enter__(self) -> GridFSWatch:
        self.thread.start()
        return self

    def __exit__(self, *exception: object) -> None:
        self.stopping.set()
        self.thread.join(10)


# --- The users and the command ----------------------------------------------------------------------------------

def kept_credentials(path: Path, name: str) -> tuple[str, str]:
    """An email (`<name>-<random>@vid2mp3.local`) and a password of the bench's own, made on first use and kept in
    `path` (0600): a user of its own for each folder of the bench."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{name}-{secrets.token_hex(4)}@vid2mp3.local\n{secrets.token_urlsafe(18)}\n")
        path.chmod(0o600)
    kept_email, password = path.read_text().split()[:2]
    return kept_email, password


def signed_in(points: dict[str, str], email: str, password: str) -> Vid2mp3:
    # Deleting a job with a whole video stored took more than the client's 30 s on the loaded machine.
    client = Vid2mp3(points["AUTH_URL"], points["UPLOAD_URL"], points["STATUS_URL"], points["DOWNLOAD_URL"],
                     timeout=300)
    client.sign_up_or_log_in(email, password)
    return client


@dataclass
class CommandRun:
    seconds: float
    output: str


@dataclass
class Command:
    """The `vid2mp3` command as `make run` runs it (`vid2mp3 convert VIDEO -o MP3 --local`), a process of its own
    each time, as the local user of a home folder of the bench's (VID2MP3_LOCAL_DIR, where the command keeps that
    user's password, made here; its own config folder beside), against the URLs of an endpoints file: the stack's,
    or the shaping proxy's."""

    home: Path
    points: dict[str, str]

    def __post_init__(self) -> None:
        email, password = kept_credentials(self.home / "client-credentials", "bench-command")
        self.client = signed_in(self.points, email, password)  # the same user, to find and delete its jobs

    def convert(self, video: Path, target: Path, endpoints_file: Path) -> CommandRun:
        command = [str(Path(sys.executable).with_name("vid2mp3")), "convert", str(video), "-o", str(target),
                   "--local", "--endpoints", str(endpoints_file)]
        environment = {**os.environ, "VID2MP3_LOCAL_DIR": str(self.home),
                       "XDG_CONFIG_HOME": str(self.home / "config")}
        target.unlink(missing_ok=True)
        started = time.perf_counter()
        result = subprocess.run(command, env=environment, cwd=self.home, stdin=subprocess.DEVNULL,
                                capture_output=True, text=True, timeout=JOB_TIMEOUT_SECONDS)
        elapsed = time.perf_counter() - started
        if result.returncode != 0 or not target.exists():
            raise RuntimeError(f"vid2mp3 convert {video.name} failed ({result.returncode}): "
                               f"{(result.stdout + result.stderr)[-600:]}")
        return CommandRun(elapsed, result.stdout)


def job_ids(client: Vid2mp3) -> set[str]:
    return {job["job_id"] for job in client.jobs()}


def delete_new_jobs(client: Vid2mp3, before: set[str]) -> list[dict[str, Any]]:
    """Deletes the user's jobs made since `before` (their media with them); answers their last views."""
    client.timeout = max(client.timeout, 300)  # a whole video's deletion takes long on the loaded machine
    views = [job for job in client.jobs() if job["job_id"] not in before]
    for job in views:
        with contextlib.suppress(requests.RequestException, RuntimeError):
            client.delete(job["job_id"])
    return views


def endpoints_through(proxy: ShapingProxy, path: Path) -> Path:
    """The stack's endpoints file with every URL of a function the proxy stands in front of rewritten to the
    proxy's, for the command's `--endpoints`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(proxy.rewrite(ENDPOINTS_FILE.read_text()))
    return path


def mp3_matches(target: Path, seconds: float) -> bool:
    return abs(duration_of(target) - seconds) <= 0.5


# --- The run -------------------------------------------------------------------------------------------------------

@dataclass
class Lab:
    """What every measurement uses: the stack, a scratch folder, the command, a second user for the whole-video
    uploads, the web page's user, and the figures so far."""

    report: Any
    points: dict[str, str]
    database: Any
    scratch: Path
    home: Path
    other_user: Vid2mp3
    inputs: Path = INPUTS_DIR
    long: RealClip = LONG
    hd: RealClip = HD
    mp3_audio: RealClip = MP3_AUDIO
    moviepy: dict[str, list[float]] = field(default_factory=dict)
    web_video: Path | None = None

    def __post_init__(self) -> None:
        self.command = Command(self.home / "command", self.points)
        self.figures: dict[str, Any] = self.report.figures.setdefault("real_media", {})

    def error(self, what: str, error: BaseException) -> None:
        self.report.errors.append(f"real media, {what}: {type(error).__name__}: {str(error)[:400]}")
        print(f"  {what}: FAILED ({type(error).__name__}: {str(error)[:200]})", flush=True)

    def moviepy_run(self, video: Path) -> float:
        seconds = moviepy_seconds(video, self.scratch / "moviepy.mp3")
        self.moviepy.setdefault(video.stem, []).append(seconds)
        return seconds

    def moviepy_median(self, video: Path) -> float:
        return statistics.median(self.moviepy[video.stem])

    def public_upstreams(self) -> list[str]:
        return [self.points[name] for name in PUBLIC_URLS]

    @contextlib.contextmanager
    def settled_after(self, client: Vid2mp3, wait: bool = True) -> Iterator[dict[str, Any]]:
        """Watches GridFS inside the block; after it, deletes what `client`'s user made in it and (`wait`) waits
        until every file stored meanwhile is gone, chunks included, so that the next measurement starts from the
        same stored media. Notes how long that took, the most GridFS held, and the jobs' last views."""
        before_jobs = job_ids(client)
        note: dict[str, Any] = {"settled_s": 0.0}
        with GridFSWatch(self.database) as watch:
            note["watch"] = watch
            try:
                yield note
            finally:
                watch.sample()  # what the jobs hold as they end (an MP3 may come and go between two samples)
                note["jobs"] = delete_new_jobs(client, before_jobs)
                if wait:
                    note["settled_s"] = watch.wait_gone()
                    if note["settled_s"] is None:
                        left = watch.lingering()
                        self.report.errors.append(
                            f"real media: {len(left)} files stored during a measurement were still there 120 s after "
                            f"its jobs were deleted: {[(held.bucket, str(held.file_id)) for held in left[:5]]}")

    def command_through(self, video: Path, uplink_mbit: float | None, label: str) -> dict[str, Any]:
        """The command converting `video` with every request through the shaping proxy (`uplink_mbit` None: only
        counting); seconds, bytes sent and received, the MP3 checked."""
        target = self.scratch / f"{video.stem}.mp3"
        with ShapingProxy(self.public_upstreams(), uplink_mbit=uplink_mbit) as proxy, \
                self.settled_after(self.command.client) as note:
            endpoints = endpoints_through(proxy, self.home / f"endpoints-{label}.env")
            cpu = time.process_time()
            run = self.command.convert(video, target, endpoints)
            # This process only proxies meanwhile: its CPU time is the proxy's.
            proxy_cpu = time.process_time() - cpu
            counts = proxy.reset_counts()
            if proxy.errors:
                raise RuntimeError(f"the shaping proxy: {proxy.errors[:3]}")
        if not mp3_matches(target, duration_of(video)):
            raise RuntimeError(f"the MP3 of {video.name} lasts {duration_of(target):.2f} s")
        said = [line.strip() for line in run.output.splitlines() if "extract" in line.lower()]
        return {"seconds": run.seconds, **sent_figures(counts), "uplink_mbit": uplink_mbit, "said": said,
                "proxy_cpu_s": proxy_cpu,
                "settled_s": note["settled_s"], "job": job_summary(note["jobs"])}


def sent_figures(counts: Counts) -> dict[str, Any]:
    return {"sent_bytes": counts.sent_bytes, "received_bytes": counts.received_bytes, "requests": counts.requests}


def job_summary(views: list[dict[str, Any]]) -> dict[str, Any]:
    """What the job view said of the job (the last one made), kept beside the figures: the MP3's size, and the
    bytes the server says it received and stored where it says so."""
    if not views:
        return {}
    job = views[0]
    kept: dict[str, Any] = {key: job[key] for key in ("state", "received_bytes", "stored_bytes") if key in job}
    if job.get("audio"):
        kept["mp3_bytes"] = job["audio"].get("size_bytes")
    return kept


def loopback(lab: Lab, shares: dict[str, Shares]) -> None:
    """(a) The command, video to MP3 on disk, on the loopback (the proxy only counting), beside moviepy."""
    rows = lab.figures.setdefault("command_loopback", {})
    for role, clip in (("long", lab.long), ("hd", lab.hd)):
        video = clip.path(lab.inputs)
        try:
            moviepy = lab.moviepy_run(video)
            row = lab.command_through(video, None, "loopback")
        except Exception as error:
            lab.error(f"the command on the loopback, {clip.name}", error)
            continue
        rows[role] = {"clip": clip.name, **row}
        print(f"  {clip.name:<18} vid2mp3 {row['seconds']:.2f} s, sent {row['sent_bytes'] / MB:.1f} MB; "
              f"moviepy {moviepy:.2f} s", flush=True)


def uplink(lab: Lab, shares: dict[str, Shares]) -> None:
    """(b) The same for the 600 s clip through a 50 Mbit/s uplink."""
    video = lab.long.path(lab.inputs)
    try:
        row = lab.command_through(video, UPLINK_MBIT, "uplink")
    except Exception as error:
        lab.error(f"the command through a {UPLINK_MBIT} Mbit/s uplink", error)
        return
    lab.figures["command_uplink"] = {"long": {"clip": lab.long.name, **row}}
    print(f"  {lab.long.name:<18} vid2mp3 through {UPLINK_MBIT} Mbit/s {row['seconds']:.2f} s, sent "
          f"{row['sent_bytes'] / MB:.1f} MB", flush=True)


def browser_memory() -> PeakSampler:
    """The most memory the browser held at once while the page worked: the proportional set size (PSS) of every
    Chromium process under this one, summed, sampled every 100 ms. Chromium is a tree of processes sharing pages,
    so their RSS summed would count the shared pages once per process."""
    from bench.conversion import PeakSampler  # bench/conversion.py runs this module's parts

    return PeakSampler(lambda: sum(pss_kib(pid) for pid in browser_processes(os.getpid())), 0.1)


def browser_processes(root: int) -> list[int]:
    """The Chromium processes descending from `root` (Playwright's driver sits between them)."""
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            pid_and_name, rest = stat.read_text().rsplit(")", 1)
            pid = int(pid_and_name.split(" (", 1)[0])
            names[pid], parents[pid] = pid_and_name.split(" (", 1)[1], int(rest.split()[1])

    def descends(pid: int) -> bool:
        while pid > 1:
            pid = parents.get(pid, 0)
            if pid == root:
                return True
        return False

    return [pid for pid, name in names.items() if name.startswith("chrom") and descends(pid)]


def pss_kib(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def web_page(lab: Lab, shares: dict[str, Shares]) -> None:
    """(c) The web page in headless Chromium (its requests through the proxy as a forward proxy, only counting):
    from choosing the file to the MP3 downloaded, with the browser's memory meanwhile. `lab.web_video`, when set,
    is the file chosen instead of the 600 s clip (a multi-GB file, say), without moviepy beside it."""
    from playwright.sync_api import expect, sync_playwright  # a test dependency, as the bench's others

    video = lab.web_video or lab.long.path(lab.inputs)
    role = "chosen" if lab.web_video else "long"
    email, password = kept_credentials(lab.home / "web-credentials", "bench-web")
    user = signed_in(lab.points, email, password)
    try:
        if not lab.web_video:
            lab.moviepy_run(video)
        target = lab.scratch / "web.mp3"
        timeout_ms = JOB_TIMEOUT_SECONDS * 1000
        with ShapingProxy([], forward=True) as proxy, sync_playwright() as playwright, \
                lab.settled_after(user) as note:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
                                                 proxy={"server": proxy.forward_url})
            try:
                page = browser.new_context(accept_downloads=True).new_page()
                page.goto(lab.points["WEB_URL"] + "/")
                page.wait_for_selector("body[data-ready=true]", state="attached")
                page.fill("#email", email)
                page.fill("#password", password)
                page.click("#login")
                page.wait_for_selector("#convert", state="visible")
                before = proxy.reset_counts()
                started = time.perf_counter()
                with browser_memory() as memory:
                    page.set_input_files("#file", str(video))
                    expect(page.locator("#state")).to_have_text("done", timeout=timeout_ms)
                    with page.expect_download(timeout=timeout_ms) as download:
                        page.click("#download")
                    download.value.save_as(str(target))
                elapsed = time.perf_counter() - started
                counts = proxy.reset_counts()
            finally:
                browser.close()
        if before.requests == 0:
            raise RuntimeError("the browser's requests did not go through the proxy")
        if not mp3_matches(target, duration_of(video)):
            raise RuntimeError(f"the page's MP3 lasts {duration_of(target):.2f} s")
    except Exception as error:
        lab.error("the web page", error)
        return
    lab.figures["web_page"] = {role: {"clip": video.stem, "video_bytes": video.stat().st_size, "seconds": elapsed,
                                      **sent_figures(counts), "browser_peak_pss_mb": memory.peak_kib * 1024 / MB,
                                      "settled_s": note["settled_s"], "job": job_summary(note["jobs"])}}
    print(f"  {video.stem:<18} web page {elapsed:.2f} s to the download, sent {counts.sent_bytes / MB:.1f} MB of "
          f"{video.stat().st_size / MB:.0f} MB; the browser held {memory.peak_kib * 1024 / MB:.0f} MB at most",
          flush=True)


def post_whole_video(client: Vid2mp3, video: Path) -> tuple[str, float]:
    """One raw POST of the whole file, as curl or an integration sends it; the job id and the seconds to the
    answer."""
    started = time.perf_counter()
    with video.open("rb") as body:
        response = client.session.post(client.upload_url, params={"filename": video.name}, data=body,
                                       timeout=JOB_TIMEOUT_SECONDS, headers={  # the server may pause reading
                                           "Authorization": f"Bearer {client.token}",
                                           "Content-Type": "application/octet-stream"})
    answered = time.perf_counter() - started
    if response.status_code != 202:
        raise RuntimeError(f"the POST of {video.name}: HTTP {response.status_code} {response.text[:300]}")
    return str(response.json()["job_id"]), answered


def poll_until_final(client: Vid2mp3, job_id: str, interval: float = 0.25) -> dict[str, Any]:
    deadline = time.monotonic() + JOB_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        job = client.job(job_id)
        if job["state"] in FINAL_STATES:
            if job["state"] != "done":
                raise RuntimeError(f"job {job_id} ended {job['state']}: {job.get('failure')}")
            return job
        time.sleep(interval)
    raise TimeoutError(f"job {job_id} not done after {JOB_TIMEOUT_SECONDS} s")


def raw_post(lab: Lab, shares: dict[str, Shares]) -> None:
    """(d) One raw POST of the whole 600 s video, then polling to done; what GridFS held for the job, watched from
    the POST's start until the job is deleted and all it stored is gone: the most at once (sampled four times a
    second) and all it stored (each file at its largest, whether or not they were there at once)."""
    video = lab.long.path(lab.inputs)
    try:
        lab.moviepy_run(video)
        with lab.settled_after(lab.other_user) as note:
            started = time.perf_counter()
            job_id, answered = post_whole_video(lab.other_user, video)
            job = poll_until_final(lab.other_user, job_id)
            elapsed = time.perf_counter() - started
            watch: GridFSWatch = note["watch"]
    except Exception as error:
        lab.error("the raw POST", error)
        return
    row = {"clip": lab.long.name, "seconds": elapsed, "answered_s": answered, "sent_bytes": video.stat().st_size,
           "gridfs_peak_bytes": watch.peak_bytes, "gridfs_peak_by_bucket_bytes": watch.peak_by_bucket,
           "gridfs_stored_bytes": sum(watch.stored_by_bucket().values()),
           "gridfs_stored_by_bucket_bytes": watch.stored_by_bucket(),
           "mp3_bytes": job["audio"]["size_bytes"], "settled_s": note["settled_s"], "job": job_summary([job])}
    lab.figures["raw_post"] = {"long": row}
    print(f"  {lab.long.name:<18} raw POST {elapsed:.2f} s (answered after {answered:.2f} s), GridFS peak "
          f"{watch.peak_bytes / MB:.1f} MB at once, {sum(watch.stored_by_bucket().values()) / MB:.1f} MB stored in all",
          flush=True)


SMALL_ALONE_RUNS = 3


def beside(lab: Lab, shares: dict[str, Shares]) -> None:
    """(e) A small job (the command converting the 600 s clip's audio track alone, 9.7 MB) alone, then again and
    again while another user's raw POST of the whole 600 s video is uploaded and converted, until that job is done
    and the whole video is gone from GridFS if it was ever stored there (deleting 460 MB holds the local FerretDB's
    write lock for seconds)."""
    from bench.conversion import token_subject  # bench/conversion.py runs this module's parts

    small, video = shares["long"].audio_file, lab.long.path(lab.inputs)
    target = lab.scratch / "small.mp3"
    endpoints = ENDPOINTS_FILE
    big_owner = token_subject(lab.other_user.token)

    def whole_video(held: HeldFile) -> bool:
        return held.owner_id == big_owner and held.length >= video.stat().st_size / 4

    try:
        alone = []
        for _ in range(SMALL_ALONE_RUNS):
            with lab.settled_after(lab.command.client):
                alone.append(lab.command.convert(small, target, endpoints).seconds)
        big: dict[str, Any] = {}

        def big_job() -> None:
            try:
                started = time.perf_counter()
                job_id, _ = post_whole_video(lab.other_user, video)
                poll_until_final(lab.other_user, job_id)
                big["seconds"] = time.perf_counter() - started
            except Exception as error:
                big["error"] = error

        besides: list[dict[str, float]] = []
        with lab.settled_after(lab.other_user) as note:
            watch: GridFSWatch = note["watch"]
            thread = threading.Thread(target=big_job, name="whole-video-post", daemon=True)
            started = time.perf_counter()
            thread.start()
            while thread.is_alive() or watch.lingering(keep=lambda held: not whole_video(held)):
                if "error" in big:
                    raise big["error"]
                if time.perf_counter() - started > JOB_TIMEOUT_SECONDS:
                    raise TimeoutError("the whole-video job was not done and gone in time")
                offset = time.perf_counter() - started
                with lab.settled_after(lab.command.client, wait=False):  # the whole video is coming and going
                    seconds = lab.command.convert(small, target, endpoints).seconds
                besides.append({"started_at_s": offset, "seconds": seconds})
            whole_video_gone = time.perf_counter() - started
            if "error" in big:
                raise big["error"]
    except Exception as error:
        lab.error("a small job beside a whole-video POST", error)
        return
    alone_median = statistics.median(alone)
    beside_seconds = [row["seconds"] for row in besides]
    lab.figures["small_job"] = {
        "file": small.name, "file_bytes": small.stat().st_size, "alone_s": alone, "beside": besides,
        "whole_video_job_s": big.get("seconds"), "whole_video_gone_s": whole_video_gone,
        "alone_median_s": alone_median, "beside_median_s": statistics.median(beside_seconds),
        "beside_max_s": max(beside_seconds), "ratio_median": statistics.median(beside_seconds) / alone_median,
        "ratio_max": max(beside_seconds) / alone_median,
    }
    print(f"  small job alone {alone_median:.2f} s; beside the whole-video job (done after "
          f"{big.get('seconds', float('nan')):.1f} s, gone after {whole_video_gone:.1f} s) {len(besides)} runs, "
          f"median {statistics.median(beside_seconds):.2f} s, max {max(beside_seconds):.2f} s", flush=True)


MP3_AUDIO_ROUNDS = 3


def mp3_audio(lab: Lab, shares: dict[str, Shares]) -> None:
    """(f) The 60 s clip whose audio is MP3 already through the command, beside moviepy, alternated."""
    video = lab.mp3_audio.path(lab.inputs)
    runs: list[dict[str, Any]] = []
    try:
        for _ in range(MP3_AUDIO_ROUNDS):
            lab.moviepy_run(video)
            runs.append(lab.command_through(video, None, "loopback"))
    except Exception as error:
        lab.error("the clip with MP3 audio", error)
        return
    seconds = statistics.median(run["seconds"] for run in runs)
    lab.figures["mp3_audio"] = {"mp3_audio": {"clip": lab.mp3_audio.name, "seconds": seconds,
                                              "runs_s": [run["seconds"] for run in runs],
                                              "sent_bytes": runs[-1]["sent_bytes"], "job": runs[-1]["job"]}}
    print(f"  {lab.mp3_audio.name:<18} vid2mp3 {seconds:.2f} s (median of {len(runs)}); moviepy "
          f"{lab.moviepy_median(video):.2f} s", flush=True)


MEASUREMENTS: dict[str, Callable[[Lab, dict[str, Shares]], None]] = {
    "loopback": loopback, "uplink": uplink, "web": web_page, "raw_post": raw_post, "beside": beside,
    "mp3_audio": mp3_audio,
}


def measure(report: Any, points: dict[str, str], database: Any, other_user: Vid2mp3, scratch: Path, *,
            parts: tuple[str, ...] = PARTS, home: Path = WORK_DIR, inputs: Path = INPUTS_DIR,
            long: RealClip = LONG, hd: RealClip = HD, mp3_audio: RealClip = MP3_AUDIO,
            web_video: Path | None = None) -> None:
    """Every part named in `parts`, in the order of PARTS, into report.figures["real_media"]; a part that fails is
    reported in report.errors and the others go on."""
    started = time.monotonic()
    scratch.mkdir(parents=True, exist_ok=True)
    lab = Lab(report, points, database, scratch, home, other_user, inputs=inputs, long=long, hd=hd,
              mp3_audio=mp3_audio, web_video=web_video)
    lab.figures["load_average_before"] = os.getloadavg()
    shares: dict[str, Shares] = {}
    clips = {"long": long, "hd": hd, "mp3_audio": mp3_audio}
    for role, clip in clips.items():
        shares[role] = shares_of(make_clip(clip, inputs), scratch)
        lab.figures.setdefault("clips", {})[role] = {
            "clip": clip.name, "seconds": shares[role].seconds, "video_bytes": shares[role].video_bytes,
            "video_mbit": clip.video_mbit, "audio_track_bytes": shares[role].audio_bytes,
            "cover_bytes": shares[role].cover_bytes}
    for part in PARTS:
        if part in parts:
            print(f"Real-bitrate media, {part}:", flush=True)
            MEASUREMENTS[part](lab, shares)
    lab.figures["moviepy_s"] = {role: {"clip": clip.name, "runs": lab.moviepy[clip.name],
                                       "median": lab.moviepy_median(clip.path(inputs))}
                                for role, clip in clips.items() if clip.name in lab.moviepy}
    lab.figures["load_average_after"] = os.getloadavg()
    lab.figures["bench_seconds"] = time.monotonic() - started


def ratios(figures: dict[str, Any]) -> dict[str, float | None]:
    """Each figure against its yardstick: speeds are moviepy's time over vid2mp3's (higher is better), times and
    bytes vid2mp3's over the yardstick (lower is better)."""
    moviepy = {role: row["median"] for role, row in figures.get("moviepy_s", {}).items()}
    clips = figures.get("clips", {})

    def seconds(part: str, role: str = "long") -> float | None:
        return figures.get(part, {}).get(role, {}).get("seconds")

    def over(numerator: float | None, denominator: float | None) -> float | None:
        return numerator / denominator if numerator is not None and denominator else None

    needed = clips.get("long", {}).get("audio_track_bytes", 0) + clips.get("long", {}).get("cover_bytes", 0)
    raw = figures.get("raw_post", {}).get("long", {})
    held_allowed = needed + raw["mp3_bytes"] if raw and clips.get("long") else None
    return {
        "command_loopback_speed": over(moviepy.get("long"), seconds("command_loopback")),
        "command_loopback_hd_speed": over(moviepy.get("hd"), seconds("command_loopback", "hd")),
        "command_uplink_time": over(seconds("command_uplink"), moviepy.get("long")),
        "command_uplink_sent": over(figures.get("command_uplink", {}).get("long", {}).get("sent_bytes"), needed),
        "command_loopback_sent": over(figures.get("command_loopback", {}).get("long", {}).get("sent_bytes"), needed),
        "web_page_time": over(seconds("web_page"), moviepy.get("long")),
        "web_page_sent": over(figures.get("web_page", {}).get("long", {}).get("sent_bytes"), needed),
        "raw_post_speed": over(moviepy.get("long"), seconds("raw_post")),
        "raw_post_gridfs_stored": over(raw.get("gridfs_stored_bytes"), held_allowed),
        "raw_post_gridfs_peak": over(raw.get("gridfs_peak_bytes"), held_allowed),
        "small_job_beside": figures.get("small_job", {}).get("ratio_median"),
        "small_job_beside_worst": figures.get("small_job", {}).get("ratio_max"),
        "mp3_audio_speed": over(moviepy.get("mp3_audio"), seconds("mp3_audio", "mp3_audio")),
    }


# (name, key in ratios(), limit, better): issue 23's targets on this 2-core machine.
TARGETS = (
    ("command, 600 s real-bitrate, loopback: speed vs moviepy", "command_loopback_speed", 1.2, "higher"),
    (f"command through {UPLINK_MBIT} Mbit/s: time to MP3 / moviepy", "command_uplink_time", 1.25, "lower"),
    (f"command through {UPLINK_MBIT} Mbit/s: bytes sent / (audio + cover)", "command_uplink_sent", 1.1, "lower"),
    ("web page: bytes sent / (audio + cover)", "web_page_sent", 1.1, "lower"),
    ("web page: time to the download / moviepy", "web_page_time", 1.5, "lower"),
    ("raw POST of the whole video: speed vs moviepy", "raw_post_speed", 0.8, "higher"),
    # Within 5 %: the server's copy of the audio and its JPEG differ from the bench's by a few kB.
    ("raw POST: all GridFS stored / (audio + cover + MP3)", "raw_post_gridfs_stored", 1.05, "lower"),
    ("small job beside a whole-video POST / alone (median)", "small_job_beside", 1.3, "lower"),
    ("60 s clip with MP3 audio, command: speed vs moviepy", "mp3_audio_speed", 1.5, "higher"),
)


def judge(report: Any) -> None:
    figures = report.figures.get("real_media")
    if not figures:
        return
    figures["ratios"] = ratios(figures)
    for name, key, limit, better in TARGETS:
        report.target(f"{name} (issue 23)", f"real_media.ratios.{key}", figures["ratios"][key], limit, better)


def print_table(report: Any) -> None:
    figures = report.figures.get("real_media")
    if not figures:
        return
    found = figures.get("ratios") or ratios(figures)
    status = {target["figure"].rsplit(".", 1)[-1]: target["status"] for target in report.targets
              if target["figure"].startswith("real_media.")}
    limits = {key: ("≥ " if better == "higher" else "≤ ") + f"{limit:g}" for _, key, limit, better in TARGETS}
    moviepy = {role: row["median"] for role, row in figures.get("moviepy_s", {}).items()}
    clips = figures.get("clips", {})
    print(f"\nReal-bitrate media (issue 23), side by side with the seed's moviepy method (load average "
          f"{figures['load_average_before'][0]:.1f} before, {figures['load_average_after'][0]:.1f} after):")
    for role, clip in clips.items():
        seed = f"; moviepy {moviepy[role]:.2f} s (median of {len(figures['moviepy_s'][role]['runs'])})" \
            if role in moviepy else ""
        print(f"  {clip['clip']}: {clip['video_bytes'] / MB:.1f} MB, audio track {clip['audio_track_bytes'] / MB:.2f}"
              f" MB, cover {clip['cover_bytes'] / 1000:.0f} kB{seed}")
    print(f"  {'figure':<58}{'vid2mp3':>10}{'sent':>10}  {'ratio':>7} {'target':>7}")

    def row(label: str, seconds: float | None, sent: int | None, key: str) -> None:
        value = found.get(key)
        shown = "-" if value is None else f"{value:.2f}"
        print(f"  {label:<58}{'-' if seconds is None else f'{seconds:.2f} s':>10}"
              f"{'-' if sent is None else f'{sent / MB:.1f} MB':>10}  {shown:>7} {limits.get(key, ''):>7} "
              f"{status.get(key, '')}")

    def part(name: str, role: str = "long") -> dict[str, Any]:
        return dict(figures.get(name, {}).get(role, {}))

    loop, hd, up, web = part("command_loopback"), part("command_loopback", "hd"), part("command_uplink"), \
        part("web_page")
    raw, small, mp3 = part("raw_post"), figures.get("small_job", {}), part("mp3_audio", "mp3_audio")
    row("(a) command, 600 s, loopback: speed vs moviepy", loop.get("seconds"), loop.get("sent_bytes"),
        "command_loopback_speed")
    row("    sent / (audio + cover)", None, None, "command_loopback_sent")
    row("(a) command, 1080p 60 s at 12 Mbit/s, loopback: speed", hd.get("seconds"), hd.get("sent_bytes"),
        "command_loopback_hd_speed")
    row(f"(b) command through {UPLINK_MBIT} Mbit/s: time / moviepy", up.get("seconds"), up.get("sent_bytes"),
        "command_uplink_time")
    row("    sent / (audio + cover)", None, None, "command_uplink_sent")
    row("(c) web page: time to the download / moviepy", web.get("seconds"), web.get("sent_bytes"), "web_page_time")
    row("    sent / (audio + cover)", None, None, "web_page_sent")
    if "browser_peak_pss_mb" in web:
        print(f"      the browser's memory at most (PSS of its processes): {web['browser_peak_pss_mb']:.0f} MB")
    row("(d) raw POST, then polling: speed vs moviepy", raw.get("seconds"), raw.get("sent_bytes"), "raw_post_speed")
    row(f"    GridFS: all stored, {raw.get('gridfs_stored_bytes', 0) / MB:.1f} MB / (audio + cover + MP3)", None,
        None, "raw_post_gridfs_stored")
    row(f"    GridFS: the most at once, {raw.get('gridfs_peak_bytes', 0) / MB:.1f} MB / (audio + cover + MP3)", None,
        None, "raw_post_gridfs_peak")
    row(f"(e) small job beside a whole-video POST / alone ({small.get('alone_median_s', 0):.2f} s)",
        small.get("beside_median_s"), None, "small_job_beside")
    row("    the worst of them / alone", small.get("beside_max_s"), None, "small_job_beside_worst")
    row("(f) 60 s clip with MP3 audio, command: speed vs moviepy", mp3.get("seconds"), mp3.get("sent_bytes"),
        "mp3_audio_speed")
    for name in ("command_loopback", "command_uplink"):
        for said in part(name).get("said", []):
            print(f"  the command said: {said}")
    print(f"  (this part took {figures.get('bench_seconds', 0):.0f} s)")


def main() -> int:
    from bench.conversion import Report, rounded, stack_client  # bench/conversion.py runs this module's parts

    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("--parts", default=",".join(PARTS), help=f"some of {','.join(PARTS)}")
    arguments.add_argument("--web-video", type=Path, help="the file the web page converts in part (c), instead of the "
                           "600 s clip (its time and memory, without moviepy beside it)")
    chosen = arguments.parse_args()
    parts = tuple(part for part in chosen.parts.split(",") if part)
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise SystemExit(f"no such part: {', '.join(sorted(unknown))}")
    points = dict(line.split("=", 1) for line in ENDPOINTS_FILE.read_text().splitlines() if "=" in line)
    database: Any = pymongo.MongoClient(points["MONGO_URI"], tz_aware=True)["vid2mp3"]
    report = Report()
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    scratch = WORK_DIR / "scratch"
    scratch.mkdir(exist_ok=True)
    measure(report, points, database, stack_client(points), scratch, parts=parts, web_video=chosen.web_video)
    judge(report)
    print_table(report)
    report.print_targets("Targets:")
    RESULTS_FILE.write_text(json.dumps(rounded({"figures": report.figures, "targets": report.targets,
                                                "errors": report.errors, "finished_at": time.time()}),
                                       indent=2, default=str) + "\n")
    print(f"\nJSON in {RESULTS_FILE.relative_to(ROOT)}")
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
