"""The JSON log lines: no secret in any line, whoever wrote it, nor in an exception's text."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from runtime import structured_logs

SECRETS_IN_LINES = [
    ("token eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJl accepted", "eyJ"),
    ("Authorization: Bearer abc.def-ghi", "abc.def-ghi"),
    ('{"email": "a@b.c", "password": "hunter2 hunter2"}', "hunter2"),
    ("login password=hunter2&next=/", "hunter2"),
    ("mongodb://vid2mp3:s3cret@db:27017/vid2mp3 unreachable", "s3cret"),
    ("sendgrid key SG.abcdefghijkl.mnopqrstuvwxyz0123 refused", "SG.abcdefghijkl"),
    ("GET https://store.example/a.mp3?X-Amz-Signature=deadbeef&X-Amz-Expires=60", "deadbeef"),
    ("download https://vid2mp3.example/d/1?token=abc123&x=1", "abc123"),
]


@pytest.mark.parametrize(("message", "secret"), SECRETS_IN_LINES)
def test_a_log_line_never_holds_a_secret(message: str, secret: str) -> None:
    formatter = structured_logs.JsonLines("auth")
    record = logging.LogRecord("vid2mp3.test", logging.WARNING, __file__, 1, "%s", (message,), None)
    line = json.loads(formatter.format(record))
    assert secret not in line["message"], line
    assert structured_logs.REDACTED in line["message"]
    assert {line["function"], line["level"]} == {"auth", "warning"}


def test_an_exceptions_text_is_redacted_too() -> None:
    formatter = structured_logs.JsonLines("auth")
    try:
        raise ValueError("cannot reach mysql://vid2mp3:s3cret@127.0.0.1/vid2mp3")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = json.loads(formatter.format(record))
    assert "s3cret" not in line["exception"] and "ValueError" in line["exception"]


