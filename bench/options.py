"""What the conversion options cost in the convert step (`make bench`, from bench/__main__.py): the same clip converted
by the real Converter with no options (which still tags the MP3 and cuts a cover frame), with `cover=none`, with
`normalize=ebu-r128` (a measuring pass first) and with a VBR quality, each beside plain ffmpeg, alternated run by
run so that all share the machine's state."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from events.options import parse_options

CLIP_NAMES = ("360p-10s", "360p-60s")
# Label → the options' form fields.
VARIANTS: dict[str, dict[str, str]] = {
    "no options (title tag + cover frame)": {},
    "cover=none (title tag only)": {"cover": "none"},
    "normalize=ebu-r128 (two passes)": {"normalize": "ebu-r128"},
    "quality=V2 (VBR)": {"quality": "V2"},
}


def run_with_options(bench: Any, source: Path, fields: dict[str, str]) -> tuple[float, dict[str, Any]]:
    """The convert step (bench/__main__.py ConvertBench.run) of a job whose record carries `fields` as its options."""
    options = parse_options(fields).given()
    stage = bench.stage

    def stage_with_options(path: Path) -> Any:
        event = stage(path)
        bench.database["jobs"].update_one({"_id": event.job_id}, {"$set": {"options": options}})
        return event

    bench.stage = stage_with_options
    try:
        elapsed, _, job = bench.run(source)
    finally:
        bench.stage = stage
    return elapsed, job


def options_cost(report: Any, bench: Any, clips: list[Path], plain: Callable[[Path], float],
                 repetitions: int = 5) -> None:
    """Medians per variant and clip, as seconds and as a ratio to plain ffmpeg of the same runs."""
    figures: dict[str, Any] = {}
    for clip in clips:
        seconds: dict[str, list[float]] = {"plain ffmpeg": [], **{label: [] for label in VARIANTS}}
        try:
            for _ in range(repetitions):
                seconds["plain ffmpeg"].append(plain(clip))
                for label, fields in VARIANTS.items():
                    elapsed, job = run_with_options(bench, clip, fields)
                    if job.get("state") != "done":
                        raise RuntimeError(f"{label}: the job ended {job.get('state')}: {job.get('failure')}")
                    seconds[label].append(elapsed)
        except Exception as error:
            report.errors.append(f"options cost, {clip.name}: {type(error).__name__}: {str(error)[:300]}")
            continue
        base = statistics.median(seconds["plain ffmpeg"])
        rows = {label: {"seconds": statistics.median(values), "ratio": statistics.median(values) / base}
                for label, values in seconds.items()}
        rows["cover frame's added seconds"] = {
            "seconds": rows["no options (title tag + cover frame)"]["seconds"]
            - rows["cover=none (title tag only)"]["seconds"]}
        figures[clip.name] = rows
        print(f"  {clip.name}:")
        for label, row in rows.items():
            ratio = f"  ({row['ratio']:.2f} x plain)" if "ratio" in row else ""
            print(f"    {label:<40} {row['seconds']:.3f} s{ratio}", flush=True)
    report.figures["options_cost"] = figures


def main() -> None:
    """This part of the bench alone: `python -m bench.options` on the running stack."""
    import tempfile

    import pymongo

    from bench import conversion as bench
    from stack.config import ENDPOINTS_FILE

    points = dict(line.split("=", 1) for line in ENDPOINTS_FILE.read_text().splitlines() if "=" in line)
    bench.make_inputs([bench.CLIPS[name] for name in CLIP_NAMES])
    database = pymongo.MongoClient(points["MONGO_URI"], tz_aware=True)["vid2mp3"]
    report = bench.Report()
    converting = bench.ConvertBench(database, points["BROKER_INGRESS_URL"], "bench-options")
    with tempfile.TemporaryDirectory(dir=bench.BENCH_DIR) as scratch:
        options_cost(report, converting, [bench.CLIPS[name].path for name in CLIP_NAMES],
                     lambda clip: bench.plain_ffmpeg(clip, Path(scratch) / "plain.mp3").seconds)
    print("errors:", report.errors or "none")


if __name__ == "__main__":
    main()
