"""The published JSON Schemas (events/schemas/) are the models' own, one per model, each valid and naming its type."""

from __future__ import annotations

import jsonschema
import pytest

from events import (
    PAYLOAD_MODELS,
)
from events.publish_schemas import SCHEMA_DIR, published_schema, render


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


