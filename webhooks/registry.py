"""What the `webhooks` API does for a signed-in user: register an endpoint (its secret shown once), list, show with
its recent deliveries, rotate the secret, delete. Requests are checked whole: a 422 names every bad field."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from events.catalog import JOB_EVENT_TYPES
from jobs.view import Timestamp
from runtime.addresses import RefusedAddress, resolve
from runtime.answers import HttpError
from runtime.clock import iso
from webhooks.store import DeliveryState, WebhookStore

SHOWN_DELIVERIES = 20
ENDPOINT_NOT_FOUND = HttpError(404, "not_found", "no such webhook endpoint")




EventType = Annotated[str, WithJsonSchema({"type": "string", "enum": list(JOB_EVENT_TYPES)})]


class Endpoint(BaseModel):
    """A registered webhook endpoint (the OpenAPI document's schemas are these models)."""

    id: str = Field(pattern="^ep_[0-9a-f]+$")
    url: str
    events: list[EventType] = Field(description="The event types it receives.")
    state: Literal["enabled", "disabled"]
    created_at: Timestamp | None
    disabled_reason: str | None = Field(default=None, description="Why it was disabled (only when it is).")


class EndpointWithSecret(Endpoint):
    secret: str = Field(pattern="^whsec_", description="The signing secret (Standard Webhooks), shown only here.")


class RotatedEndpoint(EndpointWithSecret):
    previous_secret_valid_until: Timestamp | None = Field(description="The old secret signs too until then.")


class Attempt(BaseModel):
    at: Timestamp | None
    attempt: int
    status: int | None = Field(description="The receiver's HTTP status; null when no answer came.")
    error: str | None


class Delivery(BaseModel):
    event_id: str
    event_type: str
    state: DeliveryState
    attempts: list[Attempt]
    next_attempt_at: Timestamp | None


class EndpointWithDeliveries(Endpoint):
    deliveries: list[Delivery] = Field(description=f"The most recent (at most {SHOWN_DELIVERIES}).")


class EndpointList(BaseModel):
    endpoints: list[Endpoint]


class EndpointRequest(BaseModel):
    """The body of a registration (checked by `requested_endpoint`, which names every problem at once)."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(pattern="^https?://[^/?#]+", examples=["https://receiver.example.com/vid2mp3"],
                     description="https only (a local stack allows http on loopback); its host must resolve to "
                                 "a public address.")
    events: list[EventType] = Field(min_length=1)


def endpoint_fields(endpoint: dict[str, Any]) -> dict[str, Any]:
    fields = {"id": endpoint["_id"], "url": endpoint["url"], "events": endpoint["events"],
              "state": endpoint["state"], "created_at": iso(endpoint["created_at"])}
    if endpoint["state"] == "disabled":
        fields["disabled_reason"] = endpoint.get("disabled_reason")
    return fields


def answer(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json", exclude_unset=True)


def delivery_view(delivery: dict[str, Any]) -> Delivery:
    return Delivery(
        event_id=delivery["event_id"], event_type=delivery["event_type"], state=delivery["state"],
        attempts=[Attempt(at=iso(entry["at"]), attempt=entry["attempt"], status=entry["status"],
                          error=entry["error"]) for entry in delivery.get("history", [])],
        next_attempt_at=iso(delivery["next_attempt_at"]) if delivery["state"] == "pending" else None,
    )


def requested_endpoint(body: Any, *, allow_loopback: bool) -> tuple[str, list[str]]:
    """The URL and event types of a registration, or a 422 naming every problem."""
    if not isinstance(body, dict):
        raise HttpError(422, "invalid_request", 'send a JSON object: {"url": "https://...", "events": [types]}')
    problems = []
    url, events = body.get("url"), body.get("events")
    if not isinstance(url, str):
        problems.append("url: required, a string")
    else:
        try:
            resolve(url, allow_loopback=allow_loopback)
        except RefusedAddress as refusal:
            problems.append(f"url: {refusal}")
    if not isinstance(events, list) or not events or not all(isinstance(kind, str) for kind in events):
        problems.append("events: required, a non-empty list of event types")
        events = []
    unknown = sorted(set(events) - set(JOB_EVENT_TYPES))
    if unknown:
        problems.append(f"events: unknown {', '.join(unknown)}; choose from {', '.join(JOB_EVENT_TYPES)}")
    unexpected = sorted(set(body) - {"url", "events"})
    if unexpected:
        problems.append(f"unexpected field(s): {', '.join(unexpected)}")
    if problems:
        raise HttpError(422, "invalid_webhook", "; ".join(problems))
    return str(url), sorted(set(events), key=JOB_EVENT_TYPES.index)


class Registry:
    def __init__(self, store: WebhookStore, *, allow_loopback: bool, max_endpoints: int) -> None:
        self.store = store
        self.allow_loopback = allow_loopback
        self.max_endpoints = max_endpoints

    def register(self, owner_id: str, body: Any) -> dict[str, Any]:
        url, events = requested_endpoint(body, allow_loopback=self.allow_loopback)
        if len(self.store.owned_endpoints(owner_id)) >= self.max_endpoints:
            raise HttpError(409, "too_many_endpoints",
                            f"an account has at most {self.max_endpoints} webhook endpoints; delete one first")
        endpoint = self.store.add_endpoint(owner_id, url, events)
        # The only time the secret is shown: the receiver needs it to verify signatures.
        return answer(EndpointWithSecret(**endpoint_fields(endpoint), secret=endpoint["secret"]))

    def list(self, owner_id: str) -> dict[str, Any]:
        return answer(EndpointList(endpoints=[Endpoint(**endpoint_fields(endpoint))
                                              for endpoint in self.store.owned_endpoints(owner_id)]))

    def show(self, owner_id: str, endpoint_id: str) -> dict[str, Any]:
        endpoint = self.store.owned_endpoint(owner_id, endpoint_id)
        if endpoint is None:
            raise ENDPOINT_NOT_FOUND
        deliveries = self.store.recent_deliveries(endpoint_id, SHOWN_DELIVERIES)
        return answer(EndpointWithDeliveries(**endpoint_fields(endpoint),
                                             deliveries=[delivery_view(delivery) for delivery in deliveries]))

    def rotate_secret(self, owner_id: str, endpoint_id: str) -> dict[str, Any]:
        endpoint = self.store.rotate_secret(owner_id, endpoint_id)
        if endpoint is None:
            raise ENDPOINT_NOT_FOUND
        return answer(RotatedEndpoint(**endpoint_fields(endpoint), secret=endpoint["secret"],
                                      previous_secret_valid_until=iso(endpoint["previous_secret_until"])))

    def delete(self, owner_id: str, endpoint_id: str) -> None:
        if not self.store.delete_endpoint(owner_id, endpoint_id):
            raise ENDPOINT_NOT_FOUND
