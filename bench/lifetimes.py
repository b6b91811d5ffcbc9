"""Lifetimes benchmark (part of `make bench`): finished jobs seeded straight into MongoDB in bulk (1k, 20k, 100k), then
the status list p95, one full reconcile sweep and the orphan-chunk sweep measured at each size; then uploads timed
with nothing else, beside a paced purge and beside an unpaced one, interleaved, with each purge's rate; the same
beside the deletion of expired MP3s. Also the seeding helper the lifetimes tests use.

Run alone: `.local/venv/bin/python -m bench.lifetimes [--sizes 1000,20000,100000]` with the stack up.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import time
import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import pymongo
import requests

from events import EventEmitter, VideoUploaded
from functions.reconcile.lifetimes import JOB_ENDINGS, PURGE_CURSOR, RECONCILE_STATE, Lifetimes, ledger_key, slot_of
from functions.reconcile.sweeps import Reconciler
from jobs.records import FINISHED_JOBS, OWNER_JOB_LISTS, Jobs, JobState
from runtime.clock import now
from runtime.settings import ReconcileSettings
from stack.config import ENDPOINTS_FILE
from storage.media import AUDIO, MediaStore
from storage.pacing import Pacing
from tests.support import read_endpoints_file

SIZES = [1000, 20000, 100000]
SEED_BATCH = 1000
LIST_REQUESTS = 40
# Uploads timed beside a purge and beside the deletion of expired MP3s: rounds, each with the three arms in a
# rotated order.
ROUNDS_BESIDE = 10
UPLOADS_PER_ARM = 8
NO_PURGE, PACED, UNPACED = "none", "paced", "unpaced"
ARMS = (NO_PURGE, PACED, UNPACED)
# Fewer rounds: each arm that deletes MP3s first stores as many as its uploads' time takes to delete unpaced.
ROUNDS_BESIDE_MP3_DELETION = 6
EXPIRED_MP3S_PER_ARM = 6
EXPIRED_MP3_BYTES = 2 * 1024 * 1024
EXPIRED_MP3_OWNER = "bench-expired-mp3s"


def seed_settled_jobs(database: Any, count: int, ended_at: datetime, owners: list[str],
                      spread: timedelta = timedelta(0)) -> list[str]:
    """`count` jobs as they are once settled (done, MP3 and video expired and deleted, in the finished history and
    the ledger of the minute they ended), spread over `owners`, ended evenly over the `spread` before `ended_at`,
    inserted in bulk. Their ids."""
    job_ids: list[str] = []
    ended: list[tuple[datetime, str]] = []
    by_owner: dict[str, list[str]] = defaultdict(list)
    jobs = database[FINISHED_JOBS]
    for start in range(0, count, SEED_BATCH):
        batch = []
        for n in range(start, min(count, start + SEED_BATCH)):
            job_id, owner = uuid.uuid4().hex, owners[n % len(owners)]
            job_ended = ended_at - spread + spread * (n + 1) / count
            created = job_ended - timedelta(seconds=30) + timedelta(milliseconds=n)  # in upload order
            batch.append({
                "_id": job_id, "owner_id": owner, "video_id": job_id, "filename": f"seeded-{n}.mp4",
                "size_bytes": 1000, "sha256": "0" * 64, "bitrate_kbps": 192, "container": "mp4",
                "state": JobState.DONE, "created_at": created, "updated_at": job_ended, "finished_at": job_ended,
                "history": [{"state": state, "at": created} for state in ("uploaded", "converting", "done")],
                "attempts": 1, "redrives": 0, "video_deleted_at": job_ended,
                "audio": {"audio_id": job_id, "size_bytes": 1000, "sha256": "0" * 64, "duration_seconds": 3.0,
                          "stream_copied": False, "expires_at": job_ended, "deleted_at": job_ended},
            })
            job_ids.append(job_id)
            ended.append((job_ended, job_id))
            by_owner[owner].append(job_id)
        jobs.insert_many(batch, ordered=False)
    for owner, owned in by_owner.items():
        database[OWNER_JOB_LISTS].update_one({"_id": owner}, {"$push": {"job_ids": {"$each": owned}}}, upsert=True)
    by_slot: dict[datetime, list[str]] = defaultdict(list)
    for document_ended, job_id in ended:
        by_slot[slot_of(document_ended)].append(job_id)
    for slot, slot_ids in by_slot.items():
        database[JOB_ENDINGS].update_one({"_id": ledger_key(slot)}, {"$push": {"job_ids": {"$each": slot_ids}}},
                                         upsert=True)
    database[RECONCILE_STATE].update_one({"_id": PURGE_CURSOR}, {"$min": {"next_slot": min(by_slot)}}, upsert=True)
    return job_ids


def forget_seeded(database: Any, owners: list[str]) -> None:
    """Removes what is left of the jobs seeded for `owners` (they would otherwise stay a month on this stack), a
    few owners per command: FerretDB's SQLite backend refuses to delete ~32k documents in one."""
    seeded = set()
    for owner in owners:
        seeded.update((database[OWNER_JOB_LISTS].find_one({"_id": owner}) or {}).get("job_ids") or [])
    for start in range(0, len(owners), 20):
        database[FINISHED_JOBS].delete_many({"owner_id": {"$in": owners[start:start + 20]}})
    database[OWNER_JOB_LISTS].delete_many({"_id": {"$in": owners}})
    for ending in list(database[JOB_ENDINGS].find()):
        left = [job_id for job_id in ending.get("job_ids") or [] if job_id in seeded]
        if left:
            database[JOB_ENDINGS].update_one({"_id": ending["_id"]}, {"$pullAll": {"job_ids": left}})
            database[JOB_ENDINGS].delete_one({"_id": ending["_id"], "job_ids": {"$size": 0}})


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) > 1 else values[0]


def timed(action: Any) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def new_token(points: dict[str, str]) -> tuple[str, str]:
    credentials = {"email": f"bench-{uuid.uuid4().hex[:12]}@example.com", "password": "bench-" + uuid.uuid4().hex}
    account = requests.post(f"{points['AUTH_URL']}/signup", json=credentials, timeout=30).json()["account_id"]
    token = requests.post(f"{points['AUTH_URL']}/login", json=credentials, timeout=30).json()["access_token"]
    return str(account), str(token)


def list_request_times(points: dict[str, str], token: str) -> list[float]:
    session = requests.Session()
    times = []
    for _ in range(LIST_REQUESTS):
        started = time.perf_counter()
        session.get(points["STATUS_URL"] + "/", headers={"Authorization": f"Bearer {token}"},
                    timeout=30).raise_for_status()
        times.append(time.perf_counter() - started)
    return times


def live_converting_job(jobs: Jobs, owner: str) -> str:
    """One job being converted, as a converter holds it: its lease renewals are the hottest write there is."""
    job_id = uuid.uuid4().hex
    event = VideoUploaded(job_id=job_id, owner_id=owner, video_id=job_id, filename="bench.mp4", size_bytes=1,
                          sha256="0" * 64, bitrate_kbps=192, uploaded_at=now())
    jobs.create({"_id": job_id, "owner_id": owner, "video_id": job_id, "filename": "bench.mp4", "size_bytes": 1,
                 "sha256": "0" * 64, "bitrate_kbps": 192}, event)
    jobs.claim_conversion(job_id, "bench", timedelta(seconds=10))
    return job_id


def measure(points: dict[str, str], sizes: list[int]) -> dict[str, Any]:
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(points["MONGO_URI"], tz_aware=True)
    database = client["vid2mp3"]
    jobs = Jobs(database)
    reconciler = Reconciler(database=database, jobs=jobs,
                            emitter=EventEmitter(points["BROKER_INGRESS_URL"], "reconcile"),
                            stuck_after=timedelta(minutes=30), max_redrives=3,
                            lifetimes=Lifetimes(database, jobs, job_lifetime=timedelta(days=30)))
    owner, token = new_token(points)
    others = [f"bench-owner-{uuid.uuid4().hex[:8]}-{n}" for n in range(200)]
    try:
        return measure_with(points, database, jobs, reconciler, owner, token, others, sizes)
    finally:
        forget_seeded(database, [owner, *others])
        database["jobs"].delete_many({"owner_id": EXPIRED_MP3_OWNER})  # their MP3s deleted by the bench
        client.close()


def measure_with(points: dict[str, str], database: Any, jobs: Jobs, reconciler: Reconciler, owner: str, token: str,
                 others: list[str], sizes: list[int]) -> dict[str, Any]:
    seeded: list[str] = []
    figures: dict[str, Any] = {"sizes": {}}
    live_job = live_converting_job(jobs, owner)
    names = {"status_list_p95_ms": "status list p95", "reconcile_sweep_ms": "one reconcile sweep",
             "orphan_sweep_ms": "orphan-chunk sweep", "lease_renewal_p95_ms": "a converter's lease renewal p95"}
    for size in sizes:
        started = time.perf_counter()
        # The user's own 20 and the rest spread over 200 others: the list answers the user's 20.
        if not seeded:
            seeded.extend(seed_settled_jobs(database, 20, now() - timedelta(days=2), [owner]))
        # Ended over a day, between three and two days ago.
        seeded.extend(seed_settled_jobs(database, size - len(seeded), now() - timedelta(days=2), others,
                                        spread=timedelta(days=1)))
        seconds = time.perf_counter() - started
        renewals = [timed(lambda: jobs.renew_lease(live_job, "bench", timedelta(seconds=10), {"percent": 1.0}))
                    for _ in range(LIST_REQUESTS)]
        measured = {
            "status_list_p95_ms": p95(list_request_times(points, token)) * 1e3,
            "reconcile_sweep_ms": statistics.median(timed(reconciler.run) for _ in range(3)) * 1e3,
            "orphan_sweep_ms": statistics.median(timed(reconciler.remove_abandoned_writes) for _ in range(3)) * 1e3,
            "lease_renewal_p95_ms": p95(renewals) * 1e3,
        }
        figures["sizes"][size] = {"seed_seconds": round(seconds, 2),
                                  **{name: round(value, 1) for name, value in measured.items()}}
        print(f"{size:>7} finished jobs (seeded in {seconds:.1f} s): "
              + ", ".join(f"{names[name]} {value:.1f} ms" for name, value in measured.items()), flush=True)
    first, last = figures["sizes"][sizes[0]], figures["sizes"][sizes[-1]]
    for name in names:
        figures[f"{name}_ratio"] = round(last[name] / max(first[name], 0.001), 2)
    print(f"{sizes[-1]} vs {sizes[0]}: " + ", ".join(f"{names[name]} {figures[name + '_ratio']}x" for name in names),
          flush=True)
    # Control: the query the list made before (by owner, sorted) on a collection holding the same history.
    before = [timed(lambda: list(database[FINISHED_JOBS].find({"owner_id": owner}).sort("created_at", -1).limit(50)))
              for _ in range(3)]
    figures["list_query_before_ms"] = round(statistics.median(before) * 1e3, 1)
    print(f"control: the list's query before (owner_id, sorted) on {len(seeded)} jobs: "
          f"{figures['list_query_before_ms']} ms", flush=True)
    jobs.delete(live_job)
    figures["beside_purge"] = uploads_beside(points, purge_until_stopped, "a purge (records)", ROUNDS_BESIDE)
    figures["beside_expired_mp3_deletion"] = uploads_beside(
        points, delete_expired_mp3s, "the deletion of expired MP3s (files)", ROUNDS_BESIDE_MP3_DELETION,
        before_work=lambda: seed_expired_mp3s(database, EXPIRED_MP3S_PER_ARM))
    return figures


def purge_until_stopped(mongo_uri: str, ingress_url: str, pacing: Pacing, started: Any, stop: Any,
                        results: Any) -> None:
    """The seeded jobs purged (a lifetime of one day, so the two-day-old ones are due), `batch_size` 10 per step so
    that it stops soon after `stop` is set; puts (records deleted, seconds it ran) in `results`."""
    database = pymongo.MongoClient(mongo_uri, tz_aware=True)["vid2mp3"]
    lifetimes = Lifetimes(database, Jobs(database), job_lifetime=timedelta(days=1), batch_size=10, pacing=pacing)
    purged = 0
    began = time.perf_counter()
    started.set()
    while not stop.is_set() and (step := lifetimes.purge_jobs()).entries > 0:
        purged += step.records
    results.put((purged, time.perf_counter() - began))


def delete_expired_mp3s(mongo_uri: str, ingress_url: str, pacing: Pacing, started: Any, stop: Any,
                        results: Any) -> None:
    """The reconcile step's deletion of expired MP3s (those `seed_expired_mp3s` stored), sweep after sweep until
    `stop` is set; puts (MP3s deleted, seconds it ran) in `results`."""
    database = pymongo.MongoClient(mongo_uri, tz_aware=True)["vid2mp3"]
    reconciler = Reconciler(database=database, jobs=Jobs(database), emitter=EventEmitter(ingress_url, "bench"),
                            stuck_after=timedelta(minutes=30), max_redrives=3, pacing=pacing)
    deleted = 0
    began = time.perf_counter()
    started.set()
    while not stop.is_set():
        swept = reconciler.delete_expired_audio()
        deleted += swept
        if not swept:
            stop.wait(0.2)  # all deleted: the next sweep, a moment later
    results.put((deleted, time.perf_counter() - began))


def seed_expired_mp3s(database: Any, count: int) -> None:
    """`count` done jobs whose MP3 (2 MiB, 90 s at 192 kbit/s: 9 chunks) has expired and is not yet deleted."""
    audio = MediaStore(database, AUDIO)
    moment = now()
    for _ in range(count):
        job_id = uuid.uuid4().hex
        audio.store(job_id, [os.urandom(EXPIRED_MP3_BYTES)], filename="bench.mp3", metadata={"job_id": job_id})
        database["jobs"].insert_one({
            "_id": job_id, "owner_id": EXPIRED_MP3_OWNER, "video_id": job_id, "state": JobState.DONE,
            "created_at": moment, "updated_at": moment, "finished_at": moment, "video_deleted_at": moment,
            "audio": {"audio_id": job_id, "expires_at": moment - timedelta(minutes=1)}})


def uploads_beside(points: dict[str, str], work: Any, what: str, rounds: int,
                   before_work: Any = None) -> dict[str, Any]:
    """Small uploads timed with no other work, beside `work` paced as the reconcile function paces it (the
    settings' defaults) and beside it unpaced, `work` running in a process of its own (as in the reconcile
    function; none of it contends with the timed uploads for this process's interpreter): in each of `rounds`
    rounds UPLOADS_PER_ARM uploads per arm, the arms' order rotated every round so that the machine's noise hits all
    three alike. Answer times p50/p95 per arm, and the work's rate (items per second it ran)."""
    defaults = ReconcileSettings.model_fields
    paces = {PACED: Pacing(burst_seconds=defaults["deletion_burst_seconds"].default,
                           duty_cycle=defaults["deletion_duty_cycle"].default),
             UNPACED: Pacing(burst_seconds=0.0, duty_cycle=1.0)}
    video = b"\x00\x00\x00\x20ftypisom" + bytes(200_000)  # recognised as MP4 at upload; never converted well
    session = requests.Session()
    answers: dict[str, list[float]] = {arm: [] for arm in ARMS}
    done = dict.fromkeys(paces, 0)
    busy_seconds = dict.fromkeys(paces, 0.0)
    processes = multiprocessing.get_context("spawn")

    def uploads(token: str) -> list[float]:
        return [timed(lambda: session.post(points["UPLOAD_URL"], params={"filename": "bench.mp4"}, data=video,
                                           headers={"Authorization": f"Bearer {token}",
                                                    "Content-Type": "application/octet-stream"},
                                           timeout=60).raise_for_status()) for _ in range(UPLOADS_PER_ARM)]

    for round_number in range(rounds):
        # A new user each round: the uploads' jobs (failing at conversion) stay under the jobs-in-flight quota.
        _, token = new_token(points)
        shift = round_number % len(ARMS)
        for arm in ARMS[shift:] + ARMS[:shift]:
            if arm not in paces:
                answers[arm] += uploads(token)
                continue
            if before_work is not None:
                before_work()
            started, stop, results = processes.Event(), processes.Event(), processes.Queue()
            worker = processes.Process(target=work, args=(points["MONGO_URI"], points["BROKER_INGRESS_URL"],
                                                          paces[arm], started, stop, results))
            worker.start()
            started.wait(60)
            answers[arm] += uploads(token)
            stop.set()
            items, seconds = results.get(timeout=600)
            worker.join()
            done[arm] += items
            busy_seconds[arm] += seconds
    upload_ms = {arm: {"p50": statistics.median(times) * 1e3, "p95": p95(times) * 1e3}
                 for arm, times in answers.items()}
    figures: dict[str, Any] = {"upload_ms": {
        arm: {name: round(value) for name, value in quantiles.items()} for arm, quantiles in upload_ms.items()}}
    alone = upload_ms[NO_PURGE]
    print(f"uploads with nothing else: p50 {alone['p50']:.0f} ms, p95 {alone['p95']:.0f} ms "
          f"({len(answers[NO_PURGE])} uploads, {rounds} rounds with the arms below interleaved)", flush=True)
    for arm, pace in paces.items():
        beside = upload_ms[arm]
        rate = done[arm] / max(busy_seconds[arm], 1e-9)
        figures[arm] = {"done": done[arm], "per_second": round(rate, 1),
                        "p50_ratio": round(beside["p50"] / alone["p50"], 2),
                        "p95_ratio": round(beside["p95"] / alone["p95"], 2)}
        print(f"uploads beside {what} {arm} (bursts of {pace.burst_seconds} s, duty cycle {pace.duty_cycle}; "
              f"{done[arm]} in {busy_seconds[arm]:.1f} s, {rate:.1f}/s): p50 {beside['p50']:.0f} ms "
              f"({figures[arm]['p50_ratio']}x), p95 {beside['p95']:.0f} ms ({figures[arm]['p95_ratio']}x)", flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    arguments = parser.parse_args()
    measure(read_endpoints_file(ENDPOINTS_FILE), [int(size) for size in arguments.sizes.split(",")])


if __name__ == "__main__":
    main()
