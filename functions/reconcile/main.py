"""reconcile (CloudEvent, driven every minute by a PingSource): finds what the event flow left behind and mends it:
pending events re-emitted, stalled jobs re-driven or failed, expired MP3s and orphan GridFS chunks deleted."""

from __future__ import annotations

from datetime import timedelta

import functions_framework
from cloudevents.http import CloudEvent

from events import EventEmitter
from functions.reconcile.sweeps import Reconciler
from functions.shared import mongo
from functions.shared.jobs import Jobs
from functions.shared.settings import ReconcileSettings, load_settings

settings = load_settings(ReconcileSettings)
database = mongo.database(settings)
reconciler = Reconciler(database=database, jobs=Jobs(database), emitter=EventEmitter(str(settings.k_sink),
                                                                                    "reconcile"),
                        stuck_after=timedelta(seconds=settings.stuck_after_seconds), max_redrives=settings.max_redrives)


@functions_framework.cloud_event
def reconcile(event: CloudEvent) -> None:
    reconciler.run()
