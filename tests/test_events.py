"""The event catalog: models and published schemas agree, payloads are validated with every error reported, and
the emit helper speaks binary-mode CloudEvents and retries only what can succeed."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import jsonschema
import pytest
from cloudevents.conversion import to_structured
from cloudevents.http import CloudEvent, from_http

from events import (
    AUDIO_CONVERTED,
    MODEL_BY_TYPE,
    PAYLOAD_MODELS,
    AudioConverted,
    EmitError,
    EventEmitter,
    InvalidEvent,
    VideoUploaded,
    parse_event,
    to_cloud_event,
)
from events.publish_schemas import SCHEMA_DIR, published_schema, render
from tests.support import Sink

JOB = "0123456789abcdef0123456789abcdef"
SHA = "a" * 64


def uploaded(**changes: Any) -> dict[str, Any]:
    return {"job_id": JOB, "owner_id": "7", "video_id": JOB, "filename": "clip.mp4", "size_bytes": 10,
            "sha256": SHA, "bitrate_kbps": 192, "uploaded_at": "2026-11-24T10:00:00Z", **changes}


@pytest.mark.parametrize("model", PAYLOAD_MODELS, ids=lambda model: model.event_type)
def test_published_schema_matches_the_model(model: type) -> None:
    published = SCHEMA_DIR / model.schema_file_name()
    assert published.exists(), f"run `make schemas`: {published} is missing"
    assert published.read_text() == render(model), f"run `make schemas`: {published.name} is out of date"


def test_every_schema_file_belongs_to_a_model() -> None:
    assert {path.name for path in SCHEMA_DIR.glob("*.json")} == {m.schema_file_name() for m in PAYLOAD_MODELS}


@pytest.mark.parametrize("model", PAYLOAD_MODELS, ids=lambda model: model.event_type)
def test_schema_is_valid_and_names_its_type(model: type) -> None:
    schema = published_schema(model)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["x-cloudevents-type"] == model.event_type
    assert schema["$id"] == model.schema_uri()


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


def converted() -> AudioConverted:
    return AudioConverted(job_id=JOB, owner_id="7", audio_id=JOB, size_bytes=5, sha256=SHA, duration_seconds=1.5,
                          bitrate_kbps=192, stream_copied=False, converted_at=datetime.now(UTC))


def test_emit_posts_a_binary_mode_cloud_event() -> None:
    sink = Sink([202])
    EventEmitter(sink.url, "convert").emit(converted())
    [(headers, body)] = sink.requests
    assert headers["ce-type"] == AUDIO_CONVERTED and headers["ce-source"] == "/vid2mp3/convert"
    assert headers["ce-subject"] == JOB and headers["content-type"] == "application/json"
    assert json.loads(body)["audio_id"] == JOB


def test_emit_retries_server_errors_then_succeeds() -> None:
    sink = Sink([503, 500, 202])
    EventEmitter(sink.url, "convert", first_backoff_seconds=0.01).emit(converted())
    assert len(sink.requests) == 3


def test_emit_gives_up_after_its_attempts() -> None:
    sink = Sink([500])
    with pytest.raises(EmitError, match="HTTP 500"):
        EventEmitter(sink.url, "convert", attempts=3, first_backoff_seconds=0.01).emit(converted())
    assert len(sink.requests) == 3


def test_emit_does_not_retry_a_refusal() -> None:
    sink = Sink([400])
    with pytest.raises(EmitError, match="HTTP 400"):
        EventEmitter(sink.url, "convert", first_backoff_seconds=0.01).emit(converted())
    assert len(sink.requests) == 1


def test_emit_to_nowhere_is_an_error() -> None:
    with pytest.raises(EmitError, match="ConnectionError"):
        EventEmitter("http://127.0.0.1:9/", "convert", attempts=2, first_backoff_seconds=0.01).emit(converted())
