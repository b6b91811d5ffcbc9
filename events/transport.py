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
from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pydantic import ValidationError

from events.catalog import AUDIO_CONVERTED, CONVERSION_FAILED, JOB_CANCELLED, SOURCE_PREFIX, EventPayload

log = logging.getLogger(__name__)

Payload = TypeVar("Payload", bound=EventPayload)

# The OpenTelemetry API only: a function that set up no SDK (runtime/telemetry.py) records nothing, and
# then an event carries no trace context.
tracer = trace.get_tracer("vid2mp3.events")
W3C_TRACE_CONTEXT = TraceContextTextMapPropagator()
# The events that end a job, and the state they end it in.
FINAL_STATE_BY_TYPE = {AUDIO_CONVERTED: "done", CONVERSION_FAILED: "failed", JOB_CANCELLED: "cancelled"}
jobs_ended = metrics.get_meter("vid2mp3.events").create_counter(
    "vid2mp3.jobs.ended", description="Jobs that reached a final state, by state (counted as the event is emitted)")


class RetryLater(Exception):
    """A consumer cannot handle its event now: it answers 503, so the dispatcher delivers it again after its
    backoff (endpoints/consumer.py)."""


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
    # The CloudEvents distributed-tracing extension: `traceparent` (and `tracestate`) of the current span, so the
    # functions this event reaches continue its trace (README: what the broker does with them).
    W3C_TRACE_CONTEXT.inject(attributes)
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
        handler_span = trace.get_current_span()
        # The request or event being handled now concerns this job (upload's request learns its id only here).
        handler_span.set_attribute("vid2mp3.job_id", payload.job_id)
        with tracer.start_as_current_span(f"emit {payload.event_type}", kind=SpanKind.PRODUCER, attributes={
            "vid2mp3.job_id": payload.job_id, "cloudevents.event_type": payload.event_type,
            "cloudevents.event_id": payload.event_id(),
        }) as span:
            self._post(payload)
            final_state = FINAL_STATE_BY_TYPE.get(payload.event_type)
            if final_state is not None:
                jobs_ended.add(1, {"state": final_state})
            if final_state == "failed":
                # The failed job's trace shows where it failed: this span and the one that decided it.
                failure = Status(StatusCode.ERROR, f"job failed: {getattr(payload, 'reason', '')}")
                for marked in (span, handler_span):
                    marked.set_status(failure)

    def _post(self, payload: EventPayload) -> None:
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
