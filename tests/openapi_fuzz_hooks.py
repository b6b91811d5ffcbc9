"""schemathesis hooks for tests/stack/test_openapi.py (loaded through SCHEMATHESIS_HOOKS): raw upload bodies are either
the real tiny clip the test made with ffmpeg (VID2MP3_FUZZ_CLIP) or arbitrary bytes. Random bytes are not media
(415), so without the clip no chain would ever reach a job's status, cancel or download. tus bodies alike."""

from __future__ import annotations

import os
from pathlib import Path

import schemathesis
from hypothesis import strategies as st

CLIP = Path(os.environ["VID2MP3_FUZZ_CLIP"]).read_bytes()

UPLOAD_BYTES = st.just(CLIP) | st.binary(min_size=1, max_size=256)
schemathesis.openapi.media_type("application/octet-stream", UPLOAD_BYTES)
# tus's PATCH and creation-with-upload bodies: raw bytes at an offset.
schemathesis.openapi.media_type("application/offset+octet-stream", UPLOAD_BYTES)
