"""reconcile (CloudEvent, driven every minute by a PingSource): finds what the event flow left behind and mends it:
pending events re-emitted, stalled jobs re-driven or failed, imports whose process died failed, expired MP3s,
expired unfinished resumable uploads and orphan GridFS chunks deleted, and records past their lifetime purged."""

from __future__ import annotations

from datetime import timedelta

import functions_framework
from cloudevents.http import CloudEvent

from events import EventEmitter
from functions.reconcile.lifetimes import Lifetimes
from functions.reconcile.sweeps import Reconciler
from jobs.records import Jobs
from runtime.settings import ReconcileSettings, load_settings
from storage import mongo
from storage.pacing import Pacing

settings = load_settings(ReconcileSettings)
database = mongo.database(settings)
jobs = Jobs(database)
pacing = Pacing(burst_seconds=settings.deletion_burst_seconds, duty_cycle=settings.deletion_duty_cycle,
                seconds_per_sweep=settings.deletion_seconds_per_sweep)
lifetimes = Lifetimes(database, jobs, job_lifetime=timedelta(seconds=settings.job_record_retention_seconds),
                      batch_size=settings.purge_batch_size, mysql_url=settings.mysql_url.get_secret_value(),
                      login_failure_lifetime=timedelta(seconds=settings.login_failure_retention_seconds),
                      pacing=pacing)
reconciler = Reconciler(database=database, jobs=jobs, emitter=EventEmitter(str(settings.k_sink), "reconcile"),
                        stuck_after=timedelta(seconds=settings.stuck_after_seconds), max_redrives=settings.max_redrives,
                        lifetimes=lifetimes, pacing=pacing)


@functions_framework.cloud_event
def reconcile(event: CloudEvent) -> None:
    reconciler.run()
