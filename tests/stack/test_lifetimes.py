"""Lifetimes and deleting, on the real local stack: a job past its lifetime is purged with its leftovers and a newer
one is not; an interrupted purge resumes without losing or double-deleting anything; `DELETE` of a job and of an
account leave nothing in GridFS, the job records or MySQL; the status list and the sweeps do the same work with 1k
and 5k finished jobs stored (counted in commands and documents, not timed: `make bench` has the timings)."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pymongo
import pytest
from pymongo import monitoring

from bench.lifetimes import forget_seeded, seed_settled_jobs
from events import EventEmitter
from functions.reconcile.lifetimes import JOB_ENDINGS, LEDGER_PULL_BATCH, RECONCILE_STATE, Lifetimes, Purged
from functions.reconcile.sweeps import Reconciler
from jobs.records import FINISHED_JOBS, OWNER_JOB_LISTS, Jobs
from runtime.clock import now
from storage import mysql
from storage.media import AUDIO, COVERS, SEGMENTS, SOURCES, TRACKS, VIDEOS, MediaStore
from storage.pacing import Pacing
from tests.reliability_support import Stack, User, clip
from tests.support import wait_for

pytestmark = pytest.mark.stack

BUCKETS = (SOURCES, COVERS, VIDEOS, AUDIO, TRACKS, SEGMENTS)


def reconciler(stack: Stack, job_lifetime: timedelta, batch_size: int = 500) -> Reconciler:
    jobs = Jobs(stack.db)
    return Reconciler(database=stack.db, jobs=jobs, emitter=EventEmitter(stack.points["BROKER_INGRESS_URL"], "test"),
                      stuck_after=timedelta(minutes=30), max_redrives=3,
                      lifetimes=Lifetimes(stack.db, jobs, job_lifetime=job_lifetime, batch_size=batch_size,
                                          mysql_url=stack.points["MYSQL_URL"]))


def traces_of(database: Any, job_id: str) -> dict[str, int]:
    """Everything stored anywhere that names the job (0 everywhere: nothing of it is left)."""
    found = {"job": database["jobs"].count_documents({"_id": job_id}),
             "finished job": database[FINISHED_JOBS].count_documents({"_id": job_id}),
             "owner lists": database[OWNER_JOB_LISTS].count_documents({"job_ids": job_id}),
             "ledger": database[JOB_ENDINGS].count_documents({"job_ids": job_id})}
    for bucket in BUCKETS:
        found[f"{bucket} files"] = database[f"{bucket}.files"].count_documents(
            {"$or": [{"_id": job_id}, {"metadata.job_id": job_id}]})
        found[f"{bucket} chunks"] = database[f"{bucket}.chunks"].count_documents(
            {"files_id": {"$in": [job_id, f"{job_id}/frame", f"{job_id}/attached"]}})
    return found


def nothing_left(database: Any, job_id: str) -> bool:
    return not any(traces_of(database, job_id).values())


def done_job(stack: Stack, user: User, seconds: int = 2) -> str:
    job_id = stack.accepted_upload(user, clip(seconds))
    assert stack.wait_final(user, [job_id], timeout=120)[job_id]["state"] == "done"
    return job_id


def status_code(stack: Stack, user: User, job_id: str, method: str = "GET") -> int:
    return stack.session.request(method, f"{stack.points['STATUS_URL']}/{job_id}", headers=user.headers,
                                 timeout=30).status_code


# --- Lifetimes and purge --------------------------------------------------------------------------------------

def test_a_job_past_its_lifetime_is_purged_with_its_leftovers_and_a_newer_one_is_not(stack: Stack) -> None:
    user = stack.new_user("lifetime")
    old, new = done_job(stack, user), done_job(stack, user)
    db = stack.db
    # The old job ended 3 h ago and its MP3 has expired; a leftover track a dead segment worker could have left.
    ended = now() - timedelta(hours=3)
    db["jobs"].update_one({"_id": old}, {"$set": {"finished_at": ended, "updated_at": ended,
                                                  "audio.expires_at": ended}})
    MediaStore(db, TRACKS).store(f"{old}-track", [b"left over"], filename="track", metadata={"job_id": old})
    # A batch large enough for whatever else this stack has due (the purge walks the ledger from its oldest minute).
    sweep = reconciler(stack, job_lifetime=timedelta(hours=1), batch_size=100000)
    # The first sweep deletes the expired MP3 (the job, read before, settles at the next), the second settles the
    # job and purges it (the stack's own sweep, with the default lifetime, may have done the first step).
    reports = [sweep.run() for _ in range(2)]
    assert sum(report.lifetimes.jobs_purged for report in reports) >= 1
    assert status_code(stack, user, old) == 404
    assert nothing_left(db, old), traces_of(db, old)
    # The newer job: untouched, still listed, still live (its MP3 has not expired).
    assert status_code(stack, user, new) == 200
    listed = stack.session.get(stack.points["STATUS_URL"] + "/", headers=user.headers, timeout=30).json()["jobs"]
    assert [job["job_id"] for job in listed] == [new]
    assert db["jobs"].count_documents({"_id": new}) == 1 and MediaStore(db, AUDIO).exists(new)


PURGE_IN_A_PROCESS = """
import sys
from datetime import timedelta
import pymongo
from functions.reconcile.lifetimes import Lifetimes
from jobs.records import Jobs
database = pymongo.MongoClient(sys.argv[1], tz_aware=True)["vid2mp3"]
jobs = Jobs(database)
original = jobs.delete
def delete_and_tell(job_id):
    deleted = original(job_id)
    print(job_id, deleted, flush=True)
    return deleted
jobs.delete = delete_and_tell
Lifetimes(database, jobs, job_lifetime=timedelta(hours=1), batch_size=100000).purge_jobs()
"""


def test_a_purge_killed_midway_resumes_without_losing_or_double_deleting_anything(stack: Stack) -> None:
    db = stack.db
    # What other tests left due first, so that only this test's jobs are purged below.
    Lifetimes(db, Jobs(db), job_lifetime=timedelta(hours=1), batch_size=100000).purge_jobs()
    owner = f"purge-{time.time_ns()}"
    due = seed_settled_jobs(db, 300, now() - timedelta(hours=3), [owner])
    kept = seed_settled_jobs(db, 20, now(), [owner])
    process = subprocess.Popen([sys.executable, "-c", PURGE_IN_A_PROCESS, stack.points["MONGO_URI"]],
                               stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert process.stdout is not None
    told = [process.stdout.readline() for _ in range(100)]
    os.kill(process.pid, signal.SIGKILL)  # mid-batch: 100 of 300 told, maybe one more deleted untold
    process.wait()
    assert all(line.endswith(" True\n") for line in told)
    left_before = db[FINISHED_JOBS].count_documents({"owner_id": owner})
    assert 20 < left_before <= 220
    lifetimes = Lifetimes(db, Jobs(db), job_lifetime=timedelta(hours=1), batch_size=100000)
    resumed = lifetimes.purge_jobs().records
    # Exactly those still there were deleted (none twice: a deleted record is not counted again), none lost.
    assert resumed == left_before - 20
    assert db[FINISHED_JOBS].count_documents({"_id": {"$in": due}}) == 0
    assert db[FINISHED_JOBS].count_documents({"_id": {"$in": kept}}) == 20
    assert sorted(db[OWNER_JOB_LISTS].find_one({"_id": owner})["job_ids"]) == sorted(kept)
    assert db[JOB_ENDINGS].count_documents({"job_ids": {"$in": due}}) == 0
    assert db[RECONCILE_STATE].find_one({"_id": "purge"})["next_slot"] > now() - timedelta(hours=2)
    assert lifetimes.purge_jobs().entries == 0
    forget_seeded(db, [owner])


class PacedClock(monitoring.CommandListener):
    """A clock for the purge's pacing that advances TICK seconds per command sent and by whatever it is told to
    sleep, and the commands sent between two rests (each burst), so that bursts and rests are exact."""
    TICK = 0.01

    def __init__(self) -> None:
        self.now = 0.0
        self.bursts: list[list[tuple[str, str]]] = [[]]
        self.rests: list[float] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.now += self.TICK
        self.bursts[-1].append((event.command_name, str(event.command.get(event.command_name))))

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.rests.append(seconds)
        self.bursts.append([])

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def paced_purge(stack: Stack, seconds_per_sweep: float) -> tuple[Purged, PacedClock]:
    """A sweep's purge (lifetime 1 h) in bursts of 0.3 s with a duty cycle of 0.2, on a clock of its own."""
    clock = PacedClock()
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(stack.points["MONGO_URI"], tz_aware=True,
                                                                     event_listeners=[clock])
    database = client["vid2mp3"]
    pacing = Pacing(burst_seconds=0.3, duty_cycle=0.2, seconds_per_sweep=seconds_per_sweep, sleep=clock.sleep,
                    clock=lambda: clock.now)
    pacing.begin()
    purged = Lifetimes(database, Jobs(database), job_lifetime=timedelta(hours=1), batch_size=100000,
                       pacing=pacing).purge_jobs()
    client.close()
    return purged, clock


def test_the_purge_deletes_a_few_records_per_burst_rests_in_proportion_and_stops_in_time(stack: Stack) -> None:
    Lifetimes(stack.db, Jobs(stack.db), job_lifetime=timedelta(hours=1), batch_size=100000,
              pacing=Pacing(duty_cycle=1.0)).purge_jobs()  # what other tests left due, unpaced
    owner = f"paced-{time.time_ns()}"
    due = seed_settled_jobs(stack.db, 23, now() - timedelta(hours=3), [owner], spread=timedelta(minutes=5))
    # Out of time (1 s of its clock: one burst and its rest) with 10 purged at most; the next sweep resumes.
    first, _ = paced_purge(stack, seconds_per_sweep=1)
    assert 0 < first.records <= 2 * LEDGER_PULL_BATCH
    purged, clock = paced_purge(stack, seconds_per_sweep=60)
    assert first.records + purged.records == 23
    assert stack.db[FINISHED_JOBS].count_documents({"_id": {"$in": due}}) == 0
    # The bound: a unit of work (at most 5 records, one ledger update) takes 16 commands or more, 0.16 s, so a burst
    # of 0.3 s holds at most two: 10 records, across the minutes the jobs ended in.
    deleted_per_burst = [sum(command == ("delete", FINISHED_JOBS) for command in burst) for burst in clock.bursts]
    assert max(deleted_per_burst) <= 2 * LEDGER_PULL_BATCH and sum(deleted_per_burst) == purged.records, \
        deleted_per_burst
    assert len(clock.rests) >= math.ceil(purged.records / (2 * LEDGER_PULL_BATCH)) - 1 >= 1
    # Each rest is 4 times the burst before it (a duty cycle of 0.2): its commands, TICK each (the first burst's
    # commands include the lookups of the purge's place and first minute, made before it started).
    assert 0 < clock.rests[0] <= 4 * len(clock.bursts[0]) * PacedClock.TICK
    for burst, rest in zip(clock.bursts[1:], clock.rests[1:], strict=False):
        assert rest == pytest.approx(4 * len(burst) * PacedClock.TICK), (len(burst), rest)
    forget_seeded(stack.db, [owner])


def test_throttle_rows_past_their_lifetime_are_purged(stack: Stack) -> None:
    with mysql.connect(stack.points["MYSQL_URL"]) as connection, connection.cursor() as cursor:
        cursor.execute("INSERT INTO failed_logins (email, address, failures, window_start) VALUES "
                       "('old@lifetimes.test', '', 3, NOW(3) - INTERVAL 2 DAY), ('new@lifetimes.test', '', 1, NOW(3)) "
                       "ON DUPLICATE KEY UPDATE window_start = VALUES(window_start)")
        cursor.execute("INSERT INTO login_addresses (email, address, last_login) VALUES "
                       "('old@lifetimes.test', '192.0.2.9', NOW(3) - INTERVAL 31 DAY), "
                       "('new@lifetimes.test', '192.0.2.9', NOW(3)) "
                       "ON DUPLICATE KEY UPDATE last_login = VALUES(last_login)")
        cursor.execute("INSERT INTO signups_by_address (address, signups, window_start) VALUES "
                       "('192.0.2.1', 4, NOW(3) - INTERVAL 61 MINUTE), ('192.0.2.2', 1, NOW(3)) "
                       "ON DUPLICATE KEY UPDATE window_start = VALUES(window_start)")
    purged = Lifetimes(stack.db, Jobs(stack.db), job_lifetime=timedelta(days=30), mysql_url=stack.points["MYSQL_URL"],
                       login_failure_lifetime=timedelta(days=1)).purge_throttle_rows()
    with mysql.connect(stack.points["MYSQL_URL"]) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT email FROM failed_logins WHERE email LIKE '%%@lifetimes.test'")
        left = [row["email"] for row in cursor.fetchall()]
        cursor.execute("DELETE FROM failed_logins WHERE email LIKE '%%@lifetimes.test'")
        cursor.execute("SELECT email FROM login_addresses WHERE email LIKE '%%@lifetimes.test'")
        known_left = [row["email"] for row in cursor.fetchall()]
        cursor.execute("DELETE FROM login_addresses WHERE email LIKE '%%@lifetimes.test'")
        cursor.execute("SELECT address FROM signups_by_address WHERE address LIKE '192.0.2.%%'")
        addresses_left = [row["address"] for row in cursor.fetchall()]
        cursor.execute("DELETE FROM signups_by_address WHERE address LIKE '192.0.2.%%'")
    assert purged >= 3 and left == known_left == ["new@lifetimes.test"] and addresses_left == ["192.0.2.2"]


# --- Deleting ---------------------------------------------------------------------------------------------

def test_deleting_a_job_deletes_it_and_its_media_at_once_for_its_owner_only(stack: Stack) -> None:
    owner, stranger = stack.new_user("deleter"), stack.new_user("stranger")
    job_id = done_job(stack, owner)
    assert status_code(stack, stranger, job_id, "DELETE") == 404
    assert status_code(stack, owner, job_id) == 200 and MediaStore(stack.db, AUDIO).exists(job_id)
    assert status_code(stack, owner, job_id, "DELETE") == 204
    assert nothing_left(stack.db, job_id), traces_of(stack.db, job_id)
    assert status_code(stack, owner, job_id) == 404 and status_code(stack, owner, job_id, "DELETE") == 404


def test_deleting_a_running_job_cancels_it_first_and_leaves_nothing(stack: Stack) -> None:
    owner = stack.new_user("deleter")
    job_id = stack.accepted_upload(owner, clip(600))
    wait_for(lambda: stack.db["jobs"].find_one({"_id": job_id, "state": "converting"}), 60, "the job converting")
    assert status_code(stack, owner, job_id, "DELETE") == 204
    # The converter finds its lease gone within a second and drops what it wrote.
    wait_for(lambda: nothing_left(stack.db, job_id), 30, "nothing left of the running job")
    time.sleep(3)
    assert nothing_left(stack.db, job_id), traces_of(stack.db, job_id)


def test_deleting_an_account_leaves_nothing_of_it(stack: Stack) -> None:
    user = stack.new_user("leaving")
    auth = stack.points["AUTH_URL"]
    finished = done_job(stack, user)
    running = stack.accepted_upload(user, clip(600))
    hooks = stack.session.post(stack.points["WEBHOOKS_URL"], headers=user.headers, timeout=30, json={
        "url": "http://127.0.0.1:9/hook", "events": ["io.vid2mp3.audio.converted.v1"]})
    assert hooks.status_code == 201, hooks.text
    db = stack.db
    db["webhook_deliveries"].insert_one({"_id": f"{hooks.json()['id']}/x", "endpoint_id": hooks.json()["id"],
                                         "owner_id": user.account_id, "state": "delivered"})
    assert db["quotas"].count_documents({"_id": user.account_id}) == 1
    refused = stack.session.post(f"{auth}/login", json={"email": user.email, "password": "wrong password"},
                                 timeout=30)
    assert refused.status_code == 401  # a throttle row for the address
    assert stack.session.delete(f"{auth}/account", headers=user.headers, json={"password": "not it at all"},
                                timeout=30).status_code == 403
    assert stack.session.delete(f"{auth}/account", json={"password": user.password}, timeout=30).status_code == 401
    deleted = stack.session.delete(f"{auth}/account", headers=user.headers, json={"password": user.password},
                                   timeout=60)
    assert deleted.status_code == 204, deleted.text
    wait_for(lambda: nothing_left(db, running), 30, "nothing left of the running job")
    for job_id in (finished, running):
        assert nothing_left(db, job_id), traces_of(db, job_id)
    assert db["jobs"].count_documents({"owner_id": user.account_id}) == 0
    assert db[FINISHED_JOBS].count_documents({"owner_id": user.account_id}) == 0
    assert db[OWNER_JOB_LISTS].count_documents({"_id": user.account_id}) == 0
    for collection in ("webhook_endpoints", "webhook_deliveries"):
        assert db[collection].count_documents({"owner_id": user.account_id}) == 0, collection
    assert db["quotas"].count_documents({"_id": user.account_id}) == 0
    for bucket in BUCKETS:
        assert db[f"{bucket}.files"].count_documents({"metadata.owner_id": user.account_id}) == 0
    with mysql.connect(stack.points["MYSQL_URL"]) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) AS n FROM accounts WHERE id = %s OR email = %s", (user.account_id, user.email))
        assert cursor.fetchone()["n"] == 0
        for table in ("failed_logins", "login_addresses"):
            cursor.execute(f"SELECT COUNT(*) AS n FROM {table} WHERE email = %s", (user.email,))  # noqa: S608
            assert cursor.fetchone()["n"] == 0, table
    assert stack.session.post(f"{auth}/login", json={"email": user.email, "password": user.password},
                              timeout=30).status_code == 401


# --- Flat hot paths (the short version of `make bench`'s) ---------------------------------------------------

class CommandCounter(monitoring.CommandListener):
    def __init__(self) -> None:
        self.commands = self.documents = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.commands += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        cursor = event.reply.get("cursor") or {}
        self.documents += len(cursor.get("firstBatch") or cursor.get("nextBatch") or [])

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture
def counted(stack: Stack) -> Iterator[tuple[Any, CommandCounter]]:
    counter = CommandCounter()
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(stack.points["MONGO_URI"], tz_aware=True,
                                                                     event_listeners=[counter])
    yield client["vid2mp3"], counter
    client.close()


def test_the_list_and_the_sweeps_do_the_same_work_with_1k_and_5k_finished_jobs(
        stack: Stack, counted: tuple[Any, CommandCounter]) -> None:
    database, counter = counted
    user = stack.new_user("flat")
    mine = seed_settled_jobs(database, 5, now() - timedelta(days=2), [user.account_id])
    jobs = Jobs(database)
    sweep = Reconciler(database=database, jobs=jobs, emitter=EventEmitter(stack.points["BROKER_INGRESS_URL"], "test"),
                       stuck_after=timedelta(minutes=30), max_redrives=3,
                       lifetimes=Lifetimes(database, jobs, job_lifetime=timedelta(days=30)))
    others = [f"flat-{time.time_ns()}-{n}" for n in range(20)]
    work = []
    for total in (1000, 5000):
        seeded = database[FINISHED_JOBS].count_documents({"owner_id": {"$in": others}})
        seed_settled_jobs(database, total - seeded, now() - timedelta(days=2), others)
        sweep.run()  # settles whatever other tests left, so both measured sweeps find the same
        measured = []
        for _ in range(2):  # the least of two: the stack's own functions may change a live job meanwhile
            counter.commands = counter.documents = 0
            listed = jobs.list_owned(user.account_id)
            sweep.run()
            measured.append((counter.commands, counter.documents))
        work.append(min(measured))
        assert [job["_id"] for job in listed] == mine[::-1]
    assert work[0] == work[1], f"commands and documents read with 1k vs 5k finished jobs: {work}"
    forget_seeded(database, [*others, user.account_id])
