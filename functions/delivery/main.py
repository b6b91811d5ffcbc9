"""delivery (CloudEvent): sends the job events to the webhooks their owners registered (functions/webhooks/).
Triggered by each job event type (io.vid2mp3.*.v1 but segment.requested): records one delivery per matching
endpoint and attempts them at once; and every minute by a PingSource: attempts the deliveries due for a retry."""

from __future__ import annotations

from datetime import timedelta

import functions_framework
from cloudevents.http import CloudEvent

from endpoints.consumer import consume
from endpoints.http import SetUpOnce
from events import EventPayload
from events.catalog import JOB_EVENT_TYPES, MODEL_BY_TYPE
from functions.delivery.deliverer import WebhookDeliverer
from jobs.records import Jobs
from runtime.clock import now
from runtime.settings import DeliverySettings, load_settings
from storage import mongo
from webhooks.store import WebhookStore

PING = "dev.knative.sources.ping"

settings = load_settings(DeliverySettings)
database = mongo.database(settings)
jobs = Jobs(database)
store = WebhookStore(database)
indexes = SetUpOnce("the webhook indexes", store.ensure_indexes).at_start()
deliverer = WebhookDeliverer(
    store, allow_loopback=settings.webhook_allow_loopback,
    timeout_seconds=settings.webhook_timeout_seconds, retry_delays=settings.retry_delays(),
    log_lifetime=timedelta(seconds=settings.webhook_delivery_log_seconds))


@functions_framework.cloud_event
def delivery(event: CloudEvent) -> None:
    indexes()
    if event["type"] == PING:
        deliverer.sweep()
        return
    if event["type"] not in JOB_EVENT_TYPES:
        return  # not something webhooks carry; acknowledged so the broker does not retry it

    def deliver(payload: EventPayload) -> None:
        # The broker's ingress authenticates no sender: only a job that exists, and is its owner's, is told of.
        if jobs.get_owned(payload.job_id, payload.owner_id) is not None:
            deliverer.handle(payload, event_id=event["id"], event_time=event.get("time") or now().isoformat())

    consume(event, MODEL_BY_TYPE[event["type"]], deliver)
