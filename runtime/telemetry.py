"""Traces and metrics for every function, set up once at start-up (by `load_settings`): spans for each request and
each received event, child spans where the time goes, and a few metrics, all exported over OTLP to
OTEL_EXPORTER_OTLP_ENDPOINT. Without an endpoint nothing is instrumented, recorded or exported: `traced` and
`open_span` then cost one check of a module variable.

Trace context crosses the broker inside the CloudEvents themselves (`events/transport.py` writes the `traceparent`
and `tracestate` extension attributes); a delivery brings it back as the HTTP `traceparent` header (the
eventing-rabbitmq dispatcher) or as `ce-traceparent` (a binary-mode event posted as it was emitted): the request span
continues whichever came, so one job's hops form one trace.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

import flask
from cloudevents.http import CloudEvent
from opentelemetry import context as otel_context
from opentelemetry import metrics, propagate, trace
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import CarrierT, Getter, Setter, TextMapPropagator, default_getter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from events.catalog import is_job_id
from runtime import structured_logs

P = ParamSpec("P")
R = TypeVar("R")

# Span attributes (the CloudEvents semantic conventions' names where there are some).
JOB_ID = "vid2mp3.job_id"
EVENT_TYPE = "cloudevents.event_type"
EVENT_ID = "cloudevents.event_id"
EVENT_SOURCE = "cloudevents.event_source"
OUTCOME = "vid2mp3.outcome"

_tracer: trace.Tracer | None = None  # None: telemetry is off in this process
_meter = metrics.get_meter("vid2mp3")
# Instruments of the API's global meter: they record nothing until `start` sets a meter provider.
broker_wait = _meter.create_histogram(
    "vid2mp3.event.broker_wait", unit="s",
    description="From an event's emission (its `time`) to its delivery to a function: queueing, retries, backoff")
encoding_speed = _meter.create_histogram(
    "vid2mp3.conversion.seconds_per_media_second", unit="1",
    description="Wall seconds one ffmpeg run took per second of media it encoded (a segment counts for itself)")
deliveries = _meter.create_counter(
    "vid2mp3.events.handled", description="Events a function received, by type and outcome")


class CloudEventTraceContext(TextMapPropagator):
    """Reads W3C trace context from a binary-mode CloudEvent's `ce-traceparent` / `ce-tracestate` headers (the
    distributed-tracing extension). Injects nothing: outgoing events carry it as attributes (events/transport.py),
    and other HTTP calls must not grow `ce-` headers."""

    _w3c = TraceContextTextMapPropagator()

    def extract(self, carrier: CarrierT, context: otel_context.Context | None = None,
                getter: Getter[CarrierT] = default_getter) -> otel_context.Context:
        headers = {name: getter.get(carrier, f"ce-{name}") for name in self._w3c.fields}
        found = {name: values[0] for name, values in headers.items() if values}
        if "traceparent" not in found:
            return context if context is not None else otel_context.get_current()
        return self._w3c.extract(found, context=context)

    def inject(self, carrier: CarrierT, context: otel_context.Context | None = None,
               setter: Setter[CarrierT] | None = None) -> None:
        return None

    @property
    def fields(self) -> set[str]:
        return {f"ce-{name}" for name in self._w3c.fields}


def enabled() -> bool:
    return _tracer is not None


def start(function: str, otlp_endpoint: str) -> None:
    """Once per process: JSON logs always; traces and metrics only when an OTLP endpoint is set."""
    global _tracer
    structured_logs.configure(function)
    if _tracer is not None or not otlp_endpoint:
        return
    # Imported here: a process without an endpoint never loads the SDK, the exporters or the instrumentations.
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.flask import FlaskInstrumentor
    from opentelemetry.instrumentation.pymongo import PymongoInstrumentor
    from opentelemetry.instrumentation.pymysql import PyMySQLInstrumentor
    from opentelemetry.instrumentation.requests import RequestsInstrumentor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    endpoint = otlp_endpoint.rstrip("/")
    resource = Resource.create({"service.name": function, "service.namespace": "vid2mp3"})
    tracer_provider = TracerProvider(resource=resource, sampler=_sampler(), id_generator=_id_generator())
    # Batched in a thread of its own (re-made in gunicorn's forked worker), flushed when the process exits.
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces")))
    trace.set_tracer_provider(tracer_provider)
    # Pushed, not scraped: a scale-to-zero pod may be gone before any scrape. The interval is the SDK's
    # OTEL_METRIC_EXPORT_INTERVAL (60 s unless set); the last figures go out as the process exits.
    metrics.set_meter_provider(MeterProvider(
        resource=resource, metric_readers=[PeriodicExportingMetricReader(
            OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics"))]))
    # Later propagators win: a transport hop's `traceparent` header over the event's own `ce-traceparent`.
    propagate.set_global_textmap(CompositePropagator([CloudEventTraceContext(), TraceContextTextMapPropagator()]))
    RequestsInstrumentor().instrument()
    PymongoInstrumentor().instrument()
    PyMySQLInstrumentor().instrument()
    if flask.has_app_context():  # functions-framework runs main.py inside its app's context
        FlaskInstrumentor.instrument_app(flask.current_app._get_current_object(),  # type: ignore[attr-defined]
                                         request_hook=_note_job_of_path)
    _tracer = trace.get_tracer("vid2mp3")


def _sampler() -> Any:
    """Every trace, but no trace that is one database call alone: a call made outside any request or event (at
    start-up, or on a worker thread such as GridFS's chunk writer, which the context does not follow) would
    otherwise be a trace of its own; its time is inside its caller's span (`gridfs write`)."""
    from opentelemetry.sdk.trace.sampling import Decision as SamplingDecision
    from opentelemetry.sdk.trace.sampling import ParentBased, Sampler, SamplingResult

    class NoLoneClientSpans(Sampler):
        def should_sample(self, parent_context: Any, trace_id: int, name: str, kind: SpanKind | None = None,
                          attributes: Any = None, links: Any = None, trace_state: Any = None) -> SamplingResult:
            if kind is SpanKind.CLIENT:
                return SamplingResult(SamplingDecision.DROP)
            return SamplingResult(SamplingDecision.RECORD_AND_SAMPLE, attributes)

        def get_description(self) -> str:
            return "NoLoneClientSpans"

    return ParentBased(root=NoLoneClientSpans())


def _id_generator() -> Any:
    """Random ids, without the W3C level-2 "random trace id" flag that the SDK would set on the traces it starts
    (`traceparent` flags 03): the Go OpenTelemetry of the eventing-rabbitmq v0.48.0 ingress and dispatcher (v1.39)
    rejects a version-00 `traceparent` with any flag but `sampled`, and the job's trace would break at the broker."""
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class RandomIdsUnflagged(RandomIdGenerator):
        def is_trace_id_random(self) -> bool:
            return False

    return RandomIdsUnflagged()


def _note_job_of_path(span: Span, environ: dict[str, Any]) -> None:
    """status and download name the job in the path: `/<job id>`, `/<job id>/events`."""
    first = str(environ.get("PATH_INFO", "")).strip("/").split("/")[0]
    if span.is_recording() and is_job_id(first):
        span.set_attribute(JOB_ID, first)


def traced(name: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Runs the decorated function in a span `name` (an exception marks it as an error)."""
    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(function)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            if _tracer is None:
                return function(*args, **kwargs)
            with _tracer.start_as_current_span(name):
                return function(*args, **kwargs)
        return run
    return decorate


class OpenSpan:
    """A span that is not made current: for work that runs beside the caller (an ffmpeg process), ended once."""

    def __init__(self, name: str, attributes: dict[str, Any]) -> None:
        self.span = _tracer.start_span(name, attributes=attributes) if _tracer is not None else None

    def end(self, error: str | None = None, **attributes: Any) -> None:
        span, self.span = self.span, None
        if span is None:
            return
        span.set_attributes(attributes)
        if error:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end()


def open_span(name: str, **attributes: Any) -> OpenSpan:
    return OpenSpan(name, attributes)


_W3C = TraceContextTextMapPropagator()


def trace_context() -> dict[str, str]:
    """The current span's W3C trace context (`traceparent`, and `tracestate` if any; empty outside a trace), to
    keep beside work that another process may finish later: a job's pending event, the job itself."""
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)
    return carrier


@contextmanager
def resumed(kept: dict[str, str] | None, name: str, **attributes: Any) -> Iterator[None]:
    """Work done on a job's behalf by whoever comes later (the reconcile sweep re-sending its pending event or
    sending it round again, the upload's background retry): a span `name` in the job's own trace (`kept`, from
    `trace_context`), linked to the span that does the work, so the job's trace shows everything done for it.
    Already inside the job's trace, or without a kept context, it adds nothing."""
    job_context = _W3C.extract(kept or {})
    kept_span = trace.get_current_span(job_context).get_span_context()
    current = trace.get_current_span().get_span_context()
    if _tracer is None or not kept_span.is_valid or kept_span.trace_id == current.trace_id:
        yield
        return
    links = [trace.Link(current)] if current.is_valid else []
    with _tracer.start_as_current_span(name, context=job_context, links=links, attributes=attributes):
        yield


class Delivery:
    """One received event being handled: its span (None when telemetry is off), its job and its outcome."""

    def __init__(self, event_type: str, span: Span | None, request_span: Span | None) -> None:
        self.event_type, self.span, self.request_span = event_type, span, request_span
        self.outcome = "error"  # until told otherwise: an exception escaped the handler

    def job(self, job_id: str) -> None:
        structured_logs.current_job.set(job_id)
        for span in (self.span, self.request_span):
            if span is not None:
                span.set_attribute(JOB_ID, job_id)

    def ended(self, outcome: str) -> None:
        """`done`, `dropped` (unusable event, acknowledged) or `retry` (answered 503)."""
        self.outcome = outcome


@contextmanager
def handling(event: CloudEvent) -> Iterator[Delivery]:
    """The span of one received event, inside its request's span, with the job id and the outcome; and the
    time the event waited in the broker."""
    event_type = str(event["type"])
    emitted = structured_logs.parse_time(event.get("time"))
    if emitted is not None:
        broker_wait.record(max(0.0, time.time() - emitted), {EVENT_TYPE: event_type})
    job_token = structured_logs.current_job.set(None)
    delivery = Delivery(event_type, None, None)
    try:
        if _tracer is None:
            yield delivery
        else:
            attributes = {EVENT_TYPE: event_type, EVENT_ID: str(event["id"]), EVENT_SOURCE: str(event["source"])}
            delivery.request_span = trace.get_current_span()
            with _tracer.start_as_current_span(f"handle {event_type}", kind=SpanKind.CONSUMER,
                                               attributes=attributes) as span:
                delivery.span = span
                try:
                    yield delivery
                finally:
                    span.set_attribute(OUTCOME, delivery.outcome)
    finally:
        deliveries.add(1, {EVENT_TYPE: event_type, OUTCOME: delivery.outcome})
        structured_logs.current_job.reset(job_token)
