"""Traces, logs and metrics: one job's hops read back from the local stack's Jaeger as one trace, a failed job's
trace marking its error, the functions' JSON log lines joined to it by trace id, the metrics the functions push,
and what the logs never contain."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from opentelemetry import context as otel_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from bench import tracing as bench_tracing
from events.catalog import NOTIFICATION_SENT
from stack.config import LOGS
from tests.support import TEST_PASSWORD, event_tap, make_clip, new_user, stage_job, tick_ping_source, wait_for

TRACE_TIMEOUT_SECONDS = 60


def traces_of_job(jaeger_url: str, service: str, job_id: str) -> list[dict[str, Any]]:
    response = requests.get(f"{jaeger_url}/api/traces", params={
        "service": service, "tags": json.dumps({"vid2mp3.job_id": job_id}), "lookback": "1h", "limit": 20,
    }, timeout=10)
    response.raise_for_status()
    return list(response.json()["data"] or [])


def whole_trace(jaeger_url: str, trace_id: str) -> dict[str, Any]:
    response = requests.get(f"{jaeger_url}/api/traces/{trace_id}", timeout=10)
    response.raise_for_status()
    [trace] = response.json()["data"]
    return dict(trace)


class Trace:
    """A Jaeger trace as spans that know their function (service) and their parent."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.trace_id = data["traceID"]
        services = {key: process["serviceName"] for key, process in data["processes"].items()}
        self.spans = [{
            "id": span["spanID"], "name": span["operationName"], "service": services[span["processID"]],
            "parent": next((reference["spanID"] for reference in span.get("references", [])
                            if reference["refType"] == "CHILD_OF"), None),
            "tags": {tag["key"]: tag["value"] for tag in span.get("tags", [])},
            "links": [(reference["traceID"], reference["spanID"]) for reference in span.get("references", [])
                      if reference["refType"] == "FOLLOWS_FROM"],
        } for span in data["spans"]]
        self.by_id = {span["id"]: span for span in self.spans}

    def services(self) -> set[str]:
        return {span["service"] for span in self.spans}

    def named(self, name: str, service: str | None = None) -> list[dict[str, Any]]:
        return [span for span in self.spans if span["name"] == name and service in (None, span["service"])]

    def ancestors(self, span: dict[str, Any]) -> Iterator[dict[str, Any]]:
        while span["parent"] in self.by_id:
            span = self.by_id[span["parent"]]
            yield span

    def errors(self) -> list[dict[str, Any]]:
        return [span for span in self.spans
                if span["tags"].get("error") is True or span["tags"].get("otel.status_code") == "ERROR"]


def job_trace(endpoints: dict[str, str], job_id: str, *, expect: set[tuple[str, str]]) -> Trace:
    """The job's trace, once it holds the spans `expect` names as (function, span name) and the parent of every
    span: each process sends its spans in batches (the broker's every 5 s), so a trace fills up over seconds."""
    def complete() -> Trace | None:
        found = {trace["traceID"] for trace in traces_of_job(endpoints["JAEGER_URL"], "upload", job_id)}
        if len(found) != 1:
            return None
        trace = Trace(whole_trace(endpoints["JAEGER_URL"], found.pop()))
        whole = all(span["parent"] is None or span["parent"] in trace.by_id for span in trace.spans)
        return trace if whole and all(trace.named(name, service) for service, name in expect) else None
    return wait_for(complete, TRACE_TIMEOUT_SECONDS, f"one trace of job {job_id} with spans {sorted(expect)}",
                    interval=0.5)


@contextmanager
def a_trace_of_our_own() -> Iterator[tuple[str, str]]:
    """Runs the block inside a trace of a made-up id (the test process exports no spans: the functions' spans that
    continue it are what Jaeger will hold); yields the trace id and the made-up parent span's id."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    attached = otel_context.attach(
        TraceContextTextMapPropagator().extract({"traceparent": f"00-{trace_id}-{span_id}-01"}))
    try:
        yield trace_id, span_id
    finally:
        otel_context.detach(attached)


def trace_holding(endpoints: dict[str, str], trace_id: str, outside_parent: str,
                  expect: set[tuple[str, str]], count: Callable[[Trace], bool] = lambda _: True) -> Trace:
    """The trace `trace_id` once it holds the spans `expect` names as (function, span name), `count` is true, and
    the parent of every span (but `outside_parent`, the made-up one): each process sends its spans in batches."""
    def complete() -> Trace | None:
        try:
            trace = Trace(whole_trace(endpoints["JAEGER_URL"], trace_id))
        except requests.HTTPError:  # 404 until its first span arrives
            return None
        whole = all(span["parent"] in (None, outside_parent) or span["parent"] in trace.by_id
                    for span in trace.spans)
        return trace if whole and all(trace.named(name, service) for service, name in expect) and count(trace) \
            else None
    return wait_for(complete, TRACE_TIMEOUT_SECONDS, f"trace {trace_id} with spans {sorted(expect)}", interval=0.5)


def log_lines(function: str) -> list[dict[str, Any]]:
    lines = []
    for line in (LOGS / f"{function}.log").read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            lines.append(record)
    return lines


@pytest.fixture(scope="module")
def converted_job(endpoints: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Trace]:
    client, _ = new_user(endpoints)
    clip = make_clip(tmp_path_factory.mktemp("tracing") / "clip.mp4", seconds=3)
    with event_tap(endpoints, [NOTIFICATION_SENT]) as tap:
        job_id = client.upload(clip)["job_id"]
        wait_for(lambda: tap.events_for(job_id), 90, f"notification sent for job {job_id}", interval=0.2)
    return job_id, job_trace(endpoints, job_id, expect={
        ("upload", "emit io.vid2mp3.video.uploaded.v1"), ("convert", "handle io.vid2mp3.video.uploaded.v1"),
        ("convert", "POST /"), ("notify", "handle io.vid2mp3.audio.converted.v1"), ("notify", "POST /"),
        ("notify", "emit io.vid2mp3.notification.sent.v1")})


@pytest.mark.stack
def test_one_job_is_one_trace_across_upload_broker_convert_and_notify(converted_job: tuple[str, Trace]) -> None:
    job_id, trace = converted_job
    upload_requests = [span for span in trace.named("POST /", "upload") if span["parent"] is None]
    assert len(upload_requests) == 1, "the upload request starts the trace"
    [handled] = trace.named("handle io.vid2mp3.video.uploaded.v1", "convert")
    assert handled["tags"]["vid2mp3.job_id"] == job_id
    assert handled["tags"]["vid2mp3.outcome"] == "done"
    # The hop through the broker: convert's request continues the span that emitted the event in upload.
    [emitted] = trace.named("emit io.vid2mp3.video.uploaded.v1", "upload")
    assert emitted in trace.ancestors(handled)
    # Where convert's time goes, each a child of its handling of the event.
    for name in ("gridfs read", "ffprobe", "ffmpeg", "mp3 check", "gridfs write"):
        spans = trace.named(name, "convert")
        assert spans, f"no {name!r} span in convert"
        assert all(handled in trace.ancestors(span) for span in spans), f"{name!r} is not inside the handling"
    [ffmpeg] = trace.named("ffmpeg", "convert")
    assert ffmpeg["tags"]["vid2mp3.ffmpeg.outcome"] == "exited"
    assert ffmpeg["tags"]["vid2mp3.ffmpeg.output"] == "audio.mp3"
    [notified] = trace.named("handle io.vid2mp3.audio.converted.v1", "notify")
    assert trace.named("emit io.vid2mp3.audio.converted.v1", "convert")[0] in trace.ancestors(notified)
    assert [span for span in trace.named("email send", "notify") if notified in trace.ancestors(span)]
    assert not trace.errors(), [(span["service"], span["name"]) for span in trace.errors()]


@pytest.mark.stack
def test_the_broker_hops_appear_in_the_trace(converted_job: tuple[str, Trace]) -> None:
    _, trace = converted_job
    dispatches = trace.named("rabbitmq-dispatcher")
    assert dispatches, f"no dispatcher span; services {sorted(trace.services())}"
    # Each delivery to convert and to notify passes through a dispatcher span.
    for event_type, function in (("video.uploaded", "convert"), ("audio.converted", "notify")):
        [handled] = trace.named(f"handle io.vid2mp3.{event_type}.v1", function)
        assert any(span in dispatches for span in trace.ancestors(handled)), f"{function} not reached via a dispatcher"


@pytest.mark.stack
def test_an_event_the_reconcile_sweep_sends_later_stays_in_the_jobs_trace(
        endpoints: dict[str, str], stack_database: Any, tmp_path: Path) -> None:
    """An upload whose event the broker did not take: the reconcile sweep sends it later, from a request of its
    own; the send and the conversion it leads to still land in the job's trace, linked to the sweep."""
    client, _ = new_user(endpoints)
    owner_id = jwt.decode(client.token, options={"verify_signature": False})["sub"]
    with a_trace_of_our_own() as (trace_id, upload_span_id):
        # What the upload function records when the broker refuses the event: the job with its event pending.
        event = stage_job(stack_database, make_clip(tmp_path / "clip.mp4", seconds=2), owner_id, 128)
    stack_database["jobs"].update_one({"_id": event.job_id},
                                      {"$set": {"updated_at": datetime.now(UTC) - timedelta(minutes=2)}})
    tick_ping_source(endpoints["RECONCILE_FUNCTION_URL"], "reconcile-every-minute")
    wait_for(lambda: client.job(event.job_id)["state"] == "done", 90, f"job {event.job_id} done", interval=0.5)
    trace = trace_holding(endpoints, trace_id, upload_span_id, {
        ("reconcile", "send pending io.vid2mp3.video.uploaded.v1"), ("convert", "handle io.vid2mp3.video.uploaded.v1")})
    sends = trace.named("send pending io.vid2mp3.video.uploaded.v1", "reconcile")
    assert all(send["parent"] == upload_span_id for send in sends), "the send continues the upload's span"
    assert all(send["links"] and send["links"][0][0] != trace_id for send in sends), "linked to the sweep's trace"
    [handled] = trace.named("handle io.vid2mp3.video.uploaded.v1", "convert")
    assert any(ancestor in sends for ancestor in trace.ancestors(handled)), "convert continues the send"


@pytest.mark.stack
def test_a_failed_jobs_trace_marks_the_error(endpoints: dict[str, str], tmp_path: Path) -> None:
    client, _ = new_user(endpoints)
    # The upload refuses a file without audio itself (422, no job); a track the file does not have is found by
    # convert's probe, so the job fails there.
    one_track = make_clip(tmp_path / "one-track.mp4", seconds=2)
    job_id = client.upload(one_track, options={"track": "3"})["job_id"]
    wait_for(lambda: client.job(job_id)["state"] == "failed", 60, f"job {job_id} failed")
    trace = job_trace(endpoints, job_id, expect={("convert", "handle io.vid2mp3.video.uploaded.v1"),
                                                 ("convert", "emit io.vid2mp3.conversion.failed.v1")})
    errors = {(span["service"], span["name"]) for span in trace.errors()}
    assert ("convert", "emit io.vid2mp3.conversion.failed.v1") in errors, errors
    assert ("convert", "handle io.vid2mp3.video.uploaded.v1") in errors, errors


@pytest.mark.stack
def test_the_functions_log_lines_carry_the_trace_id(converted_job: tuple[str, Trace]) -> None:
    job_id, trace = converted_job
    for function in ("upload", "convert", "notify"):
        joined = [line for line in log_lines(function) if line.get("trace_id") == trace.trace_id]
        assert joined, f"no {function} log line carries trace {trace.trace_id}"
        for line in joined:
            assert {"time", "level", "function", "message", "span_id"} <= line.keys(), line
            assert line["function"] == function
        if function != "upload":  # upload names the job only in its messages; the others while handling it
            assert any(line.get("job_id") == job_id for line in joined), f"{function}: no line names job {job_id}"


@pytest.mark.stack
def test_metrics_reach_the_receiver(endpoints: dict[str, str], converted_job: tuple[str, Trace]) -> None:
    wanted = ["vid2mp3_jobs_ended_total", "vid2mp3_event_broker_wait_seconds_bucket",
              "vid2mp3_events_handled_total", "vid2mp3_conversion_seconds_per_media_second_bucket",
              "http_server_duration_milliseconds_bucket"]

    def exposition() -> str | None:
        text = requests.get(endpoints["METRICS_URL"], timeout=10).text
        return text if all(name in text for name in wanted) else None
    text = wait_for(exposition, 30, f"metrics {wanted} at {endpoints['METRICS_URL']}", interval=1)
    done = [line for line in text.splitlines() if line.startswith("vid2mp3_jobs_ended_total")
            and 'state="done"' in line]
    assert done and float(done[0].rsplit(" ", 1)[1]) >= 1, done
    assert any('service_name="upload"' in line for line in text.splitlines()
               if line.startswith("http_server_duration_milliseconds_count")), "no request latency of upload"


@pytest.mark.stack
def test_no_token_or_password_reaches_the_stack_logs(converted_job: tuple[str, Trace]) -> None:
    # The job above signed up, logged in and uploaded with a bearer token.
    for log in LOGS.glob("*.log"):
        text = log.read_text(errors="replace")
        assert "eyJ" not in text, f"a JWT in {log.name}"
        assert TEST_PASSWORD not in text, f"the test password in {log.name}"


@pytest.mark.stack
def test_the_bench_reads_a_conversions_phases_from_its_spans(endpoints: dict[str, str], tmp_path: Path) -> None:
    """`make bench`'s tracing part (bench/tracing.py) on a short clip: one traced child conversion."""
    measured = bench_tracing.run_child(make_clip(tmp_path / "clip.mp4", seconds=3), traced=True)
    assert len(measured["seconds"]) == bench_tracing.RUNS_PER_CHILD
    for phases, seconds in zip(measured["phases"], measured["seconds"], strict=True):
        assert {"gridfs read", "ffprobe", "ffmpeg", "mp3 check", "gridfs write", bench_tracing.MONGODB,
                "other (Python, temp files)"} <= phases.keys(), phases
        assert all(value >= 0 for value in phases.values()), phases
        # ffmpeg runs beside ffprobe and the lease renewals (MongoDB): the phases may exceed the wall time by those.
        beside_ffmpeg = phases["ffprobe"] + phases[bench_tracing.MONGODB]
        assert sum(phases.values()) - beside_ffmpeg <= seconds + 0.01, (phases, seconds)


