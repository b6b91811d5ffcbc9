"""`make load`: a bounded load run on the running local stack, over loopback only, that stops by itself.

A burst (200 uploads of a 2 s clip by 20 users at once, each uploading back to back), then a soak (uploads at a
steady rate for 10 minutes, spread over the same users), then a wait for every job to end. Reports what a checker
counts (lost, duplicated MP3s and emails, refused uploads), p50/p95/p99 of upload-accepted and upload-to-done
latency, each function's RSS (its functions-framework process and gunicorn worker) at the start, after the burst
(warm) and at the end, the broker's queues and the jobs' outboxes at the end, and tracebacks written to any log
during the run. Prints the report, writes it to .local/figures/load.json and exits 1 if a verdict fails.

    python -m bench.load [--uploads 200] [--users 20] [--soak-seconds 600] [--soak-rate 0.5]

`tests/stack/test_load.py` runs a short version of the same in `make test`.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from stack import servers
from stack.config import ENDPOINTS_FILE, FUNCTION_PORTS, LOCAL, LOGS
from tests.reliability_support import FINAL_STATES, Stack, User, clip, descendants, function_pid, is_function_process
from tests.support import read_endpoints_file

FIGURES_FILE = LOCAL / "figures" / "load.json"
CLIP_SECONDS = 2
# Warm RSS may grow this much by the end before the run fails.
RSS_GROWTH_LIMIT = 1.10
JOB_ID_PATTERN = re.compile(r"\b[0-9a-f]{32}\b")
CRASH_MARKERS = ("Traceback (most recent call last)", "panic:")


@dataclass(frozen=True)
class LoadPlan:
    uploads: int = 200
    users: int = 20
    soak_seconds: float = 600
    soak_rate_per_second: float = 0.5
    # After the last upload, how long every job may take to end (and its email to arrive) before it counts lost.
    settle_seconds: float = 600


@dataclass
class Upload:
    phase: str
    user: User
    sent_at: datetime
    accepted_seconds: float
    status: int | str
    job_id: str | None


@dataclass
class LoadRun:
    stack: Stack
    plan: LoadPlan
    uploads: list[Upload] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _sessions: threading.local = field(default_factory=threading.local)

    def upload(self, phase: str, user: User, body: bytes) -> None:
        session = getattr(self._sessions, "session", None)
        if session is None:
            session = self._sessions.session = requests.Session()
        sent_at, started = datetime.now(UTC), time.monotonic()
        try:
            response = session.post(self.stack.points["UPLOAD_URL"], params={"filename": "load.mp4"}, data=body,
                                    headers={**user.headers, "Content-Type": "application/octet-stream"},
                                    timeout=120)
            status: int | str = response.status_code
            job_id = response.json().get("job_id") if response.status_code == 202 else None
        except requests.RequestException as error:
            status, job_id = type(error).__name__, None
        with self._lock:
            self.uploads.append(Upload(phase, user, sent_at, time.monotonic() - started, status, job_id))

    def burst(self, users: list[User], body: bytes) -> None:
        per_user = [self.plan.uploads // len(users) + (index < self.plan.uploads % len(users))
                    for index in range(len(users))]

        def one_user(index: int) -> None:
            for _ in range(per_user[index]):
                self.upload("burst", users[index], body)

        with ThreadPoolExecutor(max_workers=len(users)) as pool:
            list(pool.map(one_user, range(len(users))))

    def soak(self, users: list[User], body: bytes) -> float:
        """Uploads at the plan's rate (open loop: a slow answer does not slow the schedule); answers the worst lag
        of an upload behind its schedule, which shows whether the machine kept up."""
        count = int(self.plan.soak_seconds * self.plan.soak_rate_per_second)
        start, worst_lag = time.monotonic(), 0.0
        with ThreadPoolExecutor(max_workers=len(users)) as pool:
            for index in range(count):
                due = start + index / self.plan.soak_rate_per_second
                time.sleep(max(0.0, due - time.monotonic()))
                worst_lag = max(worst_lag, time.monotonic() - due)
                pool.submit(self.upload, "soak", users[index % len(users)], body)
        return worst_lag

    def settle(self, job_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The job records once all are final or the plan's settle time is up."""
        deadline = time.monotonic() + self.plan.settle_seconds
        while True:
            jobs = {job["_id"]: job for job in self.stack.db.jobs.find(
                {"_id": {"$in": job_ids}}, {"state": 1, "finished_at": 1, "pending_event": 1})}
            if all(job.get("state") in FINAL_STATES for job in jobs.values()) and len(jobs) == len(job_ids):
                return jobs
            if time.monotonic() > deadline:
                return jobs
            time.sleep(2)

    def mails_per_job(self, job_ids: list[str]) -> Counter[str]:
        """Emails per job once every job has one (or the settle time is up), then 3 s more for a duplicate."""
        wanted = set(job_ids)
        deadline = time.monotonic() + self.plan.settle_seconds

        def count() -> Counter[str]:
            mails: Counter[str] = Counter()
            for mail in self.stack.mails():
                text = " ".join(str(part.get("value", "")) for part in mail["body"].get("content", []))
                mails.update(set(JOB_ID_PATTERN.findall(text)) & wanted)
            return mails

        while len(count()) < len(wanted) and time.monotonic() < deadline:
            time.sleep(2)
        time.sleep(3)  # a duplicate email would follow within the notify Trigger's first backoffs
        return count()


def resident_kib(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(found.group(1)) if found else 0


def rss_mib() -> dict[str, float]:
    """Each function's resident memory: its functions-framework process and its gunicorn worker (not ffmpeg)."""
    sizes = {}
    for name in FUNCTION_PORTS:
        try:
            pid = function_pid(name)
        except (OSError, ValueError):
            continue
        workers = [child for child in descendants(pid) if is_function_process(child)]
        sizes[name] = round(sum(resident_kib(process) for process in [pid, *workers]) / 1024, 1)
    return sizes


def log_sizes() -> dict[Path, int]:
    return {path: path.stat().st_size for path in LOGS.rglob("*") if path.is_file()}


def crashes_since(sizes: dict[Path, int]) -> dict[str, int]:
    found = {}
    for path in LOGS.rglob("*"):
        if not path.is_file():
            continue
        with path.open("rb") as file:
            file.seek(sizes.get(path, 0))
            text = file.read().decode("utf-8", "replace")
        count = sum(text.count(marker) for marker in CRASH_MARKERS)
        if count:
            found[str(path.relative_to(LOGS))] = count
    return found


# Where the RabbitmqSource parks producers' messages it cannot read, for people to look at: kept by design.
PARKING_QUEUE_SUFFIX = "-rejected"


def queued_messages() -> dict[str, int]:
    """Messages ready or unacknowledged in every queue of the stack's RabbitMQ but the parking queue."""
    listing = servers.rabbitmqctl("list_queues", "-q", "--no-table-headers", "name", "messages", timeout=60)
    queues = {}
    for line in listing.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and not parts[0].endswith(PARKING_QUEUE_SUFFIX):
            queues[parts[0]] = int(parts[1])
    return queues


def percentiles(values: list[float]) -> dict[str, float | None]:
    if len(values) < 2:
        return {"p50": None, "p95": None, "p99": None}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": round(cuts[49], 3), "p95": round(cuts[94], 3), "p99": round(cuts[98], 3)}


def run(stack: Stack, plan: LoadPlan) -> dict[str, Any]:
    body = clip(CLIP_SECONDS, video=True).read_bytes()
    sizes = log_sizes()
    rss_start = rss_mib()
    users = [stack.new_user("load") for _ in range(plan.users)]
    load = LoadRun(stack, plan)
    began = time.monotonic()
    load.burst(users, body)
    burst_ids = [upload.job_id for upload in load.uploads if upload.job_id]
    load.settle(burst_ids)
    burst_seconds = time.monotonic() - began
    rss_warm = rss_mib()
    soak_lag = load.soak(users, body) if plan.soak_seconds > 0 else 0.0
    job_ids = [upload.job_id for upload in load.uploads if upload.job_id]
    jobs = load.settle(job_ids)
    mails = load.mails_per_job([job_id for job_id, job in jobs.items() if job.get("state") == "done"])
    time.sleep(2)  # let the functions' memory settle after the last request
    rss_end = rss_mib()
    done = [job_id for job_id, job in jobs.items() if job.get("state") == "done"]
    mp3s = Counter(document["metadata"]["job_id"] for document in stack.db["audio.files"].find(
        {"metadata.job_id": {"$in": done}}, {"metadata.job_id": 1}))
    by_id = {upload.job_id: upload for upload in load.uploads if upload.job_id}
    to_done = {job_id: (job["finished_at"] - by_id[job_id].sent_at).total_seconds()
               for job_id, job in jobs.items() if job.get("state") == "done" and job.get("finished_at")}
    growth = {name: round(rss_end[name] / rss_warm[name], 3) for name in rss_warm
              if name in rss_end and rss_warm[name] > 0}
    queues = queued_messages()
    report = {
        "plan": plan.__dict__,
        "uploads": len(load.uploads),
        "answered_202": len(job_ids),
        "refused": dict(Counter(str(upload.status) for upload in load.uploads if upload.status != 202)),
        "done": len(done),
        "failed": sum(job.get("state") == "failed" for job in jobs.values()),
        "lost": len(job_ids) - len(done) - sum(job.get("state") == "failed" for job in jobs.values()),
        "duplicated_mp3": sum(count > 1 for count in mp3s.values()),
        "missing_mp3": sum(job_id not in mp3s for job_id in done),
        "duplicated_emails": sum(count > 1 for count in mails.values()),
        "missing_emails": sum(job_id not in mails for job_id in done),
        "upload_accepted_seconds": percentiles([upload.accepted_seconds for upload in load.uploads
                                                if upload.status == 202]),
        "upload_to_done_seconds": percentiles(list(to_done.values())),
        # The burst queues 20 users' uploads at once; the soak shows the steady state.
        "by_phase": {phase: {
            "upload_accepted_seconds": percentiles([upload.accepted_seconds for upload in load.uploads
                                                    if upload.phase == phase and upload.status == 202]),
            "upload_to_done_seconds": percentiles([to_done[upload.job_id] for upload in load.uploads
                                                   if upload.phase == phase and upload.job_id in to_done]),
        } for phase in ("burst", "soak")},
        "burst_seconds_to_all_done": round(burst_seconds, 1),
        "soak_uploads": sum(upload.phase == "soak" for upload in load.uploads),
        "soak_worst_schedule_lag_seconds": round(soak_lag, 2),
        "rss_mib": {"start": rss_start, "warm": rss_warm, "end": rss_end},
        "rss_end_over_warm": growth,
        "queued_messages_at_end": sum(queues.values()),
        "nonempty_queues_at_end": {name: count for name, count in queues.items() if count},
        "pending_outbox_events_at_end": stack.db.jobs.count_documents({"pending_event": {"$exists": True}}),
        "crashes_in_logs": crashes_since(sizes),
    }
    report["verdicts"] = verdicts(report)
    return report


def verdicts(report: dict[str, Any]) -> dict[str, bool]:
    return {
        "every_upload_accepted": not report["refused"],
        "nothing_lost": report["lost"] == 0 and report["failed"] == 0,
        "nothing_duplicated": report["duplicated_mp3"] == 0 and report["duplicated_emails"] == 0,
        "nothing_missing": report["missing_mp3"] == 0 and report["missing_emails"] == 0,
        "rss_within_10_percent_of_warm": all(ratio <= RSS_GROWTH_LIMIT
                                             for ratio in report["rss_end_over_warm"].values()),
        "queues_and_outboxes_empty": report["queued_messages_at_end"] == 0
        and report["pending_outbox_events_at_end"] == 0,
        "no_tracebacks": not report["crashes_in_logs"],
    }


def publish(report: dict[str, Any], name: str) -> None:
    FIGURES_FILE.parent.mkdir(parents=True, exist_ok=True)
    try:
        document = json.loads(FIGURES_FILE.read_text())
    except (OSError, ValueError):
        document = {}
    document[name] = {**report, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    FIGURES_FILE.write_text(json.dumps(document, indent=2, sort_keys=True, default=str) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uploads", type=int, default=LoadPlan.uploads)
    parser.add_argument("--users", type=int, default=LoadPlan.users)
    parser.add_argument("--soak-seconds", type=float, default=LoadPlan.soak_seconds)
    parser.add_argument("--soak-rate", type=float, default=LoadPlan.soak_rate_per_second, help="uploads per second")
    arguments = parser.parse_args()
    if not ENDPOINTS_FILE.exists():
        raise SystemExit("the local stack is not running: make up")
    plan = LoadPlan(uploads=arguments.uploads, users=arguments.users, soak_seconds=arguments.soak_seconds,
                    soak_rate_per_second=arguments.soak_rate)
    report = run(Stack(read_endpoints_file(ENDPOINTS_FILE)), plan)
    publish(report, "make_load")
    print(json.dumps(report, indent=2, sort_keys=True, default=str))
    failed = [name for name, passed in report["verdicts"].items() if not passed]
    print(f"load: {'FAILED: ' + ', '.join(failed) if failed else 'every verdict passed'} ({FIGURES_FILE})")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
