"""What a resumable (tus) upload costs beside a one-shot upload, on the running local stack: the same file sent
one-shot, as one tus PATCH, and in 8 MiB PATCHes with sha1 checksums (tuspy's way), alternated round by round; the
wall time to the accepted job and the upload process's resident memory above its level before (sampled every
20 ms). Run: `python -m bench.resumable [MiB] [rounds]` with the stack up. Figures from a shared machine are
noisy: compare the ratios of one run."""

from __future__ import annotations

import base64
import hashlib
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import requests

from stack.config import ENDPOINTS_FILE
from tests.support import new_user, read_endpoints_file

CHUNK = 8 * 1024 * 1024


def upload_processes() -> list[int]:
    """The upload function's processes (the gunicorn master and its worker)."""
    found = []
    for process in Path("/proc").glob("[0-9]*"):
        try:
            if b"functions/upload/main.py" in (process / "cmdline").read_bytes():
                found.append(int(process.name))
        except OSError:
            continue
    return found


def resident_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def measured(send: Callable[[], str]) -> tuple[float, int, str]:
    """Seconds, peak resident bytes above the level before, and the job id of one upload."""
    pids = upload_processes()
    baseline = resident_bytes(pids)
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], resident_bytes(pids))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    job_id = send()
    elapsed = time.perf_counter() - start
    done.set()
    sampler.join()
    return elapsed, peak[0] - baseline, job_id


def main() -> None:
    size_mib = int(sys.argv[1]) if len(sys.argv) > 1 else 256
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    points = read_endpoints_file(ENDPOINTS_FILE)
    user, _ = new_user(points)
    auth = {"Authorization": f"Bearer {user.token}"}
    tus = {**auth, "Tus-Resumable": "1.0.0"}
    # A Matroska header, then noise: taken as media at upload; its conversion fails, which costs nothing here.
    data = b"\x1a\x45\xdf\xa3" + os.urandom(size_mib * 1024 * 1024 - 4)

    def one_shot() -> str:
        answer = requests.post(points["UPLOAD_URL"], data=data, headers={
            **auth, "Content-Type": "application/octet-stream"}, timeout=600)
        assert answer.status_code == 202, answer.text
        return str(answer.json()["job_id"])

    def create() -> str:
        answer = requests.post(f"{points['UPLOAD_URL']}/files/", timeout=60, headers={
            **tus, "Upload-Length": str(len(data)),
            "Upload-Metadata": "filename " + base64.b64encode(b"noise.mkv").decode()})
        assert answer.status_code == 201, answer.text
        return str(answer.headers["Location"])

    def patch(url: str, offset: int, body: bytes, checksum: bool) -> None:
        headers = {**tus, "Content-Type": "application/offset+octet-stream", "Upload-Offset": str(offset)}
        if checksum:
            headers["Upload-Checksum"] = "sha1 " + base64.b64encode(hashlib.sha1(body).digest()).decode()  # noqa: S324
        answer = requests.patch(url, data=body, headers=headers, timeout=600)
        assert answer.status_code == 204, answer.text

    def tus_one_patch() -> str:
        url = create()
        patch(url, 0, data, checksum=False)
        return url.rsplit("/", 1)[1]

    def tus_chunks_with_checksums() -> str:
        url = create()
        for offset in range(0, len(data), CHUNK):
            patch(url, offset, data[offset:offset + CHUNK], checksum=True)
        return url.rsplit("/", 1)[1]

    ways = {"one-shot POST": one_shot, "tus, one PATCH": tus_one_patch,
            f"tus, {CHUNK // 1024**2} MiB PATCHes + sha1": tus_chunks_with_checksums}
    results: dict[str, list[tuple[float, int]]] = {name: [] for name in ways}
    for _ in range(rounds):
        for name, send in ways.items():
            elapsed, memory, job_id = measured(send)
            results[name].append((elapsed, memory))
            requests.delete(f"{points['STATUS_URL']}/{job_id}", headers=auth, timeout=60)
    base = statistics.median(elapsed for elapsed, _ in results["one-shot POST"])
    print(f"{size_mib} MiB, {rounds} rounds, medians (shared machine: noisy)")
    for name, runs in results.items():
        elapsed = statistics.median(seconds for seconds, _ in runs)
        memory = max(bytes_ for _, bytes_ in runs)
        print(f"  {name:<32} {elapsed:6.2f} s  {size_mib / elapsed:6.1f} MiB/s  x{elapsed / base:4.2f}  "
              f"upload process RSS peak +{memory / 1024**2:5.1f} MiB")


if __name__ == "__main__":
    main()
