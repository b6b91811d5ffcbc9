"""convert (CloudEvent, triggered by io.vid2mp3.video.uploaded.v1): converts the job's source (the audio tracks its
upload kept) to MP3 into GridFS, with its tags and cover, then emits io.vid2mp3.audio.converted.v1, or
io.vid2mp3.conversion.failed.v1 with the reason."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import functions_framework
from cloudevents.http import CloudEvent

from endpoints.consumer import consume
from events import VideoUploaded
from events.transport import EventEmitter
from functions.convert.conversion import Converter
from jobs.records import Jobs
from runtime.settings import ConvertSettings, load_settings
from storage import mongo
from storage.media import AUDIO, TRACKS, JobSources, MediaStore
from transcoding import plan

settings = load_settings(ConvertSettings)
database = mongo.database(settings)
converter = Converter(
    jobs=Jobs(database), sources=JobSources(database), audio=MediaStore(database, AUDIO),
    emitter=EventEmitter(str(settings.k_sink), "convert"), work_dir=Path(settings.work_dir),
    max_duration_seconds=settings.max_duration_seconds, max_streams=settings.max_streams,
    ffmpeg_timeout_seconds=settings.ffmpeg_timeout_seconds,
    audio_retention=timedelta(seconds=settings.audio_retention_seconds),
    source_retention=timedelta(seconds=settings.source_video_retention_seconds),
    cpus=plan.usable_cpus(), segment_min_seconds=settings.segment_min_seconds,
    fan_out=plan.FanOutPolicy(settings.fan_out_min_seconds, settings.fan_out_segment_seconds,
                              settings.fan_out_max_segments) if settings.fan_out_min_seconds else None,
    tracks=MediaStore(database, TRACKS),
)


@functions_framework.cloud_event
def convert(event: CloudEvent) -> None:
    consume(event, VideoUploaded, converter.handle)
