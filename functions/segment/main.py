"""segment (CloudEvent, triggered by io.vid2mp3.segment.requested.v1): encodes one time segment of a fanned-out
job's audio into GridFS; the instance that finishes the last segment joins them into the job's MP3 and emits
io.vid2mp3.audio.converted.v1 (or io.vid2mp3.conversion.failed.v1), as convert does for a job it encodes itself."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import functions_framework
from cloudevents.http import CloudEvent

from endpoints.consumer import consume
from events import EventEmitter, SegmentRequested
from functions.segment.encoder import SegmentEncoder
from jobs.records import Jobs
from runtime.settings import SegmentSettings, load_settings
from storage import mongo
from storage.media import AUDIO, JobSources, MediaStore
from transcoding.outcome import Outcome

settings = load_settings(SegmentSettings)
database = mongo.database(settings)
encoder = SegmentEncoder(
    database=database,
    outcome=Outcome(Jobs(database), JobSources(database), MediaStore(database, AUDIO),
                    EventEmitter(str(settings.k_sink), "segment"),
                    audio_retention=timedelta(seconds=settings.audio_retention_seconds),
                    source_retention=timedelta(seconds=settings.source_video_retention_seconds)),
    work_dir=Path(settings.work_dir), max_duration_seconds=settings.max_duration_seconds,
    ffmpeg_timeout_seconds=settings.ffmpeg_timeout_seconds,
)


@functions_framework.cloud_event
def segment(event: CloudEvent) -> None:
    consume(event, SegmentRequested, encoder.handle)
