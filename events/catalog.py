"""The vid2mp3 event catalog: each CloudEvent type the pipeline emits, and its typed, validated payload.

Conventions, the same for every event (events/README.md explains them to other subscribers):
- `type`: reverse-DNS and versioned (`io.vid2mp3.<noun>.<verb>.v<N>`); a breaking payload change is a new version.
- `source`: `/vid2mp3/<function>`, the function that emitted it.
- `subject`: the job id, so a subscriber can filter or group on one job without parsing the data.
- `id`: `<job id>.<event name>`, deterministic: an event re-emitted after a crash or by the reconcile step
  carries the same id, so consumers deduplicate on `source` + `id`.
- `dataschema`: the JSON Schema of the payload, published in `events/schemas/`.
- `datacontenttype`: `application/json`.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from events.options import MAX_CHAPTERS, MAX_TAG_CHARS, ConversionOptions, optional

SCHEMA_BASE_URI = "https://github.com/vid2mp3/vid2mp3/raw/main/events/schemas/"
SOURCE_PREFIX = "/vid2mp3/"

VIDEO_UPLOADED = "io.vid2mp3.video.uploaded.v1"
AUDIO_CONVERTED = "io.vid2mp3.audio.converted.v1"
CONVERSION_FAILED = "io.vid2mp3.conversion.failed.v1"
NOTIFICATION_SENT = "io.vid2mp3.notification.sent.v1"
JOB_CANCELLED = "io.vid2mp3.job.cancelled.v1"
SEGMENT_REQUESTED = "io.vid2mp3.segment.requested.v1"

JOB_ID_PATTERN = r"^[0-9a-f]{32}$"
JobId = Annotated[str, Field(pattern=JOB_ID_PATTERN, description="The job id: 32 lowercase hex digits.")]
OwnerId = Annotated[str, Field(min_length=1, max_length=64, description="The owner's account id (JWT `sub`).")]
MediaId = Annotated[str, Field(min_length=1, max_length=64, description="A GridFS file id.")]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the stored bytes, hex.")]
SUPPORTED_BITRATES_KBPS = (128, 192, 256, 320)
BitrateKbps = Literal[128, 192, 256, 320]


def is_job_id(value: str) -> bool:
    return re.fullmatch(JOB_ID_PATTERN, value) is not None


class FailureReason(StrEnum):
    """Why a job failed: stable codes a subscriber can branch on; the message says it in words."""

    NOT_MEDIA = "not_media"
    NO_AUDIO = "no_audio"
    TOO_LONG = "too_long"
    TOO_MANY_STREAMS = "too_many_streams"
    CONVERSION_ERROR = "conversion_error"
    INVALID_OUTPUT = "invalid_output"
    DELIVERY_FAILED = "delivery_failed"
    STUCK = "stuck"
    SOURCE_MISSING = "source_missing"
    # An option the probe showed cannot apply to this video (a trim past its end, a track it does not have).
    INVALID_OPTIONS = "invalid_options"
    # An import by URL that could not be fetched to the end (too large, too slow, its server gone, interrupted).
    IMPORT_FAILED = "import_failed"


class EventPayload(BaseModel):
    """Base of every payload: frozen, no unknown fields, and the CloudEvent type it travels as."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_type: ClassVar[str]
    # The last part of the event id (`<job id>.<event_name>`).
    event_name: ClassVar[str]

    job_id: JobId
    owner_id: OwnerId

    @classmethod
    def schema_file_name(cls) -> str:
        return cls.event_type.removeprefix("io.vid2mp3.") + ".json"

    @classmethod
    def schema_uri(cls) -> str:
        return SCHEMA_BASE_URI + cls.schema_file_name()

    def event_id(self) -> str:
        return f"{self.job_id}.{self.event_name}"


class VideoUploaded(EventPayload):
    """A video was uploaded: what the MP3 needs of it (its source: the audio tracks, with their metadata and chapters;
    its covers) is stored in GridFS and its job waits for conversion. Emitted by `upload`; consumed by `convert`."""

    event_type: ClassVar[str] = VIDEO_UPLOADED
    event_name: ClassVar[str] = "video-uploaded"

    video_id: Annotated[MediaId, Field(description="The job's source in GridFS (bucket `sources`): every audio "
                                                   "track of the upload, copied. (Named before sources existed, "
                                                   "when it was the whole video.)")]
    filename: Annotated[str, Field(max_length=255, description="The sanitised original file name.")]
    size_bytes: Annotated[int, Field(ge=1, description="The bytes the client sent.")]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the bytes the client sent, hex.")]
    bitrate_kbps: BitrateKbps = 192
    uploaded_at: datetime
    # Optional, and left out of the payload when no option was given: an event without options is exactly what
    # v1 subscribers always received, and one with them is read by any subscriber that ignores fields it does
    # not know (events/README.md).
    options: Annotated[ConversionOptions | None,
                       Field(exclude_if=lambda value: value is None,
                             description="Conversion options beyond the bitrate (trim, VBR quality, loudness, "
                                         "track, channels, tags, cover); absent: the defaults.")] = None
    # Optional as well: absent from an older producer's events.
    stored_bytes: Annotated[int | None,
                            Field(ge=1, exclude_if=lambda value: value is None,
                                  description="The bytes kept of the upload: its source and its covers; absent: "
                                              "from a producer that kept the whole video.")] = None


class ChapterMarker(BaseModel):
    """A chapter of the MP3, on its own timeline (as its ID3 `CHAP` frame and the job's `chapters` say)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    title: Annotated[str, Field(min_length=1, max_length=MAX_TAG_CHARS)]
    start_seconds: Annotated[float, Field(ge=0)]
    end_seconds: Annotated[float, Field(gt=0)]


class ChapterFile(BaseModel):
    """One MP3 per chapter (`split=chapters`): cut from the job's MP3 and stored beside it; download it from
    `<download URL>/<job id>/chapters/<number>.mp3`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    number: Annotated[int, Field(ge=1, le=MAX_CHAPTERS, description="Its track number, from 1.")]
    title: Annotated[str, Field(min_length=1, max_length=MAX_TAG_CHARS)]
    file_id: MediaId
    size_bytes: Annotated[int, Field(ge=1)]
    sha256: Sha256
    start_seconds: Annotated[float, Field(ge=0, description="Where it starts in the whole MP3 (the first file also "
                                                            "holds what comes before the first chapter).")]
    duration_seconds: Annotated[float, Field(gt=0)]


class AudioConverted(EventPayload):
    """The MP3 of a job is stored in GridFS and the job is `done`. Emitted by `convert`; consumed by `notify`."""

    event_type: ClassVar[str] = AUDIO_CONVERTED
    event_name: ClassVar[str] = "audio-converted"

    audio_id: MediaId
    size_bytes: Annotated[int, Field(ge=1)]
    sha256: Sha256
    duration_seconds: Annotated[float, Field(gt=0)]
    bitrate_kbps: Annotated[int | None, Field(description="Encoded bitrate; null when the MP3 stream was copied.")]
    stream_copied: bool
    converted_at: datetime
    chapters: Annotated[list[ChapterMarker] | None, optional(
        max_length=MAX_CHAPTERS, description="The MP3's chapter markers; absent when it has none.")] = None
    chapter_files: Annotated[list[ChapterFile] | None, optional(
        max_length=MAX_CHAPTERS, description="One MP3 per chapter, played back to back the whole MP3 (asked with "
                                             "`split=chapters`); absent otherwise.")] = None


class ConversionFailed(EventPayload):
    """A job ended `failed`; `reason` is a stable code, `message` is for people. Emitted by `convert`,
    `deadletter` and `reconcile`."""

    event_type: ClassVar[str] = CONVERSION_FAILED
    event_name: ClassVar[str] = "conversion-failed"

    reason: FailureReason
    message: Annotated[str, Field(max_length=1000)]
    failed_at: datetime


class NotificationSent(EventPayload):
    """The owner was emailed the download link of the job's MP3. Emitted by `notify`."""

    event_type: ClassVar[str] = NOTIFICATION_SENT
    event_name: ClassVar[str] = "notification-sent"

    audio_id: MediaId
    channel: Literal["email", "log"]
    sent_at: datetime


class JobCancelled(EventPayload):
    """The owner cancelled the job; its media are deleted. Emitted by `status`."""

    event_type: ClassVar[str] = JOB_CANCELLED
    event_name: ClassVar[str] = "job-cancelled"

    cancelled_at: datetime


class SegmentRequested(EventPayload):
    """One time segment of a long job's audio, to be encoded to MP3 by a segment-encoding instance while the other
    segments are encoded elsewhere; the last to finish joins them and the job goes on as after `convert`. Emitted
    by `convert` (one per segment, when it fans a job out); consumed by `segment`."""

    event_type: ClassVar[str] = SEGMENT_REQUESTED
    event_name: ClassVar[str] = "segment-requested"

    attempt_id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$",
                                     description="The conversion attempt that fanned out; a newer one supersedes it.")]
    index: Annotated[int, Field(ge=0, description="0-based position of the segment in the audio.")]
    count: Annotated[int, Field(ge=2, description="How many segments the audio is split into.")]
    track_id: Annotated[MediaId, Field(description="GridFS file (bucket `tracks`) of the job's audio track, "
                                                   "copied out of the video once.")]
    start_seconds: Annotated[float | None, Field(ge=0, description="Input seek into the track; null: from its "
                                                                   "start.")]
    duration_seconds: Annotated[float | None, Field(gt=0, description="Seconds of the track to encode; null: to "
                                                                      "its end.")]
    skip_frames: Annotated[int, Field(ge=0, description="MP3 frames encoded before the segment's own (pre-roll), "
                                                        "dropped at the join.")]
    keep_frames: Annotated[int | None, Field(ge=1, description="MP3 frames the segment contributes; null: all to "
                                                               "the end.")]
    bitrate_kbps: BitrateKbps

    def event_id(self) -> str:
        # One event per segment of an attempt: the index and the attempt make the id unique and deterministic.
        return f"{self.job_id}.{self.event_name}.{self.attempt_id}.{self.index}"


PAYLOAD_MODELS: tuple[type[EventPayload], ...] = (
    VideoUploaded,
    AudioConverted,
    ConversionFailed,
    NotificationSent,
    JobCancelled,
    SegmentRequested,
)
# The events that tell of a job's progress: what a user's webhooks can subscribe to. `segment.requested` is the
# pipeline's own work item, not news.
JOB_EVENT_TYPES: tuple[str, ...] = (VIDEO_UPLOADED, AUDIO_CONVERTED, CONVERSION_FAILED, NOTIFICATION_SENT,
                                    JOB_CANCELLED)
MODEL_BY_TYPE: dict[str, type[EventPayload]] = {model.event_type: model for model in PAYLOAD_MODELS}
