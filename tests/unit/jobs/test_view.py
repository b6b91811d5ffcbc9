"""The job view of an import under way (jobs/view.py): the bytes fetched, and the percentage when the size is known."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from jobs.view import job_view


def importing(total_bytes: int | None) -> dict[str, Any]:
    moment = datetime.now(UTC)
    return {"_id": "j1", "owner_id": "1", "state": "importing", "filename": "talk.mp4", "created_at": moment,
            "updated_at": moment, "history": [{"state": "importing", "at": moment}],
            "progress": {"fetched_bytes": 250, "total_bytes": total_bytes}}


def test_an_import_of_a_known_size_shows_the_bytes_fetched_and_the_percentage() -> None:
    view = job_view(importing(1000))
    assert view["import_progress"] == {"fetched_bytes": 250, "total_bytes": 1000}
    assert view["progress"] == {"percent": pytest.approx(25.0), "eta_seconds": None}


def test_an_import_of_an_unknown_size_shows_the_bytes_fetched_alone() -> None:
    view = job_view(importing(None))
    assert view["import_progress"] == {"fetched_bytes": 250, "total_bytes": None}
    assert "progress" not in view


def test_a_job_past_its_import_shows_no_import_progress() -> None:
    view = job_view({**importing(1000), "state": "uploaded"})
    assert "import_progress" not in view and "progress" not in view
