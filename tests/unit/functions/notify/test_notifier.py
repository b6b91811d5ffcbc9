"""functions/notify/notifier.py: the email's subject names the video (the stack's test reads what SendGrid gets)."""

from __future__ import annotations

import pytest

from functions.notify.notifier import subject_of


@pytest.mark.parametrize(("video", "subject"), [
    ("talk.mp4", "Your MP3 of talk.mp4 is ready"),
    ("x" * 80 + ".mp4", "Your MP3 of " + "x" * 79 + "… is ready"),  # a long name shortened: a subject stays short
])
def test_the_subject_names_the_video(video: str, subject: str) -> None:
    assert subject_of(video) == subject
