"""`make bench`, tracing part: what tracing costs the convert step on the 60 s clip, and the step's phase table read
from its spans.

The real `Converter` (bench/__main__.py's ConvertBench, on the stack's FerretDB and broker ingress) converts the clip in
child processes, alternately without telemetry and with it set up as a function sets it up
(`telemetry.start` with the stack's OTLP endpoint: the SDK, the instrumentations, every span exported to Jaeger):
rounds of both, in one run, the order swapped every round, so that the machine's load falls on both alike. Each
child converts once to warm up, then `RUNS_PER_CHILD` times; the overhead is the ratio of the medians, of wall time
and of CPU time (the process with every thread, the span export flushed after each conversion, and its ffmpeg and
ffprobe children): on a shared machine the wall time varies by far more than 2 % from run to run, the CPU time less.
With tracing on, the child also keeps its spans in memory and sums, per conversion, the self time of each kind of
span under it: the phase table. Work that runs beside other work (ffmpeg beside ffprobe, segments beside each
other) counts in full for each, so the phases may add up to more than the conversion's wall time.

`python -m bench.tracing` runs this part alone.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from stack.config import ENDPOINTS_FILE, ROOT

ROUNDS = 4
RUNS_PER_CHILD = 3
TARGET_OVERHEAD = 0.02
CONVERSION_SPAN = "bench conversion"
# Spans named by what they do (the database and HTTP instrumentations name theirs by command or method).
MONGODB, HTTP = "MongoDB calls (job records, GridFS inside them)", "HTTP calls (the broker ingress)"


def read_points() -> dict[str, str]:
    return dict(line.split("=", 1) for line in ENDPOINTS_FILE.read_text().splitlines() if "=" in line)


def child(clip: Path, runs: int, traced: bool) -> dict[str, Any]:
    """Converts `clip` once to warm up, then `runs` times; the seconds of each, and with tracing the phases."""
    import pymongo
    from opentelemetry import trace

    from bench.conversion import ConvertBench
    from runtime import telemetry

    points = read_points()
    memory = None
    if traced:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        telemetry.start("convert", points["OTEL_EXPORTER_OTLP_ENDPOINT"])
        memory = InMemorySpanExporter()
        provider = trace.get_tracer_provider()
        assert isinstance(provider, TracerProvider), "telemetry.start set no SDK tracer provider"
        provider.add_span_processor(SimpleSpanProcessor(memory))
    database: Any = pymongo.MongoClient(points["MONGO_URI"], tz_aware=True)["vid2mp3"]
    bench = ConvertBench(database, points["BROKER_INGRESS_URL"], "bench-tracing")
    tracer = trace.get_tracer("vid2mp3.bench")
    bench.run(clip)
    if memory is not None:
        memory.clear()
    seconds, cpu_seconds = [], []
    for _ in range(runs):
        cpu_before = cpu_used()
        with tracer.start_as_current_span(CONVERSION_SPAN):
            seconds.append(bench.run(clip)[0])
        if traced:  # the export's cost counts too: its batch goes out now, not after the measurement
            trace.get_tracer_provider().force_flush()  # type: ignore[attr-defined]
        cpu_seconds.append(cpu_used() - cpu_before)
    return {"seconds": seconds, "cpu_seconds": cpu_seconds,
            "phases": phases_from_spans(memory.get_finished_spans()) if memory else []}


def cpu_used() -> float:
    """CPU seconds of this process (every thread: the span exporter's too) and of its finished children (ffmpeg,
    ffprobe)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def phase_of(span: Any) -> str:
    attributes = span.attributes or {}
    if "db.system" in attributes:
        return MONGODB
    if "http.method" in attributes or "http.request.method" in attributes:
        return HTTP
    return str(span.name)


def phases_from_spans(spans: Any) -> list[dict[str, float]]:
    """Per conversion span: seconds per phase, a phase being the self time (its time less the time covered by its
    children) of every span of one kind under it; the conversion's own self time is "other"."""
    by_id = {span.context.span_id: span for span in spans}
    children: dict[int, list[Any]] = defaultdict(list)
    for span in spans:
        if span.parent is not None and span.parent.span_id in by_id:
            children[span.parent.span_id].append(span)

    def self_seconds(span: Any) -> float:
        covered, reached = 0, span.start_time
        for child in sorted(children[span.context.span_id], key=lambda child: child.start_time):
            start, end = max(child.start_time, reached), min(child.end_time, span.end_time)
            if end > start:
                covered += end - start
                reached = end
        return (span.end_time - span.start_time - covered) / 1e9

    tables = []
    for root in (span for span in spans if span.name == CONVERSION_SPAN):
        table: dict[str, float] = defaultdict(float)
        table["other (Python, temp files)"] = self_seconds(root)
        pending = list(children[root.context.span_id])
        while pending:
            span = pending.pop()
            table[phase_of(span)] += self_seconds(span)
            pending.extend(children[span.context.span_id])
        tables.append(dict(table))
    return tables


def run_child(clip: Path, traced: bool) -> dict[str, Any]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    result = subprocess.run([sys.executable, "-m", "bench.tracing", "--child", str(clip), str(RUNS_PER_CHILD),
                             "traced" if traced else "plain"], capture_output=True, text=True, cwd=ROOT,
                            env=environment, check=False, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"bench child (traced={traced}) failed: {result.stderr[-1500:]}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def tracing_overhead(report: Any, clip: Path, rounds: int = ROUNDS) -> None:
    """Figures `tracing` into `report` (bench/__main__.py's Report), with its target, and prints them."""
    plain: list[float] = []
    traced: list[float] = []
    plain_cpu: list[float] = []
    traced_cpu: list[float] = []
    tables: list[dict[str, float]] = []
    for round_number in range(rounds):
        for with_tracing in ((False, True) if round_number % 2 == 0 else (True, False)):
            measured = run_child(clip, with_tracing)
            (traced if with_tracing else plain).extend(measured["seconds"])
            (traced_cpu if with_tracing else plain_cpu).extend(measured["cpu_seconds"])
            tables.extend(measured["phases"])
    overhead = statistics.median(traced) / statistics.median(plain) - 1
    cpu_overhead = statistics.median(traced_cpu) / statistics.median(plain_cpu) - 1
    names = sorted({name for table in tables for name in table})
    phases = {name: statistics.median([table.get(name, 0.0) for table in tables]) for name in names}
    report.figures["tracing"] = {
        "clip": clip.name, "conversions_each": len(plain), "plain_median_s": statistics.median(plain),
        "traced_median_s": statistics.median(traced), "overhead": overhead,
        "plain_cpu_median_s": statistics.median(plain_cpu), "traced_cpu_median_s": statistics.median(traced_cpu),
        "cpu_overhead": cpu_overhead, "plain_s": plain, "traced_s": traced, "plain_cpu_s": plain_cpu,
        "traced_cpu_s": traced_cpu, "phases_from_spans_s": phases,
    }
    # Judged on CPU time: what tracing adds to the work, which wall time on a shared machine buries in noise
    # (both are printed).
    report.target("tracing overhead on the convert step, 360p-60s (CPU)", "tracing.cpu_overhead", cpu_overhead,
                  TARGET_OVERHEAD, "lower")
    print(f"  {clip.name}, medians of {len(plain)} conversions each, alternated: wall {statistics.median(plain):.3f} s "
          f"without tracing, {statistics.median(traced):.3f} s with ({overhead * 100:+.1f} %); CPU (the process, its "
          f"exporter thread, ffmpeg and ffprobe) {statistics.median(plain_cpu):.3f} s without, "
          f"{statistics.median(traced_cpu):.3f} s with ({cpu_overhead * 100:+.1f} %)")
    print("  phases from the spans (median s per conversion; ffmpeg runs beside ffprobe):")
    for name, value in sorted(phases.items(), key=lambda item: -item[1]):
        print(f"    {name:<52}{value:>8.3f}")


def main() -> int:
    if sys.argv[1:2] == ["--child"]:
        clip, runs, mode = Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
        print(json.dumps(child(clip, runs, traced=mode == "traced")))
        return 0
    from bench.conversion import CLIPS, Report, make_inputs

    make_inputs([CLIPS["360p-60s"]])
    report = Report()
    tracing_overhead(report, CLIPS["360p-60s"].path)
    print(json.dumps({"figures": report.figures["tracing"], "targets": report.targets}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
