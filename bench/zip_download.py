"""`make bench`, a ZIP of many (issue 24): the MP3s of 20 finished jobs fetched as one ZIP (`GET <download>/zip`,
built as it streams) beside the same MP3s fetched one by one, alternated, on the loopback. The figures: the ZIP's
rate over the single MP3s' rate (bytes received per second, requests and their waits included) and the download
function's worker memory over each (its VmHWM, reset before each fetch): the ZIP is not held anywhere, so its
memory stays that of one MP3's. Alone: `python -m bench.zip_download` with the stack up."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

from vid2mp3_client.api import FINAL_STATES, Vid2mp3

JOBS = 20
ROUNDS = 3
JOB_TIMEOUT_SECONDS = 600


def finished_jobs(client: Vid2mp3, clip: Path, count: int) -> list[str]:
    """`count` jobs converting `clip`, all uploaded at once, once they are done."""
    job_ids = [str(client.upload(clip)["job_id"]) for _ in range(count)]
    deadline = time.monotonic() + JOB_TIMEOUT_SECONDS
    for job_id in job_ids:
        while (state := client.job(job_id)["state"]) not in FINAL_STATES:
            if time.monotonic() > deadline:
                raise RuntimeError(f"job {job_id} still {state} after {JOB_TIMEOUT_SECONDS} s")
            time.sleep(0.5)
        if state != "done":
            raise RuntimeError(f"job {job_id} ended {state}")
    return job_ids


def fetched(fetch: Any, worker: int) -> tuple[int, float, float]:
    """(bytes, seconds, the worker's peak RSS in MiB) of one fetch."""
    from bench.conversion import reset_peak_rss, status_kib  # bench/conversion.py runs this module

    reset_peak_rss(worker)
    started = time.perf_counter()
    size = fetch()
    return size, time.perf_counter() - started, status_kib(worker, "VmHWM") / 1024


def measure(report: Any, client: Vid2mp3, clip: Path, scratch: Path, *, jobs: int = JOBS,
            rounds: int = ROUNDS) -> None:
    """Into report.figures["zip_download"]; the jobs made are deleted afterwards."""
    from bench.conversion import function_worker, status_kib

    job_ids: list[str] = []
    try:
        job_ids = finished_jobs(client, clip, jobs)
        worker = function_worker("download")
        idle = status_kib(worker, "VmRSS") / 1024
        singles: list[tuple[int, float, float]] = []
        zips: list[tuple[int, float, float]] = []
        for _ in range(rounds):
            singles.append(fetched(lambda: sum(client.download(job_id, scratch / "one.mp3") for job_id in job_ids),
                                   worker))
            zips.append(fetched(lambda: client.download_zip(job_ids, scratch / "many.zip"), worker))
    except Exception as error:
        report.errors.append(f"zip download: {type(error).__name__}: {str(error)[:300]}")
        return
    finally:
        for job_id in job_ids:
            client.delete(job_id)
    single_rate = statistics.median(size / seconds for size, seconds, _ in singles)
    zip_rate = statistics.median(size / seconds for size, seconds, _ in zips)
    report.figures["zip_download"] = {
        "jobs": jobs, "clip": clip.name, "rounds": rounds, "mp3_bytes": singles[0][0], "zip_bytes": zips[0][0],
        "single_mb_per_s": single_rate / 1e6, "zip_mb_per_s": zip_rate / 1e6, "ratio": zip_rate / single_rate,
        "worker_idle_rss_mib": idle, "single_peak_rss_mib": max(peak for *_, peak in singles),
        "zip_peak_rss_mib": max(peak for *_, peak in zips),
        "rss_growth_mib": max(peak for *_, peak in zips) - max(peak for *_, peak in singles),
    }


def judge(report: Any) -> None:
    row = report.figures.get("zip_download", {})
    report.target(f"ZIP of {JOBS} jobs' MP3s: rate / one MP3 at a time", "zip_download.ratio", row.get("ratio"),
                  0.8, "higher")
    report.target("ZIP of many: download worker peak RSS over one MP3 at a time's (MiB)",
                  "zip_download.rss_growth_mib", row.get("rss_growth_mib"), 16, "lower")


def print_table(report: Any) -> None:
    row = report.figures.get("zip_download")
    if not row:
        return
    print(f"\nA ZIP of many (issue 24): {row['jobs']} jobs of {row['clip']}, {row['mp3_bytes'] / 1e6:.1f} MB of MP3s, "
          f"median of {row['rounds']} alternated rounds")
    print(f"  one MP3 at a time {row['single_mb_per_s']:.1f} MB/s, the ZIP ({row['zip_bytes'] / 1e6:.1f} MB) "
          f"{row['zip_mb_per_s']:.1f} MB/s: {row['ratio']:.2f}x")
    print(f"  download worker: idle {row['worker_idle_rss_mib']:.0f} MiB, peak {row['single_peak_rss_mib']:.0f} MiB "
          f"one MP3 at a time, {row['zip_peak_rss_mib']:.0f} MiB over the ZIP")


def main() -> int:
    from bench.conversion import CLIPS, Report, make_inputs, stack_client
    from stack.config import ENDPOINTS_FILE, ROOT

    points = dict(line.split("=", 1) for line in ENDPOINTS_FILE.read_text().splitlines() if "=" in line)
    clip = CLIPS["360p-60s"]
    make_inputs([clip])
    report = Report()
    measure(report, stack_client(points), clip.path, ROOT / ".local" / "bench")
    judge(report)
    print_table(report)
    report.print_targets("Targets:")
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
