"""Writes the published JSON Schema of each event payload (events/schemas/*.json) from the models in the catalog.

Run `python -m events.publish_schemas` (`make schemas`) after changing a payload; a test fails while a
published schema and its model differ.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from events.catalog import PAYLOAD_MODELS, EventPayload

SCHEMA_DIR = Path(__file__).parent / "schemas"


def published_schema(model: type[EventPayload]) -> dict[str, Any]:
    schema = model.model_json_schema(mode="serialization")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": model.schema_uri(),
        "x-cloudevents-type": model.event_type,
        **schema,
    }


def render(model: type[EventPayload]) -> str:
    return json.dumps(published_schema(model), indent=2, sort_keys=True) + "\n"


def main() -> None:
    SCHEMA_DIR.mkdir(exist_ok=True)
    for model in PAYLOAD_MODELS:
        (SCHEMA_DIR / model.schema_file_name()).write_text(render(model))
        print(f"wrote events/schemas/{model.schema_file_name()}")


if __name__ == "__main__":
    main()
