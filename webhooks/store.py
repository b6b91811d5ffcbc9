"""Webhook endpoints and their deliveries, in MongoDB; shared by the `webhooks` API and the `delivery` function.

`webhook_endpoints`: one document per registered endpoint (`_id` `ep_<hex>`): its owner, URL, the event types it
wants, its signing secret (and the previous one for a day after a rotation, so a receiver can roll over without
losing a delivery), `enabled` or `disabled` with the reason.

`webhook_deliveries`: one document per (endpoint, event), `_id` `<endpoint id>/<event id>`, so a redelivered event
finds the delivery it already has and never makes a second one. Each delivery is `pending` until the receiver
answered 2xx (`delivered`), its endpoint answered 410 or was disabled (`abandoned`) or the retry schedule ran out
(`failed`); a sender claims a pending delivery with a lease before each attempt, so two senders never attempt it
at once. The body is fixed when the delivery is made: every attempt sends the same bytes under the same
`webhook-id`, which is what lets a receiver deduplicate.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.database import Database

from runtime.clock import now

SECRET_PREFIX = "whsec_"  # noqa: S105 - the prefix Standard Webhooks gives secrets, not a secret
SECRET_BYTES = 32
# After a rotation the old secret signs too, for this long, beside the new one (Standard Webhooks allows several
# signatures in one header).
PREVIOUS_SECRET_GRACE = timedelta(hours=24)
# How many attempts a delivery keeps a record of; the endpoint's view shows them.
KEPT_ATTEMPTS = 10




def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


class DeliveryState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    ABANDONED = "abandoned"


@dataclass(frozen=True)
class Attempt:
    """What one POST to a receiver came to: its HTTP status, or None with the error when no answer came."""

    status: int | None
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class WebhookStore:
    def __init__(self, database: Database[dict[str, Any]]) -> None:
        self.endpoints = database["webhook_endpoints"]
        self.deliveries = database["webhook_deliveries"]

    def ensure_indexes(self) -> None:
        self.endpoints.create_index([("owner_id", ASCENDING)])
        self.deliveries.create_index([("endpoint_id", ASCENDING), ("created_at", ASCENDING)])
        self.deliveries.create_index([("state", ASCENDING), ("next_attempt_at", ASCENDING)])

    # --- endpoints ----------------------------------------------------------------------------------------------

    def add_endpoint(self, owner_id: str, url: str, event_types: list[str]) -> dict[str, Any]:
        endpoint = {
            "_id": "ep_" + secrets.token_hex(12), "owner_id": owner_id, "url": url, "events": event_types,
            "secret": new_secret(), "state": "enabled", "created_at": now(),
        }
        self.endpoints.insert_one(endpoint)
        return endpoint

    def owned_endpoints(self, owner_id: str) -> list[dict[str, Any]]:
        return list(self.endpoints.find({"owner_id": owner_id}).sort("created_at", ASCENDING))

    def owned_endpoint(self, owner_id: str, endpoint_id: str) -> dict[str, Any] | None:
        return self.endpoints.find_one({"_id": endpoint_id, "owner_id": owner_id})

    def endpoints_for(self, owner_id: str, event_type: str) -> list[dict[str, Any]]:
        return list(self.endpoints.find({"owner_id": owner_id, "state": "enabled", "events": event_type}))

    def endpoint(self, endpoint_id: str) -> dict[str, Any] | None:
        return self.endpoints.find_one({"_id": endpoint_id})

    def rotate_secret(self, owner_id: str, endpoint_id: str) -> dict[str, Any] | None:
        endpoint = self.owned_endpoint(owner_id, endpoint_id)
        if endpoint is None:
            return None
        return self.endpoints.find_one_and_update(
            {"_id": endpoint_id, "owner_id": owner_id},
            {"$set": {"secret": new_secret(), "previous_secret": endpoint["secret"],
                      "previous_secret_until": now() + PREVIOUS_SECRET_GRACE}},
            return_document=ReturnDocument.AFTER)

    def disable(self, endpoint_id: str, reason: str) -> None:
        self.endpoints.update_one({"_id": endpoint_id},
                                  {"$set": {"state": "disabled", "disabled_reason": reason, "disabled_at": now()}})
        self.deliveries.update_many({"endpoint_id": endpoint_id, "state": DeliveryState.PENDING},
                                    {"$set": {"state": DeliveryState.ABANDONED, "ended_at": now()}})

    def delete_endpoint(self, owner_id: str, endpoint_id: str) -> bool:
        deleted = self.endpoints.delete_one({"_id": endpoint_id, "owner_id": owner_id}).deleted_count == 1
        if deleted:
            self.deliveries.delete_many({"endpoint_id": endpoint_id})
        return deleted

    def delete_owned(self, owner_id: str) -> None:
        """Everything of an account's webhooks, when the account goes."""
        for endpoint in self.owned_endpoints(owner_id):
            self.delete_endpoint(owner_id, endpoint["_id"])

    @staticmethod
    def signing_secrets(endpoint: dict[str, Any]) -> list[str]:
        secrets_now = [endpoint["secret"]]
        until = endpoint.get("previous_secret_until")
        if endpoint.get("previous_secret") and until is not None and until > now():
            secrets_now.append(endpoint["previous_secret"])
        return secrets_now

    # --- deliveries ---------------------------------------------------------------------------------------------

    def make_delivery(self, endpoint: dict[str, Any], event_id: str, event_type: str, body: str) -> None:
        """Records the delivery of one event to one endpoint, unless it exists (a redelivered event)."""
        moment = now()
        self.deliveries.update_one(
            {"_id": f"{endpoint['_id']}/{event_id}"},
            {"$setOnInsert": {
                "endpoint_id": endpoint["_id"], "owner_id": endpoint["owner_id"], "event_id": event_id,
                "event_type": event_type, "body": body, "state": DeliveryState.PENDING, "attempts": 0,
                "next_attempt_at": moment, "lease_until": moment, "created_at": moment, "history": [],
            }},
            upsert=True)

    def claim(self, delivery_id: str, lease: timedelta) -> dict[str, Any] | None:
        """The pending delivery, leased to this sender for `lease`, if it is due and nobody holds it."""
        moment = now()
        return self.deliveries.find_one_and_update(
            {"_id": delivery_id, "state": DeliveryState.PENDING, "next_attempt_at": {"$lte": moment},
             "lease_until": {"$lte": moment}},
            {"$set": {"lease_until": moment + lease}, "$inc": {"attempts": 1}},
            return_document=ReturnDocument.AFTER)

    def due_deliveries(self, limit: int) -> list[str]:
        cursor = self.deliveries.find(
            {"state": DeliveryState.PENDING, "next_attempt_at": {"$lte": now()}, "lease_until": {"$lte": now()}},
            {"_id": 1}).sort("next_attempt_at", ASCENDING).limit(limit)
        return [document["_id"] for document in cursor]

    def record(self, delivery: dict[str, Any], attempt: Attempt, state: DeliveryState,
               next_attempt_at: datetime | None) -> None:
        moment = now()
        entry = {"at": moment, "attempt": delivery["attempts"], "status": attempt.status, "error": attempt.error}
        update: dict[str, Any] = {
            "$set": {"state": state, "lease_until": moment},
            "$push": {"history": {"$each": [entry], "$slice": -KEPT_ATTEMPTS}},
        }
        if next_attempt_at is not None:
            update["$set"]["next_attempt_at"] = next_attempt_at
        if state != DeliveryState.PENDING:
            update["$set"]["ended_at"] = moment
        self.deliveries.update_one({"_id": delivery["_id"], "attempts": delivery["attempts"]}, update)

    def recent_deliveries(self, endpoint_id: str, limit: int) -> list[dict[str, Any]]:
        return list(self.deliveries.find({"endpoint_id": endpoint_id}, {"body": 0})
                    .sort("created_at", -1).limit(limit))

    def purge_ended(self, before: datetime, limit: int) -> int:
        """Deletes up to `limit` deliveries that ended before `before`: the delivery log's lifetime."""
        ids = [document["_id"] for document in self.deliveries.find(
            {"state": {"$ne": DeliveryState.PENDING}, "ended_at": {"$lt": before}}, {"_id": 1}).limit(limit)]
        return self.deliveries.delete_many({"_id": {"$in": ids}}).deleted_count if ids else 0
