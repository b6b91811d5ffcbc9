"""`make bench`, one MP3 per chapter (issue 24): a 600 s video with 8 chapters converted by the real Converter (the
convert function's, on the stack's FerretDB) with `split=chapters` (the whole MP3 and its 8 chapter files, cut from
the same encode) and without it (the whole MP3 alone), alternated; the figure is the ratio of their median times,
GridFS writes included. Alone: `python -m bench.split_chapters` with the stack up."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from storage.media import remove_job_media

SECONDS = 600
CHAPTERS = 8
ROUNDS = 3


def chaptered_video(target: Path, seconds: float = SECONDS, chapters: int = CHAPTERS) -> Path:
    """A 360p H.264 + 128k AAC MP4 of music-like audio (a vibrato tone over pink noise) with `chapters` MP4
    chapters of unequal lengths (the chapter starts fall anywhere, not on MP3 frames)."""
    if target.exists():
        return target
    starts = [round(seconds * (index / chapters) ** 1.1, 3) for index in range(chapters)]
    metadata = target.with_suffix(".txt")
    metadata.write_text(";FFMETADATA1\ntitle=Bench lecture\n" + "".join(
        f"[CHAPTER]\nTIMEBASE=1/1000\nSTART={round(start * 1000)}\nEND={round(stop * 1000)}\ntitle=Part {number}\n"
        for number, (start, stop) in enumerate(zip(starts, [*starts[1:], seconds], strict=True), start=1)))
    subprocess.run([
        "ffmpeg", "-v", "error", "-nostdin", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size=640x360:rate=30:duration={seconds}",
        "-f", "lavfi", "-i", f"aevalsrc=0.25*sin(2*PI*(330*t+15*sin(2*PI*0.5*t))):s=44100:d={seconds}",
        "-f", "lavfi", "-i", f"anoisesrc=color=pink:amplitude=0.05:sample_rate=44100:duration={seconds}",
        "-i", str(metadata), "-filter_complex", "[1][2]amix=inputs=2:normalize=0[a]",
        "-map", "0:v", "-map", "[a]", "-map_chapters", "3", "-map_metadata", "3", "-c:v", "libx264",
        "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", "-ac", "2", str(target)],
        check=True)
    return target


def converted_seconds(bench: Any, video: Path, options: dict[str, str]) -> tuple[float, dict[str, Any]]:
    """One conversion by the bench's Converter (the job staged as the upload leaves it, with `options`): its wall
    time and the finished job; every byte of the job removed afterwards."""
    event = bench.stage(video)
    bench.database["jobs"].update_one({"_id": event.job_id}, {"$set": {"options": options}})
    try:
        started = time.perf_counter()
        bench.converter.handle(event)
        elapsed = time.perf_counter() - started
        job = bench.database["jobs"].find_one({"_id": event.job_id}) or {}
    finally:
        job_record = bench.database["jobs"].find_one({"_id": event.job_id})
        if job_record is not None:
            remove_job_media(bench.database, job_record)
            bench.database["jobs"].delete_one({"_id": event.job_id})
    if job.get("state") != "done":
        raise RuntimeError(f"job {event.job_id} ended {job.get('state')}: {job.get('failure')}")
    return elapsed, job


def measure(report: Any, bench: Any, video: Path, *, rounds: int = ROUNDS) -> None:
    """Whole alone and split + whole, alternated `rounds` times each: medians and their ratio."""
    try:
        whole, split, mode, files = [], [], None, 0
        for _ in range(rounds):
            seconds, job = converted_seconds(bench, video, {})
            whole.append(seconds)
            seconds, job = converted_seconds(bench, video, {"split": "chapters"})
            split.append(seconds)
            mode, files = job["encoding"]["mode"], len(job["audio"]["chapter_files"])
        whole_s, split_s = statistics.median(whole), statistics.median(split)
        report.figures["split_chapters"] = {"video": video.name, "chapter_files": files, "mode": mode,
                                            "whole_alone_s": whole_s, "split_and_whole_s": split_s,
                                            "ratio": split_s / whole_s, "rounds": rounds}
        print(f"  {video.name}: whole alone {whole_s:.3f} s, whole + {files} chapter files {split_s:.3f} s "
              f"({mode}): ratio {split_s / whole_s:.3f}")
    except Exception as error:
        report.errors.append(f"split by chapters: {type(error).__name__}: {str(error)[:300]}")


def judge(report: Any) -> None:
    report.target("split=chapters + whole / whole alone, 600 s, 8 chapters", "split_chapters.ratio",
                  report.figures.get("split_chapters", {}).get("ratio"), 1.10, "lower")


def main() -> int:
    import pymongo

    from bench.conversion import BENCH_DIR, ConvertBench, Report, stack_client, token_subject
    from stack.config import ENDPOINTS_FILE

    points = dict(line.split("=", 1) for line in ENDPOINTS_FILE.read_text().splitlines() if "=" in line)
    client = stack_client(points)
    database: Any = pymongo.MongoClient(points["MONGO_URI"], tz_aware=True)["vid2mp3"]
    report = Report()
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    bench = ConvertBench(database, points["BROKER_INGRESS_URL"], token_subject(client.token))
    measure(report, bench, chaptered_video(BENCH_DIR / "chapters-600s-8.mp4"))
    judge(report)
    report.print_targets("One MP3 per chapter:")
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
