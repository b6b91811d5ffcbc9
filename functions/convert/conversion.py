"""Converts the source of a job (the audio tracks its upload kept) to MP3: claim the job, probe, convert, check,
store, finish, emit; the tags from the source's metadata and the cover from the covers the upload kept.

Idempotent on the job: a redelivered event for a finished job only re-emits what is still pending; a second
delivery while a live attempt holds the job's lease is acknowledged once the holder shows it is alive (it renews the
lease), so it never holds a dispatcher's worker through a backoff; an attempt that died (its lease ran out) is taken
over, and whatever it left in GridFS is removed before the MP3 is written again under the same id.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from events import EventEmitter, FailureReason, VideoUploaded
from events.options import ConversionOptions
from jobs.leases import Held, Settled, claim_unless_held
from jobs.records import FINAL_STATES, Job, Jobs, JobState
from runtime.clock import now
from storage.media import JobSources, MediaStore
from storage.scratch import work_folder
from transcoding import chapter_files, fanout, ffmpeg_tools, loudness, plan, segments, silence, tagging
from transcoding.fanout import FanOutRecord
from transcoding.ffmpeg_tools import AudioShape, Probe, Progress, Rejected, Stopped, TrackMissing
from transcoding.mp3join import JoinError
from transcoding.outcome import Encoded, Outcome
from transcoding.plan import AudioRecipe, EncodingPlan, FanOutPolicy, Mode

log = logging.getLogger(__name__)

# A converter renews its lease every second while ffmpeg runs; a lease this old means the converter is gone.
LEASE = timedelta(seconds=10)
# How often a delivery that found the job held looks again for a sign of its holder (a renewal, the job's end).
def job_options(job: Job) -> ConversionOptions:
    """The options recorded with the job at upload (validated there; the job, not the event, is trusted)."""
    return ConversionOptions.model_validate(job.get("options") or {})


@dataclass
class Converter:
    jobs: Jobs
    sources: JobSources
    audio: MediaStore
    emitter: EventEmitter
    work_dir: Path
    max_duration_seconds: float
    max_streams: int
    ffmpeg_timeout_seconds: float
    audio_retention: timedelta
    # How long the job's source and covers outlive its MP3 (zero: deleted as soon as the MP3 is stored).
    source_retention: timedelta = timedelta(0)
    # The CPUs this instance may keep busy, and the shortest audio worth encoding in segments on them.
    cpus: int = 1
    segment_min_seconds: float = 150.0
    # Long jobs go to the segment-encoding function (None: never); their audio track is stored in `tracks`.
    fan_out: FanOutPolicy | None = None
    tracks: MediaStore | None = None

    def __post_init__(self) -> None:
        self.outcome = Outcome(self.jobs, self.sources, self.audio, self.emitter, self.audio_retention,
                               self.source_retention)

    def handle(self, event: VideoUploaded) -> None:
        job = self.jobs.get(event.job_id)
        # The broker ingress authenticates nobody: act only on a real job of the owner the event names.
        if job is None or job["owner_id"] != event.owner_id or job["video_id"] != event.video_id:
            log.warning("ignoring video uploaded for job %s: no such job for that owner and video", event.job_id)
            return
        if job["state"] in FINAL_STATES:
            self.jobs.flush_pending(job, self.emitter)
            return
        attempt_id = uuid.uuid4().hex
        claimed = self.jobs.claim_conversion(event.job_id, attempt_id, LEASE)
        if claimed is None:
            claimed = self.claim_unless_held(event.job_id, attempt_id)
            if claimed is None:
                return
        try:
            self.convert(claimed, attempt_id)
        except Exception:
            self.jobs.release(event.job_id, attempt_id)
            current = self.jobs.get(event.job_id)
            if current is not None and current["state"] == JobState.CANCELLED:
                # Cancelled under our feet (its video deleted mid-read, say): nothing left to retry.
                log.info("job %s was cancelled during its conversion", event.job_id)
                return
            raise

    def claim_unless_held(self, job_id: str, attempt_id: str) -> Job | None:
        """The job claimed for this attempt once its holder's lease lapses; None when there is nothing for this
        delivery to do: the job ended, or its holder is alive (jobs/leases.py). A fan-out whose segment events are
        out needs no convert delivery any more: the segment deliveries carry it (each retried, then dead-lettered)."""
        def look() -> Held | Settled[Job] | None:
            job = self.jobs.get(job_id)
            if job is None:
                return Settled(None)
            if job["state"] in FINAL_STATES:
                self.jobs.flush_pending(job, self.emitter)
                return Settled(None)
            lease_until = job.get("lease_until")
            if job["state"] != JobState.CONVERTING or lease_until is None or lease_until <= now():
                return None
            fan = job.get("fanout") or {}
            if fan.get("emitted") and fan.get("attempt_id") == job.get("attempt_id"):
                log.info("job %s is fanned out: its segment deliveries carry it", job_id)
                return Settled(None)
            return Held(job.get("attempt_id") or "", lease_until)

        return claim_unless_held(look, lambda: self.jobs.claim_conversion(job_id, attempt_id, LEASE), LEASE,
                                 f"job {job_id}")

    def convert(self, job: Job, attempt_id: str) -> None:
        job_id = job["_id"]
        # What an attempt killed mid-conversion left behind (a copy of the source) goes: this attempt holds the job.
        with work_folder(self.work_dir, f"{job_id}.convert.", clear_stale=True) as workdir:
            try:
                source, target = workdir / "input", workdir / "audio.mp3"
                with source.open("wb") as file:
                    found = self.sources.copy_source_to(job, file)
                if not found:
                    self.outcome.fail(job, attempt_id, FailureReason.SOURCE_MISSING, "the uploaded audio is gone")
                    return
                covers = self.sources.copy_covers_to(job, workdir)
                try:
                    encoded = self.transcode(job, attempt_id, source, target, covers)
                except Rejected as rejected:
                    self.outcome.fail(job, attempt_id, rejected.reason, rejected.message)
                    return
                except Stopped:
                    log.info("job %s: conversion stopped (cancelled or taken over)", job_id)
                    return None
                if encoded is not None:
                    self.outcome.finish(job, attempt_id, target, encoded)
            except FileNotFoundError:
                if workdir.exists():
                    raise
                # A newer attempt took the job over (this one's lease ran out) and cleared this folder: nothing to do.
                log.info("job %s: taken over by a newer attempt, which removed this attempt's work folder", job_id)
        return None

    def transcode(self, job: Job, attempt_id: str, source: Path, target: Path,
                  covers: dict[str, Path] | None = None) -> Encoded | None:
        """The MP3 of the job, encoded here; None when the job was handed to segment-encoding instances. `covers`:
        the pictures its upload kept, by kind (None: a job recorded before sources, whose pictures are in its
        video)."""
        highest = Progress()

        def heartbeat(progress: Progress) -> bool:
            # Never backwards, even when a one-pass encode follows segments that could not be joined.
            if progress.percent >= highest.percent:
                highest.percent, highest.eta_seconds = progress.percent, progress.eta_seconds
            return self.jobs.renew_lease(job["_id"], attempt_id, LEASE, highest.as_dict())

        options = job_options(job)

        def record(fields: dict[str, Any]) -> None:
            self.jobs.update(job["_id"], {"attempt_id": attempt_id}, fields)

        def command(audio: AudioRecipe) -> list[str]:
            return ffmpeg_tools.conversion_command(
                source, target, copy=audio.copy, bitrate_kbps=job["bitrate_kbps"],
                max_duration=self.max_duration_seconds, start_seconds=audio.start_seconds,
                duration_seconds=audio.duration_seconds, shape=audio.shape)

        # The encode starts while ffprobe judges the input, on the other core: ffprobe takes ~60 ms, nearly all of
        # it loading ffmpeg's libraries, which would otherwise come before every encode (a 10 s clip's whole encode
        # takes 140 ms). It guesses from the container the upload recognised and the options: an MP3 file is
        # copied, anything else re-encoded in one pass (no guess when the loudness must be measured first). Its
        # output counts only once the probe has accepted the input and the command decided after it is the same;
        # a refusal, a wrong guess or a plan of segments stops it on leaving the block.
        guess = plan.guess(options, mp3_container=job.get("container") == "mp3")
        with contextlib.ExitStack() as running:
            encoding = None
            if guess is not None:
                encoding = running.enter_context(ffmpeg_tools.Encoding(command(guess),
                                                                       timeout=self.ffmpeg_timeout_seconds))
            try:
                probed = ffmpeg_tools.probe(source, max_streams=self.max_streams,
                                            max_duration=self.max_duration_seconds, track=options.track)
            except TrackMissing as missing:
                record({"audio_tracks": [track.as_dict() for track in missing.tracks]})  # to choose from
                raise
            tracks = [track.as_dict() for track in probed.audio_tracks]
            try:
                silence_note = None
                if options.trim_silence:
                    options, silence_note = self.without_silence(source, probed, options, heartbeat)
                audio = plan.recipe(probed, options)
            except Rejected:
                record({"audio_tracks": tracks})
                raise
            if silence_note is not None:
                audio = replace(audio, forced=(silence_note, *audio.forced))
            # The cover frame is cut while the guessed encode runs.
            tags = tagging.tags_for(options, probed, job["filename"], source, target.parent, covers)
            refusal = chapter_files.split_refusal(options, probed.chapters)
            if refusal is not None:  # a URL import, or a silence trim, is checked only here
                raise Rejected(FailureReason.INVALID_OPTIONS, refusal)
            if tags.chapters:
                job["chapters"] = tags.chapter_list()  # as recorded: the finished job's event carries them
            record({"audio_tracks": tracks, "applied": {**audio.as_record(), "tags": tags.as_record()},
                    **({"chapters": job["chapters"]} if tags.chapters else {})})
            may_fan_out = self.tracks is not None and fanout.can_fan_out(probed.container)
            encoding_plan = plan.choose(probed, copy=audio.copy, cpus=self.cpus,
                                        segment_min_seconds=self.segment_min_seconds,
                                        fan_out=self.fan_out if may_fan_out else None, audio=audio)
            encoded_by_guess = (encoding is not None and encoding_plan.mode is Mode.ONE_PASS
                                and encoding.command == command(audio))
            if encoded_by_guess and encoding is not None:
                encoding.wait(expected_duration=audio.expected_duration, heartbeat=heartbeat)
        if audio.normalize_to_lufs is not None:
            audio = self.measure_loudness(job, attempt_id, source, audio, tags, heartbeat)
        id3 = tags.id3_bytes()
        if encoding_plan.mode is Mode.FAN_OUT:
            try:
                self.start_fan_out(job, attempt_id, source, target.parent, probed, heartbeat, id3, audio.shape)
                return None
            except Rejected as refused:
                # The track could not be copied out on its own (a codec its container's muxer refuses): the
                # segments are encoded here instead, from the video itself.
                log.warning("job %s: no fan-out (%s); segments in this instance", job["_id"], refused.message)
                encoding_plan = plan.choose(probed, copy=audio.copy, cpus=self.cpus,
                                            segment_min_seconds=self.segment_min_seconds, fan_out=None, audio=audio)
        if encoding_plan.mode is Mode.SEGMENTS:
            try:
                return self.encode_segments(job, attempt_id, source, target, audio, encoding_plan, heartbeat, id3)
            except JoinError as error:
                # ffmpeg made something the joiner does not take apart: the one-pass MP3 is as good, only slower.
                log.warning("job %s: segments could not be joined (%s); encoding in one pass", job["_id"], error)
                encoding_plan = plan.one_pass_instead(encoding_plan, f"segments could not be joined: {error}")
        if not encoded_by_guess:
            ffmpeg_tools.run(command(audio), expected_duration=audio.expected_duration,
                             timeout=self.ffmpeg_timeout_seconds, heartbeat=heartbeat)
        duration = ffmpeg_tools.verify(target, expected_duration=audio.expected_duration,
                                       max_duration=self.max_duration_seconds)
        tagging.write_tag(target, id3)
        return Encoded(duration, audio.copy, encoding_plan.as_record(),
                       average_kbps=ffmpeg_tools.average_kbps(target) if audio.shape.vbr_level is not None else None)

    def without_silence(self, source: Path, probed: Probe, options: ConversionOptions,
                        heartbeat: Callable[[Progress], bool]) -> tuple[ConversionOptions, str]:
        """The options with the leading and trailing silence as their trim (what the encode, the chapters and the
        segment plan then follow), and what the job says of it. Decoding is about a tenth of an encode's work: its
        progress counts as the job's first tenth."""
        audio_start = probed.audio_seek_offset
        audio_end = None if probed.audio_duration is None else audio_start + probed.audio_duration
        audible = silence.measure(
            source, track=probed.track, threshold_db=options.silence_threshold,
            min_seconds=options.silence_min_length, audio_start=audio_start, audio_end=audio_end,
            timeout=self.ffmpeg_timeout_seconds,
            heartbeat=lambda progress: heartbeat(Progress(percent=progress.percent / 10)))
        trimmed = options.model_copy(update={"start_seconds": audible.start_seconds,
                                             "end_seconds": audible.end_seconds})
        said = [f"{what} {seconds:.3f} s" for what, seconds in (("the sound starts at", audible.start_seconds),
                                                                 ("ends at", audible.end_seconds))
                if seconds is not None]
        return trimmed, (f"silence below {options.silence_threshold:g} dBFS trimmed: {', '.join(said)}" if said
                         else "no leading or trailing silence to trim")

    def measure_loudness(self, job: Job, attempt_id: str, source: Path, audio: AudioRecipe, tags: tagging.Tags,
                         heartbeat: Callable[[Progress], bool]) -> AudioRecipe:
        """The first pass of the loudness normalisation: the recipe with the gain it measured, recorded on the job.
        Its progress counts as the first half of the job's: loudnorm's analysis (at 192 kHz, for the true peak) costs
        about as much CPU as the encode, or more."""
        assert audio.normalize_to_lufs is not None
        measured = loudness.measure(
            source, shape=audio.shape, target_lufs=audio.normalize_to_lufs, start_seconds=audio.start_seconds,
            duration_seconds=audio.duration_seconds, expected_duration=audio.expected_duration,
            timeout=self.ffmpeg_timeout_seconds,
            heartbeat=lambda progress: heartbeat(Progress(percent=progress.percent / 2)))
        audio = replace(audio, shape=replace(audio.shape, gain_db=measured.gain_db))
        self.jobs.update(job["_id"], {"attempt_id": attempt_id},
                         {"applied": {**audio.as_record(), "loudness": measured.as_record(),
                                      "tags": tags.as_record()}})
        return audio

    def start_fan_out(self, job: Job, attempt_id: str, source: Path, workdir: Path, probed: Probe,
                      heartbeat: Callable[[Progress], bool], id3: bytes, shape: AudioShape) -> None:
        """Stores the audio track on its own (and the MP3's ID3 tag beside it, for the joiner), records the fan-out
        (with the channels and gain every segment applies) and emits one event per segment."""
        assert self.tracks is not None and self.fan_out is not None
        job_id = job["_id"]
        timings = fanout.Stopwatch()
        track = workdir / f"track.{fanout.TRACK_FORMATS[probed.container][1]}"
        with timings.lap("track_copy"):
            ffmpeg_tools.run(fanout.track_command(source, track, probed.container, audio_track=probed.track),
                             expected_duration=probed.audio_duration, timeout=self.ffmpeg_timeout_seconds,
                             heartbeat=heartbeat)
            # Segment positions count from the track's own start, which the copy may have moved.
            track_probe = ffmpeg_tools.probe(track, max_streams=self.max_streams,
                                             max_duration=self.max_duration_seconds)
        encoding_plan = plan.fan_out_plan(track_probe.audio_duration or probed.audio_duration or 0.0,
                                          track_probe.audio_sample_rate or 0, track_probe.audio_seek_offset,
                                          self.fan_out)
        track_id = fanout.track_file_id(job_id, attempt_id)
        with track.open("rb") as file, timings.lap("track_store"):
            self.tracks.store_file(track_id, file, filename=track.name,
                                   metadata={"owner_id": job["owner_id"], "job_id": job_id, "attempt_id": attempt_id})
        self.tracks.store(fanout.tag_file_id(track_id), [id3], filename="tag.id3",
                          metadata={"owner_id": job["owner_id"], "job_id": job_id, "attempt_id": attempt_id})
        record = FanOutRecord(self.jobs)
        if record.start(job_id, attempt_id, track_id, encoding_plan, probed.audio_duration, timings.seconds,
                        shape) is None:
            raise Stopped()
        for event in fanout.segment_events(job, attempt_id, track_id, encoding_plan):
            self.emitter.emit(event)
        if record.emitted(job_id, attempt_id) is None:
            raise Stopped()
        log.info("job %s: fanned out in %d segments", job_id, len(encoding_plan.segments))

    def encode_segments(self, job: Job, attempt_id: str, source: Path, target: Path, audio: AudioRecipe,
                        encoding_plan: EncodingPlan, heartbeat: Callable[[Progress], bool], id3: bytes) -> Encoded:
        """Every segment's ffmpeg at once; the joined MP3 streams into GridFS from the first segment's end on, so
        the write overlaps the later segments' encoding."""
        job_id = job["_id"]
        record = encoding_plan.as_record()
        self.jobs.update(job_id, {"attempt_id": attempt_id}, {"encoding": record})
        outputs = [target.with_name(f"segment-{index}.mp3") for index in range(len(encoding_plan.segments))]
        commands = segments.segment_commands(source, outputs, encoding_plan.segments,
                                             bitrate_kbps=job["bitrate_kbps"], max_duration=self.max_duration_seconds,
                                             shape=audio.shape)
        with segments.SegmentEncodings(commands, plan.kept_seconds(encoding_plan, audio.expected_duration),
                                       timeout=self.ffmpeg_timeout_seconds) as encodings:
            parts = segments.finished_segments(encodings, outputs, encoding_plan.segments, heartbeat)
            encoded = self.outcome.store_joined(job, parts, target, expected_duration=audio.expected_duration,
                                                max_duration=self.max_duration_seconds, plan=record, head=id3)
        # The same dict as `encoded.plan`: the job record gets the segments' timings when the job finishes.
        record["encoded_after_seconds"] = [encodings.times.finished.get(index)
                                           for index in range(len(encoding_plan.segments))]
        return encoded
