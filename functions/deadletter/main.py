"""deadletter (CloudEvent, the dead-letter sink of every Trigger): an event the broker gave up delivering marks its
job failed with the HTTP code the subscriber last answered (`knativeerrorcode`), or its notification failed."""

from __future__ import annotations

import logging

import functions_framework
from cloudevents.http import CloudEvent

from endpoints.consumer import consume
from events import (
    AUDIO_CONVERTED,
    SEGMENT_REQUESTED,
    VIDEO_UPLOADED,
    AudioConverted,
    EventEmitter,
    SegmentRequested,
    VideoUploaded,
)
from functions.deadletter.handler import DeadLetters
from jobs.records import Jobs
from runtime.settings import DeadLetterSettings, load_settings
from storage import mongo

log = logging.getLogger(__name__)
settings = load_settings(DeadLetterSettings)
dead_letters = DeadLetters(jobs=Jobs(mongo.database(settings)), emitter=EventEmitter(str(settings.k_sink),
                                                                                     "deadletter"))


@functions_framework.cloud_event
def deadletter(event: CloudEvent) -> None:
    code = str(event.get("knativeerrorcode") or "unknown")
    if event["type"] == VIDEO_UPLOADED:
        consume(event, VideoUploaded, lambda payload: dead_letters.conversion_undelivered(payload, code))
    elif event["type"] == SEGMENT_REQUESTED:
        consume(event, SegmentRequested, lambda payload: dead_letters.segment_undelivered(payload, code))
    elif event["type"] == AUDIO_CONVERTED:
        consume(event, AudioConverted, lambda payload: dead_letters.notification_undelivered(payload, code))
    else:
        log.warning("dead letter of type %s (id=%s, code %s) has no handler; dropped", event["type"], event["id"],
                    code)
