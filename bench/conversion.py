"""`make bench`: measures vid2mp3 on the running local stack beside plain ffmpeg on the same files, and prints a
table, PASS/MISS per target of issue 6, and JSON (also written to .local/bench/results.json).

Figures, each a median of a few runs where cheap:
- convert step: the real `Converter` driven in-process with its real GridFS stores (FerretDB at MONGO_URI), job
  records and an EventEmitter posting to the real broker ingress; GridFS in and out, the input's ffprobe, the
  output's MP3 check, the lease and the event included. Timed per phase, so a miss shows where the time goes.
- end to end: upload request sent → io.vid2mp3.audio.converted.v1 observed on a temporary queue of our own bound to
  the broker exchange (a headers binding on the event type), through the running upload and convert functions.
- throughput: 20 clips uploaded at once → MP3s per minute, with the CPU time each stack process used meanwhile.
- memory: the upload function's gunicorn worker's VmHWM (reset through /proc/PID/clear_refs) while it receives a
  256 MiB and a 1 GiB body (an MP4 header and filler: accepted, stored, then failing conversion as not media);
  the convert worker's peak beside its idle RSS over one job.
- upload throughput into GridFS against a bare pymongo GridFSBucket upload of the same bytes.
- GridFS lookups: reading a 1 MiB file with 0, 32 and 64 MiB beside it, pymongo's GridFSBucket against MediaStore.
- tracing: what telemetry costs the convert step on the 60 s clip, and its phases read from the spans
  (bench/tracing.py).
- real-bitrate media: the command, the web page and raw POSTs on clips at phones' bitrates, beside the seed's
  moviepy method, with the bytes sent and what GridFS held (bench/real_media.py).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import platform
import secrets
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import gridfs
import pika
import pymongo
import requests
from vid2mp3_client.api import Vid2mp3

from bench import lifetimes as bench_lifetimes
from bench import options as bench_options
from bench import real_media as bench_real_media
from bench import segments as bench_segments
from bench import split_chapters as bench_split
from bench import tracing as bench_tracing
from bench import zip_download as bench_zip
from events import EventEmitter, VideoUploaded
from events.catalog import AUDIO_CONVERTED, CONVERSION_FAILED
from functions.convert.conversion import Converter
from jobs.records import Jobs, JobState
from runtime.clock import now
from runtime.settings import ConvertSettings
from stack import servers
from stack.config import ENDPOINTS_FILE, ROOT, RUN
from storage import media
from storage.media import AUDIO, TRACKS, VIDEOS, JobSources, MediaStore, StoredFile
from tests.support import stage_job
from transcoding import ffmpeg_tools, plan
from transcoding.plan import FanOutPolicy

# Inputs and results stay in the work tree even when the stack under test keeps its state elsewhere
# (VID2MP3_LOCAL_DIR, VID2MP3_PORT_BASE: a stack instance of its own).
BENCH_DIR = ROOT / ".local" / "bench"
INPUTS_DIR = BENCH_DIR / "inputs"
RESULTS_FILE = BENCH_DIR / "results.json"
MIB = 1024 * 1024
BITRATE_KBPS: Literal[192] = 192
EVENT_TIMEOUT_SECONDS = 120
THROUGHPUT_CLIPS = 20


# --- Inputs ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Clip:
    name: str
    size: str
    seconds: int
    audio: tuple[str, ...]
    suffix: str = "mp4"
    sample_rate: int = 44100
    repetitions: int = 3
    frame_rate: int = 30

    @property
    def path(self) -> Path:
        return INPUTS_DIR / f"{self.name}.{self.suffix}"


AAC = ("-c:a", "aac", "-b:a", "128k")
CLIPS = {clip.name: clip for clip in (
    Clip("360p-10s", "640x360", 10, AAC, repetitions=5),
    Clip("360p-60s", "640x360", 60, AAC),
    Clip("360p-600s", "640x360", 600, AAC, repetitions=2),
    # An hour of video at 10 frames a second: the audio is what is measured; 30 would only make it slower to make.
    Clip("360p-3600s", "640x360", 3600, AAC, repetitions=1, frame_rate=10),
    Clip("720p-60s", "1280x720", 60, AAC),
    Clip("360p-60s-mp3", "640x360", 60, ("-c:a", "libmp3lame", "-b:a", "192k")),
    Clip("360p-60s-opus", "640x360", 60, ("-c:a", "libopus", "-b:a", "128k"), suffix="mkv", sample_rate=48000),
)}


def make_inputs(clips: Iterable[Clip] = CLIPS.values()) -> None:
    """The lavfi recipe of ../shared/notes/media-performance.md; made once, kept in .local/bench/inputs."""
    INPUTS_DIR.mkdir(parents=True, exist_ok=True)
    for clip in clips:
        if clip.path.exists():
            continue
        print(f"  making {clip.path.name} ...", flush=True)
        partial = clip.path.with_name(f"partial-{clip.path.name}")
        subprocess.run([
            "ffmpeg", "-nostdin", "-v", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size={clip.size}:rate={clip.frame_rate}:duration={clip.seconds}",
            "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={clip.sample_rate}:duration={clip.seconds}",
            "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", *clip.audio, "-ac", "2", "-shortest",
            str(partial),
        ], check=True)
        partial.replace(clip.path)


# --- Processes of the stack --------------------------------------------------------------------------------------

def children(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def process_tree(pid: int) -> list[int]:
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        pending += children(current)
    return tree


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def function_worker(name: str) -> int:
    """The gunicorn worker of function `name`: the child of the functions-framework process (gunicorn's master)."""
    master = read_pid(RUN / f"{name}.child.pid")
    workers = children(master) if master else []
    if not workers:
        raise RuntimeError(f"no worker process of the {name} function: is the stack up (`make up`)?")
    return workers[0]


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def reset_peak_rss(pid: int) -> None:
    """Linux ≥ 4.0: writing 5 to clear_refs resets VmHWM to the current RSS."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(own user+system time, time of its waited-for children) of one process; zeros when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    utime, stime, cutime, cstime = (int(value) for value in fields[11:15])
    return (utime + stime) / CLOCK_TICKS, (cutime + cstime) / CLOCK_TICKS


def stack_components() -> dict[str, list[int]]:
    """Root pids of the stack's processes by name; each is measured with its whole process tree."""
    roots = {path.stem: pid for path in sorted(RUN.glob("*.pid"))
             if not path.stem.endswith(".child") and (pid := read_pid(path))}
    rabbit = read_pid(servers.RABBITMQ_PID)
    if rabbit:
        roots["rabbitmq"] = rabbit
    return {name: process_tree(pid) for name, pid in roots.items()}


def cpu_snapshot() -> dict[str, float]:
    """CPU seconds used so far per stack component; for convert, its ffmpeg/ffprobe children apart."""
    totals: dict[str, float] = {}
    convert_worker = function_worker("convert")
    for name, pids in stack_components().items():
        for pid in pids:
            own, waited = cpu_seconds(pid)
            if pid == convert_worker:
                totals["convert (ffmpeg, ffprobe)"] = waited
                totals[name] = totals.get(name, 0.0) + own
            else:
                totals[name] = totals.get(name, 0.0) + own + waited
    return totals


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all cores so far, from /proc/stat."""
    values = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


# --- Plain ffmpeg ---------------------------------------------------------------------------------------------

@dataclass
class Run:
    seconds: float
    peak_rss_mib: float = 0.0


def timed_process(command: list[str]) -> Run:
    """Wall time and peak RSS (from wait4's rusage) of one process."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    assert process.stderr is not None
    errors = process.stderr.read().decode(errors="replace")
    process.stderr.close()
    if process.returncode != 0:
        raise RuntimeError(f"{command[0]} failed: {errors[-500:]}")
    return Run(elapsed, usage.ru_maxrss / 1024)


def plain_ffmpeg(source: Path, target: Path, copy: bool = False) -> Run:
    audio = ["-c:a", "copy"] if copy else ["-c:a", "libmp3lame", "-b:a", f"{BITRATE_KBPS}k"]
    return timed_process(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(source), "-vn", *audio,
                          str(target)])


# --- The convert step, in-process, timed per phase ---------------------------------------------------------------

class Phases:
    """Seconds spent per phase of one conversion; a phase inside another counts for itself only."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.nested: list[float] = []  # per open phase: time already counted by phases inside it

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        self.nested.append(0.0)
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            inner = self.nested.pop()
            self.seconds[name] = self.seconds.get(name, 0.0) + elapsed - inner
            if self.nested:
                self.nested[-1] += elapsed

    def wrap(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.phase(name):
                return function(*args, **kwargs)
        return timed


class TimedStore(MediaStore):
    phases: Phases

    def copy_to(self, file_id: str, destination: Any) -> bool:
        with self.phases.phase("GridFS read"):
            return super().copy_to(file_id, destination)

    def store_file(self, file_id: str, source: Any, *, filename: str, metadata: dict[str, Any]) -> StoredFile:
        with self.phases.phase("GridFS write"):
            return super().store_file(file_id, source, filename=filename, metadata=metadata)

    def remove(self, file_id: str) -> None:
        with self.phases.phase("GridFS remove"):
            super().remove(file_id)


class TimedSources(JobSources):
    """A job's source and covers, read and removed as timed phases (the upload stored them)."""

    phases: Phases

    def copy_source_to(self, job: dict[str, Any], destination: Any) -> bool:
        with self.phases.phase("GridFS read"):
            return super().copy_source_to(job, destination)

    def copy_covers_to(self, job: dict[str, Any], folder: Path) -> dict[str, Path] | None:
        with self.phases.phase("GridFS read"):
            return super().copy_covers_to(job, folder)

    def remove(self, job: dict[str, Any], pace: Callable[[], None] = lambda: None) -> None:
        with self.phases.phase("GridFS remove"):
            super().remove(job, pace)


class TimedJobs(Jobs):
    """Job records with each call the converter makes timed as one phase."""

    phases: Phases

    def __getattribute__(self, name: str) -> Any:
        attribute = super().__getattribute__(name)
        if name in ("get", "claim_conversion", "renew_lease", "release", "finish", "fail", "flush_pending"):
            return self.phases.wrap("job records", attribute)
        return attribute


class TimedEmitter(EventEmitter):
    phases: Phases

    def emit(self, payload: Any) -> None:
        with self.phases.phase("event emit"):
            super().emit(payload)


@dataclass
class ConvertBench:
    """The real Converter on the stack's FerretDB and broker ingress; each job a fresh upload of a bench user."""

    database: Any
    ingress_url: str
    owner_id: str
    phases: Phases = field(default_factory=Phases)

    def __post_init__(self) -> None:
        work_dir = BENCH_DIR / "work"
        work_dir.mkdir(parents=True, exist_ok=True)
        self.audio = TimedStore(self.database, AUDIO)
        self.sources = TimedSources(self.database)
        emitter = TimedEmitter(self.ingress_url, "convert")
        self.jobs = TimedJobs(self.database)
        for part in (self.audio, self.sources, emitter, self.jobs):
            part.phases = self.phases
        self.emitter, self.work_dir = emitter, work_dir
        self.converter = self.converter_with(fan_out=None)

    def converter_with(self, fan_out: FanOutPolicy | None) -> Converter:
        """The convert function's Converter: this machine's CPUs, the deployment's segment threshold."""
        return Converter(
            jobs=self.jobs, sources=self.sources, audio=self.audio, emitter=self.emitter, work_dir=self.work_dir,
            max_duration_seconds=3 * 3600, max_streams=32, ffmpeg_timeout_seconds=150,
            audio_retention=timedelta(hours=24), cpus=plan.usable_cpus(),
            segment_min_seconds=ConvertSettings.model_fields["segment_min_seconds"].default, fan_out=fan_out,
            tracks=MediaStore(self.database, TRACKS),
        )

    def stage(self, source: Path) -> VideoUploaded:
        """What the upload function leaves behind (its event is not sent: this process converts the job)."""
        return stage_job(self.database, source, self.owner_id, BITRATE_KBPS)

    def run(self, source: Path) -> tuple[float, dict[str, float], dict[str, Any]]:
        event = self.stage(source)
        self.phases.seconds = {}
        patches = {"verify": self.phases.wrap("MP3 check (output)", ffmpeg_tools.verify)}
        originals = {name: getattr(ffmpeg_tools, name) for name in patches}
        for name, patched in patches.items():
            setattr(ffmpeg_tools, name, patched)
        # ffmpeg starts beside ffprobe (conversion.py): their wall time is one phase.
        self.converter.transcode = self.phases.wrap("ffprobe and ffmpeg, side by side",  # type: ignore[method-assign]
                                                    self.converter.transcode)
        try:
            started = time.perf_counter()
            self.converter.handle(event)
            elapsed = time.perf_counter() - started
        except BaseException:
            self.discard(event.job_id)
            raise
        finally:
            for name, original in originals.items():
                setattr(ffmpeg_tools, name, original)
            del self.converter.transcode
        job = Jobs.get(self.jobs, event.job_id) or {}
        self.discard(event.job_id)
        if job.get("state") != "done":
            raise RuntimeError(f"job {event.job_id} ended {job.get('state')}: {job.get('failure')}")
        phases = dict(self.phases.seconds)
        phases["other (temp files, Python)"] = elapsed - sum(phases.values())
        return elapsed, phases, job

    def discard(self, job_id: str) -> None:
        """Leaves nothing of a bench job behind, so that every measurement starts from the same stored media."""
        MediaStore.remove(self.audio, job_id)
        self.sources.remove_kept(job_id)
        Jobs.delete(self.jobs, job_id)


# --- End to end through the stack --------------------------------------------------------------------------------

class EventWatch:
    """A temporary queue of our own bound to the broker exchange for the audio-converted and conversion-failed
    events: notes when each job's event arrives."""

    def __init__(self, amqp_url: str, exchange: str) -> None:
        self.amqp_url, self.exchange = amqp_url, exchange
        self.arrivals: dict[str, tuple[float, float, str]] = {}  # job id → (monotonic, wall clock, event type)
        self.condition = threading.Condition()
        self.ready = threading.Event()
        self.stopping = False
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._consume, name="event-watch", daemon=True)

    def __enter__(self) -> EventWatch:
        self.thread.start()
        if not self.ready.wait(30) or self.failure:
            raise RuntimeError(f"could not bind a queue to {self.exchange}: {self.failure}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping = True
        self.thread.join(10)

    def _consume(self) -> None:
        while not self.stopping:
            try:
                connection = pika.BlockingConnection(pika.URLParameters(self.amqp_url))
                channel = connection.channel()
                queue = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
                for event_type in (AUDIO_CONVERTED, CONVERSION_FAILED):
                    channel.queue_bind(queue, self.exchange, arguments={"x-match": "all", "type": event_type})
                channel.basic_consume(queue, self._on_message, auto_ack=True)
                self.ready.set()
                while not self.stopping:
                    connection.process_data_events(time_limit=0.1)
                connection.close()
            except pika.exceptions.AMQPError as error:
                # The shared broker may restart under us: bind again (events meanwhile are lost, and the wait
                # for them times out and is reported).
                if not self.ready.is_set():
                    self.failure = error
                    self.ready.set()
                    return
                print(f"  (event watch: {type(error).__name__}; binding again)", flush=True)
                time.sleep(1)


    def _on_message(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        arrived, wall = time.monotonic(), time.time()
        headers = properties.headers or {}
        job_id = headers.get("subject")
        if not job_id:
            with contextlib.suppress(ValueError):
                job_id = json.loads(body).get("job_id")
        if job_id:
            with self.condition:
                self.arrivals.setdefault(str(job_id), (arrived, wall, str(headers.get("type"))))
                self.condition.notify_all()

    def wait(self, job_ids: list[str], timeout: float = EVENT_TIMEOUT_SECONDS) -> dict[str, tuple[float, float, str]]:
        deadline = time.monotonic() + timeout
        with self.condition:
            while not all(job_id in self.arrivals for job_id in job_ids):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    missing = [job_id for job_id in job_ids if job_id not in self.arrivals]
                    raise TimeoutError(f"no audio-converted/conversion-failed event after {timeout:.0f} s for "
                                       f"{len(missing)} job(s), e.g. {missing[0]}")
                self.condition.wait(remaining)
            return {job_id: self.arrivals[job_id] for job_id in job_ids}


def stack_client(points: dict[str, str]) -> Vid2mp3:
    """A bench user of its own (signed up once; its password kept under .local/bench)."""
    credentials = BENCH_DIR / "credentials"
    if not credentials.exists():
        credentials.write_text(f"bench@vid2mp3.local\n{secrets.token_urlsafe(18)}\n")
        credentials.chmod(0o600)
    email, password = credentials.read_text().split()[:2]
    client = Vid2mp3(points["AUTH_URL"], points["UPLOAD_URL"], points["STATUS_URL"], points["DOWNLOAD_URL"])
    client.sign_up_or_log_in(email, password)
    return client


def token_subject(token: str) -> str:
    payload = token.split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"])


@dataclass
class EndToEnd:
    client: Vid2mp3
    watch: EventWatch
    database: Any
    job_ids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.jobs, self.audio = Jobs(self.database), MediaStore(self.database, AUDIO)

    def upload(self, source: Path, client: Vid2mp3 | None = None) -> str:
        job_id = str((client or self.client).upload(source, BITRATE_KBPS)["job_id"])
        self.job_ids.append(job_id)
        return job_id

    def run(self, source: Path) -> tuple[float, dict[str, float]]:
        """Seconds from sending the upload request to observing its event, and where they went (from the job's
        own history: uploaded = stored and recorded, converting = claimed by convert, done)."""
        started = time.monotonic()
        job_id = self.upload(source)
        answered = time.monotonic()
        arrived, arrived_wall, event_type = self.watch.wait([job_id])[job_id]
        job = self.settled(job_id)
        self.audio.remove(job_id)  # each measurement starts from the same stored media: see discard
        if event_type != AUDIO_CONVERTED:
            raise RuntimeError(f"job {job_id}: {event_type}: {job.get('failure')}")
        history = {step["state"]: step["at"].timestamp() for step in job["history"]}
        return arrived - started, {
            "upload request": answered - started,
            "queue: uploaded → claimed": history["converting"] - history["uploaded"],
            "convert function": history["done"] - history["converting"],
            "event: done → observed": arrived_wall - history["done"],
        }

    def settled(self, job_id: str, timeout: float = 120.0) -> dict[str, Any]:
        """The job once the convert function has also deleted its source video (after emitting the event), so the
        next measurement does not share FerretDB with this job's clean-up."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.jobs.get(job_id) or {}
            if "video_deleted_at" in job or job.get("state") != JobState.DONE or time.monotonic() > deadline:
                return job
            time.sleep(0.02)

    def clean_up(self) -> None:
        """Removes what the bench's uploads left: MP3s, source videos of failed jobs, job records."""
        for job_id in self.job_ids:
            self.audio.remove(job_id)
            MediaStore(self.database, VIDEOS).remove(job_id)
            self.jobs.delete(job_id)


# --- Upload bodies ----------------------------------------------------------------------------------------------

class FillerBody:
    """A body of `size` bytes made on the fly: an MP4 `ftyp` box and an `mdat` box header (so the upload function
    accepts it as MP4) followed by filler; its length lets requests send a Content-Length."""

    BLOCK = os.urandom(MIB)

    def __init__(self, size: int) -> None:
        header = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"
        self.head = header + (size - len(header)).to_bytes(4, "big") + b"mdat"
        self.size, self.position = size, 0

    def __len__(self) -> int:
        return self.size - self.position

    def read(self, size: int = -1) -> bytes:
        """Exactly `size` bytes until the end (GridIn takes a short read for the end of the stream)."""
        remaining = self.size - self.position
        size = remaining if size is None or size < 0 else min(size, remaining)
        parts: list[bytes] = []
        wanted = size
        while wanted > 0:
            if self.position < len(self.head):
                part = self.head[self.position:self.position + wanted]
            else:
                offset = (self.position - len(self.head)) % MIB
                part = self.BLOCK[offset:offset + wanted]
            parts.append(part)
            self.position += len(part)
            wanted -= len(part)
        return b"".join(parts)


class PeakSampler:
    """The most that `measure()` (KiB) gave while the block ran, sampled every `interval` seconds in a thread."""

    def __init__(self, measure: Callable[[], int], interval: float) -> None:
        self.measure, self.interval, self.peak_kib, self.stopping = measure, interval, 0, False
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self.stopping:
            with contextlib.suppress(OSError, KeyError):
                self.peak_kib = max(self.peak_kib, self.measure())
            time.sleep(self.interval)

    def __enter__(self) -> PeakSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping = True
        self.thread.join()


def rss_sampler(pid: int) -> PeakSampler:
    """A process's VmRSS every 20 ms (a cross-check of VmHWM)."""
    return PeakSampler(lambda: status_kib(pid, "VmRSS"), 0.02)


# --- The run -----------------------------------------------------------------------------------------------------

@dataclass
class Report:
    figures: dict[str, Any] = field(default_factory=dict)
    targets: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def target(self, name: str, figure: str, value: float | None, limit: float, better: str) -> None:
        passed = value is not None and (value <= limit if better == "lower" else value >= limit)
        self.targets.append({"target": name, "figure": figure, "value": value, "limit": limit, "better": better,
                             "status": "PASS" if passed else "MISS"})

    def print_targets(self, heading: str) -> None:
        print(f"\n{heading}")
        for target in self.targets:
            value = "-" if target["value"] is None else f"{target['value']:.3f}"
            sign = "<=" if target["better"] == "lower" else ">="
            print(f"  {target['status']:<5} {target['target']:<70} {value:>9}  ({sign} {target['limit']:g})")
        for error in self.errors:
            print(f"  ERROR {error}")


def median(values: list[float]) -> float:
    return statistics.median(values)


def rounded(value: Any, digits: int = 3) -> Any:
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {key: rounded(item, digits) for key, item in value.items()}
    if isinstance(value, list):
        return [rounded(item, digits) for item in value]
    return value


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")),
                 platform.processor())
    memory_kib = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                          if line.startswith("MemTotal")))
    ffmpeg_version = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True,
                                    check=True).stdout.splitlines()[0]
    return {"nproc": os.cpu_count(), "cpu_model": model, "ram_gib": round(memory_kib / MIB, 1),
            "ffmpeg": ffmpeg_version, "kernel": platform.release(), "python": platform.python_version(),
            "mongo": "FerretDB on SQLite (local stack)", "chunk_bytes": media.CHUNK_BYTES}


def convert_step(report: Report, bench: ConvertBench, scratch: Path) -> dict[str, float]:
    """Plain ffmpeg and the convert step, alternated run by run on each clip; returns plain medians by clip."""
    plain_medians: dict[str, float] = {}
    for clip in CLIPS.values():
        plain: list[Run] = []
        steps: list[float] = []
        phases: list[dict[str, float]] = []
        try:
            for _ in range(clip.repetitions):
                plain.append(plain_ffmpeg(clip.path, scratch / "plain.mp3"))
                elapsed, phase_seconds, job = bench.run(clip.path)
                steps.append(elapsed)
                phases.append(phase_seconds)
        except Exception as error:
            report.errors.append(f"convert step, {clip.name}: {type(error).__name__}: {str(error)[:300]}")
            while len(plain) < clip.repetitions:
                plain.append(plain_ffmpeg(clip.path, scratch / "plain.mp3"))
        plain_medians[clip.name] = median([run.seconds for run in plain])
        if clip.name == "360p-60s-mp3":
            copied = median([plain_ffmpeg(clip.path, scratch / "copy.mp3", copy=True).seconds for _ in range(5)])
            report.figures["plain_copy_speedup"] = plain_medians[clip.name] / copied
        entry: dict[str, Any] = {
            "plain_ffmpeg_s": plain_medians.get(clip.name),
            "plain_ffmpeg_peak_rss_mib": max((run.peak_rss_mib for run in plain), default=None),
            "runs": len(steps),
        }
        if steps:
            entry.update({
                "convert_step_s": median(steps),
                "ratio": median(steps) / plain_medians[clip.name],
                "added_s": median(steps) - plain_medians[clip.name],
                "stream_copied": bool(job.get("audio", {}).get("stream_copied")),
                "phases_s": {name: median([p.get(name, 0.0) for p in phases]) for name in phases[0]},
            })
            # What vid2mp3 itself adds, were GridFS free (as it nearly is on MongoDB with its indexes).
            gridfs_seconds = sum(value for key, value in entry["phases_s"].items() if key.startswith("GridFS"))
            entry["ratio_without_gridfs"] = (entry["convert_step_s"] - gridfs_seconds) / plain_medians[clip.name]
        report.figures.setdefault("convert_step", {})[clip.name] = entry
        print(f"  {clip.name:<16} plain {entry['plain_ffmpeg_s'] or float('nan'):.3f} s   "
              f"convert step {entry.get('convert_step_s', float('nan')):.3f} s", flush=True)
    return plain_medians


def ffmpeg_overheads(report: Report, scratch: Path) -> None:
    """What the convert step's own ffmpeg and ffprobe invocations cost beside plain ffmpeg (no GridFS)."""
    rows: dict[str, Any] = {}
    for name in ("360p-10s", "360p-60s"):
        clip = CLIPS[name]
        target = scratch / "flags.mp3"
        command = ffmpeg_tools.conversion_command(clip.path, target, copy=False, bitrate_kbps=BITRATE_KBPS,
                                                  max_duration=3 * 3600)
        direct, through_run, probes = [], [], []
        for _ in range(5):
            direct.append(timed_process(ffmpeg_tools.limited(command, 155)).seconds)
            started = time.perf_counter()
            ffmpeg_tools.run(command, expected_duration=clip.seconds, timeout=150, heartbeat=lambda _: True)
            through_run.append(time.perf_counter() - started)
            started = time.perf_counter()
            ffmpeg_tools.probe(clip.path, max_streams=32, max_duration=3 * 3600)
            probes.append(time.perf_counter() - started)
        rows[name] = {"vid2mp3_command_direct_s": median(direct), "through_ffmpeg_tools_run_s": median(through_run),
                      "ffprobe_s": median(probes)}
    report.figures["ffmpeg_invocation"] = rows


def end_to_end(report: Report, e2e: EndToEnd, plain: dict[str, float]) -> None:
    converted = report.figures.get("convert_step", {})
    for name, repetitions in (("360p-10s", 3), ("360p-60s", 3), ("720p-60s", 3), ("360p-60s-mp3", 1),
                              ("360p-60s-opus", 1), ("360p-600s", 1)):
        if "convert_step_s" not in converted.get(name, {}):
            report.errors.append(f"end to end, {name}: skipped, the convert step failed on it (see above)")
            continue
        try:
            runs = [e2e.run(CLIPS[name].path) for _ in range(repetitions)]
        except Exception as error:
            report.errors.append(f"end to end, {name}: {type(error).__name__}: {str(error)[:300]}")
            continue
        seconds = median([run[0] for run in runs])
        entry = {"end_to_end_s": seconds, "plain_ffmpeg_s": plain.get(name), "runs": repetitions,
                 "ratio": seconds / plain[name] if plain.get(name) else None,
                 "breakdown_s": {key: median([run[1][key] for run in runs]) for key in runs[0][1]}}
        report.figures.setdefault("end_to_end", {})[name] = entry
        print(f"  {name:<16} end to end {seconds:.3f} s", flush=True)


def throughput(report: Report, e2e: EndToEnd, plain: dict[str, float]) -> None:
    clip = CLIPS["360p-60s"]

    def upload(_: int) -> str:
        client = Vid2mp3(e2e.client.auth_url, e2e.client.upload_url, e2e.client.status_url,
                         e2e.client.download_url, token=e2e.client.token)
        return e2e.upload(clip.path, client)

    cpu_before, busy_before = cpu_snapshot(), machine_busy()
    started, started_wall = time.monotonic(), time.time()
    with ThreadPoolExecutor(THROUGHPUT_CLIPS) as pool:
        job_ids = list(pool.map(upload, range(THROUGHPUT_CLIPS)))
    uploaded = time.monotonic() - started
    arrivals = e2e.watch.wait(job_ids)
    elapsed = max(arrived for arrived, _, _ in arrivals.values()) - started
    cpu_after, busy_after = cpu_snapshot(), machine_busy()
    failed = sum(1 for *_, event_type in arrivals.values() if event_type != AUDIO_CONVERTED)
    histories = [{step["state"]: step["at"].timestamp() for step in (e2e.jobs.get(job_id) or {}).get("history", [])}
                 for job_id in job_ids]
    convert_seconds = [history["done"] - history["converting"] for history in histories
                       if "done" in history and "converting" in history]
    for job_id in job_ids:
        e2e.audio.remove(job_id)
    per_minute = (THROUGHPUT_CLIPS - failed) * 60 / elapsed
    baseline = 60 / plain[clip.name]
    cores = os.cpu_count() or 1
    cpu_used = {name: cpu_after.get(name, 0.0) - cpu_before.get(name, 0.0) for name in cpu_after}
    report.figures["throughput"] = {
        "clips": THROUGHPUT_CLIPS, "clip": clip.name, "failed": failed, "all_uploads_answered_s": uploaded,
        "last_upload_stored_s": max(history.get("uploaded", 0.0) for history in histories) - started_wall,
        "elapsed_s": elapsed, "mp3_per_minute": per_minute, "plain_one_at_a_time_per_minute": baseline,
        "ratio": per_minute / baseline,
        "convert_function_s": {"median": median(convert_seconds), "max": max(convert_seconds)}
        if convert_seconds else None,
        "machine_busy_fraction": (busy_after[0] - busy_before[0]) / max(1, busy_after[1] - busy_before[1]),
        "cpu_seconds_by_process": dict(sorted(((key, value) for key, value in cpu_used.items() if value >= 0.05),
                                              key=lambda item: -item[1])),
        "cpu_seconds_available": elapsed * cores,
    }
    print(f"  {THROUGHPUT_CLIPS} x {clip.name}: {elapsed:.2f} s -> {per_minute:.1f} MP3/min", flush=True)


def bare_gridfs_upload(report: Report, database: Any) -> None:
    """The same 256 MiB body through a bare pymongo GridFSBucket, in a scratch database (dropped afterwards)."""
    bare: dict[str, Any] = {}
    scratch_db = database.client["vid2mp3bench"]
    for label, chunk_bytes in (("default 255 KiB chunks", 255 * 1024), ("1 MiB chunks", media.CHUNK_BYTES)):
        bucket = gridfs.GridFSBucket(scratch_db, bucket_name="bare", chunk_size_bytes=chunk_bytes)
        started = time.monotonic()
        file_id = bucket.upload_from_stream("bare", FillerBody(256 * MIB))
        elapsed = time.monotonic() - started
        bucket.delete(file_id)
        bare[label] = {"bytes": 256 * MIB, "seconds": elapsed, "mib_per_s": 256 / elapsed}
        print(f"  bare GridFSBucket, {label}: {elapsed:.1f} s", flush=True)
    database.client.drop_database("vid2mp3bench")
    report.figures["bare_gridfs_upload"] = bare


def upload_memory_and_speed(report: Report, e2e: EndToEnd) -> None:
    """The upload worker's peak RSS per body size, and its throughput into GridFS."""
    videos = MediaStore(e2e.database, VIDEOS)
    session = requests.Session()
    rows: dict[str, Any] = {}
    for label, size in (("256 MiB", 256 * MIB), ("1 GiB", 1024 * MIB)):
        worker = function_worker("upload")
        idle = status_kib(worker, "VmRSS")
        reset_peak_rss(worker)
        with rss_sampler(worker) as sampler:
            started = time.monotonic()
            response = session.post(e2e.client.upload_url, data=FillerBody(size), timeout=(30, 1800), headers={
                "Authorization": f"Bearer {e2e.client.token}", "Content-Type": "application/octet-stream"})
            elapsed = time.monotonic() - started
        peak = status_kib(worker, "VmHWM")
        if response.status_code != 202:
            report.errors.append(f"upload of {label}: HTTP {response.status_code} {response.text[:200]}")
            continue
        job_id = response.json()["job_id"]
        e2e.job_ids.append(job_id)
        # It is filler: its conversion can only fail. Take the bytes away at once (the conversion then fails as
        # source missing) and let that finish before measuring on, so its reads do not load the machine.
        videos.remove(job_id)
        with contextlib.suppress(TimeoutError):
            e2e.watch.wait([job_id], timeout=120)
        rows[label] = {"bytes": size, "seconds": elapsed, "mib_per_s": size / MIB / elapsed,
                       "worker_idle_rss_mib": idle / 1024, "worker_peak_rss_mib": peak / 1024,
                       "sampled_peak_rss_mib": sampler.peak_kib / 1024}
        print(f"  upload {label}: {elapsed:.1f} s, worker peak RSS {peak / 1024:.0f} MiB", flush=True)
    report.figures["upload"] = rows


def convert_memory(report: Report, e2e: EndToEnd) -> None:
    """The convert worker's RSS over one job beside its idle RSS (ffmpeg runs in a process of its own)."""
    rows: dict[str, Any] = {}
    converted = report.figures.get("convert_step", {})
    for name in ("360p-60s", "720p-60s", "360p-600s"):
        if "convert_step_s" not in converted.get(name, {}):
            continue
        worker = function_worker("convert")
        idle = status_kib(worker, "VmRSS")
        reset_peak_rss(worker)
        try:
            e2e.run(CLIPS[name].path)
        except Exception as error:
            report.errors.append(f"convert memory, {name}: {type(error).__name__}: {str(error)[:300]}")
            continue
        peak = status_kib(worker, "VmHWM")
        rows[name] = {"worker_idle_rss_mib": idle / 1024, "worker_peak_rss_mib": peak / 1024,
                      "per_job_mib": (peak - idle) / 1024}
    report.figures["convert_memory"] = rows


def store_state(database: Any) -> dict[str, Any]:
    """What FerretDB holds in the GridFS chunk collections, and what one lookup by files_id costs with it: on the
    SQLite backend only a filter on _id alone is pushed down, so every GridFS read and remove scans a whole
    chunks collection."""
    state: dict[str, Any] = {}
    for bucket in (VIDEOS, AUDIO):
        collection = database[f"{bucket}.chunks"]
        started = time.perf_counter()
        collection.delete_many({"files_id": "no-such-file"})
        state[bucket] = {"stored_mib": database.command("collStats", collection.name).get("size", 0) / MIB,
                         "chunks": collection.estimated_document_count(),
                         "lookup_by_files_id_s": time.perf_counter() - started}
    return state


def lookup_cost(report: Report, database: Any) -> None:
    """Seconds to read a 1 MiB file with more and more MiB held in the same bucket, side by side: pymongo's
    GridFSBucket, which finds chunks by files_id, and MediaStore, which finds each by its _id; and whether a
    64 MiB file reads back whole. In a scratch database, dropped afterwards."""
    scratch_db = database.client["vid2mp3bench"]
    store = media.MediaStore(scratch_db, "scan")
    bucket = gridfs.GridFSBucket(scratch_db, bucket_name="scan")
    store.store_file("small", FillerBody(MIB), filename="small", metadata={})  # type: ignore[arg-type]
    rows: dict[str, Any] = {}
    stored = 0
    for target in (0, 32, 64):
        while stored < target:
            store.store_file(f"filler-{stored}", FillerBody(16 * MIB), filename="filler",  # type: ignore[arg-type]
                             metadata={})
            stored += 16
        timings = {}
        for reader, read in (("gridfs_bucket_s", lambda: bucket.open_download_stream("small").read()),
                             ("media_store_s", lambda: store.copy_to("small", io.BytesIO()))):
            started = time.perf_counter()
            read()
            timings[reader] = time.perf_counter() - started
        rows[f"{target} MiB held"] = {**timings, "ratio": timings["gridfs_bucket_s"] / timings["media_store_s"]}
    store.store_file("large", FillerBody(64 * MIB), filename="large", metadata={})  # type: ignore[arg-type]
    started = time.perf_counter()
    copy = io.BytesIO()
    store.copy_to("large", copy)
    elapsed = time.perf_counter() - started
    rows["64 MiB file read back"] = {"mib": copy.tell() / MIB, "mib_per_s": copy.tell() / MIB / elapsed}
    database.client.drop_database("vid2mp3bench")
    report.figures["gridfs_lookup_s_by_mib_held"] = rows


def judge(report: Report) -> None:
    steps = report.figures.get("convert_step", {})
    for name in ("360p-60s", "720p-60s", "360p-60s-opus"):
        report.target(f"convert step / plain ffmpeg, {name}", f"convert_step.{name}.ratio",
                      steps.get(name, {}).get("ratio"), 1.10, "lower")
    bench_segments.judge(report)
    bench_real_media.judge(report)
    bench_zip.judge(report)
    bench_split.judge(report)
    report.target("convert step added time, 360p-10s (s)", "convert_step.360p-10s.added_s",
                  steps.get("360p-10s", {}).get("added_s"), 0.100, "lower")
    mp3 = steps.get("360p-60s-mp3", {})
    copy_speedup = mp3["plain_ffmpeg_s"] / mp3["convert_step_s"] if "convert_step_s" in mp3 else None
    report.figures["stream_copy"] = {"convert_step_speedup_vs_plain_reencode": copy_speedup,
                                     "plain_copy_speedup_vs_plain_reencode": report.figures.get("plain_copy_speedup")}
    report.target("stream copy speed-up vs re-encoding, 360p-60s-mp3", "stream_copy.convert_step_speedup",
                  copy_speedup, 5.0, "higher")
    ends = report.figures.get("end_to_end", {})
    for name in ("360p-60s", "720p-60s"):
        report.target(f"end to end / plain ffmpeg, {name}", f"end_to_end.{name}.ratio",
                      ends.get(name, {}).get("ratio"), 1.25, "lower")
    report.target("throughput vs one plain ffmpeg at a time", "throughput.ratio",
                  report.figures.get("throughput", {}).get("ratio"), 1.8, "higher")
    upload = report.figures.get("upload", {})
    report.target("upload worker peak RSS, 1 GiB body (MiB)", "upload.1 GiB.worker_peak_rss_mib",
                  upload.get("1 GiB", {}).get("worker_peak_rss_mib"), 150, "lower")
    growth = (upload["1 GiB"]["worker_peak_rss_mib"] - upload["256 MiB"]["worker_peak_rss_mib"]
              if "1 GiB" in upload and "256 MiB" in upload else None)
    report.figures["upload_growth_mib_256MiB_to_1GiB"] = growth
    report.target("upload peak RSS growth, 256 MiB → 1 GiB (MiB)", "upload_growth_mib_256MiB_to_1GiB",
                  growth, 8, "lower")
    for name, row in report.figures.get("convert_memory", {}).items():
        report.target(f"convert worker per-job RSS, {name} (MiB)", f"convert_memory.{name}.per_job_mib",
                      row["per_job_mib"], 80, "lower")
    bare = report.figures.get("bare_gridfs_upload", {}).get("default 255 KiB chunks")
    ratio = (upload["256 MiB"]["mib_per_s"] / bare["mib_per_s"] if bare and "256 MiB" in upload else None)
    report.figures["upload_vs_bare_gridfs"] = ratio
    report.target("upload into GridFS / bare GridFSBucket, 256 MiB", "upload_vs_bare_gridfs", ratio, 0.8, "higher")


def print_table(report: Report) -> None:
    figures = report.figures
    print("\nFerretDB before the run (GridFS chunks held; one lookup by files_id):")
    for bucket, row in figures.get("store_before", {}).items():
        print(f"  {bucket:<8} {row['stored_mib']:>8.1f} MiB in {row['chunks']} chunks, lookup "
              f"{row['lookup_by_files_id_s']:.3f} s")
    print("\nConvert step (in-process Converter, GridFS in and out) vs plain ffmpeg, medians:")
    print(f"  {'clip':<16}{'plain s':>9}{'step s':>9}{'ratio':>7}{'added s':>9}{'no-GridFS':>10}   phases (s)")
    for name, row in figures.get("convert_step", {}).items():
        if "convert_step_s" not in row:
            print(f"  {name:<16}{row['plain_ffmpeg_s']:>9.3f}   (failed: see errors)")
            continue
        phases = ", ".join(f"{key} {value:.3f}" for key, value in row["phases_s"].items())
        print(f"  {name:<16}{row['plain_ffmpeg_s']:>9.3f}{row['convert_step_s']:>9.3f}{row['ratio']:>7.2f}"
              f"{row['added_s']:>9.3f}{row['ratio_without_gridfs']:>10.2f}   {phases}")
    copy = figures.get("stream_copy", {})
    if copy.get("plain_copy_speedup_vs_plain_reencode"):
        print(f"  stream copy: plain ffmpeg -c:a copy is {copy['plain_copy_speedup_vs_plain_reencode']:.1f}x faster "
              "than plain re-encoding")
    tracing = figures.get("tracing")
    if tracing:
        print(f"\nTracing (telemetry.start as a function does, spans to Jaeger), {tracing['clip']}, medians of "
              f"{tracing['conversions_each']}: {tracing['plain_median_s']:.3f} s without, "
              f"{tracing['traced_median_s']:.3f} s with: overhead {tracing['overhead'] * 100:+.1f} % (wall), "
              f"{tracing['cpu_overhead'] * 100:+.1f} % (CPU). Phases from the spans (s):")
        print("  " + ", ".join(f"{name} {value:.3f}" for name, value in tracing["phases_from_spans_s"].items()))
    print("\nffmpeg/ffprobe as the convert step invokes them (no GridFS), medians of 5:")
    for name, row in figures.get("ffmpeg_invocation", {}).items():
        print(f"  {name:<16}" + ", ".join(f"{key} {value:.3f}" for key, value in row.items()))
    print("\nReading a 1 MiB GridFS file with other files in the bucket (s): pymongo GridFSBucket vs MediaStore:")
    for key, row in figures.get("gridfs_lookup_s_by_mib_held", {}).items():
        print(f"  {key}: " + ", ".join(f"{name} {value:.3f}" for name, value in row.items()))
    print("\nEnd to end (upload request -> audio-converted observed on our own queue), medians:")
    for name, row in figures.get("end_to_end", {}).items():
        breakdown = ", ".join(f"{key} {value:.3f}" for key, value in row["breakdown_s"].items())
        ratio = f"{row['ratio']:.2f}" if row["ratio"] else "-"
        print(f"  {name:<16}{row['end_to_end_s']:>8.3f} s  ratio {ratio:<5}  {breakdown}")
    if "throughput" in figures:
        row = figures["throughput"]
        print(f"\nThroughput: {row['clips']} x {row['clip']} at once in {row['elapsed_s']:.2f} s -> "
              f"{row['mp3_per_minute']:.1f} MP3/min vs {row['plain_one_at_a_time_per_minute']:.1f} (plain, one at a "
              f"time): {row['ratio']:.2f}x; machine busy {row['machine_busy_fraction']:.0%}; convert function per "
              f"job {row['convert_function_s']}")
        print("  CPU s by process: " + ", ".join(f"{key} {value:.1f}"
                                                 for key, value in row["cpu_seconds_by_process"].items()))
    for name, row in figures.get("convert_memory", {}).items():
        print(f"Convert worker over one {name} job: idle {row['worker_idle_rss_mib']:.0f} MiB, peak "
              f"{row['worker_peak_rss_mib']:.0f} MiB (+{row['per_job_mib']:.1f})")
    for label, row in figures.get("bare_gridfs_upload", {}).items():
        print(f"Bare GridFSBucket 256 MiB, {label}: {row['seconds']:.1f} s ({row['mib_per_s']:.1f} MiB/s)")
    for label, row in figures.get("upload", {}).items():
        print(f"Upload function {label}: {row['seconds']:.1f} s ({row['mib_per_s']:.1f} MiB/s), worker RSS idle "
              f"{row['worker_idle_rss_mib']:.0f} MiB, peak {row['worker_peak_rss_mib']:.0f} MiB "
              f"(sampled {row['sampled_peak_rss_mib']:.0f})")
    bench_segments.print_table(report)
    bench_real_media.print_table(report)
    bench_zip.print_table(report)
    report.print_targets("Targets (issues 6, 12, 17 and 23):")
    print(f"\nBench took {figures.get('bench_seconds', 0):.0f} s.")


def main() -> int:
    points = dict(line.split("=", 1) for line in ENDPOINTS_FILE.read_text().splitlines() if "=" in line)
    report = Report()
    started = time.monotonic()
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    report.figures["machine"] = machine()
    print(f"vid2mp3 bench on {report.figures['machine']['cpu_model']}, {os.cpu_count()} cores")
    print("Inputs:")
    make_inputs()
    database: Any = pymongo.MongoClient(points["MONGO_URI"], tz_aware=True)["vid2mp3"]
    report.figures["store_before"] = store_state(database)
    client = stack_client(points)
    with tempfile.TemporaryDirectory(dir=BENCH_DIR) as scratch_name, \
            EventWatch(points["AMQP_URL"], points["BROKER_EXCHANGE"]) as watch:
        scratch = Path(scratch_name)
        e2e = EndToEnd(client, watch, database)
        try:
            print("Convert step vs plain ffmpeg:")
            bench = ConvertBench(database, points["BROKER_INGRESS_URL"], token_subject(client.token))
            plain = convert_step(report, bench, scratch)
            print("Conversion options in the convert step:")
            bench_options.options_cost(report, bench, [CLIPS[name].path for name in bench_options.CLIP_NAMES],
                                       lambda clip: plain_ffmpeg(clip, scratch / "plain.mp3").seconds)
            print("Tracing overhead on the convert step (alternated child processes):")
            try:
                bench_tracing.tracing_overhead(report, CLIPS["360p-60s"].path)
            except Exception as error:
                report.errors.append(f"tracing overhead: {type(error).__name__}: {str(error)[:300]}")
            long_clips = [CLIPS["360p-600s"].path, CLIPS["360p-3600s"].path]
            print("Segments alone vs plain ffmpeg:")
            bench_segments.segments_alone(report, long_clips, scratch)
            print("Fan-out through the segment function:")
            bench_segments.fan_out_path(report, bench, long_clips)
            bench_segments.fan_out_model(report)
            print("Whole pipeline through the CLI vs moviepy:")
            bench_segments.pipeline_vs_moviepy(report, CLIPS["360p-600s"].path, scratch)
            print("Real-bitrate media beside moviepy (the command, an uplink, the web page, raw POSTs):")
            bench_real_media.measure(report, points, database, stack_client(points), scratch)
            print("A ZIP of many jobs' MP3s beside one MP3 at a time:")
            bench_zip.measure(report, stack_client(points), CLIPS["360p-60s"].path, scratch)
            print("One MP3 per chapter beside the whole MP3 alone (600 s, 8 chapters):")
            bench_split.measure(report, bench, bench_split.chaptered_video(BENCH_DIR / "chapters-600s-8.mp4"))
            ffmpeg_overheads(report, scratch)
            print("GridFS lookups:")
            lookup_cost(report, database)
            print("End to end:")
            end_to_end(report, e2e, plain)
            print("Throughput:")
            throughput(report, e2e, plain)
            print("Convert worker memory:")
            convert_memory(report, e2e)
            print("Upload memory and speed:")
            bare_gridfs_upload(report, database)
            upload_memory_and_speed(report, e2e)
            print("Lifetimes: finished jobs piling up, and the purge:")
            report.figures["lifetimes"] = bench_lifetimes.measure(points, bench_lifetimes.SIZES)
        finally:
            e2e.clean_up()
    judge(report)
    report.figures["bench_seconds"] = time.monotonic() - started
    print_table(report)
    results = rounded({"figures": report.figures, "targets": report.targets, "errors": report.errors,
                       "finished_at": now().isoformat()})
    RESULTS_FILE.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nJSON (also in {RESULTS_FILE.relative_to(ROOT)}):")
    print(json.dumps(results, indent=2))
    return 0

