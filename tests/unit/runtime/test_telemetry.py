"""Telemetry: without an endpoint nothing is traced or loaded; a delivery continues its transport hop's trace, else the
event's own trace context."""

from __future__ import annotations

import json
import subprocess
import sys

from opentelemetry import trace
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from runtime.telemetry import CloudEventTraceContext
from stack.config import ROOT


def test_without_an_endpoint_nothing_is_traced_or_loaded() -> None:
    """A function with no OTEL_EXPORTER_OTLP_ENDPOINT loads no SDK, makes no span and sends no trace context."""
    program = """
import json, sys
from runtime import telemetry
from events import to_cloud_event
from events.catalog import JobCancelled
telemetry.start("status", "")
event = to_cloud_event(JobCancelled(job_id="a" * 32, owner_id="o", cancelled_at="2026-01-01T00:00:00Z"),
                       source_function="status")
print(json.dumps({"enabled": telemetry.enabled(), "sdk": "opentelemetry.sdk" in sys.modules,
                  "traceparent": event.get("traceparent")}))
"""
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, cwd=ROOT, check=True,
                            env={"PATH": "/usr/bin:/bin"})
    assert json.loads(result.stdout.splitlines()[-1]) == {"enabled": False, "sdk": False, "traceparent": None}


def test_a_delivery_continues_its_transport_hop_else_the_events_own_trace_context() -> None:
    propagator = CompositePropagator([CloudEventTraceContext(), TraceContextTextMapPropagator()])
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    emitted, delivered = f"00-{trace_id}-00f067aa0ba902b7-01", f"00-{trace_id}-b7ad6b7169203331-01"

    def parent_span_id(headers: dict[str, str]) -> str:
        span_context = trace.get_current_span(propagator.extract(headers)).get_span_context()
        return format(span_context.span_id, "016x") if span_context.is_valid else ""

    assert parent_span_id({"ce-traceparent": emitted}) == "00f067aa0ba902b7"
    assert parent_span_id({"ce-traceparent": emitted, "traceparent": delivered}) == "b7ad6b7169203331"
    assert parent_span_id({"ce-id": "x"}) == ""
    injected: dict[str, str] = {}
    propagator.inject(injected, propagator.extract({"traceparent": delivered}))
    assert set(injected) == {"traceparent"}, "no ce- header on other HTTP calls"


