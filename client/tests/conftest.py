"""The client's tests' media, made once per run (made_media.py makes them)."""

from __future__ import annotations

from pathlib import Path

import pytest
from made_media import media_folder, two_track_matroska


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return media_folder(tmp_path_factory.mktemp("media"))


@pytest.fixture(scope="session")
def two_tracks(media: Path) -> Path:
    return two_track_matroska(media)
