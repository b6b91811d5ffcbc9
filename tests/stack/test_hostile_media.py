"""Hostile media through the running stack's upload and convert functions, and through the locked-down ffprobe and
ffmpeg themselves: random and empty files, truncated and valid-but-unusual MP4s, playlists and concat lists that
point at other files or a listening port, duration, stream-count and frame-size bombs, oversized uploads and
hostile file names. Holds: 0 wrongly accepted, 0 connections made, 0 foreign bytes in any output, 0 crashes,
every refusal a clear reason; the upload's extraction refuses what the conversion refuses, with the same reason,
and leaves nothing on the scratch disk."""

from __future__ import annotations

import json
import random
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import unicodedata
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stack.config import LOCAL, ROOT
from tests.reliability_support import (
    ConnectionCounter,
    Figures,
    Stack,
    Timer,
    User,
    clip,
    duration_of,
    function_pid,
    log_text,
    made,
    tone_mp3,
)
from tests.support import wait_until_listening
from transcoding import extraction, ffmpeg_tools
from transcoding.media_formats import SNIFF_BYTES, sniff_container

FIGURES_SUITE = "hostile_media"  # the figures fixture writes .local/figures/hostile_media.json

pytestmark = [pytest.mark.stack, pytest.mark.timeout(600)]

MAX_DURATION_SECONDS = 3 * 3600  # the convert function's default MAX_DURATION_SECONDS
MAX_STREAMS = 32  # and its MAX_STREAMS
FOREIGN_TONE_HZ = 1234
PASSWD_MARKERS = (b"root:x:0:0", b"/bin/bash", b"/usr/sbin/nologin")
PIPELINE_TIMEOUT_SECONDS = 300


# --- The corpus --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    name: str
    filename: str
    make: Callable[[int], bytes]  # given the listening port
    # "convert": must end done with an MP3 of `duration` s; "refuse": refused at upload or failed with one of
    # `reasons`; "bounded": either, within time and memory (a bomb whose real content may be fine).
    expect: str
    reasons: tuple[str, ...] = ()
    duration: float | None = None


def read(path: Path) -> bytes:
    return path.read_bytes()


def foreign_mp3() -> Path:
    """Another user's MP3, as far as a crafted input can tell: a file on the converter's disk."""
    return tone_mp3(6, FOREIGN_TONE_HZ)


def hls(target: str) -> bytes:
    return f"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:10\n#EXTINF:6.0,\n{target}\n#EXT-X-ENDLIST\n".encode()


def ffconcat(target: str) -> bytes:
    return f"ffconcat version 1.0\nfile '{target}'\n".encode()


def reference_targets(port: int) -> dict[str, str]:
    return {
        "local_mp3": str(foreign_mp3()),
        "file_url": f"file:{foreign_mp3()}",
        "etc_passwd": "/etc/passwd",
        "http": f"http://127.0.0.1:{port}/segment.ts",
        "subfile": "subfile,,start,0,end,0,,:/etc/passwd",
    }


def seeded_random(size: int, seed: int = 1) -> bytes:
    data = random.Random(seed).randbytes(size)
    assert sniff_container(data[:512]) is None, "pick another seed: these bytes look like a container"
    return data


def silence_4h() -> bytes:
    return read(made("silence-4h.mp3", "-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono", "-t", "14400",
                     "-c:a", "libmp3lame", "-b:a", "8k"))


def xing_claim() -> bytes:
    """A 6 s MP3 whose Xing/Info header claims 16.7 million frames (about 121 hours)."""
    data = bytearray(read(tone_mp3(6)))
    for tag in (b"Xing", b"Info"):
        position = data.find(tag)
        if position > 0:
            flags = struct.unpack(">I", data[position + 4:position + 8])[0]
            assert flags & 1, "the header carries no frame count"
            data[position + 8:position + 12] = struct.pack(">I", 0x00FFFFFF)
            return bytes(data)
    raise AssertionError("lame wrote no Xing/Info header")


def many_streams_mka(count: int) -> bytes:
    tiny = made("tiny-1s.wav", "-f", "lavfi", "-i", "sine=frequency=440:duration=1:sample_rate=8000",
                "-c:a", "pcm_u8")
    maps = [argument for _ in range(count) for argument in ("-map", "0:a")]
    return read(made(f"streams-{count}.mka", "-i", str(tiny), *maps, "-c", "copy"))


def ogg_crc(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
        crc &= 0xFFFFFFFF
    return crc


def many_streams_ogg(count: int) -> bytes:
    """`count` Opus logical streams, each announced by its own beginning-of-stream page (ffmpeg's own muxers
    stop at 1000 streams; a crafted file need not)."""
    head = b"OpusHead" + bytes([1, 1]) + struct.pack("<HIhB", 312, 48000, 0, 0)
    pages = []
    for serial in range(count):
        page = b"OggS" + bytes([0, 2]) + struct.pack("<qIII", 0, 1000 + serial, 0, 0) + bytes([1, len(head)]) + head
        pages.append(page[:22] + struct.pack("<I", ogg_crc(page)) + page[26:])
    return b"".join(pages)


def enormous_frames() -> bytes:
    """Motion JPEG whose frames claim 65500 x 65500 pixels (16 GiB a frame), beside a valid 3 s audio track."""
    data = bytearray(read(made("mjpeg-3s.mkv", "-f", "lavfi", "-i", "color=c=black:size=64x64:rate=1:duration=3",
                              "-f", "lavfi", "-i", "sine=frequency=440:duration=3", "-c:v", "mjpeg", "-c:a", "aac",
                              "-shortest")))
    position = data.find(b"\xff\xc0")
    assert position > 0
    while position != -1:
        data[position + 5:position + 9] = struct.pack(">HH", 65500, 65500)
        position = data.find(b"\xff\xc0", position + 2)
    return bytes(data)


def audio_m4a(seconds: int) -> Path:
    return made(f"tone-{seconds}s.m4a", "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
                "-c:a", "aac", "-movflags", "+faststart", "-f", "mp4")


def duration_claim() -> bytes:
    """A 5 s M4A whose movie, media and track headers claim 49 days."""
    data = bytearray(read(audio_m4a(5)))
    for box, offset in ((b"mvhd", 12), (b"mdhd", 12), (b"tkhd", 16)):
        position = data.find(box)
        while position != -1:
            if data[position + 4] == 0:  # version 0: 32-bit times
                field = position + 8 + offset
                data[field:field + 4] = struct.pack(">I", 0xFFFFFF00)
            position = data.find(box, position + 4)
    return bytes(data)


def timestamp_claim() -> bytes:
    """A 5 s M4A whose sample table spreads its samples over years."""
    data = bytearray(read(audio_m4a(5)))
    position = data.find(b"stts")
    entries = struct.unpack(">I", data[position + 8:position + 12])[0]
    for entry in range(entries):
        field = position + 12 + 8 * entry + 4
        data[field:field + 4] = struct.pack(">I", 0x7FFFFFFF)
    return bytes(data)


def moov_at_end() -> bytes:
    data = read(clip(6, faststart=False))
    assert data.find(b"moov") > data.find(b"mdat") > 0, "expected ffmpeg's default layout: the index last"
    return data


NOT_MEDIA = ("upload:415", "not_media")
# Too heavy to push through the shared stack's GridFS on every run (14 MB, 8 MB): probed and converted exactly as
# the converter does, in test_bombs_stay_within_time_and_memory.
IN_PROCESS_ONLY = [
    Case("silence_4_hours", "long.mp3", lambda _: silence_4h(), "refuse", ("too_long",)),
    Case("streams_999", "streams-999.mka", lambda _: many_streams_mka(999), "refuse", ("too_many_streams",)),
]
CASES = [
    Case("moov_at_end", "index-last.mp4", lambda _: moov_at_end(), "convert", duration=6),
    Case("faststart", "index-first.mp4", lambda _: read(clip(6)), "convert", duration=6),
    Case("audio_only_m4a", "audio.mp4", lambda _: read(audio_m4a(6)), "convert", duration=6),
    Case("audio_only_mp3", "audio.mp3", lambda _: read(tone_mp3(6)), "convert", duration=6),
    Case("audio_only_wav", "audio.wav", lambda _: read(made("tone-6s.wav", "-f", "lavfi", "-i",
                                                                  "sine=frequency=440:duration=6", "-c:a",
                                                                  "pcm_s16le")), "convert", duration=6),
    Case("random_bytes", "random.mp4", lambda _: seeded_random(1 << 20), "refuse", NOT_MEDIA),
    Case("empty", "empty.mp4", lambda _: b"", "refuse", ("upload:400",)),
    Case("random_after_ftyp", "random-ftyp.mp4", lambda _: b"\x00\x00\x00\x18ftypisom" + seeded_random(1 << 20),
         "refuse", NOT_MEDIA),
    Case("random_after_id3", "random-id3.mp3",
         lambda _: b"ID3\x04\x00\x00\x00\x00\x00\x00" + seeded_random(1 << 20, seed=2), "refuse", NOT_MEDIA),
    Case("truncated_faststart", "cut.mp4", lambda _: read(clip(6))[: len(read(clip(6))) // 2], "refuse",
         ("not_media", "conversion_error", "invalid_output")),
    Case("truncated_index_last", "cut-index-last.mp4", lambda _: moov_at_end()[: len(moov_at_end()) // 2],
         "refuse", NOT_MEDIA),
    Case("video_without_audio", "silent-film.mp4", lambda _: read(clip(6, audio=False)), "refuse", ("no_audio",)),
    *[Case(f"hls_{target}", f"hls-{target}.mp4", lambda port, target=target: hls(reference_targets(port)[target]),
           "refuse", NOT_MEDIA) for target in ("local_mp3", "etc_passwd", "http")],
    *[Case(f"ffconcat_{target}", f"concat-{target}.mp4",
           lambda port, target=target: ffconcat(reference_targets(port)[target]), "refuse", NOT_MEDIA)
      for target in ("local_mp3", "etc_passwd", "http")],
    # The same playlists behind bytes that pass the upload's container check: only ffprobe/ffmpeg stand between.
    Case("hls_behind_id3", "hls-id3.mp3",
         lambda port: b"ID3\x04\x00\x00\x00\x00\x00\x00" + hls(reference_targets(port)["local_mp3"]), "refuse",
         NOT_MEDIA),
    Case("hls_behind_ftyp", "hls-ftyp.mp4",
         lambda port: b"\x00\x00\x00\x10ftypisom\x00\x00\x00\x00" + hls(reference_targets(port)["http"]), "refuse",
         NOT_MEDIA),
    Case("ffconcat_behind_id3", "concat-id3.mp3",
         lambda port: b"ID3\x04\x00\x00\x00\x00\x00\x00" + ffconcat("/etc/passwd"), "refuse", NOT_MEDIA),
    Case("mp3_header_claims_121_hours", "claims.mp3", lambda _: xing_claim(), "refuse", ("too_long",)),
    Case("streams_40", "streams-40.mka", lambda _: many_streams_mka(40), "refuse", ("too_many_streams",)),
    Case("streams_5000", "streams-5000.ogg", lambda _: many_streams_ogg(5000), "refuse",
         ("not_media", "too_many_streams")),
    Case("enormous_frames", "huge-frames.mkv", lambda _: enormous_frames(), "bounded",
         ("not_media", "conversion_error", "invalid_output"), duration=3),
    Case("duration_claim_49_days", "claims.m4a", lambda _: duration_claim(), "bounded",
         ("too_long", "invalid_output"), duration=5),
    Case("timestamps_over_years", "timestamps.m4a", lambda _: timestamp_claim(), "bounded",
         ("too_long", "invalid_output", "conversion_error"), duration=5),
]


@dataclass
class Outcome:
    case: Case
    upload_status: int
    upload_answer: dict[str, Any]
    job: dict[str, Any] | None = None
    seconds: float = 0.0
    output_duration: float | None = None
    foreign_bytes: bool = False

    @property
    def refusal(self) -> str | None:
        """The reason the upload's extraction (422, its `error`) or the job (its failure) gave, or `upload:<status>`
        for any other refusal; None when the media was accepted and converted."""
        if self.upload_status == 422:
            return str(self.upload_answer.get("error"))
        if self.upload_status != 202:
            return f"upload:{self.upload_status}"
        if self.job and self.job["state"] == "failed":
            return str(self.job["failure"]["reason"])
        return None

    @property
    def reason_message(self) -> str:
        if self.upload_status != 202:
            return str(self.upload_answer.get("message", ""))
        return str(((self.job or {}).get("failure") or {}).get("message", ""))


# --- Fixtures ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def user(stack: Stack) -> User:
    return stack.new_user("hostile")


@pytest.fixture(scope="module")
def listener() -> Iterator[ConnectionCounter]:
    counter = ConnectionCounter()
    yield counter
    counter.close()


@pytest.fixture(scope="module")
def function_pids() -> dict[str, int]:
    return {name: function_pid(name) for name in ("upload", "convert")}


@pytest.fixture(scope="module")
def log_offsets() -> dict[str, int]:
    """Where the upload and convert logs end before the corpus goes through."""
    return {name: len(log_text(name)) for name in ("upload", "convert")}


EXPECTED_EXITS = ("with 0", "with -9", "with -15")


def crashes_since(offsets: dict[str, int]) -> dict[str, list[str]]:
    """Tracebacks, and exits other than by SIGTERM/SIGKILL (others restart the shared stack), logged since."""
    found: dict[str, list[str]] = {}
    for name, offset in offsets.items():
        lines = log_text(name)[offset:].splitlines()
        found[name] = [line for line in lines if line.startswith("Traceback") or (
            "exited with" in line and not line.removesuffix("; restarting").endswith(EXPECTED_EXITS))]
    return found


@pytest.fixture(scope="module")
def outcomes(stack: Stack, user: User, listener: ConnectionCounter, figures: Figures,
             function_pids: dict[str, int], log_offsets: dict[str, int]) -> dict[str, Outcome]:
    """Every case uploaded at once (4 at a time), then followed to its end; outputs downloaded and checked."""
    passwd = Path("/etc/passwd").read_bytes()

    def run(case: Case) -> Outcome:
        timer = Timer()
        response = stack.upload(user, case.make(listener.port), case.filename)
        outcome = Outcome(case, response.status_code, response.json() if response.content else {})
        if response.status_code == 202:
            job_id = response.json()["job_id"]
            outcome.job = stack.wait_final(user, [job_id], PIPELINE_TIMEOUT_SECONDS)[job_id]
            if outcome.job["state"] == "done":
                mp3 = stack.download(user, job_id).content
                outcome.output_duration = duration_of(mp3)
                outcome.foreign_bytes = any(marker in mp3 for marker in PASSWD_MARKERS) or passwd[:64] in mp3
        outcome.seconds = timer.seconds
        return outcome

    timer = Timer()
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = {outcome.case.name: outcome for outcome in pool.map(run, CASES)}
    wrongly_accepted = [name for name, outcome in results.items()
                        if outcome.case.expect == "refuse" and outcome.refusal is None]
    wrongly_refused = [name for name, outcome in results.items()
                       if outcome.case.expect == "convert" and outcome.refusal is not None]
    figures["pipeline"] = {
        "tried": len(results),
        "valid_converted": sum(o.case.expect == "convert" and o.refusal is None for o in results.values()),
        "refused_at_upload": sum(o.upload_status != 202 for o in results.values()),
        "refused_by_the_upload_extraction": sum(o.upload_status == 422 for o in results.values()),
        "scratch_folders_left": len(list((LOCAL / "work").glob("upload.*"))),
        "failed_with_reason": sum(o.upload_status == 202 and o.refusal is not None for o in results.values()),
        "bombs_converted_to_real_length": sum(o.case.expect == "bounded" and o.refusal is None
                                              for o in results.values()),
        "wrongly_accepted": len(wrongly_accepted),
        "wrongly_refused": len(wrongly_refused),
        "refusals_without_reason": sum(o.refusal is not None and not o.reason_message for o in results.values()),
        "outputs_with_foreign_bytes": sum(o.foreign_bytes for o in results.values()),
        "connections_to_listener": listener.connections,
        "slowest_case_seconds": max(o.seconds for o in results.values()),
        "whole_corpus_seconds": timer.seconds,
        "cases": {name: {"expected": o.case.expect, "got": o.refusal or "done", "seconds": o.seconds}
                  for name, o in results.items()},
    }
    return results


# --- Through the pipeline ----------------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_hostile_media_through_the_pipeline(case: Case, outcomes: dict[str, Outcome]) -> None:
    outcome = outcomes[case.name]
    assert not outcome.foreign_bytes
    if outcome.refusal is None:
        assert case.expect in ("convert", "bounded"), f"{case.name} was accepted and converted"
        assert outcome.output_duration is not None and case.duration is not None
        assert abs(outcome.output_duration - case.duration) <= 0.5, (outcome.output_duration, case.duration)
        return
    assert case.expect != "convert", f"valid media refused: {outcome.refusal}: {outcome.reason_message}"
    assert outcome.refusal in case.reasons, (outcome.refusal, outcome.reason_message)
    # A clear reason in words, that does not show the converter's files.
    assert len(outcome.reason_message) >= 10, outcome.reason_message
    assert str(LOCAL) not in outcome.reason_message and "/tmp/" not in outcome.reason_message, \
        outcome.reason_message


def test_the_upload_leaves_nothing_on_its_scratch_disk(outcomes: dict[str, Outcome]) -> None:
    """Every spool and extraction of the corpus, refused or kept, removed (the stack's WORK_DIR)."""
    assert list((LOCAL / "work").glob("upload.*")) == []


def test_no_connections_no_crash(outcomes: dict[str, Outcome], listener: ConnectionCounter,
                                 function_pids: dict[str, int], log_offsets: dict[str, int],
                                 figures: Figures) -> None:
    restarted = [name for name, pid in function_pids.items() if function_pid(name) != pid]
    crashes = crashes_since(log_offsets)
    figures["crashes"] = {"functions_restarted_meanwhile": restarted,
                          "tracebacks_or_abnormal_exits": {name: len(lines) for name, lines in crashes.items()}}
    assert listener.connections == 0
    assert all(lines == [] for lines in crashes.values()), crashes


# --- ffprobe and ffmpeg themselves, as the converter runs them ---------------------------------------------

def reference_inputs(port: int) -> dict[str, bytes]:
    inputs = {}
    for target_name, target in reference_targets(port).items():
        inputs[f"hls_{target_name}"] = hls(target)
        inputs[f"ffconcat_{target_name}"] = ffconcat(target)
    return inputs


def test_ffprobe_and_ffmpeg_refuse_references(listener: ConnectionCounter, figures: Figures,
                                              tmp_path: Path) -> None:
    """Playlists and concat lists handed straight to the converter's probe and ffmpeg command (as if they had
    passed the upload): every one refused, no connection, no output. Controls: ffprobe without the whitelists
    follows the playlist; a plain ffprobe of the listener's URL connects (the counter works)."""
    before = listener.connections
    probed_accepted, converted = [], []
    inputs = reference_inputs(listener.port)
    for name, content in inputs.items():
        source, target = tmp_path / f"{name}.mp4", tmp_path / f"{name}.mp3"
        source.write_bytes(content)
        try:
            ffmpeg_tools.probe(source, max_streams=MAX_STREAMS, max_duration=MAX_DURATION_SECONDS)
            probed_accepted.append(name)
        except ffmpeg_tools.Rejected:
            pass
        command = ffmpeg_tools.conversion_command(source, target, copy=False, bitrate_kbps=128,
                                                  max_duration=MAX_DURATION_SECONDS)
        result = subprocess.run(command, capture_output=True, timeout=60, check=False)
        if result.returncode == 0 or (target.exists() and target.stat().st_size > 0):
            converted.append(name)
    connections = listener.connections - before

    unprotected = tmp_path / "unprotected.mp4"
    unprotected.write_bytes(hls(str(foreign_mp3())))
    control = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=format_name", "-of", "csv=p=0",
                              str(unprotected)], capture_output=True, text=True, timeout=60, check=False)
    control_listener = ConnectionCounter()
    try:
        subprocess.run(["ffprobe", "-v", "error", f"http://127.0.0.1:{control_listener.port}/"],
                       capture_output=True, timeout=30, check=False)
        control_connections = control_listener.connections
    finally:
        control_listener.close()
    figures["ffmpeg_layer"] = {
        "inputs": len(inputs), "runs": 2 * len(inputs), "accepted_by_ffprobe": len(probed_accepted),
        "converted_by_ffmpeg": len(converted), "connections": connections,
        "control_unprotected_ffprobe_follows_playlist": control.stdout.strip() == "hls",
        "control_plain_ffprobe_connections": control_connections,
    }
    assert probed_accepted == [] and converted == [] and connections == 0
    assert control.stdout.strip() == "hls", "the control should show the playlist threat is real on this ffmpeg"
    assert control_connections >= 1, "the listener does not count connections"


def test_a_refusal_by_the_probe_stops_the_encode_started_beside_it(tmp_path: Path) -> None:
    """The converter starts ffmpeg while ffprobe judges the input (functions/convert/conversion.py): leaving the
    block on the probe's refusal kills it at once, and reaps it."""
    source = tmp_path / "long.mp3"
    source.write_bytes(silence_4h())
    command = ffmpeg_tools.conversion_command(source, tmp_path / "out.mp3", copy=False, bitrate_kbps=128,
                                              max_duration=MAX_DURATION_SECONDS)
    with pytest.raises(ffmpeg_tools.Rejected) as refused, ffmpeg_tools.Encoding(command, timeout=150) as encoding:
        ffmpeg_tools.probe(source, max_streams=MAX_STREAMS, max_duration=MAX_DURATION_SECONDS)
    assert refused.value.reason == "too_long"
    assert encoding.process.returncode == -signal.SIGKILL, "ffmpeg was not stopped (4 h of audio takes minutes)"
    assert not Path(f"/proc/{encoding.process.pid}").exists()


def test_the_output_check_accepts_only_a_whole_mp3_as_long_as_its_source(tmp_path: Path) -> None:
    """The check that runs on every converted file, given what a broken conversion could leave: each refused as
    invalid output, and a whole MP3 passes with its real length."""
    whole = read(tone_mp3(6))
    outputs = {
        "empty": b"",
        "not_mp3": read(audio_m4a(6)),
        "cut_behind_its_header": whole[: len(whole) // 2],  # the header still counts every frame
        "header_claims_121_hours": xing_claim(),
        "tag_without_frames": b"ID3\x04\x00\x00\x00\x00\x00\x00" + seeded_random(4096),
    }
    refusals = {}
    for name, content in outputs.items():
        target = tmp_path / f"{name}.mp3"
        target.write_bytes(content)
        with pytest.raises(ffmpeg_tools.Rejected) as refused:
            ffmpeg_tools.verify(target, expected_duration=6.0, max_duration=MAX_DURATION_SECONDS)
        refusals[name] = refused.value.reason
    (tmp_path / "whole.mp3").write_bytes(whole)

    with pytest.raises(ffmpeg_tools.Rejected) as missing:
        ffmpeg_tools.verify(tmp_path / "never-written.mp3", expected_duration=6.0, max_duration=MAX_DURATION_SECONDS)
    refusals["missing"] = missing.value.reason
    assert str(tmp_path) not in missing.value.message, "the owner is told no server path"

    assert refusals == dict.fromkeys([*outputs, "missing"], "invalid_output")
    assert ffmpeg_tools.verify(tmp_path / "whole.mp3", expected_duration=6.0,
                               max_duration=MAX_DURATION_SECONDS) == pytest.approx(6.0, abs=0.1)
    with pytest.raises(ffmpeg_tools.Rejected, match="truncated"):  # whole, but short of a longer source
        ffmpeg_tools.verify(tmp_path / "whole.mp3", expected_duration=12.0, max_duration=MAX_DURATION_SECONDS)


BOMB_SCRIPT = """
import json, resource, sys, time
from pathlib import Path
from transcoding import ffmpeg_tools
source, target = Path(sys.argv[1]), Path(sys.argv[2])
started = time.monotonic()
try:
    probed = ffmpeg_tools.probe(source, max_streams=int(sys.argv[3]), max_duration=float(sys.argv[4]))
    command = ffmpeg_tools.conversion_command(source, target, copy=probed.audio_codec == "mp3", bitrate_kbps=128,
                                              max_duration=float(sys.argv[4]))
    ffmpeg_tools.run(command, expected_duration=probed.audio_duration, timeout=150, heartbeat=lambda _: True)
    ffmpeg_tools.verify(target, expected_duration=probed.audio_duration, max_duration=float(sys.argv[4]))
    outcome = "converted"
except ffmpeg_tools.Rejected as rejected:
    outcome = str(rejected.reason)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps({"outcome": outcome, "seconds": round(time.monotonic() - started, 2), "peak_mib": round(peak)}))
"""

# The probe's refusals: what the extraction must answer with the same reason as the conversion.
PROBE_REASONS = ("not_media", "no_audio", "too_long", "too_many_streams")
# What a conversion can stop on past the probe: the extraction may say it first, or keep the audio for convert.
LATER_REASONS = ("conversion_error", "invalid_output")


def as_convert_does(source: Path, work: Path) -> str:
    """The outcome of the converter's probe, encode and output check on `source` as it stands: "converted" or the
    reason (what convert did with an uploaded video before uploads kept only the audio)."""
    try:
        probed = ffmpeg_tools.probe(source, max_streams=MAX_STREAMS, max_duration=MAX_DURATION_SECONDS)
        target = work / "out.mp3"
        command = ffmpeg_tools.conversion_command(source, target, copy=probed.audio_codec == "mp3", bitrate_kbps=128,
                                                  max_duration=MAX_DURATION_SECONDS)
        ffmpeg_tools.run(command, expected_duration=probed.audio_duration, timeout=150, heartbeat=lambda _: True)
        ffmpeg_tools.verify(target, expected_duration=probed.audio_duration, max_duration=MAX_DURATION_SECONDS)
    except ffmpeg_tools.Rejected as rejected:
        return str(rejected.reason)
    return "converted"


def as_the_upload_extracts(source: Path, work: Path) -> str:
    try:
        extraction.extract(source, work, max_streams=MAX_STREAMS, max_duration=MAX_DURATION_SECONDS)
    except ffmpeg_tools.Rejected as rejected:
        return str(rejected.reason)
    return "extracted"


def test_the_upload_refuses_what_convert_refuses_with_the_same_reason(listener: ConnectionCounter, figures: Figures,
                                                                     tmp_path: Path) -> None:
    """Every file of the corpus that passes the upload's container check (the bombs run only here too), through the
    upload's extraction and through the conversion as it ran on whole videos: a refusal by the probe is the same
    reason at both; what converts is extracted; what fails later may fail at either, never be refused for another
    reason."""
    compared: dict[str, dict[str, str]] = {}
    for case in (*CASES, *IN_PROCESS_ONLY):
        content = case.make(listener.port)
        if sniff_container(content[:SNIFF_BYTES]) is None:
            continue  # 415 or 400 at the upload, before any ffmpeg
        folder = tmp_path / case.name
        (folder / "convert").mkdir(parents=True)
        (folder / "extract").mkdir()
        source = folder / case.filename
        source.write_bytes(content)
        compared[case.name] = {"convert": as_convert_does(source, folder / "convert"),
                               "upload": as_the_upload_extracts(source, folder / "extract")}
    figures["same_refusals"] = {
        "compared": len(compared),
        "same_probe_reason": sum(outcome["convert"] in PROBE_REASONS and outcome["upload"] == outcome["convert"]
                                 for outcome in compared.values()),
        "cases": compared,
    }
    for name, outcome in compared.items():
        if outcome["convert"] in PROBE_REASONS:
            assert outcome["upload"] == outcome["convert"], (name, outcome)
        elif outcome["convert"] == "converted":
            assert outcome["upload"] == "extracted", (name, outcome)
        else:
            assert outcome["convert"] in LATER_REASONS and outcome["upload"] in (*LATER_REASONS, "extracted"), \
                (name, outcome)
    assert len(compared) >= 20


BOMBS = ("silence_4_hours", "mp3_header_claims_121_hours", "streams_999", "streams_5000", "enormous_frames",
         "duration_claim_49_days", "timestamps_over_years", "random_after_ftyp")


def test_bombs_stay_within_time_and_memory(listener: ConnectionCounter, figures: Figures, tmp_path: Path) -> None:
    """Each bomb probed and converted exactly as the converter does, in a process of its own, measuring the
    wall time and the peak resident memory of ffprobe/ffmpeg."""
    measured = {}
    by_name = {case.name: case for case in (*CASES, *IN_PROCESS_ONLY)}
    for name in BOMBS:
        source = tmp_path / by_name[name].filename
        source.write_bytes(by_name[name].make(listener.port))
        result = subprocess.run(
            [sys.executable, "-c", BOMB_SCRIPT, str(source), str(tmp_path / f"{name}.mp3"), str(MAX_STREAMS),
             str(MAX_DURATION_SECONDS)], capture_output=True, text=True, timeout=200, cwd=ROOT, check=True)
        measured[name] = json.loads(result.stdout.strip().splitlines()[-1])
    figures["bombs"] = measured
    for name, result in measured.items():
        assert result["seconds"] < 60, (name, result)
        assert result["peak_mib"] < ffmpeg_tools.MEMORY_LIMIT_BYTES / 2**20, (name, result)


# --- Oversized uploads: 413 before the body is read --------------------------------------------------------

def raw_request(url: str, head: str, body_chunks: Iterator[bytes], read_timeout: float = 15) -> tuple[str, int]:
    """Sends `head` then body chunks until the server answers (or the body ends); returns the status line and
    how many body bytes had been sent when the answer came."""
    parts = urllib.parse.urlsplit(url)
    sent = 0
    with socket.create_connection((parts.hostname, parts.port), timeout=read_timeout) as connection:
        connection.sendall(head.encode())
        answer = b""
        for chunk in body_chunks:
            readable, _, _ = select.select([connection], [], [], 0)
            if readable:
                break
            try:
                connection.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        deadline = time.monotonic() + read_timeout
        while b"\r\n" not in answer and time.monotonic() < deadline:
            try:
                data = connection.recv(4096)
            except (ConnectionResetError, TimeoutError):
                break
            if not data:
                break
            answer += data
    return answer.split(b"\r\n", 1)[0].decode(errors="replace"), sent


def ftyp_then_zeros(total: int, chunk: int = 64 * 1024) -> Iterator[bytes]:
    yield b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + bytes(chunk - 24)
    for _ in range(total // chunk - 1):
        yield bytes(chunk)


def chunked(chunks: Iterator[bytes]) -> Iterator[bytes]:
    for chunk in chunks:
        yield f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    yield b"0\r\n\r\n"


def request_head(url: str, user: User, length_header: str) -> str:
    host = urllib.parse.urlsplit(url).netloc
    return (f"POST /?filename=big.mp4 HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {user.token}\r\n"
            f"Content-Type: application/octet-stream\r\n{length_header}\r\n\r\n")


@pytest.fixture(scope="module")
def small_upload_function(endpoints: dict[str, str]) -> Iterator[str]:
    """The upload function as the stack runs it, on a port of its own, with MAX_UPLOAD_BYTES = 1 MiB."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    work = LOCAL / "work" / f"small-upload-{uuid.uuid4().hex[:8]}"  # its own: it clears its scratch folders at start
    work.mkdir(parents=True)
    env = {"PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1", "MONGO_URI": endpoints["MONGO_URI"],
           "K_SINK": endpoints["BROKER_INGRESS_URL"], "JWKS_URL": endpoints["JWKS_URL"],
           "PUBLIC_STATUS_URL": endpoints["STATUS_URL"], "MAX_UPLOAD_BYTES": str(1 << 20), "THREADS": "4",
           "WORK_DIR": str(work)}
    process = subprocess.Popen(
        [sys.executable, "-m", "runtime.server", "--source=functions/upload/main.py",
         "--target=upload", "--host=127.0.0.1", f"--port={port}"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until_listening(process, port, "the small upload function")
        yield f"http://127.0.0.1:{port}/"
    finally:
        process.terminate()
        process.wait(timeout=15)
        shutil.rmtree(work, ignore_errors=True)


def test_oversized_uploads_answer_413_without_reading_the_body(stack: Stack, user: User, figures: Figures,
                                                               small_upload_function: str) -> None:
    stored_before = sum(stack.db[f"{bucket}.files"].count_documents({"metadata.owner_id": user.account_id})
                        for bucket in ("videos", "sources"))
    results: dict[str, Any] = {}
    # The stack's own upload function (2 GiB limit): a declared 3 GiB body, of which 256 KiB are ever sent.
    timer = Timer()
    status, sent = raw_request(stack.points["UPLOAD_URL"], request_head(stack.points["UPLOAD_URL"], user,
                                                                         f"Content-Length: {3 * 2**30}"),
                               ftyp_then_zeros(256 * 1024))
    results["declared_3GiB_at_2GiB_limit"] = {"status": status, "body_bytes_sent": sent, "seconds": timer.seconds}
    # A 1 MiB limit: a declared length over it; a length under limit+multipart allowance that the body exceeds;
    # and a chunked body (no length) of 64 MiB.
    limit = 1 << 20
    for label, header, body in (
        ("declared_2MiB_at_1MiB_limit", f"Content-Length: {2 * limit}", ftyp_then_zeros(2 * limit)),
        ("body_beyond_limit_within_allowance", f"Content-Length: {limit + 32 * 1024}",
         ftyp_then_zeros(limit + 32 * 1024, chunk=16 * 1024)),
        ("chunked_64MiB_at_1MiB_limit", "Transfer-Encoding: chunked", chunked(ftyp_then_zeros(64 * limit))),
    ):
        timer = Timer()
        status, sent = raw_request(small_upload_function, request_head(small_upload_function, user, header), body)
        results[label] = {"status": status, "body_bytes_sent": sent, "seconds": timer.seconds}
    stored_after = sum(stack.db[f"{bucket}.files"].count_documents({"metadata.owner_id": user.account_id})
                       for bucket in ("videos", "sources"))
    results["videos_left_stored"] = stored_after - stored_before
    figures["oversized_uploads"] = results
    for label, result in results.items():
        if label == "videos_left_stored":
            continue
        assert " 413 " in result["status"] + " ", (label, result)
        assert result["seconds"] < 10, (label, result)
    assert results["declared_3GiB_at_2GiB_limit"]["body_bytes_sent"] <= 256 * 1024
    # Refused while most of the 64 MiB was still unsent: the body was not read to its end first.
    assert results["chunked_64MiB_at_1MiB_limit"]["body_bytes_sent"] < 32 * limit
    assert results["videos_left_stored"] == 0


# --- Hostile file names ------------------------------------------------------------------------------------

HOSTILE_NAMES = {
    "parent_dirs": "../../../../etc/passwd.mp3",
    "windows_dirs": "..\\..\\Windows\\win.ini.mp3",
    "absolute": "/etc/cron.d/evil.mp3",
    "header_injection": "a\r\nX-Injected: yes\r\n.mp3",
    "control_chars": "tab\tbell\x07esc\x1b[31mnul\x00.mp3",
    "quotes": "quote\"single'back`semi;colon:pipe|.mp3",
    "html": "<script>alert(1)</script>.mp3",
    "right_to_left": "evil\u202e3pm.exe",
    "very_long": "x" * 5000 + ".mp3",
    "only_dots": "....",
}


def is_safe_name(name: str) -> bool:
    return (0 < len(name) <= 120 and not any(ch in name for ch in "/\\\"'`<>|:*?;")
            and not any(unicodedata.category(ch)[0] == "C" for ch in name) and not name.startswith("."))


def test_hostile_file_names_are_neutralised(stack: Stack, user: User, figures: Figures) -> None:
    media = tone_mp3(2)
    accepted: dict[str, tuple[str, str]] = {}
    for label, name in HOSTILE_NAMES.items():
        response = stack.upload(user, media, name)
        assert response.status_code == 202, (label, response.text)
        accepted[label] = (response.json()["job_id"], response.json()["filename"])
    # The same names in a multipart form's file part.
    for label in ("parent_dirs", "header_injection", "quotes", "very_long"):
        response = stack.session.post(stack.points["UPLOAD_URL"], headers=user.headers, timeout=60,
                                      files={"video": (HOSTILE_NAMES[label], media.read_bytes(), "audio/mpeg")})
        assert response.status_code == 202, (label, response.text)
        accepted[f"multipart_{label}"] = (response.json()["job_id"], response.json()["filename"])
    jobs = stack.wait_final(user, [job_id for job_id, _ in accepted.values()], PIPELINE_TIMEOUT_SECONDS)
    unsafe, headers_broken = [], []
    for label, (job_id, filename) in accepted.items():
        stored = stack.db["audio.files"].find_one({"_id": job_id}, {"filename": 1}) or {}
        names = (filename, jobs[job_id]["filename"], stored.get("filename", ""))
        if not all(is_safe_name(name) for name in names):
            unsafe.append((label, names))
        assert jobs[job_id]["state"] == "done", (label, jobs[job_id])
        download = stack.download(user, job_id)
        disposition = download.headers.get("Content-Disposition", "")
        if (download.status_code != 200 or "X-Injected" in download.headers or "\n" in disposition
                or disposition.count('"') != 2):
            headers_broken.append((label, download.status_code, disposition))
    strays = [str(path) for path in (LOCAL / "work").rglob("*")
              if any(word in path.name for word in ("passwd", "win.ini", "evil", "cron"))]
    figures["file_names"] = {"tried": len(accepted), "unsafe_names_kept": len(unsafe),
                             "broken_download_headers": len(headers_broken), "stray_files": len(strays)}
    assert unsafe == [] and headers_broken == [] and strays == []
