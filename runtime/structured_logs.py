"""Every function's log records as JSON lines on stderr: time, level, function, message, job id, trace id and span
id (joining a line to its trace), with tokens, passwords, API keys and signed links blanked out of the text."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

# The job a function is working on (set while it handles an event for it), for lines that do not name it.
current_job: contextvars.ContextVar[str | None] = contextvars.ContextVar("current_job", default=None)

REDACTED = "[redacted]"
# What must never reach a log, whoever wrote the line (our code, a library, an exception's text).
SECRETS = [
    # A JWT (header.payload.signature, base64url; the header always starts with `{"` = eyJ).
    (re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), REDACTED),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), r"\1 " + REDACTED),
    # A SendGrid API key.
    (re.compile(r"\bSG\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), REDACTED),
    # Credentials in a URL (mongodb://user:password@host, mysql://...).
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]+):[^@\s/]+@"), r"\1:" + REDACTED + "@"),
    # A password, secret or key given as a field: `password=...`, `"password": "..."`.
    (re.compile(r"(?i)(\"?\b(?:password|passwd|secret|api_key|apikey|private_key)\"?\s*[:=]\s*)(\"[^\"]*\"|[^\s,;&}]+)"),
     r"\1" + REDACTED),
    # A signed link's signature or token parameter (S3/GCS presigned URLs, `?token=`, `&sig=`).
    (re.compile(r"(?i)([?&](?:x-amz-signature|x-goog-signature|x-amz-credential|x-amz-security-token|signature|sig"
                r"|token|access_token|expires_token)=)[^&\s\"']+"), r"\1" + REDACTED),
]


def redact(text: str) -> str:
    for pattern, replacement in SECRETS:
        text = pattern.sub(replacement, text)
    return text


def parse_time(value: Any) -> float | None:
    """An RFC 3339 time (a CloudEvent's `time`) as a POSIX timestamp; None when absent or unreadable."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class JsonLines(logging.Formatter):
    def __init__(self, function: str) -> None:
        super().__init__()
        self.function = function

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "function": self.function,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        job_id = current_job.get()
        if job_id:
            line["job_id"] = job_id
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            line["trace_id"] = format(span_context.trace_id, "032x")
            line["span_id"] = format(span_context.span_id, "016x")
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False)


_configured = False


def configure(function: str) -> None:
    """Once per process: the root logger writes JSON lines at INFO and above (beside any handler already there,
    such as a test runner's)."""
    global _configured
    if _configured:
        return
    _configured = True
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines(function))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
