"""The event catalog: payloads validated against their published schemas with every error at once, the CloudEvent
attributes' conventions, parsing in both modes, and the video-uploaded payload with options still a v1 payload."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import jsonschema
import pytest
from cloudevents.conversion import to_structured
from cloudevents.http import CloudEvent, from_http
from pydantic import BaseModel, ConfigDict, ValidationError

from events import (
    AUDIO_CONVERTED,
    MODEL_BY_TYPE,
    PAYLOAD_MODELS,
    AudioConverted,
    InvalidEvent,
    VideoUploaded,
    parse_event,
    to_cloud_event,
)
from events.options import parse_options
from events.publish_schemas import SCHEMA_DIR

JOB = "0123456789abcdef0123456789abcdef"


SHA = "a" * 64


def uploaded(**changes: Any) -> dict[str, Any]:
    return {"job_id": JOB, "owner_id": "7", "video_id": JOB, "filename": "clip.mp4", "size_bytes": 10,
            "sha256": SHA, "bitrate_kbps": 192, "uploaded_at": "2026-11-24T10:00:00Z", **changes}


def test_a_valid_payload_validates_against_its_published_schema() -> None:
    payload = VideoUploaded.model_validate(uploaded())
    schema = json.loads((SCHEMA_DIR / VideoUploaded.schema_file_name()).read_text())
    jsonschema.validate(payload.model_dump(mode="json"), schema)


@pytest.mark.parametrize(("change", "field"), [
    ({"job_id": "not-a-job"}, "job_id"),
    ({"bitrate_kbps": 100}, "bitrate_kbps"),
    ({"sha256": "xyz"}, "sha256"),
    ({"size_bytes": 0}, "size_bytes"),
    ({"owner_id": ""}, "owner_id"),
    ({"surprise": 1}, "surprise"),
])
def test_invalid_payloads_are_rejected_naming_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        VideoUploaded.model_validate(uploaded(**change))


def test_every_error_is_reported_at_once() -> None:
    with pytest.raises(ValueError) as error:
        VideoUploaded.model_validate(uploaded(job_id="x", sha256="y", size_bytes=-1))
    assert all(name in str(error.value) for name in ("job_id", "sha256", "size_bytes"))


def test_cloud_event_attributes_follow_the_conventions() -> None:
    payload = VideoUploaded.model_validate(uploaded())
    event = to_cloud_event(payload, source_function="upload")
    assert event["type"] == "io.vid2mp3.video.uploaded.v1"
    assert event["source"] == "/vid2mp3/upload"
    assert event["subject"] == JOB
    assert event["id"] == f"{JOB}.video-uploaded"
    assert event["dataschema"].endswith("/events/schemas/video.uploaded.v1.json")
    assert parse_event(event, VideoUploaded) == payload


def test_parse_event_rejects_the_wrong_type_and_a_bad_payload() -> None:
    event = to_cloud_event(VideoUploaded.model_validate(uploaded()), source_function="upload")
    with pytest.raises(InvalidEvent, match="expected an event of type"):
        parse_event(event, AudioConverted)
    broken = CloudEvent({"type": AUDIO_CONVERTED, "source": "/x", "subject": JOB}, {"job_id": JOB})
    with pytest.raises(InvalidEvent, match="audio_id"):
        parse_event(broken, AudioConverted)


def test_parse_event_reads_structured_mode_too() -> None:
    payload = VideoUploaded.model_validate(uploaded())
    headers, body = to_structured(to_cloud_event(payload, source_function="upload"))
    assert parse_event(from_http(headers, body), VideoUploaded) == payload


def test_model_registry_covers_every_type() -> None:
    assert set(MODEL_BY_TYPE) == {model.event_type for model in PAYLOAD_MODELS}


def uploaded_event(**change: Any) -> VideoUploaded:
    return VideoUploaded(job_id=JOB, owner_id="owner", video_id=JOB, filename="clip.mp4", size_bytes=10,
                         sha256="a" * 64, bitrate_kbps=192, uploaded_at=datetime.now(UTC), **change)


def schema_before_options() -> dict[str, Any]:
    """The video-uploaded v1 schema as published before the options: the current one without them."""
    schema = json.loads((SCHEMA_DIR / VideoUploaded.schema_file_name()).read_text())
    old = copy.deepcopy(schema)
    del old["properties"]["options"]
    old.pop("$defs", None)
    return old


class V1Subscriber(BaseModel):
    """A subscriber written against v1 before the options: it reads the fields it knows and ignores the rest, as
    events/README.md asks of every subscriber."""

    model_config = ConfigDict(extra="ignore")

    job_id: str
    video_id: str
    bitrate_kbps: int


def test_an_event_without_options_is_the_v1_payload_as_before() -> None:
    data = uploaded_event().model_dump(mode="json")
    assert "options" not in data
    jsonschema.validate(data, schema_before_options())  # even a strict v1 validator takes it


def test_an_event_with_options_still_serves_a_v1_subscriber() -> None:
    options = parse_options({"start": "1", "quality": "V2", "title": "T"}).for_event()
    data = uploaded_event(options=options).model_dump(mode="json")
    assert data["options"] == {"start_seconds": 1.0, "quality": "V2", "title": "T"}
    jsonschema.validate(data, json.loads((SCHEMA_DIR / VideoUploaded.schema_file_name()).read_text()))
    lenient = schema_before_options()
    lenient["additionalProperties"] = True
    jsonschema.validate(data, lenient)
    assert V1Subscriber.model_validate(data).bitrate_kbps == 192
    assert VideoUploaded.model_validate(data).options == options


def test_a_cbr_quality_travels_as_the_bitrate_so_the_payload_stays_v1() -> None:
    options = parse_options({"quality": "256"})
    assert options.cbr_kbps == 256 and options.for_event() is None




def test_stored_bytes_is_left_out_when_absent_and_serves_a_v1_subscriber_when_present() -> None:
    """`stored_bytes` (what the upload kept of the video: its source and covers) is new in v1 and optional, like
    `options`: absent, the payload is the one v1 subscribers always received."""
    schema = json.loads((SCHEMA_DIR / VideoUploaded.schema_file_name()).read_text())
    before = schema_before_options()
    del before["properties"]["stored_bytes"]
    assert "stored_bytes" not in uploaded_event().model_dump(mode="json")
    jsonschema.validate(uploaded_event().model_dump(mode="json"), before)
    data = uploaded_event(stored_bytes=4096).model_dump(mode="json")
    assert data["stored_bytes"] == 4096
    jsonschema.validate(data, schema)
    assert V1Subscriber.model_validate(data).video_id == JOB
    with pytest.raises(ValidationError):
        uploaded_event(stored_bytes=0)
