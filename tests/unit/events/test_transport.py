"""The emit helper: binary-mode CloudEvents POSTed to a real local sink, retried only where a retry can succeed, and
carrying the current trace context."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from events import (
    AUDIO_CONVERTED,
    AudioConverted,
    EmitError,
    EventEmitter,
)
from stack.config import ROOT
from tests.support import Sink

JOB = "0123456789abcdef0123456789abcdef"


SHA = "a" * 64


def converted() -> AudioConverted:
    return AudioConverted(job_id=JOB, owner_id="7", audio_id=JOB, size_bytes=5, sha256=SHA, duration_seconds=1.5,
                          bitrate_kbps=192, stream_copied=False, converted_at=datetime.now(UTC))


def test_emit_posts_a_binary_mode_cloud_event() -> None:
    sink = Sink([202])
    EventEmitter(sink.url, "convert").emit(converted())
    [(headers, body)] = sink.requests
    assert headers["ce-type"] == AUDIO_CONVERTED and headers["ce-source"] == "/vid2mp3/convert"
    assert headers["ce-subject"] == JOB and headers["content-type"] == "application/json"
    assert json.loads(body)["audio_id"] == JOB


def test_emit_retries_server_errors_then_succeeds() -> None:
    sink = Sink([503, 500, 202])
    EventEmitter(sink.url, "convert", first_backoff_seconds=0.01).emit(converted())
    assert len(sink.requests) == 3


def test_emit_gives_up_after_its_attempts() -> None:
    sink = Sink([500])
    with pytest.raises(EmitError, match="HTTP 500"):
        EventEmitter(sink.url, "convert", attempts=3, first_backoff_seconds=0.01).emit(converted())
    assert len(sink.requests) == 3


def test_emit_does_not_retry_a_refusal() -> None:
    sink = Sink([400])
    with pytest.raises(EmitError, match="HTTP 400"):
        EventEmitter(sink.url, "convert", first_backoff_seconds=0.01).emit(converted())
    assert len(sink.requests) == 1


def test_emit_to_nowhere_is_an_error() -> None:
    with pytest.raises(EmitError, match="ConnectionError"):
        EventEmitter("http://127.0.0.1:9/", "convert", attempts=2, first_backoff_seconds=0.01).emit(converted())


def test_an_emitted_event_carries_the_current_trace_context() -> None:
    program = """
import json
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from events import to_cloud_event
from events.catalog import JobCancelled
trace.set_tracer_provider(TracerProvider())
with trace.get_tracer("test").start_as_current_span("emitting") as span:
    event = to_cloud_event(JobCancelled(job_id="a" * 32, owner_id="o", cancelled_at="2026-01-01T00:00:00Z"),
                           source_function="status")
    print(json.dumps({"traceparent": event.get("traceparent"),
                      "trace_id": format(span.get_span_context().trace_id, "032x")}))
"""
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, cwd=ROOT, check=True,
                            env={"PATH": "/usr/bin:/bin"})
    seen = json.loads(result.stdout.splitlines()[-1])
    assert seen["traceparent"].startswith(f"00-{seen['trace_id']}-"), seen


