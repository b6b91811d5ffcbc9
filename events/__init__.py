"""vid2mp3's events: the catalog of types and payloads, and the one way to emit and receive them."""

from events.catalog import (
    AUDIO_CONVERTED,
    CONVERSION_FAILED,
    JOB_CANCELLED,
    MODEL_BY_TYPE,
    NOTIFICATION_SENT,
    PAYLOAD_MODELS,
    VIDEO_UPLOADED,
    AudioConverted,
    ConversionFailed,
    EventPayload,
    FailureReason,
    JobCancelled,
    NotificationSent,
    VideoUploaded,
)
from events.transport import EmitError, EventEmitter, InvalidEvent, parse_event, to_cloud_event

__all__ = [
    "AUDIO_CONVERTED",
    "CONVERSION_FAILED",
    "JOB_CANCELLED",
    "MODEL_BY_TYPE",
    "NOTIFICATION_SENT",
    "PAYLOAD_MODELS",
    "VIDEO_UPLOADED",
    "AudioConverted",
    "ConversionFailed",
    "EmitError",
    "EventEmitter",
    "EventPayload",
    "FailureReason",
    "InvalidEvent",
    "JobCancelled",
    "NotificationSent",
    "VideoUploaded",
    "parse_event",
    "to_cloud_event",
]
