"""Emits vid2mp3 payloads to the broker as binary-mode CloudEvents, and turns received CloudEvents into payloads."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from typing import TypeVar

import requests
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent
from pydantic import ValidationError

from events.catalog import SOURCE_PREFIX, EventPayload

log = logging.getLogger(__name__)

Payload = TypeVar("Payload", bound=EventPayload)


class EmitError(Exception):
    """The broker did not accept an event after every attempt; the caller must not report success."""


class InvalidEvent(ValueError):
    """A received CloudEvent is not the type a function expects, or its payload breaks the schema."""


def to_cloud_event(payload: EventPayload, *, source_function: str) -> CloudEvent:
    attributes = {
        "type": payload.event_type,
        "source": SOURCE_PREFIX + source_function,
        "id": payload.event_id(),
        "subject": payload.job_id,
        "dataschema": payload.schema_uri(),
        "datacontenttype": "application/json",
        "time": datetime.now(UTC).isoformat(),
    }
    return CloudEvent(attributes, payload.model_dump(mode="json"))


def parse_event(event: CloudEvent, model: type[Payload]) -> Payload:
    """The event's payload as `model`, or InvalidEvent naming every problem at once."""
    if event["type"] != model.event_type:
        raise InvalidEvent(f"expected an event of type {model.event_type}, got {event['type']}")
    data = event.get_data()
    if isinstance(data, bytes | str):
        try:
            data = json.loads(data)
        except ValueError as error:
            raise InvalidEvent(f"{event['type']} data is not JSON: {error}") from None
    try:
        payload = model.model_validate(data)
    except ValidationError as error:
        raise InvalidEvent(f"{event['type']} payload is invalid: {error}") from None
    if event.get("subject") not in (None, payload.job_id):
        raise InvalidEvent(f"subject {event.get('subject')!r} is not the payload's job id {payload.job_id}")
    return payload


class EventEmitter:
    """POSTs events to one sink (the broker ingress, `K_SINK`) with bounded retries and exponential backoff.

    The ingress answers 202 only after RabbitMQ confirmed the message, so 2xx means the event is durable.
    """

    def __init__(
        self,
        sink_url: str,
        source_function: str,
        *,
        attempts: int = 4,
        first_backoff_seconds: float = 0.2,
        timeout_seconds: float = 10.0,
    ) -> None:
        self.sink_url = sink_url
        self.source_function = source_function
        self.attempts = attempts
        self.first_backoff_seconds = first_backoff_seconds
        self.timeout_seconds = timeout_seconds
        self._session = requests.Session()

    def emit(self, payload: EventPayload) -> None:
        headers, body = to_binary(to_cloud_event(payload, source_function=self.source_function))
        problem = ""
        for attempt in range(self.attempts):
            if attempt:
                time.sleep(self.first_backoff_seconds * 2 ** (attempt - 1))
            try:
                response = self._session.post(self.sink_url, headers=headers, data=body, timeout=self.timeout_seconds)
            except requests.RequestException as error:
                problem = f"{type(error).__name__}: {error}"
                continue
            if 200 <= response.status_code < 300:
                log.info("emitted %s id=%s", payload.event_type, payload.event_id())
                return
            problem = f"HTTP {response.status_code} {response.text[:200]}"
            if response.status_code < 500 and response.status_code not in (404, 408, 429):
                break  # the broker refused this event; sending it again cannot help
        raise EmitError(f"could not emit {payload.event_type} for job {payload.job_id} to {self.sink_url}: {problem}")
