"""Turns job events into webhook deliveries and attempts them until each is delivered, abandoned or out of tries.

An event makes one delivery per matching endpoint of the job's owner (recorded first, so a crash loses none), then
every delivery of that event is attempted at once, each with its own timeout: one slow or failing receiver delays
no other. A failed attempt schedules the next on the retry schedule (with jitter, so receivers that failed together
are not retried together); the `delivery` function's PingSource, every minute, attempts the deliveries that are due.
A 410 from a receiver disables its endpoint for good.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from events import EventPayload
from functions.delivery.sender import post, signed_headers
from runtime.addresses import RefusedAddress, resolve
from runtime.clock import now
from webhooks.store import Attempt, DeliveryState, WebhookStore

log = logging.getLogger(__name__)
# Receivers attempted at once by one instance; the rest wait for a free slot.
MAX_PARALLEL_ATTEMPTS = 16
# Deliveries one tick of the PingSource attempts; the next tick takes the rest.
SWEEP_BATCH = 200
JITTER = 0.1


def webhook_body(payload: EventPayload, event_time: str) -> str:
    """The body every attempt sends: Standard Webhooks' `type`, `timestamp`, `data`, with the event's payload as
    the data. Compact JSON: the signature covers these exact bytes."""
    return json.dumps({"type": payload.event_type, "timestamp": event_time,
                       "data": payload.model_dump(mode="json")}, separators=(",", ":"))


def next_attempt_time(attempts_made: int, retry_delays: Sequence[float], moment: datetime) -> datetime | None:
    """When to try again after `attempts_made` failed attempts; None once the schedule is spent."""
    if attempts_made > len(retry_delays):
        return None
    delay = retry_delays[attempts_made - 1] * random.uniform(1 - JITTER, 1 + JITTER)
    return moment + timedelta(seconds=delay)


class WebhookDeliverer:
    def __init__(self, store: WebhookStore, *, allow_loopback: bool, timeout_seconds: float,
                 retry_delays: Sequence[float], log_lifetime: timedelta) -> None:
        self.store = store
        self.allow_loopback = allow_loopback
        self.timeout_seconds = timeout_seconds
        self.retry_delays = tuple(retry_delays)
        self.log_lifetime = log_lifetime
        # Longer than one attempt can take (DNS, connect, the answer), so a live sender never loses its claim.
        self.lease = timedelta(seconds=timeout_seconds + 30)

    def handle(self, payload: EventPayload, event_id: str, event_time: str) -> None:
        body = webhook_body(payload, event_time)
        delivery_ids = []
        for endpoint in self.store.endpoints_for(payload.owner_id, payload.event_type):
            self.store.make_delivery(endpoint, event_id, payload.event_type, body)
            delivery_ids.append(f"{endpoint['_id']}/{event_id}")
        self.attempt_all(delivery_ids)

    def sweep(self) -> None:
        self.attempt_all(self.store.due_deliveries(SWEEP_BATCH))
        purged = self.store.purge_ended(now() - self.log_lifetime, SWEEP_BATCH)
        if purged:
            log.info("purged %d ended webhook deliveries older than %s", purged, self.log_lifetime)

    def attempt_all(self, delivery_ids: list[str]) -> None:
        if not delivery_ids:
            return
        with ThreadPoolExecutor(max_workers=min(len(delivery_ids), MAX_PARALLEL_ATTEMPTS)) as pool:
            # list(): re-raises a data store error of any attempt, so the event is retried by the broker.
            list(pool.map(self.attempt, delivery_ids))

    def attempt(self, delivery_id: str) -> None:
        delivery = self.store.claim(delivery_id, self.lease)
        if delivery is None:
            return  # delivered, ended, not due, or another sender holds it
        endpoint = self.store.endpoint(delivery["endpoint_id"])
        if endpoint is None or endpoint["state"] != "enabled":
            self.store.record(delivery, Attempt(None, "the endpoint is disabled"), DeliveryState.ABANDONED, None)
            return
        attempt = self.send(endpoint, delivery)
        self.settle(endpoint, delivery, attempt)

    def send(self, endpoint: dict[str, Any], delivery: dict[str, Any]) -> Attempt:
        try:
            target = resolve(endpoint["url"], allow_loopback=self.allow_loopback)
        except RefusedAddress as refusal:
            return Attempt(None, str(refusal))
        headers = signed_headers(delivery["event_id"], delivery["body"], self.store.signing_secrets(endpoint), now())
        return post(target, headers, delivery["body"], self.timeout_seconds)

    def settle(self, endpoint: dict[str, Any], delivery: dict[str, Any], attempt: Attempt) -> None:
        if attempt.succeeded:
            self.store.record(delivery, attempt, DeliveryState.DELIVERED, None)
        elif attempt.status == 410:
            # Gone: the receiver says it will never want these again (Standard Webhooks' convention).
            self.store.record(delivery, attempt, DeliveryState.ABANDONED, None)
            self.store.disable(endpoint["_id"], "the receiver answered 410 Gone")
            log.info("webhook endpoint %s disabled: its receiver answered 410", endpoint["_id"])
        else:
            retry_at = next_attempt_time(delivery["attempts"], self.retry_delays, now())
            state = DeliveryState.PENDING if retry_at is not None else DeliveryState.FAILED
            self.store.record(delivery, attempt, state, retry_at)
            log.info("webhook delivery %s attempt %d: %s; %s", delivery["_id"], delivery["attempts"],
                     attempt.status or attempt.error, f"next at {retry_at:%H:%M:%S}" if retry_at else "giving up")
