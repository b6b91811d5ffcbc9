"""schemathesis hooks for tests/test_openapi.py (loaded through SCHEMATHESIS_HOOKS): raw upload bodies are either
the real tiny clip the test made with ffmpeg (VID2MP3_FUZZ_CLIP) or arbitrary bytes. Random bytes are not media
(415), so without the clip no chain would ever reach a job's status, cancel or download."""

from __future__ import annotations

import os
from pathlib import Path

import schemathesis
from hypothesis import strategies as st

CLIP = Path(os.environ["VID2MP3_FUZZ_CLIP"]).read_bytes()

schemathesis.openapi.media_type("application/octet-stream", st.just(CLIP) | st.binary(min_size=1, max_size=256))
